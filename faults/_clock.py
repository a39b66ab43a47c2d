"""Virtual time. Nothing in faults/, reference/ or the in-process harness reads the wall clock."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

__all__ = ["BackgroundJob", "Clock"]


@dataclass(slots=True)
class BackgroundJob:
    """Time spent by work run inside ``Clock.background()``; it does not move the clock."""

    elapsed_ms: int = 0


class Clock:
    """Virtual milliseconds since an arbitrary epoch.

    ``advance`` moves time forward (the harness's ticks). ``sleep`` is how simulated work takes
    time (a slow fsync): on the main thread it advances the clock; inside ``background()`` it is
    charged to the background job instead, so a slow background fsync delays only its own
    completion, as a bio thread does in Redis.
    """

    def __init__(self, start_ms: int = 0) -> None:
        if start_ms < 0:
            raise ValueError(f"start_ms must be >= 0, got {start_ms}")
        self._now_ms = start_ms
        self._jobs: list[BackgroundJob] = []

    def __repr__(self) -> str:
        return f"Clock(now_ms={self._now_ms})"

    @property
    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, delta_ms: int) -> int:
        """Move time forward by `delta_ms` (>= 0); returns the new time."""
        if delta_ms < 0:
            raise ValueError(f"time cannot go backwards: advance({delta_ms})")
        self._now_ms += delta_ms
        return self._now_ms

    def sleep(self, delta_ms: int) -> None:
        """Simulated work that takes `delta_ms`: charged to the innermost background job if any."""
        if delta_ms < 0:
            raise ValueError(f"sleep({delta_ms}): duration must be >= 0")
        if self._jobs:
            self._jobs[-1].elapsed_ms += delta_ms
        else:
            self._now_ms += delta_ms

    @contextmanager
    def background(self) -> Iterator[BackgroundJob]:
        """Run work off the main thread: sleeps inside are collected into the yielded job."""
        job = BackgroundJob()
        self._jobs.append(job)
        try:
            yield job
        finally:
            self._jobs.pop()
