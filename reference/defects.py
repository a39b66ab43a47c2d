"""The catalogue of named defects the reference server can be built with.

Each defect is a small, realistic bug switched on by name through ``ServerConfig.defects``. The
harness uses them to show that its oracle catches real classes of AOF bugs: a defect that the
oracle cannot catch under any fault is a gap in the harness, not a feature of the defect.
Every name is wired into the server at the exact place where the bug acts (grep for the constant).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = [
    "DEFECTS",
    "DEL_FEEDS_FIRST_KEY",
    "EVERYSEC_FSYNC_SKIPPED",
    "EVERYSEC_OFFSET_ADVANCED_WHILE_BUSY",
    "EVERYSEC_POSTPONED_WITHOUT_LIMIT",
    "FSYNC_ERROR_CLEARED",
    "HSET_FEEDS_FIRST_FIELD",
    "LOAD_TRUNCATES_ONE_BYTE_SHORT",
    "MISCONF_CLEARED_BY_SHORT_WRITE",
    "MULTI_APPLIED_ON_LOAD",
    "NO_DIR_FSYNC_AFTER_RENAME",
    "OLD_FD_KEPT_AFTER_REWRITE",
    "PUSH_FEEDS_LAST_ELEMENT",
    "RELATIVE_EXPIRY_VERBATIM",
    "REMOVE_FEEDS_FIRST_MEMBER",
    "REPLY_BEFORE_FSYNC",
    "REWRITE_BATCH_COUNT_WRONG",
    "REWRITE_BATCH_SKIPS_BOUNDARY_ITEM",
    "REWRITE_BUFFER_DROPPED",
    "REWRITE_DIFF_APPENDED_AFTER_RENAME",
    "REWRITE_DIFF_NOT_FSYNCED",
    "REWRITE_DIFF_SHORT_WRITE_IGNORED",
    "REWRITE_DROPS_AFTER_FIRST_BATCH",
    "REWRITE_DROPS_EXPIRY",
    "REWRITE_NEVER_SWAPPED",
    "REWRITE_SELECT_EMITTED_ONCE",
    "SADD_FEEDS_FIRST_MEMBER",
    "SELECT_NOT_REEMITTED_AFTER_REWRITE",
    "SET_EXPIRY_SPLIT",
    "SHORT_WRITE_KEPT",
    "TEMP_NOT_FSYNCED_BEFORE_RENAME",
    "TRUNCATED_TAIL_NOT_TRUNCATED_ON_DISK",
    "WRITE_ERROR_IGNORED",
    "ZADD_FEEDS_FIRST_PAIR",
    "ZERO_TAIL_REFUSED",
    "Defect",
    "check_defects",
]


@dataclass(frozen=True, slots=True)
class Defect:
    """A named bug: what it does (one line) and the real bug it mirrors, if any."""

    name: str
    description: str
    mirrors: str | None = None


REPLY_BEFORE_FSYNC = "reply-before-fsync"
SHORT_WRITE_KEPT = "short-write-kept"
REWRITE_BUFFER_DROPPED = "rewrite-buffer-dropped"
SELECT_NOT_REEMITTED_AFTER_REWRITE = "select-not-reemitted-after-rewrite"
TEMP_NOT_FSYNCED_BEFORE_RENAME = "temp-not-fsynced-before-rename"
RELATIVE_EXPIRY_VERBATIM = "relative-expiry-verbatim"
EVERYSEC_FSYNC_SKIPPED = "everysec-fsync-skipped"
MULTI_APPLIED_ON_LOAD = "multi-applied-on-load"
FSYNC_ERROR_CLEARED = "fsync-error-cleared"
WRITE_ERROR_IGNORED = "write-error-ignored"
NO_DIR_FSYNC_AFTER_RENAME = "no-dir-fsync-after-rename"
REWRITE_DROPS_EXPIRY = "rewrite-drops-expiry"
TRUNCATED_TAIL_NOT_TRUNCATED_ON_DISK = "truncated-tail-not-truncated-on-disk"
SET_EXPIRY_SPLIT = "set-expiry-split"
DEL_FEEDS_FIRST_KEY = "del-feeds-first-key"
SADD_FEEDS_FIRST_MEMBER = "sadd-feeds-first-member"
PUSH_FEEDS_LAST_ELEMENT = "push-feeds-last-element"
HSET_FEEDS_FIRST_FIELD = "hset-feeds-first-field"
ZADD_FEEDS_FIRST_PAIR = "zadd-feeds-first-pair"
REMOVE_FEEDS_FIRST_MEMBER = "remove-feeds-first-member"
REWRITE_DROPS_AFTER_FIRST_BATCH = "rewrite-drops-after-first-batch"
REWRITE_BATCH_SKIPS_BOUNDARY_ITEM = "rewrite-batch-skips-boundary-item"
REWRITE_BATCH_COUNT_WRONG = "rewrite-batch-count-wrong"
REWRITE_SELECT_EMITTED_ONCE = "rewrite-select-emitted-once"
REWRITE_DIFF_NOT_FSYNCED = "rewrite-diff-not-fsynced"
REWRITE_DIFF_APPENDED_AFTER_RENAME = "rewrite-diff-appended-after-rename"
REWRITE_DIFF_SHORT_WRITE_IGNORED = "rewrite-diff-short-write-ignored"
OLD_FD_KEPT_AFTER_REWRITE = "old-fd-kept-after-rewrite"
EVERYSEC_POSTPONED_WITHOUT_LIMIT = "everysec-postponed-without-limit"
EVERYSEC_OFFSET_ADVANCED_WHILE_BUSY = "everysec-offset-advanced-while-busy"
ZERO_TAIL_REFUSED = "zero-tail-refused"
LOAD_TRUNCATES_ONE_BYTE_SHORT = "load-truncates-one-byte-short"
MISCONF_CLEARED_BY_SHORT_WRITE = "misconf-cleared-by-short-write"
REWRITE_NEVER_SWAPPED = "rewrite-never-swapped"

_ALL = (
    Defect(
        REPLY_BEFORE_FSYNC,
        "appendfsync always: the fsync of an iteration's writes is deferred to the next "
        "iteration, after the replies were released",
        None,
    ),
    Defect(
        SHORT_WRITE_KEPT,
        "a short write to the AOF is neither truncated away nor accounted for; the retry "
        "appends the whole buffer after the partial bytes",
        "the short-write handling Redis added to flushAppendOnlyFile (ftruncate back to "
        "aof_current_size) exists to prevent exactly this",
    ),
    Defect(
        REWRITE_BUFFER_DROPPED,
        "the rewrite done handler renames the child's file without appending the parent's "
        "rewrite buffer (writes made during the rewrite are lost)",
        None,
    ),
    Defect(
        SELECT_NOT_REEMITTED_AFTER_REWRITE,
        "after the rewritten AOF replaces the old one, the last-selected db is not reset, so "
        "the next write in a non-zero db lands without a SELECT",
        "the reason backgroundRewriteDoneHandler sets aof_selected_db = -1",
    ),
    Defect(
        TEMP_NOT_FSYNCED_BEFORE_RENAME,
        "nothing fsyncs the rewritten file before it is renamed over the AOF: the child skips "
        "its fsync and the done handler fsyncs the new AOF only after the rename",
        "the ext4 delayed-allocation rename-without-fsync zero-length-file problem (2009)",
    ),
    Defect(
        RELATIVE_EXPIRY_VERBATIM,
        "EXPIRE/PEXPIRE/SETEX/PSETEX/SET EX|PX are written to the AOF as relative times, so a "
        "reload restarts the TTL",
        "the reason feedAppendOnlyFile translates expiries to absolute PEXPIREAT",
    ),
    Defect(
        EVERYSEC_FSYNC_SKIPPED,
        "appendfsync everysec: no background fsync is scheduled when the AOF buffer is empty, "
        "so the last writes before an idle period are never fsynced",
        "Redis before the aof_fsync_offset check in flushAppendOnlyFile (Redis 3.x/4.0)",
    ),
    Defect(
        MULTI_APPLIED_ON_LOAD,
        "the loader applies the commands of a MULTI block that has no EXEC at the end of the "
        "file (half a transaction survives)",
        None,
    ),
    Defect(
        FSYNC_ERROR_CLEARED,
        "a failed background fsync sets the error state, but a later successful fsync clears "
        "it and nothing rewrites the data the failed fsync dropped",
        "Redis 6.2 bio.c (aof_bio_fsync_status reset to C_OK by the next successful fsync) "
        "under Linux fsync-failure semantics ('fsyncgate', 2018)",
    ),
    Defect(
        WRITE_ERROR_IGNORED,
        "a failed AOF write is logged and retried, but no error state is set: writes keep "
        "being accepted and acknowledged (no MISCONF)",
        None,
    ),
    Defect(
        NO_DIR_FSYNC_AFTER_RENAME,
        "the directory is not fsynced after the rewritten AOF is renamed over the old one",
        "Redis <= 6.2 backgroundRewriteDoneHandler (Redis 7.0 fsyncs the directory)",
    ),
    Defect(
        REWRITE_DROPS_EXPIRY,
        "the rewrite child writes keys without their PEXPIREAT (expiring keys become "
        "persistent after a rewrite and a reload)",
        None,
    ),
    Defect(
        TRUNCATED_TAIL_NOT_TRUNCATED_ON_DISK,
        "with aof-load-truncated the loader skips a torn tail in memory but does not truncate "
        "the file, so the next append lands after the garbage",
        None,
    ),
    Defect(
        SET_EXPIRY_SPLIT,
        "SET with EX/PX (and SETEX/PSETEX) is written as two records, SET then PEXPIREAT, so "
        "a crash between them leaves a key without its expiry",
        "Redis 2.6-6.0 feedAppendOnlyFile (Redis 6.2 writes one SET ... PXAT record)",
    ),
    Defect(
        DEL_FEEDS_FIRST_KEY,
        "DEL of several keys is fed to the AOF as a DEL of the first key only (the other "
        "deleted keys come back after a reload)",
        None,
    ),
    Defect(
        SADD_FEEDS_FIRST_MEMBER,
        "SADD of several members is fed to the AOF with its first member only",
        None,
    ),
    Defect(
        PUSH_FEEDS_LAST_ELEMENT,
        "LPUSH/RPUSH of several elements is fed to the AOF with its last element only",
        None,
    ),
    Defect(
        HSET_FEEDS_FIRST_FIELD,
        "HSET/HMSET of several field-value pairs is fed to the AOF with its first pair only",
        None,
    ),
    Defect(
        ZADD_FEEDS_FIRST_PAIR,
        "ZADD of several score-member pairs is fed to the AOF with its options and its first "
        "pair only",
        None,
    ),
    Defect(
        REMOVE_FEEDS_FIRST_MEMBER,
        "SREM/ZREM/HDEL of several members (fields) is fed to the AOF with its first member only",
        None,
    ),
    Defect(
        REWRITE_DROPS_AFTER_FIRST_BATCH,
        "the rewrite writes a list, set, sorted set or hash of more than 64 items as its first "
        "batch of 64 only (the rest of the collection is lost by the rewrite)",
        None,
    ),
    Defect(
        REWRITE_BATCH_SKIPS_BOUNDARY_ITEM,
        "off by one at the rewrite's batch boundary: items 0..63 are written, then 65..129, so "
        "every item that should start a new batch is lost",
        None,
    ),
    Defect(
        REWRITE_BATCH_COUNT_WRONG,
        "the rewrite writes every batch's array header for a full batch (the item count is not "
        "decremented), so the last, shorter batch of a collection of more than 64 items is "
        "malformed",
        None,
    ),
    Defect(
        REWRITE_SELECT_EMITTED_ONCE,
        "the rewrite writes SELECT before the first non-empty database only, so after a "
        "reload the keys of every later database land in that first one",
        None,
    ),
    Defect(
        REWRITE_DIFF_NOT_FSYNCED,
        "the rewrite done handler appends the rewrite buffer to the child's (fsynced) file but "
        "does not fsync it: writes made during the rewrite are lost by a power failure, and "
        "nothing fsyncs them later because the fsynced offset is reset to the new size",
        None,
    ),
    Defect(
        REWRITE_DIFF_APPENDED_AFTER_RENAME,
        "the rewrite done handler renames the child's file over the AOF first and appends the "
        "rewrite buffer afterwards: a crash in between loses the writes made during the rewrite",
        None,
    ),
    Defect(
        REWRITE_DIFF_SHORT_WRITE_IGNORED,
        "the rewrite done handler ignores a short write of the rewrite buffer and installs a "
        "file that holds only part of it (possibly ending in half a command)",
        None,
    ),
    Defect(
        OLD_FD_KEPT_AFTER_REWRITE,
        "after the rewritten file replaced the AOF the server keeps appending to the old file "
        "descriptor, so every later write goes to the unlinked old file",
        None,
    ),
    Defect(
        EVERYSEC_POSTPONED_WITHOUT_LIMIT,
        "appendfsync everysec: while a background fsync is pending the write of the AOF "
        "buffer is postponed with no 2 s limit, so acknowledged writes stay only in memory for "
        "as long as the fsync stalls",
        None,
    ),
    Defect(
        EVERYSEC_OFFSET_ADVANCED_WHILE_BUSY,
        "appendfsync everysec: when the once-a-second fsync is skipped because one is still "
        "running, the fsynced offset is advanced anyway, so the bytes written meanwhile are "
        "never fsynced once the server goes idle",
        None,
    ),
    Defect(
        ZERO_TAIL_REFUSED,
        "the loader refuses an AOF that ends in zero bytes (a tail whose length reached the "
        "disk but whose data did not) instead of truncating it like a torn tail",
        "redis/redis#5177 (Redis does not start after a power loss left zeros at the end of "
        "the AOF, even with aof-load-truncated yes); valkey-io/valkey#1148",
    ),
    Defect(
        LOAD_TRUNCATES_ONE_BYTE_SHORT,
        "with aof-load-truncated the file is truncated one byte before the end of the last "
        "complete command, which is itself torn at the next load (or garbage once appended to)",
        None,
    ),
    Defect(
        MISCONF_CLEARED_BY_SHORT_WRITE,
        "a short write of the AOF (truncated back) clears the write-error state as if the "
        "write had succeeded: MISCONF is lifted and held replies are released while the data "
        "is only in memory",
        None,
    ),
    Defect(
        REWRITE_NEVER_SWAPPED,
        "the rewrite done handler reports success but never renames the rewritten file over "
        "the AOF (the temporary file is removed): no data is lost, but the AOF is never "
        "compacted and grows forever (a liveness bug)",
        None,
    ),
)

DEFECTS: dict[str, Defect] = {d.name: d for d in _ALL}


def check_defects(names: Iterable[str]) -> frozenset[str]:
    """Validate defect names; ValueError naming the unknown ones and listing the known ones."""
    chosen = frozenset(names)
    unknown = sorted(n for n in chosen if n not in DEFECTS)
    if unknown:
        raise ValueError(
            f"defects: unknown defect(s) {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(sorted(DEFECTS))})"
        )
    return chosen
