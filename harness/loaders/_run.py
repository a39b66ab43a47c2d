"""Run one AOF file through one tool and record what it did.

Tools (``ToolId`` strings, stable: reports and regression cases name them):

``load:<server>:<yes|no>``
    A loader with ``aof-load-truncated yes`` or ``no``. ``<server>`` is ``redis-6.0``,
    ``redis-6.2``, ``redis-7.0``, ``redis-8.2``, ``valkey-9.1`` (a real process; 7.x-style
    servers get the file as a legacy ``appendonly.aof`` in ``dir``, which they migrate into
    ``appendonlydir``) or
    ``ref-<profile>`` (``reference.Server`` in-process on a ``faults.SimDisk``, one per
    ``reference.Profile``).
``check:<server>``
    ``redis-check-aof`` of that real version (the server binary run as ``redis-check-aof``,
    which is how every version dispatches to its checker; ``valkey-check-aof`` for Valkey), or
    ``check:aofcrash`` (``aofcrash check-aof``: the reference's checker, run in-process).

A loader run records a ``LoadRun`` for the first start and one for a restart on whatever the
first start left on disk (truncated, migrated); a check run records a ``CheckRun``.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

from harness.loaders import _procs
from harness.loaders._canon import (
    CanonKeyspace,
    RespClient,
    RespError,
    canon_from_dump,
    dump_server,
)

__all__ = [
    "CHECKERS",
    "LOADERS",
    "REAL_SERVERS",
    "CheckRun",
    "LoadOutcome",
    "LoadRun",
    "RunSettings",
    "Verdict",
    "available_tools",
    "check_tool",
    "load_tool",
    "reference_profiles",
    "run_tool",
    "server_paths",
    "tool_ids",
]

# name in tool ids -> harness.targets.find_server preset
REAL_SERVERS: Final[Mapping[str, str]] = {
    "redis-6.0": "6.0", "redis-6.2": "6.2", "redis-7.0": "7.0", "redis-8.2": "8.2",
    "valkey-9.1": "valkey",
}
_CHECK_ARGV0: Final[Mapping[str, str]] = {
    "redis-6.0": "redis-check-aof", "redis-6.2": "redis-check-aof",
    "redis-7.0": "redis-check-aof", "redis-8.2": "redis-check-aof",
    "valkey-9.1": "valkey-check-aof",
}
_MULTIPART: Final = frozenset({"redis-7.0", "redis-8.2", "valkey-9.1"})


def reference_profiles() -> list[str]:
    from reference import Profile

    return [p.value for p in Profile]


def _loaders() -> tuple[str, ...]:
    names = [*REAL_SERVERS, *(f"ref-{p}" for p in reference_profiles())]
    return tuple(f"load:{n}:{t}" for n in names for t in ("yes", "no"))


LOADERS: Final[tuple[str, ...]] = _loaders()
CHECKERS: Final[tuple[str, ...]] = (*(f"check:{n}" for n in REAL_SERVERS), "check:aofcrash")


def tool_ids() -> tuple[str, ...]:
    return LOADERS + CHECKERS


class Verdict(StrEnum):
    """What a loader did with a file (a check tool's verdicts are ``valid``/``invalid``)."""

    LOADED = "loaded"
    TRUNCATED = "truncated"
    REFUSED = "refused"
    CRASHED = "crashed"
    HUNG = "hung"
    VALID = "valid"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class LoadRun:
    """One start of a loader: verdict, offset (truncated at / refused at, when known), a short
    reason, the keyspace when it came up, the exit code or signal, and log lines worth showing.
    """

    verdict: Verdict
    offset: int | None = None
    reason: str | None = None
    keyspace: CanonKeyspace | None = None
    exit_code: int | None = None
    notes: tuple[str, ...] = ()
    log: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value, "offset": self.offset, "reason": self.reason,
            "keyspace": None if self.keyspace is None else [list(r) for r in self.keyspace],
            "exit_code": self.exit_code, "notes": list(self.notes), "log": list(self.log),
        }


