"""The reference AOF server: an explicitly driven event loop over a FileSystem and a Clock.

Modelled on Redis 6.2's single-file AOF (aof.c, server.c): commands execute and are fed to the
AOF buffer (feedAppendOnlyFile); ``beforeSleep`` flushes the buffer (flushAppendOnlyFile) before
replies are released; ``serverCron`` runs every 1000/hz ms of virtual time (active expiry,
rewrite start/finish, retries of failed writes). The rewrite child is simulated: it works from a
snapshot taken at fork time and advances only when ``rewrite_child.step()`` is called.

Profile ``safe`` differs from Redis 6.2 where 6.2 cannot keep its promises:
  * the directory is fsynced after the AOF is created and after the rewrite's rename;
  * SET with an expiry is one record (``SET k v PXAT t``, as Redis 6.2 writes it);
  * while the AOF is in the write-error state, replies are held until a write succeeds
    (6.2 acknowledges writes that are still only in its buffer);
  * a failed background fsync (data possibly lost, Linux semantics) makes the server rewrite the
    whole AOF from memory (fsync, rename, fsync dir) before it clears the error state;
  * a truncated tail is fsynced after the truncation at load time;
  * an AOF that ends in zero bytes (its length reached the disk, its data did not: a power loss
    after a failed fsync under Linux semantics, or an allocated extent never written) is loaded
    like a torn tail: with aof-load-truncated the zeros and the unfinished command before them
    are truncated away, with a log line naming the offset; zeros followed by other data are
    still refused. Redis refuses to start on such a file (redis/redis#5177), and so does
    ``redis-3.0`` here. Found by ``aofcrash fuzz --strict-availability``: always, one failed
    fdatasync, FLUSHDB, power loss keeping the 40-byte length but not the data;
  * under everysec, when a write fails, the bytes already written are still fsynced once a
    second (6.2 returns before its fsync, so a full disk keeps acknowledged writes unsynced for
    as long as it stays full; found by ``aofcrash fuzz``, see tests/regressions/);
  * the loader takes what newer real loaders take where that is neither a crash nor a loss:
    ``#`` annotation lines (Redis 7.0+) are skipped wherever a command may start, and an RDB
    preamble (4.0+) is loaded (strings, lists, sets, sorted sets, hashes, expiries; a type the
    reference has no value for, such as a stream, is refused naming it). A torn annotation is a
    torn tail (truncated with aof-load-truncated, refused without), where 7.0 and Valkey load
    it as it is and then refuse the file once the next command has been glued onto it; a torn
    or damaged preamble is refused whatever aof-load-truncated says (truncating inside it would
    throw the whole dataset away);
  * a MULTI whose transaction is torn (a command inside it cut off by the end of the file) is
    cut before the MULTI, as Valkey 9.1 does (Redis <= 7.0 cuts after the last complete command,
    leaving an open transaction that the next start truncates again or refuses).
Both profiles read a ``*``/``$`` line as every real loader does (up to its ``\n``, the number as
``atoi``/``strtol`` reads it: ``*3\n``, ``*+3``, ``* 3`` and ``*3x\r\n`` load; check-aof calls
the first and the last invalid, as redis-check-aof does), and both refuse negative and
digit-less lengths, wrong arity and unknown commands, where real servers crash, read an empty
argument or drop the command. See ``reference._aof`` for the details.
Profile ``redis-3.0`` is Redis 3.0 with its gaps (no directory fsync, fsync errors ignored, SET and
its PEXPIREAT as two records, no fsync of an idle everysec AOF, an unfinished MULTI truncated after
its last complete command instead of before the MULTI, ``#`` annotation lines and RDB preambles
refused as a bad format).

Simplifications (deliberate): the active expire cycle reclaims every expired key (no sampling, so
it is deterministic); once-a-second cron work is timed by virtual elapsed time, not by cronloops;
the rewrite child serialises its records at fork time (that is its snapshot) and writes them in
steps of ``rewrite_keys_per_step`` keys, without the parent-to-child diff pipes of Redis 6.2 (the
parent keeps the whole rewrite buffer); a background fsync takes effect when it is issued and
completes after its virtual duration (bio jobs run one after another); the old AOF fd is closed
at once rather than by a bio close job.
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from faults import Clock, FileSystem
from reference import defects as D
from reference._aof import AofLoader, LoadError, encode_rewrite_key
from reference._commands import Client, Executor
from reference._config import AppendFsync, Profile, ServerConfig
from reference._keyspace import Keyspace, KeyspaceDump
from reference._resp import ErrorReply, Reply, SimpleString, encode_command

__all__ = ["ReplyNotReleased", "RewriteChild", "Server"]

ChildKiller = Callable[[int, int], bool]
# Builds the rewrite child at fork time: (server, rewrite number, keyspace, now_ms). The default
# is the in-process RewriteChild; ``python -m reference`` installs one that really forks.
RewriteChildFactory = Callable[["Server", int, Keyspace, int], "RewriteChild"]

_READ_CHUNK_BYTES: Final = 8 << 20
_WRITE_ERROR_LOG_PERIOD_MS: Final = 30_000  # AOF_WRITE_LOG_ERROR_RATE
_SELECT_CACHE: Final = [encode_command([b"SELECT", b"%d" % i]) for i in range(16)]


class ReplyNotReleased(RuntimeError):
    """``Server.execute`` ran an iteration but the reply was not released (held or stopped)."""


@dataclass(slots=True)
class _FsyncJob:
    done_ms: int
    error: OSError | None


class RewriteChild:
    """The simulated BGREWRITEAOF child: write steps, an fsync step, a rename-and-exit step."""

    def __init__(
        self,
        server: Server,
        number: int,
        keyspace: Keyspace,
        now_ms: int,
    ) -> None:
        self.number = number
        self.alive = True
        self.exit_status: str | None = None  # "ok", "error" or "killed" once dead
        self.steps_done = 0
        self.temp_path = f"temp-rewriteaof-{number}.aof"
        self.bg_path = f"temp-rewriteaof-bg-{number}.aof"
        self._server = server
        self._fd: int | None = None
        per = server.config.rewrite_keys_per_step
        defects = server.config.defects
        drop_expiry = D.REWRITE_DROPS_EXPIRY in defects
        select_once = D.REWRITE_SELECT_EMITTED_ONCE in defects
        # The fork: the records are serialised from the keyspace as it is now (the snapshot), in
        # one list of bytes per write step; SELECT precedes the first key of each non-empty db.
        chunks: list[bytes] = []
        current: list[bytes] = []
        count = 0
        selected = False
        for db_id, db in enumerate(keyspace.dbs):
            if not select_once:
                selected = False  # the defect keeps the flag from the first non-empty db on
            expires = db.expires
            for key, value in db.data.items():
                when = expires.get(key)
                if when is not None and when < now_ms:
                    continue  # already expired: rewriteAppendOnlyFileRio skips it
                if not selected:
                    current.append(_SELECT_CACHE[db_id])
                    selected = True
                current.append(encode_rewrite_key(key, value, when, with_expiry=not drop_expiry,
                                                  defects=defects))
                count += 1
                if count == per:
                    chunks.append(b"".join(current))
                    current = []
                    count = 0
        if current or not chunks:
            chunks.append(b"".join(current))
        self._chunks = chunks

    @property
    def total_steps(self) -> int:
        """Write steps, then the fsync step, then the rename-and-exit step."""
        return len(self._chunks) + 2

    def __repr__(self) -> str:
        return (f"RewriteChild(number={self.number}, steps_done={self.steps_done}/"
                f"{self.total_steps}, alive={self.alive}, exit_status={self.exit_status!r})")

    def step(self) -> bool:
        """Advance one step; returns whether the child is still alive afterwards."""
        if not self.alive:
            raise RuntimeError(f"rewrite child {self.number} is not alive ({self.exit_status})")
        server = self._server
        step = self.steps_done + 1
        if server.child_killer is not None and server.child_killer(self.number, step):
            self.kill()
            return False
        fs = server.fs
        writes = len(self._chunks)
        try:
            if step <= writes:
                if self._fd is None:
                    self._fd = fs.open(self.temp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                _write_all(fs, self._fd, self._chunks[step - 1])
            elif step == writes + 1:
                assert self._fd is not None
                if D.TEMP_NOT_FSYNCED_BEFORE_RENAME not in server.config.defects:
                    fs.fsync(self._fd)
            else:
                assert self._fd is not None
                fd, self._fd = self._fd, None
                fs.close(fd)
                fs.rename(self.temp_path, self.bg_path)
                self._exit("ok")
        except OSError as exc:
            server._log("#", f"Write error writing append only file on disk: {exc.strerror}")
            self._close_quietly()
            _unlink_quietly(fs, self.temp_path)
            self._exit("error")
        self.steps_done = step
        return self.alive

    def run_to_completion(self) -> str:
        """Step until the child exits; returns its exit status."""
        while self.alive:
            self.step()
        assert self.exit_status is not None
        return self.exit_status

    def kill(self) -> None:
        """SIGKILL: the child dies where it is (its temp file stays behind for the parent)."""
        if self.alive:
            self._close_quietly()
            self._exit("killed")

    def _exit(self, status: str) -> None:
        self.alive = False
        self.exit_status = status

    def _close_quietly(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            with contextlib.suppress(OSError):
                self._server.fs.close(fd)


def _write_all(fs: FileSystem, fd: int, data: bytes) -> None:
    """fwrite semantics: retry short writes; a write that makes no progress is an error."""
    view = memoryview(data)
    while view:
        written = fs.write(fd, bytes(view))
        if written <= 0:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        view = view[written:]


def _unlink_quietly(fs: FileSystem, path: str) -> None:
    try:
        if fs.exists(path):
            fs.unlink(path)
    except OSError:
        pass


class Server:
    """The reference server. Drive it with ``submit`` + ``run_iteration``; see the module doc."""

    def __init__(
        self,
        fs: FileSystem,
        clock: Clock,
        config: ServerConfig | None = None,
        *,
        child_killer: ChildKiller | None = None,
    ) -> None:
        self.fs = fs
        self.clock = clock
        self.config = config if config is not None else ServerConfig()
        self.child_killer = child_killer
        cfg = self.config
        self._defects = cfg.defects
        self._safe = cfg.profile is Profile.SAFE
        self._policy = cfg.appendfsync
        self._split_set_expiry = (not self._safe) or D.SET_EXPIRY_SPLIT in cfg.defects
        self._relative_verbatim = D.RELATIVE_EXPIRY_VERBATIM in cfg.defects
        self._hold_on_write_error = self._safe and D.WRITE_ERROR_IGNORED not in cfg.defects
        self.log: list[str] = []
        self.started = False
        self.stopped = False
        self.stop_reason: str | None = None
        self.keyspace = Keyspace()
        self._ex = Executor(self.keyspace, self, defects=cfg.defects)
        self._clients: dict[int, Client] = {}
        self._queue: list[tuple[int, Client, list[bytes]]] = []
        self._next_ticket = 1
        self._released: dict[int, Reply] = {}
        self._held: list[tuple[int, Reply]] = []
        # AOF state (names follow struct redisServer)
        self._aof_fd: int | None = None
        self._aof_buf: list[bytes] = []
        self._aof_selected_db = -1
        self.aof_current_size = 0
        self.aof_rewrite_base_size = 0
        self._aof_fsync_offset = 0
        self._aof_last_fsync_s = 0
        self._flush_postponed_start_s: int | None = None
        self.aof_delayed_fsync = 0
        self._write_ok = True
        self._write_errno = 0
        self._bio_ok = True
        self._bio_errno = 0
        self._last_write_error_log_ms: int | None = None
        self._fsync_jobs: deque[_FsyncJob] = deque()
        self._last_job_done_ms = 0
        self._repair_pending = False
        self._deferred_fsync = False
        self._repairs = 0
        self._last_repair_try_ms = 0
        self.rewrite_child: RewriteChild | None = None
        self.rewrite_child_factory: RewriteChildFactory = RewriteChild
        self._rewrite_buf: list[bytes] = []
        self._rewrites_started = 0
        self._lastbgrewrite_ok = True
        self._next_cron_ms = 0
        self._last_error_retry_ms = 0
        self.cronloops = 0

    # -- logging and state ---------------------------------------------------------------------

    def _log(self, level: str, message: str) -> None:
        self.log.append(f"[{self.clock.now_ms:>10} ms] {level} {message}")

    def _stop(self, reason: str) -> None:
        self._log("#", reason)
        self.stopped = True
        self.stop_reason = reason
        self._queue.clear()
        self._held.clear()

    def _halted(self) -> bool:
        # A method, not the attribute: the loop re-reads it after calls that may stop the server.
        return self.stopped

    @property
    def aof_last_write_status(self) -> str:
        return "ok" if self._write_ok and self._bio_ok else "err"

    # -- startup -------------------------------------------------------------------------------

    def start(self) -> None:
        """Open (create) the AOF and load it. Raises LoadError if the server refuses to start."""
        if self.started:
            raise RuntimeError("start: the server was already started")
        self.started = True
        fs, name = self.fs, self.config.aof_filename
        now = self.clock.now_ms
        try:
            existed = fs.exists(name)
            self._aof_fd = fs.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            if not existed and self._safe:
                fs.fsync_dir("")  # the new AOF's directory entry must survive a power loss
            self._load(name)
            self.aof_current_size = fs.stat(name).size_bytes
        except LoadError as exc:
            self._stop(f"Refusing to start: {exc.reason} (offset {exc.offset_bytes})")
            raise
        except OSError as exc:
            error = LoadError(0, f"Can't open the append-only file: {exc.strerror}")
            self._stop(f"Refusing to start: {error.reason}")
            raise error from exc
        self.aof_rewrite_base_size = self.aof_current_size
        self._aof_fsync_offset = self.aof_current_size
        self._aof_last_fsync_s = now // 1000
        self._next_cron_ms = now + 1000 // self.config.hz
        self._last_error_retry_ms = now
        self._log("*", "Ready to accept connections")

    def _load(self, name: str) -> None:
        fs, cfg = self.fs, self.config
        if fs.stat(name).size_bytes == 0:
            return
        loader = AofLoader(
            now_ms=self.clock.now_ms,
            rollback_multi=self._safe,
            apply_unfinished_multi=D.MULTI_APPLIED_ON_LOAD in cfg.defects,
            zero_tail_truncated=self._safe and D.ZERO_TAIL_REFUSED not in cfg.defects,
        )
        fd = fs.open(name, os.O_RDONLY)
        try:
            while chunk := fs.read(fd, _READ_CHUNK_BYTES):
                loader.feed(chunk)
            result = loader.finish()
        except LoadError as exc:
            self._log("#", f"{exc.reason} at offset {exc.offset_bytes}. Make a backup of "
                      "your AOF file, then use ./redis-check-aof --fix <filename>")
            raise
        finally:
            fs.close(fd)
        self.keyspace = loader.keyspace
        self._ex = Executor(self.keyspace, self, defects=cfg.defects)
        if result.truncated:
            zeros = result.zero_tail_offset_bytes
            hole_end = result.zero_hole_end_offset_bytes
            if zeros is not None and hole_end is not None:
                self._log("#", f"!!! Warning: the AOF file {name} has zero bytes from offset "
                          f"{zeros} to {hole_end} (pages a failed fsync never wrote), then "
                          f"{result.size_bytes - hole_end} bytes: loading it as truncated at "
                          "the zeros !!!")
            elif zeros is not None:
                self._log("#", f"!!! Warning: the AOF file {name} ends in "
                          f"{result.size_bytes - zeros} zero bytes from offset {zeros} (data "
                          "that never reached the disk): loading it as a truncated file !!!")
            if result.multi_open:
                self._log("#", "Revert incomplete MULTI/EXEC transaction in AOF file")
            self._log("#", f"!!! Warning: short read while loading the AOF file {name}!!!")
            if not cfg.aof_load_truncated:
                self._log("#", "Unrecoverable error reading the append only file: Unexpected "
                          "end of file. Use redis-check-aof --fix <filename>")
                raise LoadError(result.valid_offset_bytes, "Unexpected end of file")
            self._log("#", f"!!! Truncating the AOF at offset {result.valid_offset_bytes} !!!")
            cut = result.valid_offset_bytes
            if cut and D.LOAD_TRUNCATES_ONE_BYTE_SHORT in cfg.defects:
                cut -= 1  # the defect: the last complete command loses its final byte
            if D.TRUNCATED_TAIL_NOT_TRUNCATED_ON_DISK not in cfg.defects:
                try:
                    tfd = fs.open(name, os.O_WRONLY)
                    try:
                        fs.ftruncate(tfd, cut)
                        if self._safe:
                            fs.fsync(tfd)
                    finally:
                        fs.close(tfd)
                except OSError as exc:
                    self._log("#", f"Error truncating the AOF file: {exc.strerror}")
                    raise LoadError(result.valid_offset_bytes, "Unexpected end of file") from exc
            self._log("#", "AOF loaded anyway because aof-load-truncated is enabled")
        self._log("*", f"DB loaded from append only file: {result.commands_applied} commands")

    # -- clients -------------------------------------------------------------------------------

    def submit(self, argv: list[bytes], *, client: int = 0) -> int:
        """Queue a command for ``client``; returns a ticket for ``reply``."""
        args: list[object] = list(argv) if isinstance(argv, list | tuple) else []
        if not args:
            raise ValueError("argv: must be a non-empty list of bytes")
        for arg in args:
            if type(arg) is not bytes:
                raise TypeError(f"argv: every argument must be bytes, got {type(arg).__name__}")
        state = self._clients.get(client)
        if state is None:
            state = self._clients[client] = Client(client)
        ticket = self._next_ticket
        self._next_ticket = ticket + 1
        if not self.stopped:
            self._queue.append((ticket, state, list(argv)))
        return ticket

    def submit_many(self, commands: list[list[bytes]], *, client: int = 0) -> range:
        """Queue a pipeline of commands; returns their tickets (consecutive)."""
        first = self._next_ticket
        for argv in commands:
            self.submit(argv, client=client)
        return range(first, self._next_ticket)

    def released(self, ticket: int) -> bool:
        return ticket in self._released

    def reply(self, ticket: int) -> Reply:
        """The reply if released, else None (use ``released`` to tell a nil reply apart)."""
        return self._released.get(ticket)

    def pop_reply(self, ticket: int) -> Reply:
        """Take a released reply (KeyError if not released); frees its memory."""
        return self._released.pop(ticket)

    def execute(self, argv: list[bytes], *, client: int = 0) -> Reply:
        """submit + run_iteration + reply; ReplyNotReleased if the reply was not released."""
        ticket = self.submit(argv, client=client)
        self.run_iteration()
        if ticket not in self._released:
            raise ReplyNotReleased(
                f"no reply for {argv[0]!r}: " + (self.stop_reason or "held (AOF write error)")
            )
        return self._released.pop(ticket)

    def disconnect(self, client: int) -> None:
        """Forget a client's state (its MULTI is discarded)."""
        self._clients.pop(client, None)

    # -- the event loop ------------------------------------------------------------------------

    def run_iteration(self) -> None:
        """One event-loop iteration: cron if due, fsync completions, commands, flush, replies."""
        if self.stopped:
            return
        if not self.started:
            raise RuntimeError("run_iteration: call start() first")
        clock = self.clock
        if self._deferred_fsync:
            self._deferred_fsync = False
            if self._aof_fd is not None:
                with contextlib.suppress(OSError):  # the defect does not look at the result
                    self.fs.fdatasync(self._aof_fd)
        # Finished background fsyncs are looked at first: a failed one must be seen before the
        # cron or beforeSleep issues the next fsync, which would make later bytes durable past
        # the range the failure dropped (zeros, then data, after a power loss).
        if self._fsync_jobs:
            self._complete_fsync_jobs()
            if self._halted():
                return
        if clock.now_ms >= self._next_cron_ms:
            self._server_cron()
            self._next_cron_ms = clock.now_ms + 1000 // self.config.hz
            if self._halted():
                return
        executed: list[tuple[int, Reply]] = []
        if self._queue:
            queue, self._queue = self._queue, []
            ex = self._ex
            ex.now_ms = clock.now_ms
            call = ex.call
            append = executed.append
            for ticket, state, argv in queue:
                append((ticket, call(state, argv)))
        self._flush(False)  # beforeSleep
        if self._halted():
            return
        if self._hold_on_write_error and not self._write_ok:
            self._held.extend(executed)
            return
        released = self._released
        if self._held:
            released.update(self._held)
            self._held.clear()
        released.update(executed)

    def _server_cron(self) -> None:
        now = self.clock.now_ms
        self.cronloops += 1
        ex = self._ex
        ex.now_ms = now
        for db in self.keyspace.dbs:  # activeExpireCycle (every expired key, deterministic)
            if db.heap and db.heap[0][0] <= now:
                for key in db.pop_expired(now):
                    ex.propagate(db.id, [b"DEL", key])
        child = self.rewrite_child
        if child is not None:
            if not child.alive:
                self._rewrite_done(child)
        elif self._should_auto_rewrite():
            base = self.aof_rewrite_base_size or 1
            growth = self.aof_current_size * 100 // base - 100
            self._log("*", f"Starting automatic rewriting of AOF on {growth}% growth")
            self._start_rewrite()
        if self.stopped:
            return
        if self._flush_postponed_start_s is not None:
            self._flush(False)
        if now - self._last_error_retry_ms >= 1000:
            self._last_error_retry_ms = now
            if not self._write_ok:
                self._flush(False)
        if self._repair_pending and now - self._last_repair_try_ms >= 1000:
            self._repair()

    def _should_auto_rewrite(self) -> bool:
        cfg = self.config
        if not cfg.auto_aof_rewrite_percentage:
            return False
        if self.aof_current_size <= cfg.auto_aof_rewrite_min_size_bytes:
            return False
        base = self.aof_rewrite_base_size or 1
        return self.aof_current_size * 100 // base - 100 >= cfg.auto_aof_rewrite_percentage

    # -- feeding (Hooks) -----------------------------------------------------------------------

    def write_denied(self) -> str | None:
        if self._write_ok and self._bio_ok:
            return None
        code = self._write_errno if not self._write_ok else self._bio_errno
        return f"MISCONF Errors writing to the AOF file: {os.strerror(code)}"

    def propagate(self, db: int, argv: list[bytes]) -> None:
        """feedAppendOnlyFile: SELECT if needed, expiries made absolute, to both buffers."""
        if db != self._aof_selected_db:
            record = _SELECT_CACHE[db]
            self._aof_selected_db = db
            self._aof_buf.append(record)
            if self.rewrite_child is not None:
                self._rewrite_buf.append(record)
        name = argv[0].lower()
        if (
            name in _EXPIRY_COMMANDS
            and (len(argv) > 3 or name != b"set")
            and not self._relative_verbatim
        ):
            record = self._translate_expiry(name, argv)
        else:
            record = encode_command(argv)
        self._aof_buf.append(record)
        if self.rewrite_child is not None:
            self._rewrite_buf.append(record)

    def _translate_expiry(self, name: bytes, argv: list[bytes]) -> bytes:
        now = self._ex.now_ms
        if name in (b"expire", b"pexpire", b"expireat"):
            amount = int(argv[2])
            when = {b"expire": now + amount * 1000, b"pexpire": now + amount,
                    b"expireat": amount * 1000}[name]
            return encode_command([b"PEXPIREAT", argv[1], b"%d" % when])
        if name in (b"setex", b"psetex"):
            amount = int(argv[2])
            when = now + amount * (1000 if name == b"setex" else 1)
            key, value = argv[1], argv[3]
        else:  # SET with options: only EX/PX are relative
            when = -1
            for j in range(3, len(argv) - 1):
                opt = argv[j].upper()
                if opt == b"EX":
                    when = now + int(argv[j + 1]) * 1000
                elif opt == b"PX":
                    when = now + int(argv[j + 1])
            if when < 0:
                return encode_command(argv)
            key, value = argv[1], argv[2]
        if self._split_set_expiry:
            # Redis 2.6-6.0: two records; a crash between them loses the expiry.
            return encode_command([b"SET", key, value]) + encode_command(
                [b"PEXPIREAT", key, b"%d" % when]
            )
        return encode_command([b"SET", key, value, b"PXAT", b"%d" % when])

    # -- flushAppendOnlyFile -------------------------------------------------------------------

    def _fsync_in_progress(self) -> bool:
        now = self.clock.now_ms
        return any(job.done_ms > now for job in self._fsync_jobs)

    def _flush(self, force: bool) -> None:
        fs = self.fs
        fd = self._aof_fd
        assert fd is not None
        policy = self._policy
        everysec = policy is AppendFsync.EVERYSEC
        now_s = self.clock.now_ms // 1000
        sync_in_progress = False
        buf = self._aof_buf
        if self._repair_pending:
            # A failed fsync may have dropped a range of this file for good (Linux): bytes
            # appended after it, once written back or fsynced, leave zeros in the middle of
            # the file, which no loader takes. Nothing more goes to this file: the buffer's
            # commands are in the keyspace, which the repair writes to a new one.
            return
        if not buf:
            # Redis >= 4.0: fsync an idle everysec AOF whose last writes were never fsynced.
            if (
                everysec
                and self._safe
                and D.EVERYSEC_FSYNC_SKIPPED not in self._defects
                and self._aof_fsync_offset != self.aof_current_size
                and now_s > self._aof_last_fsync_s
                and not self._fsync_in_progress()
            ):
                self._try_fsync(fd, False)
            return
        if everysec:
            sync_in_progress = self._fsync_in_progress()
            # A failed write is retried once a second however long fsync stalls (safe): Redis
            # postpones the retry again, up to 2 s more, so what it acknowledged before the
            # failure waits in memory past the retry period a write error is granted.
            if sync_in_progress and not force and (self._write_ok or not self._safe):
                if self._flush_postponed_start_s is None:
                    self._flush_postponed_start_s = now_s
                    return
                if (
                    now_s - self._flush_postponed_start_s < 2
                    or D.EVERYSEC_POSTPONED_WITHOUT_LIMIT in self._defects
                ):
                    return
                self.aof_delayed_fsync += 1
                self._log("*", "Asynchronous AOF fsync is taking too long (disk is busy?). "
                          "Writing the AOF buffer without waiting for fsync to complete, this "
                          "may slow down Redis.")
        data = buf[0] if len(buf) == 1 else b"".join(buf)
        try:
            nwritten = fs.write(fd, data)
            write_errno = 0
        except OSError as exc:
            nwritten = -1
            write_errno = exc.errno or errno.EIO
        self._flush_postponed_start_s = None
        if nwritten != len(data):
            self._write_failed(fd, data, nwritten, write_errno)
            if everysec and self._safe and not self.stopped:
                self._fsync_written_part(fd, now_s)
            return
        if not self._write_ok:
            self._log("#", "AOF write error looks solved, Redis can write again.")
            self._write_ok = True
        self.aof_current_size += nwritten
        buf.clear()
        self._try_fsync(fd, sync_in_progress)

    def _fsync_written_part(self, fd: int, now_s: int) -> None:
        # Redis returns from a failed write before its everysec fsync, so while the disk stays
        # full the bytes written before the failure are never fsynced and acknowledged writes
        # older than the everysec window die with a power loss. `safe` still fsyncs them.
        if (
            self._aof_fsync_offset != self.aof_current_size
            and now_s > self._aof_last_fsync_s
            and not self._fsync_in_progress()
        ):
            self._try_fsync(fd, False)

    def _write_failed(self, fd: int, data: bytes, nwritten: int, write_errno: int) -> None:
        now = self.clock.now_ms
        last = self._last_write_error_log_ms
        can_log = last is None or now - last > _WRITE_ERROR_LOG_PERIOD_MS
        if can_log:
            self._last_write_error_log_ms = now
        short = nwritten != -1
        if not short:
            if can_log:
                self._log("#", f"Error writing to the AOF file: {os.strerror(write_errno)}")
            self._write_errno = write_errno
        else:
            if can_log:
                self._log("#", f"Short write while writing to the AOF file: (nwritten={nwritten}, "
                          f"expected={len(data)})")
            if D.SHORT_WRITE_KEPT in self._defects:
                nwritten = 0  # the partial bytes stay and are forgotten: the retry duplicates them
            else:
                try:
                    self.fs.ftruncate(fd, self.aof_current_size)
                    nwritten = -1
                except OSError as exc:
                    if can_log:
                        self._log("#", "Could not remove short write from the append-only file. "
                                  "Redis may refuse to load the AOF the next time it starts. "
                                  f"ftruncate: {exc.strerror}")
            self._write_errno = errno.ENOSPC
        if self._policy is AppendFsync.ALWAYS:
            self._stop("Can't recover from AOF write error when the AOF fsync policy is "
                       "'always'. Exiting...")
            return
        if short and D.MISCONF_CLEARED_BY_SHORT_WRITE in self._defects:
            # The defect: a short write counts as progress, as if the write had succeeded.
            if not self._write_ok:
                self._log("#", "AOF write error looks solved, Redis can write again.")
            self._write_ok = True
        elif D.WRITE_ERROR_IGNORED not in self._defects:
            self._write_ok = False
        if nwritten > 0:
            # ftruncate failed: keep the partial record and write only the rest next time.
            self.aof_current_size += nwritten
            self._aof_buf[:] = [data[nwritten:]]

    def _try_fsync(self, fd: int, sync_in_progress: bool) -> None:
        if self.config.no_appendfsync_on_rewrite and self.rewrite_child is not None:
            return
        policy = self._policy
        now_s = self.clock.now_ms // 1000
        if policy is AppendFsync.ALWAYS:
            if D.REPLY_BEFORE_FSYNC in self._defects:
                self._deferred_fsync = True  # the defect: the replies go out first
            else:
                try:
                    self.fs.fdatasync(fd)
                except OSError as exc:
                    if self._safe:
                        self._stop("Can't persist AOF for fsync error when the AOF fsync policy "
                                   f"is 'always': {exc.strerror}. Exiting...")
                        return
                    # Redis 3.0 ignores the return value of aof_fsync.
            self._aof_fsync_offset = self.aof_current_size
            self._aof_last_fsync_s = now_s
        elif policy is AppendFsync.EVERYSEC and now_s > self._aof_last_fsync_s:
            if not sync_in_progress:
                self._bg_fsync(fd)
                self._aof_fsync_offset = self.aof_current_size
            elif D.EVERYSEC_OFFSET_ADVANCED_WHILE_BUSY in self._defects:
                self._aof_fsync_offset = self.aof_current_size  # the defect: nothing was fsynced
            self._aof_last_fsync_s = now_s

    def _bg_fsync(self, fd: int) -> None:
        """aof_background_fsync: runs at once, completes after its (virtual) duration."""
        start = max(self.clock.now_ms, self._last_job_done_ms)
        error: OSError | None = None
        with self.clock.background() as job:
            try:
                self.fs.fdatasync(fd)
            except OSError as exc:
                error = exc
        done = start + job.elapsed_ms
        self._last_job_done_ms = done
        self._fsync_jobs.append(_FsyncJob(done, error))

    def _complete_fsync_jobs(self) -> None:
        now = self.clock.now_ms
        jobs = self._fsync_jobs
        while jobs and jobs[0].done_ms <= now:
            job = jobs.popleft()
            error = job.error
            if error is not None and error.errno not in (errno.EBADF, errno.EINVAL):
                self._fsync_failed(error)
            elif not self._safe or D.FSYNC_ERROR_CLEARED in self._defects:
                self._bio_ok = True  # Redis 6.2: the next successful fsync clears the error
            if self.stopped:
                return

    def _fsync_failed(self, error: OSError) -> None:
        if not self._safe:
            return  # Redis 3.0's bio thread ignores the result of fsync
        if self._bio_ok:
            self._log("#", f"Fail to fsync the AOF file: {error.strerror}")
        self._bio_ok = False
        self._bio_errno = error.errno or errno.EIO
        if D.FSYNC_ERROR_CLEARED not in self._defects:
            # The failed range may be gone for good (Linux): rewrite everything from memory.
            self._repair()

    # -- safe-profile repair: a foreground rewrite from memory ----------------------------------

    def _write_keyspace(self, fd: int, now_ms: int) -> None:
        for db in self.keyspace.dbs:
            parts: list[bytes] = []
            for key, value in db.data.items():
                when = db.expires.get(key)
                if when is not None and when <= now_ms:
                    continue
                parts.append(encode_rewrite_key(key, value, when))
            if parts:
                _write_all(self.fs, fd, _SELECT_CACHE[db.id] + b"".join(parts))

    def _repair(self) -> bool:
        fs = self.fs
        now = self.clock.now_ms
        self._last_repair_try_ms = now
        self._repair_pending = True
        if self.rewrite_child is not None:
            self.rewrite_child.kill()
            self._log("#", "Killing the AOF rewrite child to rewrite the AOF from memory")
            self._rewrite_done(self.rewrite_child)
        self._repairs += 1
        tmp = f"temp-rewriteaof-fg-{self._repairs}.aof"
        name = self.config.aof_filename
        self._log("#", "Rewriting the AOF from memory after a failed fsync")
        try:
            fd = fs.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            try:
                self._write_keyspace(fd, now)
                fs.fsync(fd)
            finally:
                fs.close(fd)
            fs.rename(tmp, name)
            fs.fsync_dir("")
            newfd = fs.open(name, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            self._log("#", f"Rewriting the AOF from memory failed: {exc.strerror}")
            _unlink_quietly(fs, tmp)
            return False
        self._swap_in(newfd)
        self._repair_pending = False
        self._bio_ok = True
        if not self._write_ok:
            self._write_ok = True
        self._log("*", "AOF rewritten from memory, the fsync error is cleared")
        return True

    def _swap_in(self, newfd: int) -> None:
        old = self._aof_fd
        if old is not None and D.OLD_FD_KEPT_AFTER_REWRITE in self._defects:
            # The defect: the new file is closed and later writes go to the replaced one.
            old, newfd = newfd, old
        self._aof_fd = newfd
        if old is not None:
            with contextlib.suppress(OSError):
                self.fs.close(old)
        if D.SELECT_NOT_REEMITTED_AFTER_REWRITE not in self._defects:
            self._aof_selected_db = -1
        self.aof_current_size = self.fs.stat(self.config.aof_filename).size_bytes
        self.aof_rewrite_base_size = self.aof_current_size
        self._aof_fsync_offset = self.aof_current_size
        self._aof_last_fsync_s = self.clock.now_ms // 1000
        self._aof_buf.clear()
        self._flush_postponed_start_s = None

    # -- BGREWRITEAOF --------------------------------------------------------------------------

    def bgrewriteaof(self) -> Reply:
        if self.rewrite_child is not None:
            return ErrorReply("ERR Background append only file rewriting already in progress")
        self._start_rewrite()
        return SimpleString("Background append only file rewriting started")

    def _start_rewrite(self) -> None:
        self._rewrites_started += 1
        number = self._rewrites_started
        now = self.clock.now_ms
        self.rewrite_child = self.rewrite_child_factory(self, number, self.keyspace, now)
        self._rewrite_buf = []
        if D.SELECT_NOT_REEMITTED_AFTER_REWRITE not in self._defects:
            self._aof_selected_db = -1  # the rewrite buffer starts with a SELECT
        self._log("*", f"Background append only file rewriting started by child {number}")

    def kill_rewrite_child(self) -> bool:
        """SIGKILL the rewrite child (the parent notices in serverCron); False if none alive."""
        child = self.rewrite_child
        if child is None or not child.alive:
            return False
        child.kill()
        return True

    def _rewrite_done(self, child: RewriteChild) -> None:
        """backgroundRewriteDoneHandler."""
        fs = self.fs
        name = self.config.aof_filename
        if child.exit_status == "ok":
            self._log("*", "Background AOF rewrite terminated with success")
            self._finish_rewrite(child, fs, name)
        elif child.exit_status == "error":
            self._lastbgrewrite_ok = False
            self._log("#", "Background AOF rewrite terminated with error")
        else:
            self._lastbgrewrite_ok = False
            self._log("#", "Background AOF rewrite terminated by signal 9")
        self._rewrite_buf = []
        _unlink_quietly(fs, child.bg_path)
        _unlink_quietly(fs, child.temp_path)
        self.rewrite_child = None

    def _finish_rewrite(self, child: RewriteChild, fs: FileSystem, name: str) -> None:
        try:
            newfd = fs.open(child.bg_path, os.O_WRONLY | os.O_APPEND)
        except OSError as exc:
            self._lastbgrewrite_ok = False
            self._log("#", "Unable to open the temporary AOF produced by the child: "
                      f"{exc.strerror}")
            return
        if D.REWRITE_NEVER_SWAPPED in self._defects:
            # The defect: success is reported, the rewritten file is dropped (the caller unlinks
            # it) and the old AOF, which has every write, stays in use and keeps growing.
            with contextlib.suppress(OSError):
                fs.close(newfd)
            self._lastbgrewrite_ok = True
            self._log("*", "Background AOF rewrite finished successfully")
            return
        defects = self._defects
        diff = b"" if D.REWRITE_BUFFER_DROPPED in defects else b"".join(self._rewrite_buf)
        # The defect renames first: from then on the AOF lacks the diff until it is appended.
        rename_first = D.REWRITE_DIFF_APPENDED_AFTER_RENAME in defects
        try:
            if rename_first:
                fs.rename(child.bg_path, name)
            if diff:
                written = fs.write(newfd, diff)
                if written != len(diff) and D.REWRITE_DIFF_SHORT_WRITE_IGNORED not in defects:
                    raise OSError(errno.EIO, "short write of the rewrite buffer")
            late_fsync = D.TEMP_NOT_FSYNCED_BEFORE_RENAME in defects
            # REWRITE_DIFF_NOT_FSYNCED: the defect counts on the child's fsync, made before the
            # diff was appended.
            if not late_fsync and D.REWRITE_DIFF_NOT_FSYNCED not in defects:
                self._fsync_rewritten(fs, newfd)
            self._log("*", "Residual parent diff successfully flushed to the rewritten AOF "
                      f"({len(diff) / (1024 * 1024):.2f} MB)")
            if not rename_first:
                fs.rename(child.bg_path, name)
        except OSError as exc:
            self._lastbgrewrite_ok = False
            self._log("#", f"Error trying to finish the rewritten AOF: {exc.strerror}")
            with contextlib.suppress(OSError):
                fs.close(newfd)
            return
        self._swap_in(newfd)
        self._lastbgrewrite_ok = True
        if self._safe and not self._write_ok:
            # The new file holds everything the failed buffer held.
            self._write_ok = True
            self._log("#", "AOF write error looks solved, Redis can write again.")
        self._log("*", "Background AOF rewrite finished successfully")
        if self._safe and D.NO_DIR_FSYNC_AFTER_RENAME not in self._defects:
            try:
                fs.fsync_dir("")
            except OSError as exc:
                if self._policy is AppendFsync.ALWAYS:
                    self._stop("Can't persist the AOF directory after the rewrite when the "
                               f"AOF fsync policy is 'always': {exc.strerror}. Exiting...")
                else:
                    self._fsync_failed(exc)
        if D.TEMP_NOT_FSYNCED_BEFORE_RENAME in self._defects and not self.stopped:
            # The defect: the new file's contents are fsynced only after it replaced the AOF.
            with contextlib.suppress(OSError):
                self._fsync_rewritten(fs, newfd)

    def _fsync_rewritten(self, fs: FileSystem, fd: int) -> None:
        if self._policy is AppendFsync.EVERYSEC:
            self._bg_fsync(fd)
        elif self._policy is AppendFsync.ALWAYS:
            fs.fdatasync(fd)

    # -- SHUTDOWN ------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """prepareForShutdown: kill the rewrite child, force-flush and fsync the AOF, close it.

        Like Redis 6.2, errors of the final write/fsync are logged, not fatal: the server stops
        either way (``stopped`` with ``stop_reason`` "shutdown").
        """
        if self.stopped or not self.started:
            return
        self._log("#", "User requested shutdown...")
        child = self.rewrite_child
        if child is not None:
            self._log("*", "There is a child rewriting the AOF. Killing it!")
            child.kill()
            self._rewrite_done(child)
        if self._repair_pending:
            self._repair()  # else the buffer would be lost with the file's dropped range
        fd = self._aof_fd
        if fd is not None:
            self._log("*", "Calling fsync() on the AOF file.")
            self._flush(True)
            try:
                self.fs.fsync(fd)
            except OSError as exc:
                self._log("#", f"Fail to fsync the AOF file at shutdown: {exc.strerror}")
            self._aof_fd = None
            with contextlib.suppress(OSError):
                self.fs.close(fd)
        self._log("#", "Redis is now ready to exit, bye bye...")
        self.stopped = True
        self.stop_reason = "shutdown"
        self._queue.clear()
        self._held.clear()

    # -- introspection -------------------------------------------------------------------------

    def dump(self) -> KeyspaceDump:
        """Canonical keyspace at the current virtual time (expired keys omitted)."""
        return self.keyspace.dump(self.clock.now_ms)

    def info(self) -> dict[str, int | str]:
        """The INFO persistence fields."""
        return {
            "loading": 0,
            "aof_enabled": 1,
            "aof_rewrite_in_progress": int(self.rewrite_child is not None),
            "aof_rewrite_scheduled": 0,
            "aof_last_bgrewrite_status": "ok" if self._lastbgrewrite_ok else "err",
            "aof_last_write_status": self.aof_last_write_status,
            "aof_current_size": self.aof_current_size,
            "aof_base_size": self.aof_rewrite_base_size,
            "aof_pending_rewrite": 0,
            "aof_buffer_length": sum(map(len, self._aof_buf)),
            "aof_rewrite_buffer_length": sum(map(len, self._rewrite_buf)),
            "aof_pending_bio_fsync": int(self._fsync_in_progress()),
            "aof_delayed_fsync": self.aof_delayed_fsync,
        }

    def info_text(self) -> bytes:
        lines = ["# Persistence"] + [f"{k}:{v}" for k, v in self.info().items()]
        return ("\r\n".join(lines) + "\r\n").encode()

    def keyspace_info_text(self) -> bytes:
        """INFO keyspace: ``db<n>:keys=..,expires=..,avg_ttl=0`` for each non-empty database."""
        lines = ["# Keyspace"] + [
            f"db{db.id}:keys={len(db.data)},expires={len(db.expires)},avg_ttl=0"
            for db in self.keyspace.dbs
            if db.data
        ]
        return ("\r\n".join(lines) + "\r\n").encode()

    def info_section(self, section: bytes | None) -> bytes:
        if section == b"keyspace":
            return self.keyspace_info_text()
        if section in (None, b"all", b"default", b"everything"):
            return self.info_text() + b"\r\n" + self.keyspace_info_text()
        if section == b"persistence":
            return self.info_text()
        return b""


_EXPIRY_COMMANDS: Final = frozenset(
    {b"expire", b"pexpire", b"expireat", b"setex", b"psetex", b"set"}
)
