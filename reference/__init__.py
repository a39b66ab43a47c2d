"""reference: a faithful Python re-implementation of the Redis single-file AOF design.

All I/O goes through an injected ``faults.FileSystem`` and all time through a ``faults.Clock``,
so the harness controls every fault and every interleaving. See ``reference._server`` for the
event loop and the differences between the ``safe`` and ``redis-3.0`` profiles, and
``reference.defects`` for the named defects.
"""

from __future__ import annotations

from reference import defects
from reference._aof import HIREDIS_AVAILABLE, AofLoader, LoadError, LoadResult
from reference._checkaof import CheckResult, check_aof, fix_aof
from reference._config import AppendFsync, ConfigError, Profile, ServerConfig
from reference._keyspace import KeyspaceDump
from reference._resp import (
    ErrorReply,
    Reply,
    RespFormatError,
    SimpleString,
    encode_command,
    encode_reply,
    parse_command,
)
from reference._server import ReplyNotReleased, RewriteChild, Server

__all__ = [
    "HIREDIS_AVAILABLE",
    "AofLoader",
    "AppendFsync",
    "CheckResult",
    "ConfigError",
    "ErrorReply",
    "KeyspaceDump",
    "LoadError",
    "LoadResult",
    "Profile",
    "Reply",
    "ReplyNotReleased",
    "RespFormatError",
    "RewriteChild",
    "Server",
    "ServerConfig",
    "SimpleString",
    "check_aof",
    "defects",
    "encode_command",
    "encode_reply",
    "fix_aof",
    "parse_command",
]
