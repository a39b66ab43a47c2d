"""In-process targets: the protocol any Python AOF implementation provides to be driven.

The harness owns the world a target lives in: a ``faults.FileSystem`` (a SimDisk behind the
fault layer) and a ``faults.Clock`` (virtual milliseconds). A factory builds the target on
them; the driver then submits commands, runs event-loop iterations, moves the clock, crashes
the disk and builds a fresh target on the crash image. Nothing here knows the reference server:
it is one target among others (``_reference.reference_target``).

The ack rule, as the driver applies it: a reply counts as acknowledged when it is released — a
target releases a reply only once the command is as durable as its policy promises (Redis
writes the AOF in ``beforeSleep`` before replying). Where the release happens is what the
harness judges: a target that hands each reply to ``TargetEnv.release(ticket, reply)`` the
moment it releases it is acknowledged there, at that place among its filesystem operations (a
crash between that release and the fsync after it loses an acknowledged write); one that
only answers ``released(ticket)`` is acknowledged when ``run_iteration()`` returns (ALICE's
rule, an acknowledgement is a point in the syscall trace, then holds only at iteration ends).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeAlias, cast, runtime_checkable

from faults import Clock, FileSystem

__all__ = [
    "APPENDFSYNC_POLICIES",
    "Dump",
    "RewritingTarget",
    "Target",
    "TargetConfig",
    "TargetEnv",
    "TargetError",
    "TargetFactory",
    "TargetRefusedToStart",
    "as_rewriting",
    "check_target",
    "load_target_factory",
    "target_checksummed",
    "target_files",
]

APPENDFSYNC_POLICIES = ("always", "everysec", "no")

# {db: {key: (type, value, expire_at_ms | None)}}; see harness.oracle.snapshot_from_dump for
# the value forms of each type.
Dump: TypeAlias = Mapping[int, Mapping[bytes, tuple[str, Any, int | None]]]


class TargetError(Exception):
    """A target spec or factory cannot be used (bad import path, not a Target, bad config)."""


class TargetRefusedToStart(Exception):
    """Raised by ``Target.start`` when the implementation refuses to load what is on disk.
    ``reason`` is what it said (the harness reports it under the availability rule)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass(frozen=True)
class TargetConfig:
    """What every AOF implementation is configured with.

    ``appendfsync``: always | everysec | no. ``aof_load_truncated``: load a torn tail (cut to the
    last complete command) rather than refuse. ``no_appendfsync_on_rewrite``: skip fsyncs while
    a rewrite runs. ``auto_rewrite_min_size_bytes``: start a rewrite by itself past this size
    (targets without rewrites ignore it). ``options``: implementation-specific settings, e.g.
    the reference's ``profile`` and ``defects``; a target ignores names it does not know.
    """

    appendfsync: str = "everysec"
    aof_load_truncated: bool = True
    no_appendfsync_on_rewrite: bool = False
    auto_rewrite_min_size_bytes: int = 64 * 1024 * 1024
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.appendfsync not in APPENDFSYNC_POLICIES:
            raise TargetError(f"appendfsync must be one of {', '.join(APPENDFSYNC_POLICIES)}, "
                              f"got {self.appendfsync!r}")


@dataclass(frozen=True)
class TargetEnv:
    """Everything a factory builds a target from.

    ``fs`` and ``clock`` are the only filesystem and time the target may use. ``kill_child``
    is how the ``KillChild`` fault reaches a target with a stepped rewrite: ask
    ``kill_child(rewrite_number, step)`` (both 1-based) before each step of the rewrite and,
    if it says True, die at that step instead. Targets without rewrites ignore it.

    ``release(ticket, reply)`` is the reply channel: call it at the moment the reply of
    `ticket` goes to its client (inside ``run_iteration``, between the filesystem calls that
    come before and after). The harness records the acknowledgement there, so every crash
    point after it and before the fsync that should have preceded it is judged as losing an
    acknowledged write. A ticket released this way is settled by the channel: the harness
    does not ask ``released``/``pop_reply`` about it (the target need not keep the reply).
    None (a target driven by hand, a scratch probe): nobody listens, keep replies for
    ``pop_reply``. Optional: a target that never calls it is acknowledged when
    ``run_iteration`` returns.
    """

    fs: FileSystem
    clock: Clock
    config: TargetConfig
    kill_child: Callable[[int, int], bool] = lambda _rewrite, _step: False
    release: Callable[[int, Any], None] | None = None


