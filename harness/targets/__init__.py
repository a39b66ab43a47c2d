"""Targets the harness can crash and check: any implementation, in-process or as a process.

In-process (``_inprocess``): the ``Target`` protocol a Python AOF implementation provides to be
driven by the state machines, the explorer and the pytest plugin (built by a factory from a
``TargetEnv``: the FileSystem, the Clock and a ``TargetConfig``), the optional
``RewritingTarget`` capability, ``load_target_factory("MODULE:FACTORY")`` and
``reference_target``, the bundled reference driven through that same protocol
(``_reference``).

Processes (``_servers``): finding server binaries (redis-server 6.0, 6.2, 7.0), launching them on
a directory (optionally a ``faults.fuse`` mount), crashing them with SIGKILL (server and rewrite
child), dumping their keyspace in the oracle's canonical dump format, and locating their AOF
files. ``ReferenceProcess`` runs the reference server as a process (``python -m reference``)
behind the same interface as ``RedisProcess``.

Layer: above ``harness.oracle`` (it may use its dump format and reply types) and below the
in-process machine, the explorer, verify and the CLI, which drive targets. A new kind of target
goes in a private module here and is exported from this module.
"""

from __future__ import annotations

from harness.targets._inprocess import (
    APPENDFSYNC_POLICIES,
    Dump,
    RewritingTarget,
    Target,
    TargetConfig,
    TargetEnv,
    TargetError,
    TargetFactory,
    TargetRefusedToStart,
    as_rewriting,
    check_target,
    load_target_factory,
    reference_target,
)
from harness.targets._servers import (
    FORK_CHILD_TITLES,
    SERVER_VERSIONS,
    AofManifestEntry,
    AofManifestError,
    DumpValue,
    Keyspace,
    RedisProcess,
    ReferenceProcess,
    ServerBinary,
    ServerNotFound,
    ServerRefusedToStart,
    ServerStartTimeout,
    aof_manifest_path,
    aof_paths,
    dump_keyspace,
    find_server,
    parse_manifest,
)

__all__ = [
    "APPENDFSYNC_POLICIES",
    "FORK_CHILD_TITLES",
    "SERVER_VERSIONS",
    "AofManifestEntry",
    "AofManifestError",
    "Dump",
    "DumpValue",
    "Keyspace",
    "RedisProcess",
    "ReferenceProcess",
    "RewritingTarget",
    "ServerBinary",
    "ServerNotFound",
    "ServerRefusedToStart",
    "ServerStartTimeout",
    "Target",
    "TargetConfig",
    "TargetEnv",
    "TargetError",
    "TargetFactory",
    "TargetRefusedToStart",
    "aof_manifest_path",
    "aof_paths",
    "as_rewriting",
    "check_target",
    "dump_keyspace",
    "find_server",
    "load_target_factory",
    "parse_manifest",
    "reference_target",
]
