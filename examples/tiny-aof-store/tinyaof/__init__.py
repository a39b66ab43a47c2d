"""tinyaof: a tiny append-only-file key-value store, the worked example of testing your own
implementation with aofcrash.

It is written the way a third party would write one: it imports nothing from aofcrash's
``reference`` server and uses only the filesystem verbs and the clock it is given
(``tinyaof._store``, the log format in ``tinyaof._log``). ``tinyaof.aofcrash_target`` is the thin
adapter to aofcrash's ``Target`` protocol; ``tinyaof:make_target`` is the factory to name.

Commands: SET (NX, XX, EX, PX), SETEX, PSETEX, GET, APPEND, INCR, DECR, INCRBY, DECRBY, DEL,
EXPIRE, PEXPIRE, EXPIREAT, PEXPIREAT, PERSIST, EXISTS, TTL, PTTL, SELECT, FLUSHDB, FLUSHALL,
MULTI, EXEC, DISCARD, PING; strings only; no rewrite. Anything else is
``ERR unknown command``.
"""

from __future__ import annotations

from tinyaof._log import CorruptLog
from tinyaof._store import BUGS, COMMANDS, StoreError, TinyStore
from tinyaof.aofcrash_target import TinyTarget, make_buggy_target, make_target

__all__ = [
    "BUGS",
    "COMMANDS",
    "CorruptLog",
    "StoreError",
    "TinyStore",
    "TinyTarget",
    "make_buggy_target",
    "make_target",
]
