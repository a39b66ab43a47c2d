"""segstore (examples/segstore): the store's own tests, on an in-memory filesystem that can
lose power (segstore_memfs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from segstore import MANIFEST, CorruptStore, ErrorReply, Reply, SegStore, StoreFailed
from segstore._records import HEADER
from segstore_memfs import MemFS


class FakeClock:
    def __init__(self) -> None:
        self.now_ms = 1_000_000


def make_store(
    fs: MemFS, clock: FakeClock, *, bugs: frozenset[str] = frozenset(), **options: object
) -> SegStore:
    store = SegStore(fs, clock, bugs=bugs, **options)  # type: ignore[arg-type]
    store.open()
    return store


def run(store: SegStore, *commands: tuple[str, ...]) -> list[Reply]:
    ids = [store.submit(command) for command in commands]
    store.run_turn()
    replies = dict(store.take_replies())
    return [replies[request_id] for request_id in ids]


def fill(store: SegStore, count: int, *, prefix: str = "k") -> None:
    for number in range(count):
        run(store, ("SET", f"{prefix}{number}", "v" * 40 + str(number)))


def test_set_get_del_and_errors() -> None:
    store = make_store(MemFS(), FakeClock())
    assert run(
        store, ("SET", "a", "1"), ("GET", "a"), ("DEL", "a"), ("DEL", "a"), ("GET", "a")
    ) == [
        "OK",
        "1",
        1,
        0,
        None,
    ]
    replies = run(store, ("DEL", "a", "b"), ("SET", "a", "1", "PX", "0"), ("INCR", "a"), ())
    assert all(isinstance(reply, ErrorReply) for reply in replies)


def test_a_clean_restart_keeps_everything() -> None:
    fs, clock = MemFS(), FakeClock()
    store = make_store(fs, clock, fsync_mode="group")
    run(store, ("SET", "a", "1"), ("SET", "b", "2"), ("DEL", "a"))
    store.close()
    assert make_store(fs, clock).items() == {"b": "2"}


def test_always_mode_survives_power_loss_after_each_reply() -> None:
    fs, clock = MemFS(), FakeClock()
    store = make_store(fs, clock)
    fill(store, 5)
    assert make_store(fs.crash(), clock).items() == store.items()


def test_always_mode_releases_no_reply_when_its_fsync_fails() -> None:
    fs = MemFS()
    store = make_store(fs, FakeClock())
    fs.fail_syncs = True
    store.submit(("SET", "a", "1"))
    with pytest.raises(StoreFailed):
        store.run_turn()
    assert store.take_replies() == []


def test_reply_before_fsync_bug_releases_a_reply_whose_fsync_then_fails() -> None:
    fs = MemFS()
    store = make_store(fs, FakeClock(), bugs=frozenset({"reply-before-fsync"}))
    fs.fail_syncs = True
    store.submit(("SET", "a", "1"))
    with pytest.raises(StoreFailed):
        store.run_turn()
    assert store.take_replies() == [(1, "OK")]


def test_group_mode_syncs_once_the_oldest_record_is_a_second_old() -> None:
    fs, clock = MemFS(), FakeClock()
    store = make_store(fs, clock, fsync_mode="group")
    run(store, ("SET", "a", "1"))
    assert make_store(fs.crash(), clock).items() == {}  # allowed: less than a second old
    clock.now_ms += 1000
    store.run_turn()
    assert make_store(fs.crash(), clock).items() == {"a": "1"}


def test_group_ack_window_bug_leaves_a_second_old_record_unsynced() -> None:
    fs, clock = MemFS(), FakeClock()
    store = make_store(fs, clock, fsync_mode="group", bugs=frozenset({"group-ack-window"}))
    run(store, ("SET", "a", "1"))
    for _ in range(20):
        clock.now_ms += 500
        store.run_turn()
    assert make_store(fs.crash(), clock).items() == {}


def test_expiry_is_absolute_across_a_restart() -> None:
    fs, clock = MemFS(), FakeClock()
    store = make_store(fs, clock)
    run(store, ("SET", "t", "1", "PX", "500"))
    clock.now_ms += 400
    assert make_store(fs.crash(), clock).get("t") == "1"
    clock.now_ms += 200
    assert make_store(fs.crash(), clock).get("t") is None


def test_ttl_relative_bug_brings_an_expired_key_back_after_a_restart() -> None:
    fs, clock = MemFS(), FakeClock()
    store = make_store(fs, clock, bugs=frozenset({"ttl-relative-on-load"}))
    run(store, ("SET", "t", "1", "PX", "500"))
    clock.now_ms += 600
    assert store.get("t") is None
    assert make_store(fs.crash(), clock, bugs=frozenset({"ttl-relative-on-load"})).get("t") == "1"


def test_segments_roll_over_and_compact_without_losing_keys() -> None:
    fs, clock = MemFS(), FakeClock()
    store = make_store(fs, clock)
    fill(store, 200)
    run(store, ("DEL", "k7"), ("SET", "t", "x", "PX", "10"))
    manifest = fs.file_bytes(f"data/{MANIFEST}").decode().splitlines()
    assert 3 <= len(manifest) <= 5  # header, at most three segments, end
    assert sorted(name for name in fs.listdir("data") if name.startswith("seg-")) == sorted(
        manifest[1:-1]
    )
    clock.now_ms += 20
    expected = store.items()
    assert len(expected) == 199
    assert make_store(fs.crash(), clock).items() == expected


def test_compaction_leaves_the_store_loadable_after_a_crash_at_any_step() -> None:
    clock = FakeClock()
    for crash_after in range(1, 400):
        fs = MemFS()
        store = make_store(fs, clock)
        acknowledged: dict[str, str] = {}
        for number in range(100):
            if len(fs.calls) >= crash_after:
                break
            run(store, ("SET", f"k{number}", "v" * 50))
            acknowledged[f"k{number}"] = "v" * 50
        loaded = make_store(fs.crash(), clock).items()
        assert loaded.items() >= acknowledged.items()


def test_compact_temp_not_fsynced_bug_loses_the_compacted_keys() -> None:
    fs, clock = MemFS(), FakeClock()
    store = make_store(fs, clock, bugs=frozenset({"compact-temp-not-fsynced"}))
    fill(store, 200)
    loaded = make_store(fs.crash(), clock).items()
    assert len(loaded) < len(store.items())


def test_load_skips_after_snapshot_bug_drops_the_first_record_after_a_compaction() -> None:
    bug = frozenset({"load-skips-after-snapshot"})
    fs, clock = MemFS(), FakeClock()
    store = make_store(fs, clock, bugs=bug)
    fill(store, 200)
    assert make_store(fs.crash(), clock).items() == store.items()
    loaded = make_store(fs.crash(), clock, bugs=bug).items()
    assert len(store.items()) - len(loaded) == 1


def test_a_torn_tail_is_truncated_and_writing_continues_after_it() -> None:
    fs, clock = MemFS(), FakeClock()
    store = make_store(fs, clock)
    run(store, ("SET", "a", "1"), ("SET", "b", "2"))
    crashed = fs.crash()
    crashed.poke("data/seg-000001.log", HEADER.pack(100, 0, 1) + b"partial")
    reopened = make_store(crashed, clock)
    assert reopened.items() == {"a": "1", "b": "2"}
    run(reopened, ("SET", "c", "3"))
    assert make_store(crashed.crash(), clock).items() == {"a": "1", "b": "2", "c": "3"}


def test_damage_in_the_last_segment_cuts_the_log_there_unless_crcs_are_skipped() -> None:
    fs, clock = MemFS(), FakeClock()
    store = make_store(fs, clock)
    run(store, ("SET", "a", "good"), ("SET", "b", "2"))
    data = fs.file_bytes("data/seg-000001.log")
    damaged = fs.crash()
    damaged.poke("data/seg-000001.log", b"BAD!", at=data.index(b"good"))
    assert make_store(damaged.crash(), clock).items() == {}
    skipping = make_store(damaged.crash(), clock, bugs=frozenset({"skip-crc-on-load"}))
    assert skipping.items() == {"a": "BAD!", "b": "2"}


def test_damage_before_the_last_segment_is_refused() -> None:
    fs, clock = MemFS(), FakeClock()
    store = make_store(fs, clock, compact_at_segments=100)
    fill(store, 60)
    crashed = fs.crash()
    crashed.poke("data/seg-000001.log", b"\xff", at=HEADER.size + 2)
    with pytest.raises(CorruptStore):
        make_store(crashed, clock)


def test_unknown_bugs_and_modes_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown bugs"):
        SegStore(MemFS(), FakeClock(), bugs=frozenset({"nope"}))
    with pytest.raises(ValueError, match="fsync_mode"):
        SegStore(MemFS(), FakeClock(), fsync_mode="sometimes")


# -- the aofcrash adapter and aofcrash on the store ----------------------------------------------

ADAPTER = Path(__file__).resolve().parents[1] / "examples/segstore/segstore/aofcrash_target.py"
TARGET = "segstore.aofcrash_target:{}"


def test_the_adapter_is_at_most_about_a_hundred_lines() -> None:
    assert len(ADAPTER.read_text().splitlines()) <= 110


def test_the_adapter_speaks_bytes_and_hands_replies_to_the_release_channel() -> None:
    from faults import Clock, FaultPlan, FaultyFileSystem, SimDisk
    from harness.machine._steps import RunConfig
    from harness.targets import TargetEnv, load_target_factory

    released: list[tuple[int, object]] = []
    config = RunConfig(policy="always", target=TARGET.format("make_target")).target_config()
    env = TargetEnv(fs=FaultyFileSystem(SimDisk(), FaultPlan()), clock=Clock(), config=config,
                    release=lambda ticket, reply: released.append((ticket, reply)))
    target = load_target_factory(TARGET.format("make_target"))(env)
    target.start()
    tickets = [target.submit(argv, client=1) for argv in
               ([b"SET", b"k", b"\xff"], [b"GET", b"k"], [b"DEL", b"k", b"j"], [b"SET", b"t",
                b"1", b"PX", b"500"])]
    target.run_iteration()
    replies = dict(released)
    assert [replies[t] for t in tickets[:2]] == ["OK", b"\xff"]
    assert isinstance(replies[tickets[2]], Exception) and replies[tickets[3]] == "OK"
    assert target.dump() == {0: {b"k": ("string", b"\xff", None), b"t": ("string", b"1", 500)}}


@pytest.mark.parametrize("policy", ["always", "everysec"])
def test_the_correct_store_passes_fuzz(policy: str) -> None:
    from harness.machine._steps import RunConfig
    from harness.pytest_plugin import aofcrash_state_machine, find_violation

    machine = aofcrash_state_machine(
        config=RunConfig(policy=policy, target=TARGET.format("make_target"), damage=True))
    assert find_violation(machine, profile="ci", max_examples=100, shrink=False) is None


def test_fuzz_finds_the_reply_released_before_its_fsync() -> None:
    from harness.machine._steps import RunConfig
    from harness.pytest_plugin import aofcrash_state_machine, find_violation

    machine = aofcrash_state_machine(config=RunConfig(
        policy="always", target=TARGET.format("make_reply_before_fsync_target")))
    finding = find_violation(machine, profile="ci", max_examples=100, shrink=False)
    assert finding is not None
    assert {v.rule.value for v in finding.verdict.violations} == {"durability"}  # type: ignore[attr-defined]


def _explore(factory: str, policy: str, workload: str, *, damage: bool = False) -> Any:
    from faults import FaultPlan, PersistenceModel
    from harness.explore import DEFAULT_DAMAGE, ExploreLimits, explore, make_workload
    from harness.machine._steps import RunConfig

    return explore(RunConfig(policy=policy, target=TARGET.format(factory)),
                   make_workload(workload, ops=80, seed=1),  # 80: compactions
                   models=(PersistenceModel.PROCESS, PersistenceModel.POWER),
                   limits=ExploreLimits(damage=DEFAULT_DAMAGE if damage else FaultPlan(),
                                        max_reproductions=1))


def test_the_correct_store_passes_explore_with_damage() -> None:
    result = _explore("make_target", "always", "mixed", damage=True)
    assert result.violation_total == 0, [v.describe() for v in result.violations[:2]]
    assert sum(result.damaged_outcomes.values()) > 0  # damaged states were judged


def test_explore_finds_the_compacted_segment_that_was_never_fsynced() -> None:
    result = _explore("make_compact_temp_not_fsynced_target", "always", "mixed")
    assert result.violation_total > 0
    assert {rule for (_, rule), n in result.violation_counts.items() if n} <= {
        "durability", "prefix-consistency", "availability"}
