"""What every ``aofcrash`` command shares: exit codes, the one-line usage error, argument
types, the common options and the progress bar. Imports nothing of harness, so every command
module can import it without a cycle."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

EXIT_OK, EXIT_VIOLATION, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input or environment: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line naming what is wrong (argparse would print the whole usage first).
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(EXIT_USAGE)


def parse_budget(text: str) -> float:
    """'90' or '90s' -> 90.0, '2m' -> 120.0, '1h' -> 3600.0."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    raw = text.strip().lower()
    factor = 1.0
    if raw and raw[-1] in units:
        factor = units[raw[-1]]
        raw = raw[:-1]
    try:
        value = float(raw) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid budget {text!r}: use seconds like 60, 60s, 2m or 1h"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid budget {text!r}: must be positive")
    return value


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= `minimum`, with a one-line error otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


nonnegative_int = int_at_least(0)
positive_int = int_at_least(1)


class Progress:
    """A one-line progress bar on stderr (only when stderr is a terminal, unless forced)."""

    def __init__(self, *, enabled: bool, total: float, unit: str) -> None:
        self.enabled = enabled
        self.total = total
        self.unit = unit
        self._last = ""

    def update(self, done: float, detail: str) -> None:
        if not self.enabled:
            return
        frac = 0.0 if self.total <= 0 else min(1.0, done / self.total)
        width = 28
        bar = "#" * int(frac * width) + "." * (width - int(frac * width))
        line = f"\r[{bar}] {frac * 100:5.1f}%  {detail}"
        pad = max(0, len(self._last) - len(line))
        sys.stderr.write(line + " " * pad)
        sys.stderr.flush()
        self._last = line

    def close(self) -> None:
        if self.enabled and self._last:
            sys.stderr.write("\n")
            sys.stderr.flush()


def common_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=nonnegative_int, default=0, help="seed (default 0)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")


def reports_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reports", type=Path, default=Path("reports"),
                   help="where run directories go (default: reports/)")
    p.add_argument("--progress", choices=["auto", "always", "never"], default="auto",
                   help="progress bar on stderr (auto: when stderr is a terminal)")


def stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.localtime())


def progress_enabled(mode: str) -> bool:
    return mode == "always" or (mode == "auto" and sys.stderr.isatty())


