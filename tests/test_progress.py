"""datasets.progress: a bar on a terminal, a plain line every few seconds in a log (no carriage
returns), on a clock the test drives."""
import io

from datasets.progress import Progress, progress


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_log_gets_one_plain_line_per_interval_and_one_at_the_end():
    clock, log = Clock(), io.StringIO()
    with Progress(total=10_000, desc="crop+write", unit="frames", every=5.0, stream=log, clock=clock) as bar:
        for i in range(1, 10_001):  # 100 s at 1/128 s per item
            clock.t = i / 128
            bar.update(1)
        clock.t += 1.0
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert len(lines) == int(10_000 / 128 / 5) + 1, lines  # one per 5 s, and the last one at close
    assert lines[0] == "  crop+write: 640/10000 frames (6%), 128.0 frames/s, 5 s"
    assert lines[-1].startswith("  crop+write: 10000/10000 frames (100%)")


def test_a_short_loop_prints_nothing_and_a_closed_bar_repeats_nothing():
    clock, log = Clock(), io.StringIO()
    for _ in progress(range(1000), "read 3dpw/train", "frames", stream=log, clock=clock):
        clock.t += 0.001  # 1 s in all: below the interval
    assert log.getvalue() == ""
    bar = Progress(total=None, desc="train", unit="steps", every=5.0, stream=log, clock=clock, initial=100)
    clock.t += 10
    bar.set_postfix(loss="0.25")
    bar.update(20)  # a resumed loop: the rate counts the 20 steps of this run only
    bar.close()  # nothing moved since that line: no second one
    assert log.getvalue().splitlines() == ["  train: 120 steps, 2.0 steps/s, 10 s, loss 0.25"]


def test_show_false_prints_nothing_and_a_terminal_gets_a_bar():
    clock, log = Clock(), io.StringIO()
    with Progress(total=10, desc="x", show=False, every=0.0, stream=log, clock=clock) as bar:
        for _ in range(10):
            clock.t += 1
            bar.update()
    assert log.getvalue() == ""

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    tty = Terminal()
    with Progress(total=3, desc="bar", unit="frames", stream=tty) as bar:
        bar.update(3)
    assert "\r" in tty.getvalue() and "3/3" in tty.getvalue()  # tqdm's redrawn line
