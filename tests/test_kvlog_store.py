"""kvlog, the second worked example (examples/kvlog-store): the store on its own, its adapter,
and aofcrash on it: the correct store keeps the contract under fuzz and explore (damage
included), and each planted bug is found, deterministically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from kvlog import LOG, TEMP, CorruptLog, KvLog, StoreError
from kvlog._records import SNAPSHOT_BEGIN, BadRecord, delete_record, parse, set_record

from faults import (
    Clock,
    Damage,
    DamageKind,
    FaultOp,
    FaultPlan,
    FaultyFileSystem,
    IOFault,
    OSFileSystem,
    PersistenceModel,
    SimDisk,
)
from harness.explore import DEFAULT_DAMAGE, ExploreLimits, explore, make_workload
from harness.machine._steps import RunConfig
from harness.pytest_plugin import aofcrash_state_machine, find_violation

PROCESS, POWER = PersistenceModel.PROCESS, PersistenceModel.POWER
ADAPTER = Path(__file__).resolve().parents[1] / "examples/kvlog-store/kvlog/aofcrash_target.py"
BUGGY = "kvlog.aofcrash_target:make_{}_target"
CORRECT = "kvlog:make_target"


def _store(disk: SimDisk, clock: Clock | None = None, **kwargs: object) -> KvLog:
    store = KvLog(disk, clock or Clock(), **kwargs)  # type: ignore[arg-type]
    store.open()
    return store


def _run(store: KvLog, *argv: bytes) -> object:
    ticket = store.submit(argv)
    store.run_iteration()
    assert store.released(ticket)
    return store.pop_reply(ticket)


# -- the store on its own ----------------------------------------------------------------------


def test_a_record_round_trips_and_a_flipped_byte_fails_its_checksum() -> None:
    record = set_record(b"k", b"value")
    assert parse(record, 0) == ((b"S", b"k", b"value"), len(record))
    assert parse(delete_record(b"k"), 0) == ((b"D", b"k", None), len(delete_record(b"k")))
    assert parse(record[:-1], 0) is None  # cut short: a torn tail
    damaged = record[:-2] + bytes([record[-2] ^ 1]) + record[-1:]
    with pytest.raises(BadRecord, match="checksum"):
        parse(damaged, 0)
    assert parse(damaged, 0, verify=False) is not None  # what skip-checksum loads


def test_the_store_replies_only_to_set_get_and_del_of_one_key() -> None:
    store = _store(SimDisk())
    assert _run(store, b"SET", b"a", b"1") == "OK"
    assert _run(store, b"GET", b"a") == b"1"
    assert isinstance(_run(store, b"SET", b"a", b"1", b"NX"), StoreError)
    assert isinstance(_run(store, b"DEL", b"a", b"b"), StoreError)
    assert isinstance(_run(store, b"INCR", b"a"), StoreError)
    assert _run(store, b"DEL", b"a") == 1
    assert _run(store, b"DEL", b"a") == 0


def test_submit_only_queues_and_always_fsyncs_before_the_reply() -> None:
    disk = SimDisk()
    store = _store(disk)
    ticket = store.submit((b"SET", b"a", b"1"))
    assert not store.released(ticket) and disk.inode_at(LOG).size_bytes == 0
    store.run_iteration()
    assert store.released(ticket)
    assert disk.inode_at(LOG).durable_size_bytes == disk.inode_at(LOG).size_bytes > 0


def test_batch_mode_syncs_once_the_oldest_unsynced_record_is_a_batch_old() -> None:
    disk, clock = SimDisk(), Clock()
    store = _store(disk, clock, fsync="batch", batch_ms=1000)
    _run(store, b"SET", b"a", b"1")
    assert disk.inode_at(LOG).durable_size_bytes == 0
    clock.advance(999)
    store.run_iteration()
    assert disk.inode_at(LOG).durable_size_bytes == 0
    clock.advance(1)
    store.run_iteration()
    assert disk.inode_at(LOG).durable_size_bytes == disk.inode_at(LOG).size_bytes


def test_loading_truncates_the_log_at_a_damaged_record_and_appends_after_what_it_kept() -> None:
    disk = SimDisk()
    store = _store(disk)
    for value in (b"1", b"2", b"3"):
        _run(store, b"SET", b"k" + value, value)
    image = disk.crash(POWER)
    cut = len(set_record(b"k1", b"1"))
    data = bytearray(image[LOG])
    data[cut + 10] ^= 1  # inside the second record
    again = SimDisk.from_image(type(image)({LOG: bytes(data)}))
    store = _store(again)
    assert store.data == {b"k1": b"1"}
    assert again.inode_at(LOG).size_bytes == cut
    _run(store, b"SET", b"k4", b"4")
    assert _store(SimDisk.from_image(again.crash(POWER))).data == {b"k1": b"1", b"k4": b"4"}


def test_compaction_replaces_the_log_by_a_snapshot_and_a_damaged_snapshot_is_refused() -> None:
    disk = SimDisk()
    store = _store(disk, compact_min_bytes=64)
    for i in range(6):
        _run(store, b"SET", b"k", b"%d" % i)
    assert disk.inode_at(LOG).read().startswith(SNAPSHOT_BEGIN)
    assert not disk.exists(TEMP)
    assert _store(SimDisk.from_image(disk.crash(POWER))).data == {b"k": b"5"}
    data = bytearray(disk.crash(POWER)[LOG])
    data[len(SNAPSHOT_BEGIN) + 9] ^= 1  # inside the snapshot's only record
    with pytest.raises(CorruptLog, match="snapshot"):
        _store(SimDisk.from_image(type(disk.crash(POWER))({LOG: bytes(data)})))


def test_a_leftover_compaction_file_is_removed_at_start() -> None:
    disk = SimDisk()
    fd = disk.open(TEMP, os.O_CREAT | os.O_WRONLY)
    disk.write(fd, b"half a snapshot")
    disk.close(fd)
    _store(disk)
    assert not disk.exists(TEMP) and disk.exists(LOG)


def test_a_failed_fsync_stops_the_store_without_releasing_the_reply() -> None:
    disk = SimDisk()
    fs = FaultyFileSystem(disk, FaultPlan((IOFault(op=FaultOp.FSYNC),)))
    store = KvLog(fs, Clock())
    store.open()
    ticket = store.submit((b"SET", b"a", b"1"))
    store.run_iteration()
    assert store.stopped and not store.released(ticket)


def test_the_store_runs_on_a_real_directory(tmp_path: Path) -> None:
    store = _store(OSFileSystem(tmp_path))  # type: ignore[arg-type]
    _run(store, b"SET", b"a", b"1")
    assert _store(OSFileSystem(tmp_path)).data == {b"a": b"1"}  # type: ignore[arg-type]


def test_the_store_refuses_an_unknown_fsync_mode_or_bug() -> None:
    with pytest.raises(ValueError, match="fsync"):
        KvLog(SimDisk(), Clock(), fsync="everysec")
    with pytest.raises(ValueError, match="unknown bug"):
        KvLog(SimDisk(), Clock(), bug="typo")


# -- the adapter ------------------------------------------------------------------------------


def test_the_adapter_is_at_most_about_a_hundred_lines() -> None:
    assert len(ADAPTER.read_text().splitlines()) <= 110


def test_the_adapter_refuses_other_databases_and_transactions_with_no_effect() -> None:
    from kvlog import make_target

    from harness.targets import TargetConfig, TargetEnv

    target = make_target(TargetEnv(fs=SimDisk(), clock=Clock(), config=TargetConfig()))
    target.start()

    def run(*argv: bytes, client: int = 0) -> object:
        ticket = target.submit(argv, client=client)
        target.run_iteration()
        assert target.released(ticket)
        return target.pop_reply(ticket)

    assert run(b"SELECT", b"0") == "OK"
    assert isinstance(run(b"SELECT", b"1"), Exception)
    assert isinstance(run(b"SET", b"a", b"1"), Exception)  # that client is in no database
    assert run(b"SET", b"a", b"2", client=1) == "OK"
    assert run(b"SELECT", b"0") == "OK"
    assert isinstance(run(b"MULTI"), Exception)
    assert isinstance(run(b"SET", b"a", b"3"), Exception)
    assert str(run(b"EXEC")).startswith("EXECABORT")
    assert run(b"SET", b"b", b"4") == "OK"
    # A refused MULTI block inside another database leaves the client in that database.
    assert isinstance(run(b"SELECT", b"2"), Exception)
    assert isinstance(run(b"MULTI"), Exception)
    assert str(run(b"EXEC")).startswith("EXECABORT")
    assert isinstance(run(b"SET", b"c", b"5"), Exception)
    assert target.dump() == {0: {b"a": ("string", b"2", None), b"b": ("string", b"4", None)}}
    assert target.checksummed is True and target.files == (LOG,)
    assert target.accepts((b"DEL", b"a")) and not target.accepts((b"DEL", b"a", b"b"))


# -- aofcrash on the correct store: no violation --------------------------------------------


@pytest.mark.parametrize("policy", ["always", "everysec"])
def test_the_correct_store_passes_fuzz_with_damage(policy: str) -> None:
    machine = aofcrash_state_machine(
        config=RunConfig(policy=policy, target="kvlog:make_target", damage=True))
    assert find_violation(machine, profile="ci", max_examples=30, shrink=False) is None


@pytest.mark.parametrize(("workload", "policy"), [("mixed", "always"), ("mixed", "everysec"),
                                                  ("slow-fsync", "everysec")])
def test_the_correct_store_passes_explore_with_damage(workload: str, policy: str) -> None:
    result = explore(RunConfig(policy=policy, target="kvlog:make_target"),
                     make_workload(workload, ops=30, seed=1), models=(PROCESS, POWER),
                     limits=ExploreLimits(damage=DEFAULT_DAMAGE))
    assert result.violation_total == 0, [v.describe() for v in result.violations[:2]]
    assert sum(result.damaged_outcomes.values()) > 0  # damaged states were judged
    assert result.damage_skipped is None


# -- each planted bug is found ------------------------------------------------------------------


def _fuzz_rules(bug: str, policy: str, *, damage: bool = False) -> set[str]:
    machine = aofcrash_state_machine(
        config=RunConfig(policy=policy, target=BUGGY.format(bug), damage=damage))
    # One derandomized seed: a rule added to the machine moves where in it a finding comes
    # (the compaction bug came at 100-150 once the crash-after-a-release rule existed).
    finding = find_violation(machine, profile="ci", max_examples=200, shrink=False)
    assert finding is not None
    return {v.rule.value for v in finding.verdict.violations}  # type: ignore[attr-defined]


def _explore_rules(bug: str, policy: str, workload: str, *, damage: bool = False) -> set[str]:
    result = explore(RunConfig(policy=policy, target=BUGGY.format(bug)),
                     make_workload(workload, ops=40, seed=1), models=(PROCESS, POWER),
                     limits=ExploreLimits(damage=DEFAULT_DAMAGE if damage else FaultPlan(),
                                          max_reproductions=1, confirm_reproductions=16))
    # Every mechanism's first state keeps a reproduction (beyond max_reproductions); each one
    # kept must be replayed and replay to its finding (None would be "never replayed").
    kept = [v for v in result.violations if v.reproduction is not None]
    assert len(kept) <= 16  # (so every one was replayed)
    assert all(v.confirmed is True for v in kept)
    return {rule for (_, rule), n in result.violation_counts.items() if n}


def test_fuzz_with_damage_finds_the_store_that_skips_its_checksum() -> None:
    assert _fuzz_rules("skip_checksum", "always", damage=True) == {"damage"}


def test_explore_with_damage_finds_the_store_that_skips_its_checksum() -> None:
    assert _explore_rules("skip_checksum", "always", "mixed", damage=True) == {"damage"}


def test_without_damage_nothing_can_see_the_skipped_checksum() -> None:
    assert _explore_rules("skip_checksum", "always", "mixed") == set()


def test_fuzz_finds_the_batch_that_syncs_only_when_full() -> None:
    assert _fuzz_rules("batch_size_only", "everysec") == {"durability"}


def test_explore_finds_the_batch_that_syncs_only_when_full() -> None:
    assert _explore_rules("batch_size_only", "everysec", "expiry") == {"durability"}


def test_fuzz_finds_the_compaction_that_renames_without_fsync() -> None:
    assert _fuzz_rules("compact_no_fsync", "always") == {"durability"}


def test_explore_finds_the_compaction_that_renames_without_fsync() -> None:
    assert _explore_rules("compact_no_fsync", "always", "mixed") == {"durability"}


def test_a_damage_plan_aimed_at_another_file_never_fires_on_the_store() -> None:
    plan = FaultPlan((Damage(kind=DamageKind.ZERO, path_glob="appendonly.aof"),))
    result = explore(RunConfig(policy="always", target=BUGGY.format("skip_checksum")),
                     make_workload("mixed", ops=10, seed=1), models=(POWER,),
                     limits=ExploreLimits(damage=plan))
    assert result.violation_total == 0 and not result.damaged_outcomes


def test_workload_faults_aimed_at_the_aof_are_aimed_at_the_stores_own_log() -> None:
    from harness.explore._workloads import aim_workload
    from harness.machine._steps import InjectFaults

    steps = make_workload("fsync-error", ops=40, seed=0)
    aimed = aim_workload(steps, files=("data.log",), temp_files=("compact.tmp",))
    globs = {f.path_glob for s in aimed if isinstance(s, InjectFaults) for f in s.plan.faults}
    assert globs == {"data.log"}  # none left on appendonly.aof, where they never fired
    several = aim_workload(steps, files=("a.log", "b.log"), temp_files=())
    assert {f.path_glob for s in several if isinstance(s, InjectFaults)
            for f in s.plan.faults} == {"*"}  # several logs: any file


def test_the_fsync_error_workload_now_fails_an_fsync_of_kvlogs_own_log() -> None:
    # Before its faults were aimed at the store's declared files they named appendonly.aof
    # and never fired on data.log: the workload tested nothing on this store.
    from harness.explore import _run

    recordings: list[Any] = []
    record = _run.record

    def keep(config: RunConfig, steps: Any) -> Any:
        recordings.append(record(config, steps))
        return recordings[-1]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_run, "record", keep)
        result = explore(RunConfig(policy="always", target=CORRECT),
                         make_workload("fsync-error", ops=40, seed=0), models=(PROCESS, POWER))
    assert recordings[0].error_stalls, "no injected I/O error fired on the store's files"
    assert result.ok, [v.rule for v in result.violations]
