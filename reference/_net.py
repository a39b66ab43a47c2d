"""The RESP front end: ``python -m reference`` serves the reference server on 127.0.0.1.

One selectors loop drives the in-process ``Server`` exactly as the harness does, with real time
and real sockets:

* every readable client is read once per loop; each complete command is ``submit``-ted in order
  (pipelining: a buffer holding many commands submits them all);
* then one ``Server.run_iteration`` (cron if due, commands, the AOF flush = beforeSleep);
* then every client gets the replies that were *released*, in its own order (a reply is never
  written before the flush that made its command durable under the policy: the ack rule).

Time. The core only knows a virtual ``Clock``. This module alone maps it to real time: the clock
starts at the wall-clock Unix time in ms (so PEXPIREAT values in the AOF mean what they mean to
redis-server) and, before every iteration, is advanced by the elapsed ``time.monotonic_ns``.
serverCron runs at ``hz`` because select() never sleeps past the next cron tick.

The rewrite child is a real process: ``ForkedRewriteChild`` forks; the child runs the ordinary
``RewriteChild`` to completion on its copy-on-write keyspace through ``OSFileSystem`` (temp file,
fsync, rename to ``temp-rewriteaof-bg-<pid>.aof``) and ``_exit``s 0 (1 on error). The parent keeps
serving and accumulating the rewrite buffer; before each iteration it reaps the child with
``waitpid(WNOHANG)``, and the next serverCron runs the done handler (append the buffer, fsync,
rename, fsync the directory). The child asks the kernel to SIGKILL it when the parent dies
(``PR_SET_PDEATHSIG``): unlike Redis, a crashed reference never leaves an orphan rewrite behind.

Connection-level commands handled here, not by the core: QUIT, SHUTDOWN [NOSAVE|SAVE], CLIENT
SETNAME/SETINFO/GETNAME/ID, ECHO and COMMAND (an empty reply, enough for redis-cli). Inline commands
(``PING\\r\\n``) are split on whitespace (no quoting). SIGTERM/SIGINT shut down like SHUTDOWN.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import os
import re
import selectors
import signal
import socket
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Final, NoReturn

from faults import Clock, OSFileSystem
from reference import defects as defect_catalogue
from reference._aof import LoadError
from reference._config import AppendFsync, ConfigError, Profile, ServerConfig
from reference._keyspace import Keyspace
from reference._resp import RespFormatError, encode_reply, parse_command
from reference._server import RewriteChild, Server

__all__ = ["ForkedRewriteChild", "NetServer", "build_parser", "main", "set_process_title"]

HOST: Final = "127.0.0.1"
_READ_BYTES: Final = 64 * 1024
_MAX_INLINE_BYTES: Final = 64 * 1024  # PROTO_INLINE_MAX_SIZE
_PR_SET_PDEATHSIG: Final = 1
_PR_SET_NAME: Final = 15
_LOG_LINE_RE: Final = re.compile(r"\[\s*(\d+) ms\] (\S) (.*)", re.DOTALL)

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


# ---------------------------------------------------------------------------------------------
# Logging: the server's log lines, formatted like redis-server's ("pid:role date level msg").


class _Logger:
    """Appends lines to the log file (O_APPEND, so the rewrite child can share the fd)."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        # None: stdout, as Redis logs when logfile is "".
        self.fd: int | None = None
        if path:
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def write(self, lines: Sequence[str], *, role: str = "M") -> None:
        if not lines:
            return
        pid = os.getpid()
        out = []
        for line in lines:
            match = _LOG_LINE_RE.fullmatch(line)
            if match is None:
                out.append(f"{pid}:{role} {line}\n")
                continue
            ms = int(match.group(1))
            stamp = time.strftime("%d %b %Y %H:%M:%S", time.localtime(ms / 1000))
            out.append(f"{pid}:{role} {stamp}.{ms % 1000:03d} {match.group(2)} {match.group(3)}\n")
        text = "".join(out)
        if self.fd is None:
            sys.stdout.write(text)
            sys.stdout.flush()  # the forked child leaves with os._exit: nothing is flushed later
            return
        data = text.encode("utf-8", "replace")
        with contextlib.suppress(OSError):  # a full disk must not take the server down
            while data:
                data = data[os.write(self.fd, data) :]

    def now_line(self, level: str, message: str) -> str:
        """A log line in the server's own format, stamped with the wall clock."""
        return f"[{int(time.time() * 1000):>10} ms] {level} {message}"

    def log(self, level: str, message: str) -> None:
        self.write([self.now_line(level, message)])

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


