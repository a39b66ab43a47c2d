"""Targets the harness can crash and check: any implementation, in-process or as a process.

In-process (``_inprocess``): the ``Target`` protocol a Python AOF implementation provides to be
driven by the state machines, the explorer and the pytest plugin (built by a factory from a
``TargetEnv``: the FileSystem, the Clock and a ``TargetConfig``), the optional
``RewritingTarget`` capability, ``CommandShapes`` (what a target accepts: command names and
their forms in the reference's vocabulary; ``accepts_of(target)`` is the predicate every
generator filters with), ``load_target_factory("MODULE:FACTORY")`` and
``reference_target``, the bundled reference driven through that same protocol
(``_reference``); ``TargetSource`` records where a target's module came from, so that its
reproductions replay from any directory (``_source``).

Processes: resolving what the user asked for (a preset: redis-server 6.0, 6.2, 7.0,
8.2, Valkey 9.1, the reference; a path to any binary run with redis-server's flags; a command
template) into a ``ServerSpec`` and probing it (RESP, name and version), launching it on a
directory (optionally a ``faults.fuse`` mount), crashing it with SIGKILL of its process group
(server and rewrite child; a reaper ends them even when the harness is SIGKILLed), dumping its
keyspace in the oracle's canonical dump format, locating its AOF files (manifest or glob), and
scratch directories that are removed at the next start once their owner is dead.
``ReferenceProcess`` runs the reference server as a process (``python -m reference``) and
``CommandProcess`` a template, behind the same interface as ``RedisProcess``. By
responsibility: ``_presets`` (which binary: presets, binary lookup, command templates),
``_reaper`` (process groups, the reaper and the registry), ``_rundirs`` (scratch directories),
``_resp`` (RESP on a socket), ``_process`` (launching, crashing), ``_dump`` (the keyspace),
``_aof_files`` (manifest and AOF files) and ``_servers`` (resolving and probing), bottom up.

Layer: above ``harness.oracle`` (it may use its dump format and reply types) and below the
in-process machine, the explorer, verify and the CLI, which drive targets. A new kind of target
goes in a private module here and is exported from this module.
"""

from __future__ import annotations

from harness.targets import _inprocess
from harness.targets._aof_files import (
    AofManifestEntry,
    AofManifestError,
    aof_manifest_path,
    aof_paths,
    find_aof_files,
    parse_manifest,
)
from harness.targets._dump import DumpValue, Keyspace, dump_keyspace, dump_keyspace_at
from harness.targets._inprocess import *  # noqa: F403
from harness.targets._presets import (
    SERVER_PRESETS,
    SERVER_TEMPLATE_FIELDS,
    SERVER_VERSIONS,
    ServerBinary,
    ServerNotFound,
    ServerSpecError,
    find_server,
)
from harness.targets._process import (
    CommandProcess,
    RedisProcess,
    ReferenceProcess,
    ServerNotUsable,
    ServerRefusedToStart,
    ServerStartTimeout,
)
from harness.targets._reaper import FORK_CHILD_TITLES
from harness.targets._reference import reference_target
from harness.targets._rundirs import make_run_dir, remove_stale_run_dirs, run_dir_base
from harness.targets._servers import ServerInfo, ServerSpec, probe_server, resolve_server
from harness.targets._shapes import CommandShapes, accepts_of, shapes_of
from harness.targets._source import TargetSource, make_importable, target_source

__all__ = [
    *_inprocess.__all__,
    "FORK_CHILD_TITLES",
    "SERVER_PRESETS",
    "SERVER_TEMPLATE_FIELDS",
    "SERVER_VERSIONS",
    "AofManifestEntry",
    "AofManifestError",
    "CommandProcess",
    "CommandShapes",
    "DumpValue",
    "Keyspace",
    "RedisProcess",
    "ReferenceProcess",
    "ServerBinary",
    "ServerInfo",
    "ServerNotFound",
    "ServerNotUsable",
    "ServerRefusedToStart",
    "ServerSpec",
    "ServerSpecError",
    "ServerStartTimeout",
    "TargetSource",
    "accepts_of",
    "aof_manifest_path",
    "aof_paths",
    "dump_keyspace",
    "dump_keyspace_at",
    "find_aof_files",
    "find_server",
    "make_importable",
    "make_run_dir",
    "parse_manifest",
    "probe_server",
    "reference_target",
    "remove_stale_run_dirs",
    "resolve_server",
    "run_dir_base",
    "shapes_of",
    "target_source",
]
