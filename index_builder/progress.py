"""Progress of long build stages on stderr: a tqdm bar on a terminal, plain throttled lines otherwise, nothing when
quiet. Each stage's clock starts when the stage starts (`start`), not at its first update, so the elapsed time and
the ETA count the work done before the first unit completes (e.g. the first 65,536 rows added to a graph)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from tqdm import tqdm


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Parameters:
    quiet: print nothing.
    stream: where to write (stderr by default).
    interval: seconds between plain lines of one stage (the first and the last line of a stage always print).
    bars: tqdm bars instead of plain lines; None decides by whether `stream` is a terminal.
    clock: monotonic clock, injectable for tests.
    """

    def __init__(
        self,
        quiet: bool = False,
        stream: TextIO | None = None,
        interval: float = 1.0,
        bars: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self.bars = bars if bars is not None else bool(getattr(self.stream, "isatty", lambda: False)())
        self.clock = clock
        self._stage = ""
        self._started = 0.0
        self._last = 0.0
        self._bar: Any = None

    def message(self, text: str) -> None:
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def start(self, stage: str, total: int) -> None:
        """Begin a stage of `total` units: its clock starts now."""
        self._close_bar()
        self._stage, self._started, self._last = stage, self.clock(), 0.0
        if self.quiet:
            return
        if self.bars:
            self._bar = tqdm(total=total, desc=f"[{stage}]", file=self.stream, mininterval=self.interval, leave=True)
        else:
            self._line(0, total)

    def update(self, stage: str, done: int, total: int) -> None:
        """`done` of `total` units of `stage`; starts the stage if it is not the current one. Plain lines print at
        most once per interval, and always at the end of the stage."""
        if stage != self._stage:
            self.start(stage, total)
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.total = total
            self._bar.update(done - self._bar.n)
            if done >= total:
                self._close_bar()
            return
        now = self.clock()
        if done < total and now - self._last < self.interval:
            return
        self._line(done, total)

    def _line(self, done: int, total: int) -> None:
        now = self.clock()
        self._last = now
        elapsed = now - self._started
        fraction = done / total if total else 1.0
        eta = f"{_clock(elapsed * (1 - fraction) / fraction)}" if fraction > 0 else "--:--"
        print(
            f"[{self._stage}] {done}/{total} ({fraction:4.0%}) elapsed {_clock(elapsed)} eta {eta}",
            file=self.stream,
            flush=True,
        )

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def close(self) -> None:
        self._close_bar()