@runtime_checkable
class Target(Protocol):
    """An AOF implementation the harness can drive in-process.

    Lifecycle: the factory builds it (nothing on disk is read yet); ``start()`` loads the AOF
    from the filesystem (or creates it) and raises ``TargetRefusedToStart`` to refuse; then
    commands go in with ``submit`` and are executed by ``run_iteration`` (one event-loop
    iteration: timers due on the clock, commands queued since the last iteration, the AOF
    flush, then the replies). After a crash the harness throws the object away and builds a
    new one on the crash image.

    Replies (``pop_reply``) in plain Python: ``bytes`` (bulk), ``int``, ``None`` (nil),
    ``str`` (simple string such as ``"OK"``), ``list`` (array), and for an error reply either
    ``harness.oracle.ReplyError(message)`` or any ``Exception`` instance whose ``str()`` is the
    message (e.g. ``"ERR syntax error"``; the first word is the error code).

    Optional attributes: ``commands``, the upper-case command names the target implements
    (missing: all of them); the state machines then switch off the features whose rules send
    others and say so once in the report. ``shapes``: a ``CommandShapes`` (names and, per
    command, the forms of the reference's surface table it accepts, e.g. DEL of one key
    only); SELECT and MULTI are sent only when declared. ``accepts(argv) -> bool``: False
    for a command shape the target refuses with an error whatever its state. Every generator
    sends only what these allow (``accepts_of``). A
    write whose reply a crash lost is judged as possibly refused (no effect) when the target
    could refuse it: not in ``commands``, not accepted, or of a shape (name, argument count)
    it refused earlier in the run. ``cron_period_ms`` (default 100): how often its
    event loop wakes by itself; a tick of the clock runs one iteration per period.
    ``files``: globs (root-relative, fnmatch) of the files that hold its data, e.g.
    ``("data.log",)`` (missing: every file); ``temp_files``: globs of the files its rewrite or
    compaction writes before renaming them into place, e.g. ``("compact.tmp",)``.
    ``checksummed``: True when its file format checksums what it loads, so it can tell damaged
    synced bytes from data: it is then judged by the oracle's rule 5 on images a ``Damage``
    fault hit (aimed at its ``files``); a target without it is never given such images.
    """

    def start(self) -> None:
        """Load the AOF (or create an empty one); raise TargetRefusedToStart to refuse."""

    def submit(self, argv: Sequence[bytes], *, client: int) -> int:
        """Queue a command from `client` (its own SELECTed db, MULTI state); return a ticket.
        Only queue: the command runs in the next ``run_iteration``."""

    def run_iteration(self) -> None:
        """Run one event-loop iteration at the clock's current time."""

    def released(self, ticket: int) -> bool:
        """True once the reply of `ticket` is released to the client (acknowledged); not asked
        about a ticket released through ``TargetEnv.release``."""

    def pop_reply(self, ticket: int) -> Any:
        """Take the released reply of `ticket`."""

    def dump(self) -> Dump:
        """The whole keyspace, every db, with absolute expiry times in ms."""

    @property
    def stopped(self) -> bool:
        """True once the implementation stopped itself (e.g. always + a failed write)."""


@runtime_checkable
class RewritingTarget(Target, Protocol):
    """A target with a background rewrite the harness can step and kill (BGREWRITEAOF starts
    it as a command; auto-rewrite may start it by itself).

    ``rewrite_running``: a rewrite child exists (alive, or dead and not yet reaped by the
    parent). ``step_rewrite()``: advance a live child by one step (a real child works while
    time passes: the driver steps it once per cron period of a tick) and return whether it can
    take another (False once it has exited or died, or when no child is alive).
    ``kill_rewrite()``: SIGKILL the child; the parent notices at its next cron.
    """

    @property
    def rewrite_running(self) -> bool: ...

    def step_rewrite(self) -> bool: ...

    def kill_rewrite(self) -> None: ...


TargetFactory: TypeAlias = Callable[[TargetEnv], Target]


def load_target_factory(spec: str) -> TargetFactory:
    """``MODULE:FACTORY`` -> the factory callable; TargetError with one clear line otherwise.

    The factory is called with a ``TargetEnv`` and must return a ``Target``; that is checked
    when the driver builds the first one (``check_target``)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise TargetError(f"target {spec!r}: expected MODULE:FACTORY, e.g. mystore:make_target")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TargetError(f"target {spec!r}: cannot import {module_name!r}: {exc}") from None
    except Exception as exc:  # the user's module raised while importing
        raise TargetError(f"target {spec!r}: importing {module_name!r} failed: "
                          f"{type(exc).__name__}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise TargetError(f"target {spec!r}: {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise TargetError(f"target {spec!r}: {attr!r} is not callable")
    factory: TargetFactory = obj
    return factory


_CHECKED: dict[type, bool] = {}  # per class: provides the rewrite capability


def check_target(target: object, spec: str) -> Target:
    """`target` if it provides the Target protocol; TargetError naming what is missing.
    (Checked by attribute, once per class: isinstance against a runtime Protocol is slow.)"""
    kind = type(target)
    if kind not in _CHECKED:
        required = ("start", "submit", "run_iteration", "released", "pop_reply", "dump")
        missing = [name for name in required if not callable(getattr(target, name, None))]
        if not hasattr(target, "stopped"):
            missing.append("stopped")
        if missing:
            raise TargetError(f"target {spec!r}: the factory returned a {kind.__name__}, "
                              f"which is not a Target (missing: {', '.join(missing)})")
        _CHECKED[kind] = all(callable(getattr(target, n, None))
                             for n in ("step_rewrite", "kill_rewrite")) and hasattr(
            target, "rewrite_running")
    return cast(Target, target)


def target_checksummed(target: object) -> bool:
    """Whether `target` declares a checksummed file format (its ``checksummed``)."""
    return getattr(target, "checksummed", False) is True


def target_files(target: object) -> tuple[str, ...]:
    """The globs of the files `target` keeps its data in (its ``files``; ``("*",)`` when it
    declares none)."""
    declared = getattr(target, "files", None)
    if declared is None:
        return ("*",)
    if isinstance(declared, str):
        return (declared,)
    return tuple(str(g) for g in declared) or ("*",)


def target_temp_files(target: object) -> tuple[str, ...]:
    """The globs of the files `target`'s rewrite or compaction writes before renaming them
    into place (its ``temp_files``; none when it declares none)."""
    declared = getattr(target, "temp_files", None)
    if declared is None:
        return ()
    if isinstance(declared, str):
        return (declared,)
    return tuple(str(g) for g in declared)


def as_rewriting(target: Target) -> RewritingTarget | None:
    """`target` as a RewritingTarget when it has that capability (after ``check_target``)."""
    if _CHECKED.get(type(target), False):
        return cast(RewritingTarget, target)
    return None
