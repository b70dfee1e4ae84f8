"""Users done, users/s and ETA on stderr: one rewritten line on a terminal, plain lines (every few seconds)
otherwise, so logs of a batch job stay readable."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    def __init__(self, total: int, done: int = 0, stream: TextIO | None = None, interval: float | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.interval = interval if interval is not None else (0.2 if self.tty else 5.0)
        self.total = total
        self.done = done  # includes users of parts finished by an earlier run
        self.scored = 0  # users scored by this run: what users/s counts
        self.started = time.monotonic()
        self.startup_seconds = 0.0  # engine start-up before `start_scoring` (0 when the engine does not say)
        self.scoring_seconds: float | None = None  # from `start_scoring` to `end_scoring` (None: not said)
        self._last = 0.0

    def start_scoring(self) -> None:
        """The engine is ready (processes started, index mapped): users/s and ETA count from now."""
        self.startup_seconds = time.monotonic() - self.started
        self.started = time.monotonic()

    def end_scoring(self) -> None:
        """Every part is written: what follows (stopping the engine) is not counted in users/s."""
        self.scoring_seconds = time.monotonic() - self.started

    def message(self, text: str) -> None:
        if self.tty and self.scored:
            text = "\n" + text
        print(text, file=self.stream, flush=True)

    def advance(self, users: int, skipped: bool = False) -> None:
        self.done += users
        if not skipped:
            self.scored += users
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._print(now)

    def rate(self) -> float:
        elapsed = time.monotonic() - self.started
        return self.scored / elapsed if elapsed > 0 else 0.0

    def finish(self) -> None:
        self._print(time.monotonic())
        if self.tty:
            print(file=self.stream, flush=True)

    def _print(self, now: float) -> None:
        rate = self.rate()
        left = self.total - self.done
        eta = left / rate if rate > 0 else 0.0
        share = self.done / self.total if self.total else 1.0
        line = f"{self.done:,}/{self.total:,} users ({share:.0%}) {rate:,.0f} users/s ETA {_clock(eta)}"
        if self.tty:
            print("\r" + line, end="", file=self.stream, flush=True)
        else:
            print(line, file=self.stream, flush=True)
