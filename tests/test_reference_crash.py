"""Power-loss crash images of the reference server (a small exhaustive check, not the explorer)."""

from __future__ import annotations

from faults import Clock, ImageLimits, PersistenceModel, SimDisk
from harness.machine._steps import Step
from reference import AppendFsync, LoadError, Profile, Server, ServerConfig

POWER = PersistenceModel.POWER


def _recovered(
    disk: SimDisk, now_ms: int, config: ServerConfig, model: PersistenceModel
) -> list[object]:
    """The dump after recovery from every power-loss image at this point (None: refused)."""
    out: list[object] = []
    for choice in disk.crash_choices(model, limits=ImageLimits(max_choices_per_point=300)):
        server = Server(SimDisk.from_image(disk.crash(model, choice)), Clock(now_ms), config)
        try:
            server.start()
        except LoadError:
            out.append(None)
            continue
        out.append(server.dump())
    return out


def _workload(
    config: ServerConfig, model: PersistenceModel = POWER
) -> list[tuple[object, list[object]]]:
    """Run writes and a rewrite; after each iteration, the server's dump and the recoveries."""
    disk, clock = SimDisk(), Clock()
    server = Server(disk, clock, config)
    server.start()
    points: list[tuple[object, list[object]]] = []
    script = [[b"SET", b"a", b"1"], [b"RPUSH", b"l", b"x"], [b"BGREWRITEAOF"],
              [b"SELECT", b"2"], [b"SET", b"b", b"2"], None, [b"SET", b"c", b"3"]]
    for argv in script:
        if argv is None:
            assert server.rewrite_child is not None
            server.rewrite_child.run_to_completion()
            clock.advance(100)
            server.run_iteration()  # cron: the rewritten AOF replaces the old one
        else:
            assert server.released(server.submit(argv)) is False
            server.run_iteration()
        points.append((server.dump(), _recovered(disk, clock.now_ms, config, model)))
    return points


def test_always_in_safe_profile_loses_no_acknowledged_write_after_power_loss() -> None:
    config = ServerConfig(appendfsync=AppendFsync.ALWAYS, rewrite_keys_per_step=1)
    for acknowledged, recoveries in _workload(config):
        assert recoveries, "at least the durable-only image"
        assert all(r == acknowledged for r in recoveries)


def _losses(config: ServerConfig, model: PersistenceModel) -> list[tuple[object, object]]:
    return [
        (acknowledged, r)
        for acknowledged, recoveries in _workload(config, model)
        for r in recoveries
        if r != acknowledged
    ]


def test_redis_3_0_can_lose_acknowledged_writes_after_the_rewrite_rename_under_posix() -> None:
    config = ServerConfig(appendfsync=AppendFsync.ALWAYS, profile=Profile.REDIS_3_0,
                          rewrite_keys_per_step=1)
    # Creating the AOF and renaming the rewritten one are not followed by a directory fsync:
    # under the POSIX minimum a power loss can undo either.
    assert _losses(config, PersistenceModel.POWER_POSIX_METADATA)
    # On ext4, xfs and btrfs the fsync of each acknowledged write makes them durable too.
    for model in (POWER, PersistenceModel.POWER_XFS, PersistenceModel.POWER_BTRFS):
        assert not _losses(config, model), model


# -- a failed fsync whose repair also fails (issue 24) ------------------------------------------


def _failed_fsync_then_failed_repair() -> list[Step]:
    """everysec: an fsync of the AOF fails (Linux drops the failed range for good) while the
    disk is full everywhere, so the repair (a new file from memory) fails too; then space
    returns. Found by the explorer's fsync-error workload with its faults aimed at any file."""
    from faults import FaultOp, FaultPlan, IOFault, NoSpace
    from harness.machine._steps import ClearFaults, InjectFaults, Tick, Write

    steps: list[Step] = [Write((b"SET", b"k%d" % i, b"v%d" % i)) for i in range(4)]
    steps += [Tick(1100), Write((b"SET", b"late", b"x" * 40))]
    steps += [InjectFaults(FaultPlan((IOFault(op=FaultOp.FDATASYNC, nth=1),
                                      NoSpace(nth=1, times=None))))]
    steps += [Write((b"SET", b"full", b"y")), Tick(1100), Tick(1100)]
    steps += [ClearFaults(), Tick(700), Write((b"SET", b"after", b"z")), Tick(1100),
              Write((b"SET", b"last", b"w")), Tick(2500)]
    return steps


def test_nothing_is_appended_to_an_aof_whose_fsync_failed_until_the_repair_replaces_it() -> None:
    from harness.machine._driver import Driver
    from harness.machine._steps import RunConfig

    driver = Driver(RunConfig(policy="everysec"))
    driver.run_all(_failed_fsync_then_failed_repair())
    trace = driver.disk.trace
    failed = next(i for i, e in enumerate(trace) if e.op.value == "fsync_failed")
    renamed = next(i for i, e in enumerate(trace) if i > failed and e.op.value == "rename")
    assert any(e.op.value == "unlink" for e in trace[failed:renamed])  # a repair failed first
    assert not [e for e in trace[failed + 1:renamed]
                if e.path == "appendonly.aof" and e.op.value in ("write", "fdatasync", "fsync")]


def test_every_power_loss_after_a_failed_fsync_and_a_failed_repair_loads() -> None:
    from harness.explore import ExploreLimits, explore
    from harness.machine._steps import RunConfig

    result = explore(RunConfig(policy="everysec"), _failed_fsync_then_failed_repair(),
                     limits=ExploreLimits(confirm_reproductions=0))
    assert result.ok, result.violations[:1]
