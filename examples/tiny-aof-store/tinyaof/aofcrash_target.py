"""TinyStore as an aofcrash in-process target: the only module of tinyaof that knows aofcrash.

``make_target(env)`` builds a ``TinyTarget`` on the FileSystem and Clock the harness owns; the
spec ``tinyaof:make_target`` names it on the command line (``aofcrash fuzz --target ...``) and
in the pytest plugin. ``make_buggy_target`` is the same store with the planted bug
``reply-before-fsync`` on (a separate factory, so a reproduction that names it replays with the
bug). ``TargetConfig.options["bug"]`` switches the bug on too.

Replies go out through the harness's reply channel (``env.release``): the store hands each one
over at the moment it releases it, so the harness judges the acknowledgement at that place
among the store's filesystem calls, not at the end of the iteration.

What the harness reads besides the Target protocol: ``commands`` (the store implements only
these, so the state machines send nothing else and skip the features that need others),
``shapes`` (SET without EXAT, PXAT and KEEPTTL, which TinyStore refuses as a syntax error:
declared, so they are never sent, and a lost reply is never taken for a write that ran) and
``cron_period_ms`` (how often the event loop wakes while time passes). TinyStore has no rewrite,
so it is not a ``RewritingTarget`` and the rewrite rules stay off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.targets import CommandShapes, Dump, TargetEnv, TargetRefusedToStart
from tinyaof._store import COMMANDS, CorruptLog, TinyStore

__all__ = ["TinyTarget", "make_buggy_target", "make_target"]


class TinyTarget:
    """The Target protocol over a TinyStore."""

    commands = frozenset(COMMANDS)
    shapes = CommandShapes(commands=frozenset(c.decode() for c in COMMANDS),
                           forms={"SET": frozenset({"plain", "EX", "PX", "NX", "XX"})})
    cron_period_ms = 100

    def __init__(self, env: TargetEnv, *, bug: str | None = None) -> None:
        config = env.config
        self.store = TinyStore(env.fs, env.clock, appendfsync=config.appendfsync,
                               load_truncated=config.aof_load_truncated,
                               bug=bug or config.options.get("bug"), on_release=env.release)

    def start(self) -> None:
        try:
            self.store.open()
        except CorruptLog as exc:
            raise TargetRefusedToStart(str(exc)) from None

    def submit(self, argv: Sequence[bytes], *, client: int) -> int:
        return self.store.submit(argv, client=client)

    def run_iteration(self) -> None:
        self.store.run_iteration()

    def released(self, ticket: int) -> bool:
        return self.store.released(ticket)

    def pop_reply(self, ticket: int) -> Any:
        return self.store.pop_reply(ticket)  # StoreError instances are error replies

    def dump(self) -> Dump:
        return {db: {key: ("string", value, expire_at_ms)
                     for key, (value, expire_at_ms) in keys.items()}
                for db, keys in self.store.snapshot().items()}

    @property
    def stopped(self) -> bool:
        return self.store.stopped


def make_target(env: TargetEnv) -> TinyTarget:
    """The correct store (``options["bug"]`` may still plant the bug)."""
    return TinyTarget(env)


def make_buggy_target(env: TargetEnv) -> TinyTarget:
    """The store with the planted bug ``reply-before-fsync``."""
    return TinyTarget(env, bug="reply-before-fsync")
