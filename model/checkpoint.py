"""Checkpoint files read without running code from them, for every command that reads one.

`load(path, what)` reads with `torch.load(weights_only=True)` (tensors, plain containers and
the few classes torch allows) and turns every way a file can fail into a `CheckpointError`
of one line that names the file and says which: empty, cut short (a zip archive without its
central directory: a copy or a save that did not finish), not a torch file, or holding
Python objects beyond tensors (the classes listed). A weights-only load is never relaxed:
torch's own message suggests `weights_only=False`, which would run code from the file, so it
is not passed on. A missing file is a FileNotFoundError naming it.

Used by the encoder's weights (`model.vitpose.read_checkpoint`), the evaluator
(`eval.evaluate.read_checkpoint`) and the resume of a training run (`train.run`, before
Lightning reads the same file).
"""
from __future__ import annotations

import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch

from datasets.errors import InputError

ZIP_MAGIC = b"PK\x03\x04"  # torch >= 1.6 saves a zip archive
LISTED_CLASSES = 3  # classes named in the message


class CheckpointError(InputError, ValueError):
    """A checkpoint file cannot be used; the one-line message names the file and why."""


def load(path: str | Path, what: str = "checkpoint", *, inert_classes: bool = False, mmap: bool = False) -> Any:
    """The object saved in `path`, read without running code from it.

    inert_classes: read classes that torch's allowlist lacks (e.g. the config objects in an
    mmpose checkpoint's metadata) as plain ordered dicts instead of refusing the file.
    mmap: map a zip archive's tensors instead of reading them (large encoder weights)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: {what} not found")
    if not path.is_file():
        raise CheckpointError(f"{path}: is a folder, not a {what} file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: unreadable {what}: the file is empty")
    with open(path, "rb") as f:
        zipped_start = f.read(len(ZIP_MAGIC)) == ZIP_MAGIC
    zipped = zipfile.is_zipfile(path)
    if zipped_start and not zipped:
        raise CheckpointError(f"{path}: truncated {what}: a torch zip archive without its end ({size} bytes; "
                              f"a copy or a save that did not finish)")
    unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) if zipped else []
    if unsafe and not inert_classes:
        raise CheckpointError(f"{path}: the {what} holds Python objects other than tensors and plain containers "
                              f"({', '.join(unsafe[:LISTED_CLASSES])}{' ...' if len(unsafe) > LISTED_CLASSES else ''}); "
                              f"it is not read, as reading them would run code from the file")
    try:
        with torch.serialization.safe_globals([(OrderedDict, name) for name in unsafe]):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap and zipped)
    except (pickle.UnpicklingError, RuntimeError, EOFError, KeyError, ValueError, OSError, zipfile.BadZipFile) as e:
        raise CheckpointError(f"{path}: unreadable or truncated {what} ({_reason(e)})") from None


def _reason(e: BaseException) -> str:
    """What went wrong, in a few words: torch's messages run to paragraphs and may advise an
    unsafe load."""
    text = str(e).strip().split("\n")[0]
    if isinstance(e, pickle.UnpicklingError) or "weights_only" in text:
        return "not a torch checkpoint: its pickle does not parse as tensors and plain containers"
    if isinstance(e, EOFError) or "EOF" in text:
        return "the file ends early"
    if isinstance(e, KeyError):
        return "not a torch checkpoint"
    return text.split(". ")[0][:200] or type(e).__name__
