"""Progress of a long loop: a tqdm bar on a terminal, plain lines in a log.

A bar redraws itself with carriage returns; written to a file (`make demo > log`) it leaves
every frame behind. So when stderr is not a terminal, `Progress` prints one line every
`PROGRESS_SECONDS` instead (none for a loop that ends sooner), and a last line when it
closes after having printed any:

    with Progress(total=len(work), desc="crop+write", unit="frames") as bar:
        for item in work:
            ...
            bar.update(1)
    for frame in progress(reader.frames(), "read 3dpw/train", unit="frames"):
        ...

Every loop of the project that shows progress goes through here (`pipelines.shards`,
`pipelines.features`, `datasets.check`, `train.pretrain_encoder`; the training loop's
lines are `train.run.ProgressLines`, on the same clock).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TextIO, TypeVar

PROGRESS_SECONDS = 5.0  # between two plain lines
T = TypeVar("T")


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether `stream` (default stderr) is a terminal, where a redrawn bar belongs."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Progress:
    """Count of items done, shown as a tqdm bar on a terminal, else as a plain line on
    `stream` every `every` seconds (default `PROGRESS_SECONDS`; and one when it closes, if it
    printed any and the count moved since).

    show=False shows nothing; bar=None decides by `is_terminal(stream)`; `clock` (seconds)
    is for tests; `initial`: the count it starts from (a resumed loop), not in the rate."""

    def __init__(self, total: int | None = None, desc: str = "", unit: str = "items", show: bool = True,
                 bar: bool | None = None, every: float | None = None, stream: TextIO | None = None,
                 leave: bool = True, initial: int = 0, clock: Callable[[], float] = time.monotonic):
        self.total, self.desc, self.unit, self.show = total, desc, unit, show
        self.every = PROGRESS_SECONDS if every is None else every
        self.stream = sys.stderr if stream is None else stream
        self.clock = clock
        self.n, self.initial, self.postfix, self.lines, self.n_shown = initial, initial, {}, 0, initial
        self.t0 = self.last = clock()
        self._bar = None
        if show and (is_terminal(self.stream) if bar is None else bar):
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=" " + unit, leave=leave, file=self.stream, initial=initial)

    def due(self) -> bool:
        """Whether the next `update` prints a plain line (for callers whose postfix costs
        something to compute, e.g. a device sync)."""
        return self.show and self._bar is None and self.clock() - self.last >= self.every

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self.due():
            self._line()

    def set_postfix(self, **items) -> None:
        """Values shown after the count (`loss=0.12`): on the bar at once, on the next line otherwise."""
        self.postfix = {k: str(v) for k, v in items.items()}
        if self._bar is not None:
            self._bar.set_postfix(self.postfix, refresh=False)

    def text(self) -> str:
        """The plain line: `desc: n/total unit (pct%), rate unit/s, elapsed s[, postfix]`."""
        elapsed = self.clock() - self.t0
        count = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        rate = f", {(self.n - self.initial) / elapsed:.1f} {self.unit}/s" if elapsed > 0 else ""
        extra = "".join(f", {k} {v}" for k, v in self.postfix.items())
        return f"  {self.desc}: {count} {self.unit}{pct}{rate}, {elapsed:.0f} s{extra}"

    def _line(self) -> None:
        print(self.text(), file=self.stream, flush=True)
        self.lines += 1
        self.last, self.n_shown = self.clock(), self.n

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.show and self.lines and self.n != self.n_shown:
            self._line()
        self.show = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(items: Iterable[T], desc: str, unit: str = "items", total: int | None = None, show: bool = True,
             leave: bool = True, **kwargs) -> Iterator[T]:
    """`items`, counted by a `Progress` as they are consumed."""
    with Progress(total, desc, unit, show, leave=leave, **kwargs) as bar:
        for item in items:
            yield item
            bar.update(1)
