"""The block log of ``faults.kernel``'s recorder and the crash states it allows.

Pure data and arithmetic, no root needed: parse the daemon's log (``faults._blockdaemon``),
enumerate crash states (which logged writes a crash image contains) and write an image file.

A crash at a point P (a marker or a flush) keeps every write logged before the last flush that
precedes P (the block layer promised them), plus any subset of the writes issued after that
flush and before P (in flight: the disk may or may not have them). Writes logged before the
baseline snapshot are in the snapshot. Subsets are bounded (``KernelLimits``): every prefix in
issue order first, then distinct random subsets drawn from a seed; what is left out is counted.
"""

from __future__ import annotations

import enum
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from faults._blockdaemon import RECORD, copy_sparse, punch_hole

__all__: list[str] = []

_ENUMERATE_ALL_UP_TO: Final = 10  # in-flight writes: below this many, subsets are exhaustive


@dataclass(frozen=True, slots=True)
class KernelLimits:
    """Bounds on the crash states per crash point; what they leave out is counted.

    ``max_prefixes``: at most this many prefixes of the in-flight writes (evenly spaced, always
    including none and all); ``max_subsets``: at most this many other subsets (random, distinct,
    drawn from the seed; every subset when there are few in-flight writes);
    ``flush_points``: also a crash point at every flush (a crash inside a syscall).
    """

    max_prefixes: int = 64
    max_subsets: int = 16
    flush_points: bool = True

    def __post_init__(self) -> None:
        errors = [
            f"{name}: must be an integer >= {low}, got {getattr(self, name)!r}"
            for name, low in (("max_prefixes", 2), ("max_subsets", 0))
            if not isinstance(getattr(self, name), int) or getattr(self, name) < low
        ]
        if errors:
            raise ValueError("invalid KernelLimits: " + "; ".join(errors))


class PointKind(enum.Enum):
    """Where a crash point is: at a marker (a call returned) or at a block-layer flush."""

    MARKER = "marker"
    FLUSH = "flush"


@dataclass(frozen=True, slots=True)
class KernelCrashState:
    """One crash image, as the writes it holds: the baseline snapshot ``baseline``, every
    logged write before write number ``durable_writes``, and the in-flight writes ``kept``
    (absolute write numbers in ``[durable_writes, durable_writes + in_flight)``)."""

    baseline: int
    durable_writes: int
    in_flight: int
    kept: tuple[int, ...] = ()

    @property
    def key(self) -> tuple[int, int, tuple[int, ...]]:
        """Equal keys, equal images (the point and the in-flight count do not matter)."""
        return (self.baseline, self.durable_writes, self.kept)


@dataclass(frozen=True, slots=True)
class CrashPoint:
    """A crash point and its states; ``cut_off`` counts the subsets the limits left out."""

    kind: PointKind
    ordinal: int  # among the markers (MARKER) or the flushes (FLUSH) of the log
    label: str  # the marker's label; "" for a flush
    marker_before: int  # ordinal of the last marker before this point (-1: none)
    states: tuple[KernelCrashState, ...]
    cut_off: int


@dataclass(frozen=True, slots=True)
class _Write:
    offset: int
    length: int
    start: int  # payload position in the log bytes; -1: zeros


