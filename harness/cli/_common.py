"""What every ``aofcrash`` command shares: exit codes, the one-line usage error (with
did-you-mean suggestions), argument types, the common options, the progress bar, which defect
needs which policy and model, and loading a reproduction file safely. At module level it
imports only ``harness.cli._progress`` (the rest inside functions), so every command module
can import it without a cycle."""

from __future__ import annotations

import argparse
import difflib
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

# Re-exported: every command takes its progress display from here.
from harness.cli._progress import Progress as Progress
from harness.cli._progress import progress_enabled as progress_enabled

EXIT_OK, EXIT_VIOLATION, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # Ctrl-C: what finished is in the report, marked interrupted


class UsageError(Exception):
    """Bad input or environment: printed as one line, exit code 2."""


class ViolationStop(Exception):
    """A finding that ends the run before any report (a recovery that never finishes):
    printed as one line, exit code 1."""


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """' (did you mean 'x'?)' for the closest known name, or '' when none is close."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_name(kind: str, name: str, known: Iterable[str]) -> str:
    """One line for a name that is not one of `known`: a suggestion, then every known name."""
    names = sorted(known)
    hint = did_you_mean(name, names)
    return f"unknown {kind} {name!r}{hint}" + ("" if hint else f"; known: {', '.join(names)}")


_INVALID_CHOICE = re.compile(r"invalid choice: '(?P<got>[^']*)' \(choose from (?P<choices>.*)\)$")


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps help without breaking names at their hyphens (defect names stay copyable)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        import textwrap

        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class Parser(argparse.ArgumentParser):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        # One line naming what is wrong (argparse would print the whole usage first), with
        # the closest valid name when a choice was mistyped.
        found = _INVALID_CHOICE.search(message)
        if found:
            choices = [c.strip().strip("'\"") for c in found["choices"].split(",")]
            message += did_you_mean(found["got"], choices)
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(EXIT_USAGE)

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        argv = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(self._attach_dash_values(argv), namespace)

    def _attach_dash_values(self, argv: list[str]) -> list[str]:
        """``--budget -5s`` -> ``--budget=-5s``: argparse takes any word starting with '-' for
        an option and says "expected one argument"; the value's own check says what is
        wrong with it instead (a negative budget, a path starting with '-')."""
        out: list[str] = []
        i = 0
        while i < len(argv):
            word = argv[i]
            if word == "--":
                out.extend(argv[i:])
                break
            action = self._option_string_actions.get(word)
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if (action is not None and word.startswith("--") and action.nargs is None
                    and nxt is not None and nxt.startswith("-") and len(nxt) > 1
                    and nxt.split("=", 1)[0] not in self._option_string_actions):
                out.append(f"{word}={nxt}")
                i += 2
                continue
            out.append(word)
            i += 1
        return out


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


def common_args(p: argparse.ArgumentParser, *, seed: bool = True,
                seed_help: str = "seed (default 0)") -> None:
    """--json, and --seed where randomness exists (replay, check-aof and report have none)."""
    if seed:
        p.add_argument("--seed", type=nonnegative_int, default=0, help=seed_help)
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")


def reports_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reports", type=Path, default=Path("reports"),
                   help="where run directories go (default: reports/)")
    p.add_argument("--progress", choices=["auto", "always", "never"], default="auto",
                   help="progress on stderr: a live bar on a terminal, otherwise one line "
                   "every 10 s (auto and always); never: none")


def stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S", time.localtime())




def availability_args(p: argparse.ArgumentParser) -> None:
    """--allow-unavailable (contract rule 4's opt-out) and its old opposite, kept as an alias
    that changes nothing: refusing to start is a violation by default now."""
    p.add_argument("--allow-unavailable", action="store_true",
                   help="report a server that refuses to start after a crash without "
                   "failing (default: that is an availability violation)")
    p.add_argument("--strict-availability", action="store_true", help=argparse.SUPPRESS)


def image_fault_args(p: argparse.ArgumentParser, *, torn_help: str, reorder_help: str,
                     damage_help: str) -> None:
    """--torn, --reorder and --damage/--no-damage (None when neither is given: the command
    decides, see ``_fuzz.damage_asked``): crash images beyond the legal ones."""
    p.add_argument("--torn", action="store_true", help=torn_help)
    p.add_argument("--reorder", action="store_true", help=reorder_help)
    p.add_argument("--damage", action=argparse.BooleanOptionalAction, default=None,
                   help=damage_help)


# -- persistence models (faults.PersistenceModel; literal here, _common imports nothing heavy) --

#: --model's choices: every persistence model, and "power", the old name of power-ext4.
MODEL_CHOICES = ["process", "power-ext4", "power-xfs", "power-btrfs", "power-eager-metadata",
                 "power-posix-metadata", "power"]
#: Every simulated persistence model, in faults.PersistenceModel's order: fuzz's default.
ALL_MODELS = ("process", "power-ext4", "power-xfs", "power-btrfs", "power-eager-metadata",
              "power-posix-metadata")
MODEL_HELP = ("process (the kernel survives); power-ext4 (alias power), power-xfs, power-btrfs: "
              "power loss on that kernel filesystem, calibrated against it; "
              "power-eager-metadata: LazyFS-style, every directory operation durable at once "
              "(most optimistic); power-posix-metadata: the POSIX minimum, a name durable only "
              "after its directory's fsync (most pessimistic)")


# -- defects: names, and which policies and models can show them ----------------------------

_POWER = ("power models (power-ext4, power-xfs, power-btrfs, power-eager-metadata, "
          "power-posix-metadata)")
_ALL_POWER = frozenset({"power-ext4", "power-xfs", "power-btrfs", "power-eager-metadata",
                        "power-posix-metadata"})

#: Defect -> (policies under which it can change what survives, models under which it can;
#: None = any). A run outside them cannot show the defect: the CLI warns (exit codes stay).
#: Why, per row: under ``always`` a write error stops the server before the write-error
#: defects act; data that was written but not fsynced survives a process crash, so the
#: fsync defects need a power model; with ``no`` under power F = 0, so losing unsynced
#: rewrite data is allowed; eager metadata makes every rename durable at once.
DEFECT_NEEDS: dict[str, tuple[frozenset[str] | None, frozenset[str] | None]] = {
    "reply-before-fsync": (frozenset({"always"}), _ALL_POWER),
    "everysec-fsync-skipped": (frozenset({"everysec"}), _ALL_POWER),
    "everysec-offset-advanced-while-busy": (frozenset({"everysec"}), _ALL_POWER),
    "everysec-postponed-without-limit": (frozenset({"everysec"}), None),
    "fsync-error-cleared": (frozenset({"everysec"}), _ALL_POWER),
    "write-error-ignored": (frozenset({"everysec", "no"}), None),
    "misconf-cleared-by-short-write": (frozenset({"everysec", "no"}), None),
    "short-write-kept": (frozenset({"everysec", "no"}), None),
    # On ext4, xfs and btrfs the next fsync of the new AOF makes the rename durable.
    "no-dir-fsync-after-rename": (frozenset({"always", "everysec"}),
                                  frozenset({"power-posix-metadata"})),
    "temp-not-fsynced-before-rename": (None, _ALL_POWER),
    "rewrite-diff-not-fsynced": (frozenset({"always", "everysec"}), _ALL_POWER),
    "zero-tail-refused": (None, _ALL_POWER),
}


def defect_names() -> list[str]:
    from reference.defects import DEFECTS

    return sorted(DEFECTS)


def defect_arg(text: str) -> str:
    """An argparse type: a defect name of reference.defects, with a suggestion otherwise."""
    known = defect_names()
    if text not in known:
        raise argparse.ArgumentTypeError(unknown_name("defect", text, known))
    return text


def defect_help() -> str:
    return ("switch on a named defect of the reference (repeatable): "
            + ", ".join(defect_names()))


def defect_warnings(defects: Iterable[str], *, policies: Iterable[str],
                    models: Iterable[str]) -> list[str]:
    """Why the chosen policies or models cannot show a chosen defect (one line each)."""
    chosen_p = set(policies)
    chosen_m = {"power-ext4" if m == "power" else m for m in models}  # "power": old alias
    out = []
    for name in sorted(set(defects)):
        need_p, need_m = DEFECT_NEEDS.get(name, (None, None))
        if need_p is not None and not need_p & chosen_p:
            out.append(f"defect {name!r} only shows under policy "
                       f"{' or '.join(sorted(need_p))}, not {', '.join(sorted(chosen_p))}: "
                       "this run cannot find it")
        if need_m is not None and not need_m & chosen_m:
            want = _POWER if need_m == _ALL_POWER else " or ".join(sorted(need_m))
            out.append(f"defect {name!r} only shows under {want}, not "
                       f"{', '.join(sorted(chosen_m))}: this run cannot find it")
    return out


def warn(command: str, lines: Iterable[str]) -> None:
    for line in lines:
        sys.stderr.write(f"aofcrash {command}: warning: {line}\n")


def reports_base(path: Path) -> Path:
    """--reports as an absolute directory that can hold run directories, or a UsageError
    naming why not (a file, a read-only or virtual filesystem such as /proc)."""
    base = path.expanduser().absolute()
    if base.exists() and not base.is_dir():
        raise UsageError(f"--reports {path}: is a file, not a directory")
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--reports {path}: cannot create it: {exc.strerror}") from None
    return base


def one_line(value: Any, *, limit: int = 240) -> str:
    """A value for one line of an error message: newlines folded, long text cut."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_reproduction(path: Path) -> Any:
    """A reproduction file, or a UsageError with one line saying why it is not one (not
    readable, not UTF-8, not JSON, a field of the wrong type): never a traceback."""
    from harness.cli._fileio import UnreadableFile, read_text
    from harness.machine._steps import Reproduction, ReproError

    try:
        text = read_text(path, "a reproduction")
    except UnreadableFile as exc:
        raise UsageError(str(exc)) from None
    try:
        return Reproduction.from_json(text)
    except ReproError as exc:
        raise UsageError(f"{path}: {one_line(exc)}") from None
    except RecursionError:
        raise UsageError(f"{path} is not a reproduction: JSON nested too deeply") from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        # A field of the wrong JSON type that the loader did not name.
        raise UsageError(f"{path} is not a valid reproduction: {one_line(exc)}") from None


#: The example database's default home: project-local, replayed first on the next run.
DEFAULT_DATABASE = ".hypothesis/aofcrash"


def database_spec(text: str) -> str | None:
    """--database: 'none' -> None; a redis:// URL or a directory as given."""
    return None if text.strip().lower() in ("none", "off", "") else text


def workers_arg(text: str) -> int:
    """--workers N: 0 means every core."""
    return nonnegative_int(text)


def resolve_workers(requested: int) -> int:
    import os

    return requested if requested > 0 else max(1, os.cpu_count() or 1)


def parallel_args(p: argparse.ArgumentParser, *, workers_help: str, shard_help: str) -> None:
    """--workers N (0: every core) and --shard I/N: how a run spreads over this machine's
    processes and over machines (each command says what it splits)."""
    p.add_argument("--workers", type=workers_arg, default=0, metavar="N", help=workers_help)
    p.add_argument("--shard", type=shard_arg, default=(0, 1), metavar="I/N", help=shard_help)


def progress_bar(args: argparse.Namespace, *, total: float, unit: str) -> Progress:
    """The progress display --progress asks for (``reports_args``; auto without it)."""
    return Progress(enabled=progress_enabled(getattr(args, "progress", "auto")), total=total,
                    unit=unit)


def shard_arg(text: str) -> tuple[int, int]:
    """--shard I/N (0-based I < N)."""
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i = n = -1
    if not sep or n < 1 or not 0 <= i < n:
        raise argparse.ArgumentTypeError(
            f"invalid shard {text!r}: use I/N with 0 <= I < N, e.g. 0/4")
    return i, n
