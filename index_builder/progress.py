"""Progress lines on stderr (stage, percentage, elapsed, ETA), throttled; silent when quiet."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


class Progress:
    def __init__(self, quiet: bool = False, stream: TextIO | None = None, interval: float = 1.0) -> None:
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.interval = interval
        self._stage = ""
        self._started = 0.0
        self._last = 0.0

    def message(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    def update(self, stage: str, done: int, total: int) -> None:
        """Report `done` of `total` units of `stage`; prints at most once per interval, and at the end."""
        now = time.monotonic()
        if stage != self._stage:
            self._stage, self._started, self._last = stage, now, 0.0
        if self.quiet or (done < total and now - self._last < self.interval):
            return
        self._last = now
        elapsed = now - self._started
        fraction = done / total if total else 1.0
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else 0.0
        print(
            f"[{stage}] {done}/{total} ({fraction:4.0%}) elapsed {_clock(elapsed)} eta {_clock(eta)}",
            file=self.stream,
            flush=True,
        )