class BlockLog:
    """A parsed log: writes, flushes, markers and baselines, in the one order they happened."""

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self.writes: list[_Write] = []
        # (kind, write count when it happened, payload): kind F, M (label), B (number) or X
        # (the offset of a write that failed: an injected media error, not on the disk)
        self.events: list[tuple[str, int, str | int]] = []
        position = 0
        size = RECORD.size
        while position + size <= len(raw):
            kind, offset, length = RECORD.unpack_from(raw, position)
            position += size
            if kind == b"W":
                if position + length > len(raw):
                    break  # a record cut by a concurrent read: the rest comes next time
                self.writes.append(_Write(offset, length, position))
                position += length
            elif kind == b"Z":
                self.writes.append(_Write(offset, length, -1))
            elif kind == b"F":
                self.events.append(("F", len(self.writes), 0))
            elif kind == b"M":
                label = raw[position : position + length].decode("utf-8", "replace")
                position += length
                self.events.append(("M", len(self.writes), label))
            elif kind == b"B":
                self.events.append(("B", len(self.writes), offset))
            elif kind == b"X":
                self.events.append(("X", len(self.writes), offset))
            else:
                raise ValueError(f"corrupt block log at byte {position - size}: kind {kind!r}")

    @property
    def markers(self) -> list[str]:
        return [str(p) for k, _, p in self.events if k == "M"]

    @property
    def failed_writes(self) -> int:
        """Block writes that failed with an injected media error (never on the disk)."""
        return sum(1 for k, _, _ in self.events if k == "X")

    @property
    def flushes(self) -> int:
        return sum(1 for k, _, _ in self.events if k == "F")

    def write_bytes(self, number: int) -> bytes:
        w = self.writes[number]
        if w.start < 0:
            return bytes(w.length)
        return self.raw[w.start : w.start + w.length]

    def crash_points(
        self, *, limits: KernelLimits | None = None, seed: int = 0
    ) -> list[CrashPoint]:
        """Every crash point after the first baseline, in log order (deterministic in `seed`)."""
        limits = limits or KernelLimits()
        points: list[CrashPoint] = []
        baseline: tuple[int, int] | None = None  # (number, writes before it)
        last_flush = 0
        markers = flushes = 0
        for kind, count, payload in self.events:
            if kind == "B":
                baseline = (int(payload), count)
            elif kind == "F":
                last_flush = count
                if baseline is not None and limits.flush_points:
                    state = KernelCrashState(baseline[0], max(count, baseline[1]), 0)
                    points.append(
                        CrashPoint(PointKind.FLUSH, flushes, "", markers - 1, (state,), 0)
                    )
                flushes += 1
            elif kind == "X":
                continue  # a failed write changed nothing on the disk
            else:
                if baseline is not None:
                    durable = max(last_flush, baseline[1])
                    states, cut = _states(
                        baseline[0], durable, count - durable, limits, (seed, markers)
                    )
                    points.append(CrashPoint(
                        PointKind.MARKER, markers, str(payload), markers - 1, states, cut))
                markers += 1
        return points

    def write_image(self, state: KernelCrashState, baseline_path: str, dest_path: str) -> None:
        """Write the image of `state` to `dest_path` (created or replaced, sparse)."""
        src = os.open(baseline_path, os.O_RDONLY | os.O_CLOEXEC)
        dst = os.open(dest_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            copy_sparse(src, dst, os.fstat(src).st_size)
            first = self._baseline_writes(state.baseline)
            for number in (*range(first, state.durable_writes), *state.kept):
                w = self.writes[number]
                if w.start < 0:
                    punch_hole(dst, w.offset, w.length)
                else:
                    os.pwrite(dst, self.raw[w.start : w.start + w.length], w.offset)
        finally:
            os.close(src)
            os.close(dst)

    def _baseline_writes(self, number: int) -> int:
        for kind, count, payload in self.events:
            if kind == "B" and payload == number:
                return count
        raise ValueError(f"no baseline {number} in the log")


def _states(
    baseline: int, durable: int, in_flight: int, limits: KernelLimits, seed: tuple[int, int]
) -> tuple[tuple[KernelCrashState, ...], int]:
    def make(kept: tuple[int, ...]) -> KernelCrashState:
        return KernelCrashState(baseline, durable, in_flight, kept)

    total = 2**in_flight
    chosen: list[tuple[int, ...]] = []
    seen: set[tuple[int, ...]] = set()

    def add(kept: tuple[int, ...]) -> None:
        if kept not in seen:
            seen.add(kept)
            chosen.append(kept)

    span = range(durable, durable + in_flight)
    if in_flight + 1 <= limits.max_prefixes:
        for k in range(in_flight + 1):
            add(tuple(span[:k]))
    else:
        steps = limits.max_prefixes - 1
        for i in range(steps + 1):
            add(tuple(span[: (in_flight * i) // steps]))
    prefixes = len(chosen)
    if in_flight < _ENUMERATE_ALL_UP_TO and total <= prefixes + limits.max_subsets:
        for mask in range(total):
            add(tuple(w for i, w in enumerate(span) if mask >> i & 1))
    elif limits.max_subsets:
        rng = random.Random(f"kernel-subsets:{seed[0]}:{seed[1]}")
        for _ in range(limits.max_subsets * 8):
            if len(chosen) - prefixes >= limits.max_subsets:
                break
            add(tuple(w for w in span if rng.random() < 0.5))
    return tuple(make(k) for k in chosen), total - len(chosen)


def iter_unique(points: list[CrashPoint]) -> Iterator[KernelCrashState]:
    """Each distinct image of `points` once, in order of first appearance."""
    seen: set[tuple[int, int, tuple[int, ...]]] = set()
    for point in points:
        for state in point.states:
            if state.key not in seen:
                seen.add(state.key)
                yield state
