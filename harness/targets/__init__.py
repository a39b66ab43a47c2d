"""Targets the harness can crash and check. This module is the public face of the real-process
part: finding redis-server binaries (6.0, 6.2, 7.0), launching them on a directory (optionally a
``faults.fuse`` mount), crashing them with SIGKILL (server and rewrite child), dumping their
keyspace in the oracle's canonical dump format, and locating their AOF files.
``ReferenceProcess`` runs the reference server as a process (``python -m reference``) behind the
same interface as ``RedisProcess``.

Layer: above ``harness.oracle`` (it may use its dump format) and below the in-process machine,
the explorer, verify and the CLI, which drive targets. ``_servers`` holds the real-process
backends; a new kind of target goes in a private module here and is exported from this module.
"""

from __future__ import annotations

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
    "FORK_CHILD_TITLES",
    "SERVER_VERSIONS",
    "AofManifestEntry",
    "AofManifestError",
    "DumpValue",
    "Keyspace",
    "RedisProcess",
    "ReferenceProcess",
    "ServerBinary",
    "ServerNotFound",
    "ServerRefusedToStart",
    "ServerStartTimeout",
    "aof_manifest_path",
    "aof_paths",
    "dump_keyspace",
    "find_server",
    "parse_manifest",
]
