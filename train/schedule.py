"""Learning-rate schedule as a pure function of the optimizer step (nanoGPT `get_lr(it)`),
so an exact resume needs only the step count.

The paper names no schedule (supplement A: AdamW, lr 1e-4), so the default is constant;
`cosine` decays to 0 at the last step. Both may start with a linear warm-up (ours).
"""
from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine")


def lr_factor(step: int, total_steps: int, schedule: str = "constant", warmup_steps: int = 0) -> float:
    """Multiplier of the base learning rate before optimizer step `step` (0-based)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; known: {SCHEDULES}")
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    span = max(total_steps - warmup_steps, 1)
    progress = min(max(step - warmup_steps, 0) / span, 1.0)
    return 0.5 * (1.0 + math.cos(math.pi * progress))
