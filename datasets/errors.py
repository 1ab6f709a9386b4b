"""What a command does with input it cannot use.

Every error class that means "this file, folder, option or config cannot be used" derives
from `InputError` (`AnnotationError`, `RecordError`, `ShardError`, `ConfigError`,
`DataError`, `EvalError`, `CheckpointError`, ...), and its message names the thing and says
what is wrong. A command's `main` catches `USER_ERRORS` (these, and a missing file) and
prints `fail`'s one line, `<command>: error: <message>`, exit status 2, no traceback, before
it has written anything; anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import sys


class InputError(Exception):
    """The input named in the message cannot be used (see the module doc)."""


USER_ERRORS = (InputError, FileNotFoundError, NotADirectoryError)
EXIT_INPUT = 2  # a command's exit status for input it cannot use (argparse's for bad options)


def fail(command: str, error: BaseException) -> int:
    """Print `<command>: error: <message>` on stderr; returns the exit status."""
    print(f"{command}: error: {error}", file=sys.stderr, flush=True)
    return EXIT_INPUT
