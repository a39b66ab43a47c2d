"""The terminal summary of ``aofcrash report``: a report's totals as lines a person reads
(``elapsed: 1 min 20 s``, ``first failure: none``), never Python reprs. Units come from the
key's suffix (``_s``, ``_ms``, ``_bytes``, ``_per_s``); a nested dict is one line of
``name value`` pairs with its parent's unit."""

from __future__ import annotations

from typing import Any

__all__ = ["duration", "totals_lines"]

_UNITS = (("_s", "s"), ("_ms", "ms"), ("_bytes", "bytes"))
# Counts found among timings (time_s.workers): never given the parent's unit.
_COUNTS = frozenset({"workers", "trials", "examples_count"})


def duration(seconds: float) -> str:
    """0.25 -> '0.25 s', 12.34 -> '12.3 s', 79.99 -> '1 min 20 s', 7300 -> '2 h 01 min'."""
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _split(key: str) -> tuple[str, str]:
    """'first_failure_s' -> ('first failure', 's'); 'trials_per_s' -> ('trials per second',
    '')."""
    if key.endswith("_per_s"):
        return key.removesuffix("_per_s").replace("_", " ") + " per second", ""
    for suffix, unit in _UNITS:
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)].replace("_", " "), unit
    return key.replace("_", " "), ""


def _number(value: int | float, unit: str) -> str:
    if unit == "s":
        return duration(value)
    if isinstance(value, float):
        text = f"{value:.2f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:.0f}"
    else:
        text = f"{value:,}".replace(",", " ") if abs(value) >= 10_000 else str(value)
    return f"{text} {unit}" if unit else text


def _value(value: Any, unit: str) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return _number(value, unit)
    if isinstance(value, dict):
        parts = []
        for key, sub in value.items():
            name, own = _split(str(key))
            parts.append(f"{name} {_value(sub, own or ('' if key in _COUNTS else unit))}")
        return ", ".join(parts) or "none"
    if isinstance(value, list | tuple):
        return ", ".join(_value(v, unit) for v in value) or "none"
    return " ".join(str(value).split())


def totals_lines(totals: dict[str, Any]) -> list[str]:
    """One '  name: value' line per total."""
    lines = []
    for key, value in totals.items():
        name, unit = _split(str(key))
        lines.append(f"  {name}: {_value(value, unit)}")
    return lines
