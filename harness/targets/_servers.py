"""What the user asked for, made runnable: ``resolve_server(server, server_cmd=...)`` turns a
preset (``SERVER_PRESETS``), a path to a binary (run with redis-server's flags) or a command
template (``SERVER_TEMPLATE_FIELDS`` lists its placeholders) into a ``ServerSpec``;
``probe_server`` starts it once on a scratch directory, checks that it answers PING over RESP
and reads its name and version (``--version``, else INFO ``valkey_version`` /
``redis_version``). Every problem is one line: ``ServerSpecError`` (the request itself is
malformed), ``ServerNotFound`` (missing, not a file, not executable, wrong version) and
``ServerNotUsable`` (it ran but is not a usable RESP server).

The real-process targets by responsibility, bottom up: ``_presets`` (which binary: presets,
binary lookup, command templates), ``_reaper`` (process groups, the reaper and the registry),
``_rundirs`` (scratch directories), ``_resp`` (RESP on a socket), ``_process`` (launching and
crashing), ``_dump`` (the keyspace), ``_aof_files`` (where the AOF is), and this module on top.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import hiredis

# harness.verify imports some names from here that live elsewhere since the split
# (``name as name``: explicit re-exports) until it imports them from harness.targets.
from harness.targets._aof_files import find_aof_files as find_aof_files
from harness.targets._dump import dump_keyspace_at as dump_keyspace_at
from harness.targets._presets import SERVER_PRESETS as SERVER_PRESETS
from harness.targets._presets import (
    SERVER_VERSIONS,
    _check_executable,
    _name_and_version,
    _run_version,
    find_server,
)
from harness.targets._presets import ServerNotFound as ServerNotFound
from harness.targets._presets import ServerSpecError as ServerSpecError
from harness.targets._presets import _template_words as _template_words
from harness.targets._process import (
    CommandProcess,
    RedisProcess,
    ReferenceProcess,
)
from harness.targets._process import ServerNotUsable as ServerNotUsable
from harness.targets._process import ServerRefusedToStart as ServerRefusedToStart
from harness.targets._process import ServerStartTimeout as ServerStartTimeout
from harness.targets._resp import _parse_info, _resp_call
from harness.targets._rundirs import make_run_dir as make_run_dir
from harness.targets._rundirs import remove_stale_run_dirs as remove_stale_run_dirs

__all__ = ["ServerInfo", "ServerSpec", "probe_server", "resolve_server"]


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What a server says it is: ``name`` ("redis", "valkey", "reference", or the binary's
    name) and ``version`` ("7.0.15"; "unknown" when neither --version nor INFO tells)."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """How to start one kind of server (made by ``resolve_server``; picklable).

    ``kind``: "preset" (a binary of ``SERVER_VERSIONS``), "binary" (any executable, run with
    redis-server's flags), "command" (a ``--server-cmd`` template) or "reference"
    (``python -m reference``). ``label`` is what was asked for; ``path`` the executable;
    ``name``/``version`` what ``--version`` printed ("" when it printed nothing usable:
    ``probe_server`` then asks INFO); ``multipart_aof`` is known for presets only.
    """

    kind: Literal["preset", "binary", "command", "reference"]
    label: str
    path: str = ""
    template: str = ""
    name: str = ""
    version: str = ""
    multipart_aof: bool | None = None

    def process(
        self,
        dir: str | os.PathLike[str],
        *,
        appendfsync: str = "always",
        log_path: str | os.PathLike[str] | None = None,
        aof_load_truncated: bool = True,
        extra_config: Mapping[str, str] | None = None,
        start_timeout_s: float = 60.0,
    ) -> RedisProcess:
        """An unstarted process of this server on `dir`."""
        options: dict[str, Any] = {
            "appendfsync": appendfsync, "log_path": log_path,
            "aof_load_truncated": aof_load_truncated, "extra_config": extra_config,
            "start_timeout_s": start_timeout_s,
        }
        if self.kind == "reference":
            return ReferenceProcess(dir, **options)
        if self.kind == "command":
            return CommandProcess(self.template, dir, executable=self.path, **options)
        return RedisProcess(self.path, dir, **options)


def resolve_server(server: str | None = None, *, server_cmd: str | None = None) -> ServerSpec:
    """The server a user asked for: a preset of ``SERVER_PRESETS``, a path to a binary (run with
    redis-server's flags) or, with `server_cmd`, a command template. Raises ServerSpecError
    or ServerNotFound with one line. Does not start it: see ``probe_server``."""
    if (server is None) == (server_cmd is None):
        raise ServerSpecError("give exactly one of --server (a preset or a path) and --server-cmd")
    if server_cmd is not None:
        words = _template_words(server_cmd)
        first = words[0]
        if "{" in first:
            raise ServerSpecError(
                f"--server-cmd {server_cmd!r}: the first word must be the program, not a "
                "placeholder"
            )
        if "/" in first:
            path = _check_executable(first, "--server-cmd: program")
        else:
            found = shutil.which(first)
            if found is None:
                raise ServerNotFound(f"--server-cmd: program {first!r} is not on PATH")
            path = found
        return ServerSpec("command", server_cmd, path=path, template=server_cmd)
    assert server is not None
    if server == "reference":
        return ServerSpec("reference", "reference", path=sys.executable, name="reference",
                          version="reference", multipart_aof=False)
    if server in SERVER_VERSIONS:
        binary = find_server(server)
        name = "valkey" if server == "valkey" else "redis"
        return ServerSpec("preset", server, path=binary.path, name=name,
                          version=binary.full_version, multipart_aof=binary.multipart_aof)
    if "/" not in server:
        raise ServerSpecError(
            f"server must be one of {', '.join(SERVER_PRESETS)} or a path to a server binary "
            f"(a path has a '/', e.g. ./{server}), got {server!r}"
        )
    path = _check_executable(server, "--server")
    name, version = _name_and_version(_run_version(path))
    return ServerSpec("binary", server, path=path, name=name or os.path.basename(path),
                      version=version)


def probe_server(spec: ServerSpec, *, timeout_s: float = 10.0) -> ServerInfo:
    """Start `spec` once on a scratch directory, check that it answers PING over RESP, read its
    name and version (``--version``, else INFO ``valkey_version`` / ``redis_version``) and stop
    it. ServerNotUsable (one line) when it exits, never listens or does not speak RESP."""
    hint = ""
    if spec.kind == "binary":
        hint = ("; a path is run with redis-server's flags (--port --dir --appendonly ...): "
                "for other flags use --server-cmd")
    elif spec.kind == "command":
        hint = "; check the --server-cmd template"
    root = make_run_dir("probe")
    server: RedisProcess | None = None
    try:
        data = os.path.join(root, "data")
        os.mkdir(data)
        server = spec.process(data, log_path=os.path.join(root, "server.log"),
                              start_timeout_s=timeout_s)
        try:
            server.start()
        except ServerRefusedToStart as exc:
            raise ServerNotUsable(exc.one_line() + hint) from None
        except ServerStartTimeout:
            raise ServerNotUsable(
                f"{spec.label} did not answer PING on the port it was given within "
                f"{timeout_s:g} s{hint}"
            ) from None
        info: dict[str, str] = {}
        with contextlib.suppress(OSError, hiredis.ProtocolError):
            reply = _resp_call(server.port, (b"INFO", b"server"), timeout_s=timeout_s)
            if isinstance(reply, bytes):
                info = _parse_info(reply)
    finally:
        if server is not None:
            server.kill()
        shutil.rmtree(root, ignore_errors=True)
    name = spec.name or info.get("server_name") or (
        "valkey" if "valkey_version" in info else "redis" if "redis_version" in info else ""
    )
    version = (spec.version or info.get("valkey_version") or info.get("redis_version")
               or "unknown")
    return ServerInfo(name or os.path.basename(spec.path) or spec.label, version)


