"""The bundled reference server (``reference.Server``) as an in-process Target."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.oracle import ReplyError
from harness.targets._inprocess import (
    Dump,
    Target,
    TargetConfig,
    TargetEnv,
    TargetRefusedToStart,
)
from reference import AppendFsync, ErrorReply, LoadError, Profile, Server, ServerConfig

__all__ = ["ReferenceTarget", "reference_server_config", "reference_target"]


def reference_server_config(config: TargetConfig) -> ServerConfig:
    """The reference's ServerConfig for a TargetConfig (options: profile, defects)."""
    return ServerConfig(
        appendfsync=AppendFsync(config.appendfsync),
        profile=Profile(config.options.get("profile", Profile.SAFE.value)),
        aof_load_truncated=config.aof_load_truncated,
        no_appendfsync_on_rewrite=config.no_appendfsync_on_rewrite,
        auto_aof_rewrite_min_size_bytes=config.auto_rewrite_min_size_bytes,
        defects=frozenset(config.options.get("defects", ())),
    )


class ReferenceTarget:
    """``reference.Server`` behind the Target protocol, with its stepped rewrite child."""

    def __init__(self, env: TargetEnv) -> None:
        self.server_config = reference_server_config(env.config)
        self.server = Server(env.fs, env.clock, self.server_config, child_killer=env.kill_child)
        self.cron_period_ms = max(1, 1000 // self.server_config.hz)
        # Bound methods of the server itself: two Python calls fewer per command.
        self.run_iteration = self.server.run_iteration
        self.released = self.server.released

    def start(self) -> None:
        try:
            self.server.start()
        except LoadError as exc:
            raise TargetRefusedToStart(str(exc)) from None

    def submit(self, argv: Sequence[bytes], *, client: int) -> int:
        return self.server.submit(list(argv), client=client)

    def pop_reply(self, ticket: int) -> Any:
        return _plain(self.server.pop_reply(ticket))

    def dump(self) -> Dump:
        return self.server.dump()

    @property
    def stopped(self) -> bool:
        return self.server.stopped

    @property
    def rewrite_running(self) -> bool:
        return self.server.rewrite_child is not None

    def step_rewrite(self) -> bool:
        child = self.server.rewrite_child
        if child is None or not child.alive:
            return False
        return child.step()

    def kill_rewrite(self) -> None:
        self.server.kill_rewrite_child()


def _plain(reply: Any) -> Any:
    """The reference's reply in the protocol's terms (ReplyError for errors, str for +simple)."""
    if isinstance(reply, ErrorReply):
        return ReplyError(str(reply))
    if isinstance(reply, str):
        return str(reply)
    if isinstance(reply, list):
        return [_plain(x) for x in reply]
    return reply


def reference_target(env: TargetEnv) -> Target:
    """The bundled reference server as a Target (``options``: ``profile``, ``defects``)."""
    return ReferenceTarget(env)
