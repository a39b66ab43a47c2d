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
    "EVERYSEC_FSYNC_SKIPPED",
    "FSYNC_ERROR_CLEARED",
    "MULTI_APPLIED_ON_LOAD",
    "NO_DIR_FSYNC_AFTER_RENAME",
    "RELATIVE_EXPIRY_VERBATIM",
    "REPLY_BEFORE_FSYNC",
    "REWRITE_BUFFER_DROPPED",
    "REWRITE_DROPS_EXPIRY",
    "SELECT_NOT_REEMITTED_AFTER_REWRITE",
    "SET_EXPIRY_SPLIT",
    "SHORT_WRITE_KEPT",
    "TEMP_NOT_FSYNCED_BEFORE_RENAME",
    "TRUNCATED_TAIL_NOT_TRUNCATED_ON_DISK",
    "WRITE_ERROR_IGNORED",
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
