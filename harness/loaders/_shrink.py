"""Delta debugging over bytes: the smallest file for which a predicate still holds.

Two granularities, repeated while either makes progress: *lines* (pieces ending in ``\\n``,
so whole RESP header lines and small bulks go at once) and then *tokens* (single bytes, but
CRLF as one). Each is
Zeller's ddmin over complements: remove one of n chunks, keep the result if the predicate
holds, otherwise split finer. Results are cached by content, and ``max_evals`` bounds the
number of predicate calls (each one runs real servers).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

__all__ = ["ShrinkStats", "ddmin", "shrink_bytes", "split_lines", "split_tokens"]

T = TypeVar("T")


@dataclass(slots=True)
class ShrinkStats:
    evals: int = 0
    cache_hits: int = 0
    rounds: int = 0
    sizes: list[int] = field(default_factory=list)


class _Budget(Exception):
    pass


def split_lines(data: bytes) -> list[bytes]:
    """``data`` cut after every ``\\n`` (the pieces join back to ``data``)."""
    pieces: list[bytes] = []
    start = 0
    while start < len(data):
        nl = data.find(b"\n", start)
        end = len(data) if nl < 0 else nl + 1
        pieces.append(data[start:end])
        start = end
    return pieces


def split_tokens(data: bytes) -> list[bytes]:
    """``data`` as single bytes, except that CRLF stays one token (a file that loses only
    its CRs is rarely the smaller reproduction a reader wants)."""
    tokens: list[bytes] = []
    i = 0
    while i < len(data):
        step = 2 if data[i:i + 2] == b"\r\n" else 1
        tokens.append(data[i:i + step])
        i += step
    return tokens


def ddmin(items: Sequence[T], test: Callable[[list[T]], bool]) -> list[T]:
    """A 1-minimal sublist of ``items`` for which ``test`` holds (``test(items)`` must hold)."""
    current = list(items)
    n = 2
    while len(current) >= 2:
        size = -(-len(current) // n)
        for start in range(0, len(current), size):
            candidate = current[:start] + current[start + size:]
            if test(candidate):
                current = candidate
                n = max(n - 1, 2)
                break
        else:
            if n >= len(current):
                break
            n = min(len(current), 2 * n)
    if len(current) == 1 and test([]):
        return []
    return current


def shrink_bytes(data: bytes, predicate: Callable[[bytes], bool], *, max_evals: int = 400,
                 deadline: float | None = None, stats: ShrinkStats | None = None) -> bytes:
    """The smallest ``data`` variant (by deletions) that keeps ``predicate`` true.

    ``predicate(data)`` is assumed true. Stops early at ``max_evals`` predicate calls or at the
    ``time.monotonic()`` ``deadline``, returning the best file found so far.
    """
    stats = stats if stats is not None else ShrinkStats()
    cache: dict[bytes, bool] = {data: True}
    best = data

    def test(candidate: bytes) -> bool:
        nonlocal best
        if candidate in cache:
            stats.cache_hits += 1
            return cache[candidate]
        if stats.evals >= max_evals or (deadline is not None and time.monotonic() > deadline):
            raise _Budget
        stats.evals += 1
        ok = bool(predicate(candidate))
        cache[candidate] = ok
        if ok and len(candidate) < len(best):
            best = candidate
            stats.sizes.append(len(best))
        return ok

    try:
        while True:
            stats.rounds += 1
            before = best
            best = b"".join(ddmin(split_lines(best), lambda parts: test(b"".join(parts))))
            best = b"".join(ddmin(split_tokens(best), lambda parts: test(b"".join(parts))))
            if best == before:
                break
    except _Budget:
        pass
    return best