@dataclass(frozen=True, slots=True)
class LoadOutcome:
    tool: str
    first: LoadRun
    restart: LoadRun | None
    size_after_bytes: int | None = None  # the loaded file's size after the first start

    def to_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "first": self.first.to_dict(),
                "restart": None if self.restart is None else self.restart.to_dict(),
                "size_after_bytes": self.size_after_bytes}


@dataclass(frozen=True, slots=True)
class CheckRun:
    tool: str
    verdict: Verdict  # VALID, INVALID, CRASHED or HUNG
    ok_up_to: int | None
    reason: str | None
    exit_code: int | None = None
    output: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"tool": self.tool, "verdict": self.verdict.value, "ok_up_to": self.ok_up_to,
                "reason": self.reason, "exit_code": self.exit_code, "output": list(self.output)}


@dataclass(frozen=True, slots=True)
class RunSettings:
    """How to run tools: binaries (``server_paths``), where to put scratch dirs, time limits."""

    paths: Mapping[str, str] = field(default_factory=dict)
    workdir: str | None = None
    timeout_s: float = 10.0
    restart: bool = True


def server_paths(names: Iterable[str] = REAL_SERVERS) -> tuple[dict[str, str], dict[str, str]]:
    """Absolute binary paths of the real servers found, and why each missing one is missing."""
    from harness.targets import ServerNotFound, find_server

    found: dict[str, str] = {}
    missing: dict[str, str] = {}
    for name in names:
        try:
            found[name] = find_server(REAL_SERVERS[name]).path
        except ServerNotFound as exc:
            missing[name] = str(exc).splitlines()[0]
    return found, missing


# -- real servers: log reading ---------------------------------------------------------------

_READY: Final = b"Ready to accept connections"
_TRUNCATED_RE: Final = re.compile(r"Truncating the AOF (?:\S+ )?at offset (\d+)")
# (pattern, short reason) in order of precedence; the first match names a refusal or crash.
_REASONS: Final[tuple[tuple[re.Pattern[str], str], ...]] = tuple(
    (re.compile(p), r) for p, r in (
        (r"crashed by signal", "crashed by signal"),
        (r"ASSERTION FAILED|Guru Meditation", "assertion failed"),
        (r"Out Of Memory allocating", "out of memory"),
        (r"wrong number of arguments", "wrong number of arguments"),
        (r"Unknown command '.*' reading the append only file|error: unknown command",
         "unknown command"),
        (r"Bad file format reading the append only file", "bad file format"),
        (r"Unexpected end of file reading the append only file", "unexpected end of file"),
        (r"Error reading the RDB (?:preamble|base file)", "bad RDB preamble"),
        (r"Unrecoverable error reading the append only file", "unrecoverable error"),
        (r"Address already in use", "address in use"),
        (r"Fatal error loading", "fatal error loading"),
    )
)
_NOTES: Final[tuple[tuple[str, str], ...]] = (
    ("Revert incomplete MULTI/EXEC transaction", "multi reverted"),
    ("Successfully migrated an old-style AOF", "migrated"),
    ("short read while loading", "short read"),
    ("Background append only file rewriting started", "rewrite started"),
)


def _log_lines(output: bytes) -> list[str]:
    return [line for line in output.decode("utf-8", "replace").splitlines() if line.strip()]


def _strip_prefix(line: str) -> str:
    # "1234:M 30 Nov 2026 19:25:14.167 # text" -> "# text"
    match = re.match(r"^\d+:[A-Z] \d+ \w+ \d+ [\d:.]+ (.*)$", line)
    return match.group(1) if match else line


def _interesting(lines: Sequence[str], limit: int = 6) -> tuple[str, ...]:
    keep = [_strip_prefix(line) for line in lines if " # " in line or "crashed" in line
            or "Out Of Memory" in line or "ASSERTION" in line]
    keep = [line for line in keep if "WARNING" not in line and "oO0OoO0Oo" not in line
            and "version=" not in line and "Configuration loaded" not in line]
    return tuple(keep[:limit])


def _reason(text: str) -> str | None:
    for pattern, reason in _REASONS:
        if pattern.search(text):
            return reason
    return None


