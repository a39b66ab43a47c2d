"""Launching a server process and crashing it: ``RedisProcess`` (a binary run with
redis-server's flags), ``CommandProcess`` (a ``--server-cmd`` template) and ``ReferenceProcess``
(``python -m reference``), one interface.

A start launches the server in its own process group, registers it with the reaper
(``_reaper``) and waits for +PONG over RESP (through -LOADING); a crash is SIGKILL of the
group. It reads the wall clock for start-up deadlines only.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import IO, Any

import psutil
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from harness.targets._inprocess import APPENDFSYNC_POLICIES
from harness.targets._presets import ServerBinary, _template_words
from harness.targets._reaper import (
    SELF_REGISTER,
    _fork_children,
    _install_signal_cleanup,
    _kill_tree,
    _register,
    _unregister,
    reaper_fd,
)
from harness.targets._resp import _listener_pid, _NotRESP, _ping

__all__ = [
    "CommandProcess",
    "RedisProcess",
    "ReferenceProcess",
    "ServerNotUsable",
    "ServerRefusedToStart",
    "ServerStartTimeout",
]


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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


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
        command = self._command()
        stdin: int = subprocess.DEVNULL
        fd = reaper_fd()
        if fd is not None and os.path.isabs(command[0]) and os.access(command[0], os.X_OK):
            # The server registers itself with the reaper before it exists (SELF_REGISTER);
            # anything else keeps Popen's own error for a command that cannot run.
            command = ["/bin/sh", "-c", SELF_REGISTER, "aofcrash-server", *command]
            stdin = fd
        try:
            popen = subprocess.Popen(
                command,
                stdin=stdin,
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
        _register(popen)
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
                    owner = _listener_pid(self.port)
                    if owner is not None and owner != popen.pid:
                        # Another process took the port between the pick and our bind, and
                        # answered our PING while this one was still failing to listen.
                        self.kill()
                        raise ServerRefusedToStart(
                            -1, [f"Address already in use: port {self.port} is answered by "
                                 f"pid {owner}, not by the server started ({popen.pid})"],
                            binary=self.binary_path)
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
            _unregister(self._popen.pid)
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