# ---------------------------------------------------------------------------------------------
# Process plumbing for the forked child


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - no libc symbols in this process
        return None


def set_process_title(title: str) -> bool:
    """Rename this process as ``ps``/psutil show it (``cmdline()[0]``), like Redis's setproctitle.

    Without the setproctitle package: prctl(PR_SET_NAME) sets the 15-byte comm, and the argv area
    (its bounds are fields 48-49 of /proc/self/stat) is overwritten through /proc/self/mem,
    which is what /proc/PID/cmdline reads. Returns False where that is not possible.
    """
    data = title.encode("utf-8", "replace")
    libc = _libc()
    if libc is not None:
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(data[:15]), 0, 0, 0)
    try:
        with open("/proc/self/stat", "rb") as fh:
            stat = fh.read()
        fields = stat[stat.rindex(b")") + 2 :].split()
        arg_start, arg_end = int(fields[45]), int(fields[46])  # fields 48, 49 (state is 3)
        size = arg_end - arg_start
        if size < 2:
            return False
        payload = data[: size - 1].ljust(size, b"\0")
        with open("/proc/self/mem", "r+b", buffering=0) as mem:
            mem.seek(arg_start)
            mem.write(payload)
    except (OSError, ValueError, IndexError):
        return False
    return True


def _die_with_parent(parent_pid: int) -> None:
    """PR_SET_PDEATHSIG(SIGKILL); if the parent already died, exit at once."""
    libc = _libc()
    if libc is not None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died between fork() and prctl()
        os._exit(1)


class ForkedRewriteChild(RewriteChild):
    """A BGREWRITEAOF child that is a real forked process.

    The child runs the in-process ``RewriteChild`` to completion on its copy-on-write snapshot and
    exits 0 ("ok") or 1 ("error"); SIGKILL shows as "killed". The parent sees it as alive until
    ``poll()`` (waitpid WNOHANG) or ``run_to_completion()`` (waitpid) reaps it; ``kill()`` is
    SIGKILL plus a blocking waitpid, like killAppendOnlyChild. It cannot be stepped.
    """

    def __init__(
        self,
        server: Server,
        number: int,
        keyspace: Keyspace,
        now_ms: int,
        *,
        after_fork: Callable[[], None] = lambda: None,
        title: str = "redis-aof-rewrite",
        logger: _Logger | None = None,
    ) -> None:
        # No super().__init__(): serialising the snapshot is the child's work, not the parent's.
        self.number = number
        self.alive = True
        self.exit_status = None
        self.steps_done = 0
        self._server = server
        self._fd = None
        self._chunks = []
        parent = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:
            # Seen by serverCron as a child that exited with an error (Redis refuses the
            # BGREWRITEAOF instead; the outcome for the AOF is the same: no rewrite).
            if logger is not None:
                logger.log("#", f"Can't rewrite append only file in background: fork: "
                           f"{exc.strerror}")
            pid = -1
            self._exit("error")
        if pid == 0:
            _child_main(server, number, keyspace, now_ms, parent, after_fork, title, logger)
        self.pid = pid
        # Redis names the temp files after the child's pid; both sides can compute them.
        self.temp_path = f"temp-rewriteaof-{pid}.aof"
        self.bg_path = f"temp-rewriteaof-bg-{pid}.aof"

    def __repr__(self) -> str:
        return (f"ForkedRewriteChild(number={self.number}, pid={self.pid}, alive={self.alive}, "
                f"exit_status={self.exit_status!r})")

    def step(self) -> bool:
        raise RuntimeError("a forked rewrite child runs by itself; use poll() to reap it")

    def poll(self) -> bool:
        """Reap the child if it exited (waitpid WNOHANG); returns whether it is still alive."""
        if not self.alive:
            return False
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere: nothing left to learn
            self._exit("killed")
            return False
        if pid == 0:
            return True
        self._reaped(status)
        return False

    def run_to_completion(self) -> str:
        """Wait for the child to exit (blocking waitpid); returns its exit status."""
        if self.alive:
            try:
                _, status = os.waitpid(self.pid, 0)
            except ChildProcessError:
                self._exit("killed")
            else:
                self._reaped(status)
        assert self.exit_status is not None
        return self.exit_status

    def kill(self) -> None:
        if not self.alive:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        self._exit("killed")

    def _reaped(self, status: int) -> None:
        if os.WIFEXITED(status):
            self._exit("ok" if os.WEXITSTATUS(status) == 0 else "error")
        else:
            self._exit("killed")


