"""kvlog: a small string key-value store over a checksummed append-only log, the second
worked example of testing your own implementation with aofcrash.

Its shape differs from Redis on purpose: one keyspace (no databases), no transactions, three
commands (SET, GET, DEL of one key), its own files (``data.log``, ``compact.tmp``), compaction
instead of a rewrite, CRC-32 on every record, fsync modes ``always`` and ``batch``. The store
(``kvlog._store``, ``kvlog._records``) knows nothing of aofcrash; ``kvlog.aofcrash_target`` is
the adapter (``kvlog:make_target``), and the planted bugs are ``kvlog.BUGS``.
"""

from __future__ import annotations

from kvlog._records import BadRecord
from kvlog._store import BUGS, COMMANDS, LOG, TEMP, CorruptLog, KvLog, StoreError
from kvlog.aofcrash_target import KvLogTarget, make_target

__all__ = ["BUGS", "COMMANDS", "LOG", "TEMP", "BadRecord", "CorruptLog", "KvLog", "KvLogTarget",
           "StoreError", "make_target"]
