"""Progress on stderr: a live bar on a terminal (rich), one plain line at a steady interval
without one (a CI log gets readable lines, not carriage returns)."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["LINE_INTERVAL_S", "Progress", "progress_enabled"]

#: Without a terminal, one line at most this often (seconds), plus the last one.
LINE_INTERVAL_S = 10.0


def progress_enabled(mode: str) -> bool:
    """--progress auto|always|never: anything but never reports (as a bar or as lines)."""
    return mode != "never"


class Progress:
    """`update(done, detail)` with `done` out of `total` (in `unit`); `close()` at the end."""

    def __init__(self, *, enabled: bool, total: float, unit: str,
                 stream: TextIO | None = None, interval_s: float = LINE_INTERVAL_S) -> None:
        self.enabled = enabled
        self.total = total
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.interval_s = interval_s
        self._bar: Any = None
        self._task: Any = None
        self._last_line_at: float | None = None
        self._pending: str | None = None
        if enabled and self.stream.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                BarColumn(), TextColumn("{task.percentage:>5.1f}%"), TimeRemainingColumn(),
                TextColumn("{task.description}"),
                console=Console(file=self.stream), transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("", total=max(total, 1e-9))

    def update(self, done: float, detail: str) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(self._task, completed=min(done, self.total), description=detail)
            return
        line = f"[{min(done, self.total):.0f}/{self.total:.0f} {self.unit}] {detail}"
        now = time.monotonic()
        if self._last_line_at is None or now - self._last_line_at >= self.interval_s:
            self.stream.write(line + "\n")
            self.stream.flush()
            self._last_line_at = now
            self._pending = None
        else:
            self._pending = line

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        elif self._pending is not None:
            self.stream.write(self._pending + "\n")
            self.stream.flush()
            self._pending = None