def _child_main(
    server: Server,
    number: int,
    keyspace: Keyspace,
    now_ms: int,
    parent: int,
    after_fork: Callable[[], None],
    title: str,
    logger: _Logger | None,
) -> NoReturn:
    """The forked child: write the rewrite, then ``os._exit`` (no atexit, no parent buffers)."""
    code = 1
    try:
        _die_with_parent(parent)
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, signal.SIG_DFL)
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(-1)
        after_fork()
        set_process_title(title)
        mark = len(server.log)
        child = RewriteChild(server, number, keyspace, now_ms)
        child.temp_path = f"temp-rewriteaof-{os.getpid()}.aof"
        child.bg_path = f"temp-rewriteaof-bg-{os.getpid()}.aof"
        status = child.run_to_completion()
        lines = server.log[mark:]  # stamped with the clock as it was at fork time
        if status == "ok":
            size = server.fs.stat(child.bg_path).size_bytes
            code = 0
            if logger is not None:
                lines.append(logger.now_line("*", "Successfully created the temporary AOF "
                                             f"{child.bg_path} ({size} bytes)"))
        if logger is not None:
            logger.write(lines, role="C")
    except BaseException:  # whatever happens, the child must _exit
        if logger is not None:
            with contextlib.suppress(BaseException):
                logger.write([f"rewrite child failed: {traceback.format_exc()}"], role="C")
    os._exit(code)


# ---------------------------------------------------------------------------------------------
# Connections


class _Conn:
    __slots__ = ("closing", "id", "inbuf", "name", "outbuf", "pending", "sock", "writing")

    def __init__(self, conn_id: int, sock: socket.socket) -> None:
        self.id = conn_id
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        # Replies in order: a ticket of the Server (int) or a reply encoded here (bytes).
        self.pending: deque[int | bytes] = deque()
        self.closing = False  # QUIT or a protocol error: close once the output is written
        self.writing = False  # registered for EVENT_WRITE
        self.name: bytes | None = None


def _error(text: str) -> bytes:
    return b"-" + text.encode() + b"\r\n"


