"""KvLog as an aofcrash in-process target: the only module of kvlog that knows aofcrash.

What it declares: ``commands`` and ``accepts`` (SET of one value, GET and DEL of one key:
nothing else is sent to it), ``files``/``temp_files`` (its own file names, where faults and
damage are aimed) and ``checksummed`` (every record carries a CRC-32, so it is judged by the
damage rule). Policies: ``always`` is its ``always`` mode; ``everysec`` and ``no`` are its
``batch`` mode (synced within a second: within everysec's promise, beyond no's).

Redis vocabulary it does not have, handled here so that the history stays true: ``SELECT 0``
is OK and any other database is refused, and so is every command of that client until it
selects 0 again; MULTI is refused and so is everything up to its EXEC or DISCARD (no effect).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.targets import Dump, TargetEnv, TargetRefusedToStart
from kvlog._store import COMMANDS, LOG, TEMP, CorruptLog, KvLog, StoreError

__all__ = ["KvLogTarget", "make_target", "with_bug"]


class KvLogTarget:
    commands = COMMANDS
    files = (LOG,)
    temp_files = (TEMP,)
    checksummed = True
    cron_period_ms = 100

    def __init__(self, env: TargetEnv, *, bug: str | None = None) -> None:
        config = env.config
        # A small compaction threshold: the harness's runs are short, compaction must happen.
        self.store = KvLog(env.fs, env.clock, compact_min_bytes=128,
                           fsync="always" if config.appendfsync == "always" else "batch",
                           bug=bug or config.options.get("bug"))
        self.elsewhere: set[int] = set()  # clients that selected a db other than 0
        self.in_multi: set[int] = set()  # clients inside a (refused) MULTI block
        self.replies: dict[int, Any] = {}  # tickets answered here, not by the store
        self.next_ticket = -1  # negative: never a store ticket

    @staticmethod
    def accepts(argv: Sequence[bytes]) -> bool:
        name = argv[0].upper().decode("latin-1")
        return name in COMMANDS and len(argv) == (3 if name == "SET" else 2)

    def start(self) -> None:
        try:
            self.store.open()
        except CorruptLog as exc:
            raise TargetRefusedToStart(str(exc)) from None

    def submit(self, argv: Sequence[bytes], *, client: int) -> int:
        name = argv[0].upper()
        if name == b"SELECT":  # the driver puts the client in that db whatever the reply
            ok = tuple(argv[1:]) == (b"0",)
            (self.elsewhere.discard if ok else self.elsewhere.add)(client)
            return self._answer("OK" if ok else StoreError("ERR no databases"))
        if name == b"MULTI" or client in self.in_multi:  # the whole block has no effect
            done = name in (b"EXEC", b"DISCARD")
            (self.in_multi.discard if done else self.in_multi.add)(client)
            return self._answer(StoreError("EXECABORT no transactions" if done
                                           else "ERR no transactions"))
        if client in self.elsewhere:
            return self._answer(StoreError("ERR no databases"))
        return self.store.submit(argv)  # only queued: it runs in run_iteration

    def _answer(self, reply: Any) -> int:
        self.next_ticket -= 1
        self.replies[self.next_ticket] = reply
        return self.next_ticket

    def run_iteration(self) -> None:
        self.store.run_iteration()

    def released(self, ticket: int) -> bool:
        return ticket in self.replies or self.store.released(ticket)

    def pop_reply(self, ticket: int) -> Any:
        if ticket in self.replies:
            return self.replies.pop(ticket)
        return self.store.pop_reply(ticket)

    def dump(self) -> Dump:
        return {0: {k: ("string", v, None) for k, v in self.store.data.items()}}

    @property
    def stopped(self) -> bool:
        return self.store.stopped


def make_target(env: TargetEnv) -> KvLogTarget:
    """The correct store (``TargetConfig.options["bug"]`` may still plant one)."""
    return KvLogTarget(env)


def with_bug(bug: str) -> Any:
    """A factory of the store with planted bug `bug` (one of ``kvlog.BUGS``)."""
    return lambda env: KvLogTarget(env, bug=bug)


make_skip_checksum_target = with_bug("skip-checksum")
make_batch_size_only_target = with_bug("batch-size-only")
make_compact_no_fsync_target = with_bug("compact-no-fsync")