def _judge_server(result: _procs.ProcResult, ready: bool) -> LoadRun:
    text = result.output.decode("utf-8", "replace")
    lines = _log_lines(result.output)
    notes = tuple(note for needle, note in _NOTES if needle in text)
    log = _interesting(lines)
    if result.timed_out:
        return LoadRun(Verdict.HUNG, reason="no ready line and no exit", notes=notes, log=log)
    code = result.exit_code
    reason = _reason(text)
    if ready:
        match = _TRUNCATED_RE.search(text)
        if match is not None:
            return LoadRun(Verdict.TRUNCATED, offset=int(match.group(1)), notes=notes, log=log)
        return LoadRun(Verdict.LOADED, notes=notes, log=log)
    crashed = (code is not None and code < 0) or reason in (
        "crashed by signal", "assertion failed", "out of memory")
    if crashed:
        base = reason or f"signal {-(code or 0)}"
        site = _crash_site(text)
        return LoadRun(Verdict.CRASHED, reason=f"{base} {site}" if site else base,
                       exit_code=code, notes=notes, log=log)
    if reason is None and lines:
        reason = _strip_prefix(lines[-1])[:120]
    return LoadRun(Verdict.REFUSED, reason=reason, exit_code=code, notes=notes, log=log)


_ASSERT_RE: Final = re.compile(r"==> (\S+:\d+) '")
_FRAME_RE: Final = re.compile(r"(?:redis-server|valkey-server)[^(\n]*\((\w+)\+0x[0-9a-f]+\)")
# Frames of the crash handler and of idle threads, never where a crash happened.
_NOT_THE_SITE: Final = frozenset({
    "logStackTrace", "sigsegvHandler", "mutexQueuePop", "bioProcessBackgroundJobs",
    "_serverAssert", "_serverPanic", "redisOutOfMemoryHandler", "serverOutOfMemoryHandler",
    "zmalloc_usable", "ztrymalloc_usable", "zmalloc", "printCrashReport", "bugReportStart",
    "_serverAssertPrintClientInfo", "serverLogHexDump", "dumpX86Calls", "logRegisters",
    "watchdogSignalHandler", "debugCommand", "main",
})


def _crash_site(text: str) -> str | None:
    """Where a crash happened, from its bug report: the failed assertion, or the first stack
    frame of the server that is not the crash handler's own."""
    match = _ASSERT_RE.search(text)
    if match is not None:
        return f"at {match.group(1)}"
    for frame in _FRAME_RE.findall(text):
        if frame not in _NOT_THE_SITE:
            return f"in {frame}"
    return None


def _server_argv(path: str, port: int, directory: str, *, truncated: bool) -> list[str]:
    return [
        path, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
        "--appendonly", "yes", "--save", "", "--aof-use-rdb-preamble", "no",
        "--appendfsync", "no", "--aof-load-truncated", "yes" if truncated else "no",
        "--logfile", "", "--daemonize", "no",
    ]


def _start_once(path: str, directory: str, *, truncated: bool, timeout_s: float) -> LoadRun:
    run = LoadRun(Verdict.REFUSED, reason="address in use")
    for _attempt in range(3):
        port = _procs.free_port()
        popen = _procs.spawn(_server_argv(path, port, directory, truncated=truncated))
        dump_error: str | None = None
        exit_after: int | None = None
        try:
            result = _procs.wait_ready(popen, lambda out: _READY in out, timeout_s=timeout_s)
            ready = not result.timed_out and result.exit_code is None
            keyspace = None
            if ready:
                try:
                    with RespClient(port, timeout_s=timeout_s) as client:
                        keyspace = dump_server(client, now_ms=int(time.time() * 1000))
                except (OSError, ConnectionError, RespError) as exc:
                    # It came up and then died or hung up on us: what it printed says why.
                    dump_error = f"{type(exc).__name__}: {exc}"
                    rest = _procs.wait_ready(popen, lambda _o: False, timeout_s=1.0)
                    result = _procs.ProcResult(result.output + rest.output, rest.exit_code,
                                               False)
                    exit_after = rest.exit_code
        finally:
            _procs.stop(popen)
        run = _judge_server(result, ready)
        if run.reason == "address in use":
            continue  # the port we picked was taken in between: pick another
        if dump_error is not None:
            return LoadRun(Verdict.CRASHED, reason=f"after load: {dump_error}"[:160],
                           exit_code=exit_after, notes=run.notes, log=run.log)
        if ready:
            return LoadRun(run.verdict, run.offset, run.reason, keyspace, run.exit_code,
                           run.notes, run.log)
        return run
    return run


