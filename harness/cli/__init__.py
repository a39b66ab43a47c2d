"""The ``aofcrash`` command line: the surface of the harness (top layer).

Exit codes: 0 no violation, 1 violation found (or an invalid AOF check-aof did not fix), 2
usage or environment error — always one clear line on stderr, never a traceback; 130 Ctrl-C
(verify, fuzz and explore first write a report of what finished, marked interrupted).

One module per command family: ``_fuzz`` (fuzz), ``_explore`` (explore), ``_verify`` (verify),
``_files`` (replay, check-aof, report); ``_common`` holds what they share and ``_report`` writes
and renders reports. A new command is a module with an ``add_parser(sub)`` wired in
``build_parser``. This package may import every other part of harness; nothing imports it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from harness.cli import _explore, _files, _fuzz, _loaders, _verify
from harness.cli._common import (
    EXIT_OK,
    EXIT_USAGE,
    EXIT_VIOLATION,
    Parser,
    UsageError,
    ViolationStop,
    parse_budget,
)
from harness.cli._version import version_line

__all__ = ["main", "parse_budget"]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="aofcrash", description="Fault injection and crash-consistency checks "
                    "for append-only-file persistence in the style of Redis.")
    parser.add_argument("--version", action="version", version=version_line(),
                        help="print the version of aofcrash, Python and Hypothesis and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    _fuzz.add_parser(sub)
    _files.add_parsers(sub)
    _explore.add_parser(sub)
    _verify.add_parser(sub)
    _loaders.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UsageError as exc:
        sys.stderr.write(f"aofcrash {args.command}: error: {exc}\n")
        return EXIT_USAGE
    except ViolationStop as exc:
        sys.stderr.write(f"aofcrash {args.command}: violation: {exc}\n")
        return EXIT_VIOLATION
    except KeyboardInterrupt:
        sys.stderr.write(f"aofcrash {args.command}: interrupted\n")
        return 130
    except BrokenPipeError:
        # stdout closed early (e.g. piped into head): nothing more to say.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        # A bug of ours, not bad input: still one line (AOFCRASH_DEBUG=1 shows the traceback).
        if os.environ.get("AOFCRASH_DEBUG"):
            raise
        detail = " ".join(str(exc).split())[:300]
        sys.stderr.write(f"aofcrash {args.command}: internal error: {type(exc).__name__}: "
                         f"{detail} (AOFCRASH_DEBUG=1 shows the traceback; please report it)\n")
        return EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
