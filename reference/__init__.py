"""reference: a faithful Python re-implementation of the Redis single-file AOF design.

All I/O goes through an injected ``faults.FileSystem`` and all time through a ``faults.Clock``,
so the harness controls every fault and every interleaving. See ``reference._server`` for the
event loop and the differences between the ``safe`` and ``redis-3.0`` profiles, and
``reference.defects`` for the named defects.
"""

from __future__ import annotations

from reference import defects
from reference._aof import (
    HIREDIS_AVAILABLE,
    AofLoader,
    LoadError,
    LoadResult,
    parse_aof_command,
)
from reference._checkaof import (
    AofCheck,
    AofInputError,
    AofNotFixableError,
    CheckResult,
    FileCheck,
    FixPlan,
    check_aof,
    check_aof_path,
    fix_aof,
    plan_fix,
)
from reference._config import AppendFsync, ConfigError, Profile, ServerConfig
from reference._keyspace import KeyspaceDump, dump_value
from reference._rdb import RdbCheckResult, check_rdb
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
    "AofCheck",
    "AofInputError",
    "AofLoader",
    "AofNotFixableError",
    "AppendFsync",
    "CheckResult",
    "ConfigError",
    "ErrorReply",
    "FileCheck",
    "FixPlan",
    "KeyspaceDump",
    "LoadError",
    "LoadResult",
    "Profile",
    "RdbCheckResult",
    "Reply",
    "ReplyNotReleased",
    "RespFormatError",
    "RewriteChild",
    "Server",
    "ServerConfig",
    "SimpleString",
    "check_aof",
    "check_aof_path",
    "check_rdb",
    "defects",
    "dump_value",
    "encode_command",
    "encode_reply",
    "fix_aof",
    "parse_aof_command",
    "parse_command",
    "plan_fix",
]
