"""SegStore as an aofcrash in-process target: the only module of segstore that knows aofcrash.

Policies: ``always`` is segstore's ``always``; ``everysec`` and ``no`` are ``group`` (synced
once the oldest unsynced record is a second old). Keys and values are bytes to the harness and
str to the store (latin-1: every byte string round-trips). ``options["segment_limit_bytes"]``
overrides the small segment size used here (256 bytes: the harness's runs are short, and
compaction must happen in them).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.targets import CommandShapes, Dump, TargetEnv, TargetRefusedToStart
from segstore import CorruptStore, ErrorReply, Reply, SegStore, StoreFailed

__all__ = ["SegStoreTarget", "make_target", "with_bug"]


def _to_harness(reply: Reply) -> Any:
    if isinstance(reply, ErrorReply):
        return Exception(reply.message)
    if isinstance(reply, str) and reply != "OK":
        return reply.encode("latin-1")  # a GET's value (bulk string)
    return reply


class SegStoreTarget:
    shapes = CommandShapes(commands=frozenset({"SET", "GET", "DEL"}),
                           forms={"DEL": frozenset({"one"}), "SET": frozenset({"plain", "PX"})})
    files = ("data/seg-*.log",)
    temp_files = ("data/seg-*.tmp", "data/MANIFEST.tmp")
    checksummed = True

    def __init__(self, env: TargetEnv, *, bugs: frozenset[str] = frozenset()) -> None:
        self.release = env.release
        self.replies: dict[int, Any] = {}
        self.stopped = False
        options = env.config.options
        self.store = SegStore(
            env.fs, env.clock,
            fsync_mode="always" if env.config.appendfsync == "always" else "group",
            segment_limit_bytes=int(options.get("segment_limit_bytes", 256)),
            bugs=bugs, on_reply=self._on_reply)

    def _on_reply(self, ticket: int, reply: Reply) -> None:
        if self.release is not None:
            self.release(ticket, _to_harness(reply))
        else:
            self.replies[ticket] = _to_harness(reply)

    def start(self) -> None:
        try:
            self.store.open()
        except (CorruptStore, StoreFailed) as error:
            raise TargetRefusedToStart(str(error)) from None

    def submit(self, argv: Sequence[bytes], *, client: int) -> int:
        return self.store.submit([arg.decode("latin-1") for arg in argv])

    def run_iteration(self) -> None:
        if self.stopped:
            return
        try:
            self.store.run_turn()
        except StoreFailed:
            self.stopped = True

    def released(self, ticket: int) -> bool:
        return ticket in self.replies

    def pop_reply(self, ticket: int) -> Any:
        return self.replies.pop(ticket)

    def dump(self) -> Dump:
        return {0: {key.encode("latin-1"): ("string", value.encode("latin-1"), expiry_ms)
                    for key, (value, expiry_ms) in self.store.entries().items()}}


def make_target(env: TargetEnv) -> SegStoreTarget:
    """The correct store."""
    return SegStoreTarget(env)


def with_bug(*bugs: str) -> Any:
    """A factory of the store with the planted bugs `bugs` (names from ``segstore.BUGS``)."""
    return lambda env: SegStoreTarget(env, bugs=frozenset(bugs))


make_reply_before_fsync_target = with_bug("reply-before-fsync")
make_skip_crc_on_load_target = with_bug("skip-crc-on-load")
make_load_skips_after_snapshot_target = with_bug("load-skips-after-snapshot")
make_group_ack_window_target = with_bug("group-ack-window")
make_compact_temp_not_fsynced_target = with_bug("compact-temp-not-fsynced")
make_ttl_relative_on_load_target = with_bug("ttl-relative-on-load")