def _loaded_file_size(directory: str) -> int | None:
    for candidate in (os.path.join(directory, "appendonlydir", "appendonly.aof"),
                      os.path.join(directory, "appendonly.aof")):
        if os.path.exists(candidate):
            return os.path.getsize(candidate)
    return None


def _load_real(name: str, data: bytes, *, truncated: bool, settings: RunSettings) -> LoadOutcome:
    tool = f"load:{name}:{'yes' if truncated else 'no'}"
    path = settings.paths[name]
    directory = tempfile.mkdtemp(prefix="aofload-", dir=settings.workdir)
    try:
        with open(os.path.join(directory, "appendonly.aof"), "wb") as fh:
            fh.write(data)
        first = _start_once(path, directory, truncated=truncated, timeout_s=settings.timeout_s)
        size_after = _loaded_file_size(directory)
        restart = None
        if settings.restart and first.verdict not in (Verdict.CRASHED, Verdict.HUNG):
            restart = _start_once(path, directory, truncated=truncated,
                                  timeout_s=settings.timeout_s)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return LoadOutcome(tool, first, restart, size_after)


# -- the reference ----------------------------------------------------------------------------

_REF_TRUNCATED_RE: Final = re.compile(r"Truncating the AOF (?:\S+ )?at offset (\d+)")


def _ref_start(image_files: Mapping[str, bytes], profile: str, *, truncated: bool,
               now_ms: int) -> tuple[LoadRun, Any]:
    from faults import Clock, DiskImage, SimDisk
    from reference import AppendFsync, LoadError, Profile, Server, ServerConfig

    disk = SimDisk.from_image(DiskImage(dict(image_files)))
    config = ServerConfig(profile=Profile(profile), aof_load_truncated=truncated,
                          appendfsync=AppendFsync.NO)
    server = Server(disk, Clock(now_ms), config)
    try:
        server.start()
    except LoadError as exc:
        log = tuple(line.split(" ms] ", 1)[-1] for line in server.log[-4:])
        return LoadRun(Verdict.REFUSED, offset=exc.offset_bytes, reason=exc.reason,
                       log=log), disk
    except Exception as exc:  # a bug in the reference's loader: a crash, not a refusal
        return LoadRun(Verdict.CRASHED, reason=f"{type(exc).__name__}: {exc}"[:160]), disk
    text = "\n".join(server.log)
    notes = tuple(note for needle, note in _NOTES if needle in text)
    log = tuple(line.split(" ms] ", 1)[-1] for line in server.log if " # " in line)[:6]
    keyspace = canon_from_dump(server.dump(), now_ms)
    match = _REF_TRUNCATED_RE.search(text)
    if match is not None:
        return LoadRun(Verdict.TRUNCATED, offset=int(match.group(1)), keyspace=keyspace,
                       notes=notes, log=log), disk
    return LoadRun(Verdict.LOADED, keyspace=keyspace, notes=notes, log=log), disk


def _load_reference(profile: str, data: bytes, *, truncated: bool,
                    settings: RunSettings) -> LoadOutcome:
    tool = f"load:ref-{profile}:{'yes' if truncated else 'no'}"
    now_ms = int(time.time() * 1000)
    first, disk = _ref_start({"appendonly.aof": data}, profile, truncated=truncated,
                             now_ms=now_ms)
    files = dict(disk.visible_image().files)
    size_after = len(files["appendonly.aof"]) if "appendonly.aof" in files else None
    restart = None
    if settings.restart and first.verdict is not Verdict.CRASHED:
        restart, _ = _ref_start(files, profile, truncated=truncated, now_ms=now_ms)
    return LoadOutcome(tool, first, restart, size_after)


def load_tool(tool: str, data: bytes, settings: RunSettings) -> LoadOutcome:
    """Run the loader ``tool`` (``load:<server>:<yes|no>``) on ``data``."""
    _, name, flag = tool.split(":")
    truncated = flag == "yes"
    if name.startswith("ref-"):
        return _load_reference(name[4:], data, truncated=truncated, settings=settings)
    return _load_real(name, data, truncated=truncated, settings=settings)


