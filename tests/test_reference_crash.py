"""Power-loss crash images of the reference server (a small exhaustive check, not the explorer)."""

from __future__ import annotations

from faults import Clock, ImageLimits, PersistenceModel, SimDisk
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