class NetServer:
    """Serves one started ``Server`` on a listening socket until SHUTDOWN, a signal or a stop."""

    def __init__(
        self,
        server: Server,
        listener: socket.socket,
        *,
        logger: _Logger,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        if not server.started:
            raise ValueError("server: must be started (Server.start) before it is served")
        self.server = server
        self.listener = listener
        self.logger = logger
        self.port: int = listener.getsockname()[1]
        self._monotonic_ns = monotonic_ns
        # The clock mapping: virtual ms = clock value at start + monotonic time elapsed since.
        self._clock_base_ms = server.clock.now_ms
        self._mono_base_ns = monotonic_ns()
        self._sel = selectors.DefaultSelector()
        self._conns: dict[int, _Conn] = {}
        self._next_id = 1
        self._orphans: list[int] = []  # tickets of closed connections, dropped once released
        self._shutdown_by: str | None = None
        self._cron_period_ms = 1000 // server.config.hz
        self._cronloops_seen = server.cronloops
        self._next_cron_ms = server.clock.now_ms + self._cron_period_ms
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        listener.setblocking(False)
        self._sel.register(listener, selectors.EVENT_READ, None)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        server.rewrite_child_factory = self._fork_rewrite_child
        self._local: dict[bytes, Callable[[_Conn, list[bytes]], bool]] = {
            b"quit": self._cmd_quit,
            b"shutdown": self._cmd_shutdown,
            b"client": self._cmd_client,
            b"command": self._cmd_command,
            b"echo": self._cmd_echo,
        }

    # -- the rewrite child ---------------------------------------------------------------------

    def _fork_rewrite_child(
        self, server: Server, number: int, keyspace: Keyspace, now_ms: int
    ) -> RewriteChild:
        return ForkedRewriteChild(
            server, number, keyspace, now_ms,
            after_fork=self._close_in_child,
            title=f"redis-aof-rewrite {HOST}:{self.port}",
            logger=self.logger,
        )  # fmt: skip

    def _close_in_child(self) -> None:
        """In the child: drop every socket (a client must see EOF when the parent closes it).

        Only fds are closed: unregistering would edit the epoll set the parent shares.
        """
        for sock in (self.listener, self._wake_r, self._wake_w,
                     *(conn.sock for conn in self._conns.values())):
            with contextlib.suppress(OSError):
                os.close(sock.detach())
        fileno = getattr(self._sel, "fileno", None)  # epoll/kqueue selectors hold an fd
        if fileno is not None:
            with contextlib.suppress(OSError):
                os.close(fileno())

    def _child(self) -> ForkedRewriteChild | None:
        child = self.server.rewrite_child
        return child if isinstance(child, ForkedRewriteChild) else None

    # -- the loop ------------------------------------------------------------------------------

    def _sync_clock(self) -> None:
        clock = self.server.clock
        elapsed_ms = (self._monotonic_ns() - self._mono_base_ns) // 1_000_000
        target = self._clock_base_ms + elapsed_ms
        if target > clock.now_ms:
            clock.advance(target - clock.now_ms)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._shutdown_by is None:
            self._shutdown_by = signal.Signals(signum).name

    def serve_forever(self) -> int:
        """Run until SHUTDOWN or SIGTERM (returns 0) or the server stops on an error (1)."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        old_wakeup = signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        try:
            return self._loop()
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            child = self._child()
            if child is not None:
                child.kill()  # never leave a rewrite running behind us
            self._close_all()

    def _loop(self) -> int:
        server = self.server
        while True:
            timeout_ms = max(0, self._next_cron_ms - server.clock.now_ms)
            for key, mask in self._sel.select(timeout_ms / 1000):
                if key.fileobj is self.listener:
                    self._accept()
                elif key.fileobj is self._wake_r:
                    with contextlib.suppress(OSError):
                        while self._wake_r.recv(4096):
                            pass
                else:
                    conn: _Conn = key.data
                    if mask & selectors.EVENT_READ:
                        self._read(conn)
                    if mask & selectors.EVENT_WRITE and conn.id in self._conns:
                        self._write(conn)
            self._sync_clock()
            child = self._child()
            if child is not None:
                child.poll()
            server.run_iteration()
            if server.cronloops != self._cronloops_seen:
                self._cronloops_seen = server.cronloops
                self._next_cron_ms = server.clock.now_ms + self._cron_period_ms
            self._drain_log()
            if server.stopped:
                self._log("#", f"Exiting: {server.stop_reason}")
                return EXIT_ERROR
            self._deliver()
            if self._shutdown_by is not None:
                return self._shutdown()

    def _shutdown(self) -> int:
        if self._shutdown_by is not None and self._shutdown_by.startswith("SIG"):
            self._log("#", f"Received {self._shutdown_by} scheduling shutdown...")
        self.server.shutdown()
        self._drain_log()
        for conn in list(self._conns.values()):  # best effort: replies released before SHUTDOWN
            with contextlib.suppress(OSError):
                conn.sock.setblocking(True)
                conn.sock.settimeout(0.2)
                if conn.outbuf:
                    conn.sock.sendall(conn.outbuf)
        return EXIT_OK

    def _log(self, level: str, message: str) -> None:
        self.logger.log(level, message)

    def _drain_log(self) -> None:
        log = self.server.log
        if log:
            self.logger.write(log)
            log.clear()

    # -- connections ---------------------------------------------------------------------------

    def _accept(self) -> None:
        for _ in range(1000):  # MAX_ACCEPTS_PER_CALL
            try:
                sock, _addr = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE and friends: log, keep serving the others
                self._log("#", f"Accepting client connection: {exc.strerror}")
                return
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(self._next_id, sock)
            self._next_id += 1
            self._conns[conn.id] = conn
            self._sel.register(sock, selectors.EVENT_READ, conn)

    def _close(self, conn: _Conn) -> None:
        if self._conns.pop(conn.id, None) is None:
            return
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(conn.sock)
        with contextlib.suppress(OSError):
            conn.sock.close()
        # Commands already read still run (as in Redis); their replies go nowhere.
        self._orphans.extend(t for t in conn.pending if isinstance(t, int))
        conn.pending.clear()
        self.server.disconnect(conn.id)

    def _close_all(self) -> None:
        for conn in list(self._conns.values()):
            self._close(conn)
        for sock in (self.listener, self._wake_r, self._wake_w):
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(sock)
            sock.close()
        self._sel.close()

    def _read(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(_READ_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        if conn.closing:
            return  # after QUIT or a protocol error, input is ignored
        conn.inbuf += data
        self._parse(conn)

    def _parse(self, conn: _Conn) -> None:
        buf = conn.inbuf
        pos, end = 0, len(buf)
        while pos < end and not conn.closing and self._shutdown_by is None:
            if buf[pos] == 42:  # '*': a multibulk command
                if buf.startswith(b"*0\r\n", pos) or buf.startswith(b"*-1\r\n", pos):
                    pos = buf.index(b"\n", pos) + 1  # an empty multibulk is skipped, as in Redis
                    continue
                try:
                    parsed = parse_command(buf, pos, end)
                except RespFormatError as exc:
                    self._protocol_error(conn, exc.reason)
                    break
                if parsed is None:
                    break
                argv, pos = parsed
            else:
                nl = buf.find(b"\n", pos)
                if nl < 0:
                    if end - pos > _MAX_INLINE_BYTES:
                        self._protocol_error(conn, "too big inline request")
                    break
                argv = [bytes(word) for word in buf[pos:nl].split()]
                pos = nl + 1
                if not argv:
                    continue
            self._dispatch(conn, argv)
        del buf[:pos]

    def _protocol_error(self, conn: _Conn, reason: str) -> None:
        conn.pending.append(_error(f"ERR Protocol error: {reason}"))
        conn.closing = True
        conn.inbuf.clear()

    def _dispatch(self, conn: _Conn, argv: list[bytes]) -> None:
        local = self._local.get(argv[0].lower())
        if local is not None and local(conn, argv):
            return
        conn.pending.append(self.server.submit(argv, client=conn.id))

    # -- connection-level commands (return False to hand the command to the core) -------------

    def _cmd_quit(self, conn: _Conn, argv: list[bytes]) -> bool:
        conn.pending.append(b"+OK\r\n")
        conn.closing = True
        return True

    def _cmd_shutdown(self, conn: _Conn, argv: list[bytes]) -> bool:
        options = {a.lower() for a in argv[1:]}
        if len(argv) > 2 or not options <= {b"nosave", b"save"}:
            conn.pending.append(_error("ERR syntax error"))
            return True
        # There is no RDB here, so SAVE and NOSAVE mean the same: flush and fsync the AOF.
        self._shutdown_by = "SHUTDOWN"
        conn.closing = True
        return True

    def _cmd_client(self, conn: _Conn, argv: list[bytes]) -> bool:
        sub = argv[1].lower() if len(argv) > 1 else b""
        if sub == b"setname" and len(argv) == 3:
            conn.name = argv[2] or None
            conn.pending.append(b"+OK\r\n")
        elif sub == b"setinfo" and len(argv) == 4:
            conn.pending.append(b"+OK\r\n")
        elif sub == b"getname" and len(argv) == 2:
            conn.pending.append(encode_reply(conn.name))
        elif sub == b"id" and len(argv) == 2:
            conn.pending.append(encode_reply(conn.id))
        elif sub in (b"setname", b"setinfo", b"getname", b"id"):
            conn.pending.append(_error(f"ERR wrong number of arguments for 'client|"
                                       f"{sub.decode()}' command"))
        else:
            name = argv[1].decode("latin-1") if len(argv) > 1 else ""
            conn.pending.append(_error(f"ERR unknown subcommand '{name}'. Try CLIENT HELP."))
        return True

    def _cmd_echo(self, conn: _Conn, argv: list[bytes]) -> bool:
        # redis-cli --pipe ends with ECHO <random> and waits for that exact reply.
        if len(argv) != 2:
            conn.pending.append(_error("ERR wrong number of arguments for 'echo' command"))
        else:
            conn.pending.append(encode_reply(argv[1]))
        return True

    def _cmd_command(self, conn: _Conn, argv: list[bytes]) -> bool:
        conn.pending.append(b"*0\r\n")  # no command table to describe; redis-cli copes
        return True

    # -- replies -------------------------------------------------------------------------------

    def _deliver(self) -> None:
        server = self.server
        if self._orphans:
            kept = []
            for ticket in self._orphans:
                if server.released(ticket):
                    server.pop_reply(ticket)
                else:
                    kept.append(ticket)
            self._orphans = kept
        for conn in list(self._conns.values()):
            pending = conn.pending
            if not pending:
                continue
            out = conn.outbuf
            while pending:
                head = pending[0]
                if isinstance(head, int):
                    if not server.released(head):
                        break  # held (AOF write error): later replies wait behind it
                    out += encode_reply(server.pop_reply(head))
                else:
                    out += head
                pending.popleft()
            self._write(conn)

    def _write(self, conn: _Conn) -> None:
        out = conn.outbuf
        while out:
            try:
                sent = conn.sock.send(out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._close(conn)
                return
            del out[:sent]
        if out and not conn.writing:
            conn.writing = True
            self._sel.modify(conn.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, conn)
        elif not out and conn.writing:
            conn.writing = False
            self._sel.modify(conn.sock, selectors.EVENT_READ, conn)
        if conn.closing and not out and not conn.pending:
            self._close(conn)


# ---------------------------------------------------------------------------------------------
# Command line


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"python -m reference: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _yes_no(text: str) -> bool:
    if text.lower() in ("yes", "no"):
        return text.lower() == "yes"
    raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")


def _only(*allowed: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        if text.lower() not in allowed:
            raise argparse.ArgumentTypeError(
                f"only {' or '.join(repr(a) for a in allowed)} is supported, got {text!r}"
            )
        return text.lower()

    return check


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value < 65536:
        raise argparse.ArgumentTypeError(f"must be in 0..65535, got {value}")
    return value


_MEM_UNITS: Final = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2,
                     "g": 1000**3, "gb": 1024**3}


def _memory(text: str) -> int:
    """Redis memtoll: 64mb, 1gb, 100 (bytes)."""
    match = re.fullmatch(r"(\d+)([a-z]*)", text.strip().lower())
    if match is None or match.group(2) not in _MEM_UNITS:
        raise argparse.ArgumentTypeError(f"expected a size like 64mb, got {text!r}")
    return int(match.group(1)) * _MEM_UNITS[match.group(2)]


def _nonnegative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m reference",
        description="Serve the reference AOF server over RESP on 127.0.0.1 (redis-server style "
        "options).",
    )
    p.add_argument("--port", type=_port, default=6379, help="TCP port (0: any free port)")
    p.add_argument("--dir", default=".", help="directory of the AOF (must exist)")
    p.add_argument("--appendfsync", choices=[a.value for a in AppendFsync], default="everysec")
    p.add_argument("--appendfilename", default="appendonly.aof")
    p.add_argument("--aof-load-truncated", type=_yes_no, default=True, metavar="yes|no")
    p.add_argument("--no-appendfsync-on-rewrite", type=_yes_no, default=False, metavar="yes|no")
    p.add_argument("--auto-aof-rewrite-percentage", type=_nonnegative, default=100)
    p.add_argument("--auto-aof-rewrite-min-size", type=_memory, default=64 * 1024 * 1024)
    p.add_argument("--hz", type=_nonnegative, default=10)
    p.add_argument("--profile", choices=[pr.value for pr in Profile], default="safe")
    p.add_argument("--defect", action="append", default=[], metavar="NAME",
                   choices=sorted(defect_catalogue.DEFECTS),
                   help="switch on a named defect of reference.defects (repeatable)")
    p.add_argument("--logfile", default="", help="log file ('' logs to stdout)")
    # Accepted so tooling can launch it like redis-server; only the harmless values.
    p.add_argument("--bind", type=_only("127.0.0.1", "localhost"), default="127.0.0.1")
    p.add_argument("--appendonly", type=_only("yes"), default="yes")
    p.add_argument("--daemonize", type=_only("no"), default="no")
    p.add_argument("--aof-use-rdb-preamble", type=_only("no"), default="no")
    p.add_argument("--save", default="", help="ignored: the reference has no RDB snapshots")
    return p


def _listen(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, port))
        sock.listen(511)
    except OSError:
        sock.close()
        raise
    return sock


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m reference``: 0 after SHUTDOWN/SIGTERM, 1 if it cannot start or stops on an
    error (like redis-server), 2 on a usage error (one line on stderr)."""
    args = build_parser().parse_args(argv)
    try:
        config = ServerConfig(
            appendfsync=AppendFsync(args.appendfsync),
            profile=Profile(args.profile),
            aof_filename=args.appendfilename,
            aof_load_truncated=args.aof_load_truncated,
            no_appendfsync_on_rewrite=args.no_appendfsync_on_rewrite,
            auto_aof_rewrite_percentage=args.auto_aof_rewrite_percentage,
            auto_aof_rewrite_min_size_bytes=args.auto_aof_rewrite_min_size,
            hz=args.hz,
            defects=frozenset(args.defect),
        )
    except ConfigError as exc:
        sys.stderr.write(f"python -m reference: error: {'; '.join(exc.errors)}\n")
        return EXIT_USAGE
    try:
        logger = _Logger(os.path.abspath(args.logfile) if args.logfile else None)
    except OSError as exc:
        sys.stderr.write(f"Can't open the log file: {exc.strerror} ({args.logfile})\n")
        return EXIT_ERROR
    try:
        return _run(args, config, logger)
    except Exception:  # a bug: say where in the log (Redis prints its crash report there)
        logger.log("#", f"Fatal error, exiting: {traceback.format_exc()}")
        return EXIT_ERROR
    finally:
        logger.close()


def _run(args: argparse.Namespace, config: ServerConfig, logger: _Logger) -> int:
    directory = os.path.abspath(args.dir)
    if not os.path.isdir(directory):
        logger.log("#", f"Can't chdir to '{args.dir}': {os.strerror(errno.ENOENT)}")
        return EXIT_ERROR
    logger.log("#", f"aofcrash reference server starting (pid {os.getpid()}, profile "
               f"{config.profile.value}, appendfsync {config.appendfsync.value}"
               + (f", defects {', '.join(sorted(config.defects))}" if config.defects else "")
               + ")")
    try:
        listener = _listen(args.port)
    except OSError as exc:
        logger.log("#", f"Could not create server TCP listening socket {HOST}:{args.port}: "
                   f"bind: {exc.strerror}")
        return EXIT_ERROR
    port = listener.getsockname()[1]
    # The one place where virtual time meets real time: Unix ms at start, monotonic after.
    clock = Clock(start_ms=int(time.time() * 1000))
    server = Server(OSFileSystem(directory), clock, config)
    try:
        server.start()
    except LoadError:
        logger.write(server.log)
        listener.close()
        return EXIT_ERROR
    logger.write(server.log)
    server.log.clear()
    logger.log("*", f"Running mode=standalone, port={port}.")
    net = NetServer(server, listener, logger=logger)
    return net.serve_forever()
