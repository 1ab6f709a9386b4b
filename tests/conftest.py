"""Shared fixtures: everything a test needs is generated here, never downloaded."""
from __future__ import annotations

import os

os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