# -- check tools ------------------------------------------------------------------------------

_ANALYZED_RE: Final = re.compile(rb"ok_up_to=(\d+)")


def _check_reason(lines: Sequence[str]) -> str | None:
    for line in lines:
        if line.startswith("0x") and ":" in line:
            return line.split(":", 1)[1].strip()[:120]
    for line in lines:
        if "not sane" in line or ("RDB" in line and "fail" in line.lower()):
            return line.strip()[:120]
    return None


def _check_real(name: str, data: bytes, settings: RunSettings) -> CheckRun:
    tool = f"check:{name}"
    directory = tempfile.mkdtemp(prefix="aofcheck-", dir=settings.workdir)
    try:
        path = os.path.join(directory, "appendonly.aof")
        with open(path, "wb") as fh:
            fh.write(data)
        # Every version dispatches on the name it is run as: redis-check-aof / valkey-check-aof.
        tool_path = os.path.join(directory, _CHECK_ARGV0[name])
        os.symlink(settings.paths[name], tool_path)
        result = _procs.run_tool([tool_path, path], timeout_s=settings.timeout_s)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    lines = tuple(line.replace(directory + "/", "") for line in _log_lines(result.output))
    match = _ANALYZED_RE.search(result.output)
    ok_up_to = int(match.group(1)) if match else None
    code = result.exit_code
    if result.timed_out:
        return CheckRun(tool, Verdict.HUNG, ok_up_to, "timed out", None, lines[-6:])
    if code is not None and code < 0:
        return CheckRun(tool, Verdict.CRASHED, ok_up_to, f"signal {-code}", code, lines[-6:])
    verdict = Verdict.VALID if code == 0 else Verdict.INVALID
    return CheckRun(tool, verdict, ok_up_to, _check_reason(lines), code, lines[-6:])


def _check_aofcrash(data: bytes, settings: RunSettings) -> CheckRun:
    """``aofcrash check-aof FILE``, in-process: the reference's checker on the file, which is
    what the CLI command runs."""
    from reference import AofInputError, check_aof_path

    directory = tempfile.mkdtemp(prefix="aofcheck-", dir=settings.workdir)
    try:
        path = os.path.join(directory, "appendonly.aof")
        with open(path, "wb") as fh:
            fh.write(data)
        try:
            check = check_aof_path(path)
        except (AofInputError, OSError) as exc:  # the CLI's usage error: no verdict
            return CheckRun("check:aofcrash", Verdict.CRASHED, None,
                            f"no verdict: {exc}"[:160], 2)
        except Exception as exc:  # a bug in the checker: a crash
            return CheckRun("check:aofcrash", Verdict.CRASHED, None,
                            f"{type(exc).__name__}: {exc}"[:160])
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    verdict = Verdict.VALID if check.valid else Verdict.INVALID
    result = check.verdict_result
    reason = check.reason
    if reason is not None:
        # The scratch path (or its file name) means nothing once the run is over.
        reason = reason.replace(path + ": ", "").replace("appendonly.aof: ", "")
    return CheckRun("check:aofcrash", verdict,
                    None if result is None else result.last_valid_offset_bytes,
                    reason, 0 if check.valid else 1)


def check_tool(tool: str, data: bytes, settings: RunSettings) -> CheckRun:
    name = tool.split(":", 1)[1]
    if name == "aofcrash":
        return _check_aofcrash(data, settings)
    return _check_real(name, data, settings)


def run_tool(tool: str, data: bytes, settings: RunSettings) -> LoadOutcome | CheckRun:
    if tool.startswith("load:"):
        return load_tool(tool, data, settings)
    return check_tool(tool, data, settings)


def _tool_server(tool: str) -> str:
    return tool.split(":")[1]


def available_tools(settings: RunSettings, tools: Sequence[str] | None = None) -> list[str]:
    """The tools whose binaries exist (reference tools always do)."""
    chosen = list(tools) if tools is not None else list(tool_ids())
    return [t for t in chosen if not (_tool_server(t) in REAL_SERVERS
                                      and _tool_server(t) not in settings.paths)]
