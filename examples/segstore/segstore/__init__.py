"""segstore: a string key-value store kept in CRC-checked log segments named by a MANIFEST."""

from segstore._store import (
    BUGS,
    FSYNC_MODES,
    GROUP_SYNC_AFTER_MS,
    MANIFEST,
    Clock,
    CorruptStore,
    ErrorReply,
    Reply,
    SegStore,
    StoreFailed,
)

__all__ = [
    "BUGS",
    "FSYNC_MODES",
    "GROUP_SYNC_AFTER_MS",
    "MANIFEST",
    "Clock",
    "CorruptStore",
    "ErrorReply",
    "Reply",
    "SegStore",
    "StoreFailed",
]
