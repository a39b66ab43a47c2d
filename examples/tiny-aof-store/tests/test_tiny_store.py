"""tinyaof under aofcrash: the plugin's state machine finds the planted durability bug and
passes once it is off; plus the store's own edge cases.

Run from the repository root (pyproject puts examples/tiny-aof-store on the path):
``pytest examples/tiny-aof-store/tests``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tinyaof import CorruptLog, StoreError, TinyStore

from faults import (
    Clock,
    DiskImage,
    FaultOp,
    FaultPlan,
    FaultyFileSystem,
    IOFault,
    OSFileSystem,
    PersistenceModel,
    ShortWrite,
    SimDisk,
)
from harness.machine._driver import ContractViolation, replay
from harness.machine._steps import Crash, Read, Recover, Reproduction, Write
from harness.pytest_plugin import AofStateMachine, find_violation, write_reproduction

PROCESS, POWER = PersistenceModel.PROCESS, PersistenceModel.POWER

# -- the ready-made state machine, naming this store -----------------------------------------


class TinyStoreAlways(AofStateMachine):
    """The correct store under appendfsync always: every run keeps the contract."""

    target = "tinyaof:make_target"
    policy = "always"


class TinyStoreEverysec(AofStateMachine):
    target = "tinyaof:make_target"
    policy = "everysec"


class BuggyTinyStore(AofStateMachine):
    """The same store with the planted bug: replies released before the fsync."""

    target = "tinyaof:make_buggy_target"
    policy = "always"


class BuggyTinyStoreStrings(BuggyTinyStore):
    """The buggy store driven by plain string writes only: the shrink test's machine. With
    every feature on, Hypothesis's stateful shrinker reaches the same three steps, but only
    after 200 s quiet (400 s on a busy machine: a fifth of the suite's time)."""

    features = ("strings",)


TestTinyStoreAlways = TinyStoreAlways.TestCase
TestTinyStoreEverysec = TinyStoreEverysec.TestCase


def test_the_plugin_finds_the_planted_reply_before_fsync_bug(tmp_path: Path) -> None:
    # Unshrunk (shrinking a stateful run takes a minute; `aofcrash fuzz` does it in budget).
    finding = find_violation(BuggyTinyStore, shrink=False)
    assert isinstance(finding, ContractViolation), finding
    rules = {v.rule.value for v in finding.verdict.violations}
    assert rules == {"durability"}
    # The reproduction names the buggy target, so a replay runs the same store again.
    assert finding.reproduction.config.target == "tinyaof:make_buggy_target"
    path = write_reproduction(finding, tmp_path / "reply-before-fsync")
    assert path.name == "reply-before-fsync.aofrepro.json"
    with pytest.raises(ContractViolation):
        replay(Reproduction.from_json(path.read_text(encoding="utf-8")))


@pytest.mark.slow
def test_the_bug_shrinks_to_a_write_a_crash_and_a_recovery() -> None:
    # Shrunk, as `aofcrash fuzz` does; derandomized ("ci"): under the default "dev" profile a
    # rare draw shrank for minutes to 20 steps.
    # Shrunk to the end however slow the machine: Hypothesis alone stops after 5 minutes.
    # 300 examples: swarm testing turns "strings" off in half of them; 60 found it in 9 of
    # 10 seeds.
    finding = find_violation(BuggyTinyStoreStrings, profile="ci", max_examples=300,
                             shrink_budget_s=1800)
    assert isinstance(finding, ContractViolation)
    kinds = [step.kind for step in finding.reproduction.steps]
    assert len(kinds) <= 4 and kinds[-1] == "recover", kinds


def test_with_the_bug_off_the_same_machine_finds_nothing() -> None:
    assert find_violation(TinyStoreAlways) is None


def test_the_bug_loses_an_acknowledged_write_on_power_loss(aofcrash_driver: object) -> None:
    # The smallest case by hand: one SET acknowledged, power lost before the late fsync.
    for spec, lost in (("tinyaof:make_buggy_target", True), ("tinyaof:make_target", False)):
        driver = aofcrash_driver(policy="always", target=spec)  # type: ignore[operator]
        driver.run(Write((b"SET", b"k", b"v")))
        driver.run(Crash())
        durable_only = next(iter(driver.disk.crash_choices(POWER)))  # nothing unsynced kept
        recover = Recover(model=POWER, choice=durable_only)
        if lost:
            with pytest.raises(ContractViolation, match="durability"):
                driver.run(recover)
        else:
            driver.run(recover)
            driver.run(Read((b"GET", b"k")))


def test_the_machine_leaves_out_what_the_store_does_not_implement() -> None:
    from harness.machine._features import unsupported_features
    from harness.machine._steps import RunConfig

    off = unsupported_features(RunConfig(target="tinyaof:make_target"))
    assert {"rewrite", "kill_child", "rewrite_done"} <= set(off)  # no rewrite capability
    assert "collections" in off and "HSET" in off["collections"]
    assert "strings" not in off and "multi" not in off


# -- the store's own edge cases --------------------------------------------------------------


def _store(disk: SimDisk, **kwargs: object) -> TinyStore:
    store = TinyStore(disk, Clock(), **kwargs)  # type: ignore[arg-type]
    store.open()
    return store


def _log(disk: SimDisk) -> bytes:
    return disk.crash(PROCESS)["tiny.aof"]


def _disk_with(log: bytes) -> SimDisk:
    return SimDisk.from_image(DiskImage({"tiny.aof": log}))


def _do(store: TinyStore, *argv: bytes) -> object:
    ticket = store.submit(argv)
    store.run_iteration()
    return store.pop_reply(ticket)


def test_a_torn_tail_is_cut_off_on_disk_when_loading() -> None:
    disk = SimDisk()
    store = _store(disk, appendfsync="always")
    _do(store, b"SET", b"a", b"1")
    _do(store, b"SET", b"b", b"2")
    data = _log(disk)
    torn = _disk_with(data[:-5])
    assert _store(torn).snapshot() == {0: {b"a": (b"1", None)}}
    assert data.startswith(torn.crash(POWER)["tiny.aof"])  # cut, and durably so
    assert len(torn.crash(POWER)["tiny.aof"]) < len(data) - 5


def test_a_torn_tail_refuses_to_start_without_load_truncated() -> None:
    disk = SimDisk()
    _do(_store(disk, appendfsync="always"), b"SET", b"a", b"1")
    with pytest.raises(CorruptLog, match="ends inside a record"):
        _store(_disk_with(_log(disk)[:-1]), load_truncated=False)


def test_garbage_before_the_end_refuses_to_start_but_a_zero_tail_is_torn() -> None:
    disk = SimDisk()
    _do(_store(disk, appendfsync="always"), b"SET", b"a", b"1")
    good = _log(disk)
    with pytest.raises(CorruptLog, match="expected"):
        _store(_disk_with(b"junk" + good))
    with pytest.raises(CorruptLog):
        _store(_disk_with(b"\0" * 40 + good))  # a hole before records: not a torn tail
    assert _store(_disk_with(good + b"\0" * 40)).snapshot() == {0: {b"a": (b"1", None)}}


def test_a_transaction_is_logged_whole_or_not_at_all() -> None:
    disk = SimDisk()
    store = _store(disk, appendfsync="always")
    for argv in ([b"MULTI"], [b"SET", b"a", b"1"], [b"INCR", b"a"]):
        store.submit(argv)
    exec_ticket = store.submit([b"EXEC"])
    store.run_iteration()
    assert store.pop_reply(exec_ticket) == ["OK", 2]
    data = _log(disk)
    cut = data.rindex(b"*1\r\n$4\r\nEXEC")  # the MULTI without its EXEC
    assert _store(_disk_with(data[:cut])).snapshot() == {}
    assert _store(_disk_with(data)).snapshot() == {0: {b"a": (b"2", None)}}


def test_an_unknown_command_is_an_error_and_aborts_its_transaction() -> None:
    store = _store(SimDisk())
    assert isinstance(_do(store, b"HSET", b"h", b"f", b"v"), StoreError)
    store.submit([b"MULTI"])
    store.submit([b"SET", b"a", b"1"])
    store.submit([b"LPUSH", b"l", b"x"])
    ticket = store.submit([b"EXEC"])
    store.run_iteration()
    assert "EXECABORT" in str(store.pop_reply(ticket))
    assert _do(store, b"GET", b"a") is None


def test_a_short_write_is_continued_and_replies_wait_for_the_whole_record() -> None:
    disk = SimDisk()
    clock = Clock()
    fs = FaultyFileSystem(disk, FaultPlan((ShortWrite(nth=1, written_bytes=3),)), clock=clock)
    store = TinyStore(fs, clock, appendfsync="always")
    store.open()
    assert _do(store, b"SET", b"a", b"1") == "OK"
    assert [f.fault for f in fs.fired] == [ShortWrite(nth=1, written_bytes=3)]
    reloaded = _store(SimDisk.from_image(disk.crash(POWER)))
    assert reloaded.snapshot() == {0: {b"a": (b"1", None)}}


def test_a_failed_fsync_stops_the_store_without_releasing_the_reply() -> None:
    disk, clock = SimDisk(), Clock()
    fs = FaultyFileSystem(disk, FaultPlan((IOFault(op=FaultOp.FSYNC, nth=1),)), clock=clock)
    store = TinyStore(fs, clock, appendfsync="always")
    store.open()
    ticket = store.submit([b"SET", b"a", b"1"])
    store.run_iteration()
    assert store.stopped and not store.released(ticket)


def test_expiries_are_logged_as_absolute_times() -> None:
    disk, clock = SimDisk(), Clock(1000)
    store = TinyStore(disk, clock, appendfsync="always")
    store.open()
    ticket = store.submit([b"SET", b"a", b"1", b"PX", b"500"])
    store.run_iteration()
    assert store.pop_reply(ticket) == "OK"
    assert b"PXAT\r\n$4\r\n1500" in _log(disk)
    later = TinyStore(_disk_with(_log(disk)), Clock(1400))
    later.open()
    assert later.snapshot() == {0: {b"a": (b"1", 1500)}}


def test_the_store_uses_only_the_filesystem_it_is_given(tmp_path: Path) -> None:
    store = TinyStore(OSFileSystem(tmp_path), Clock(), appendfsync="always")
    store.open()
    _do(store, b"SET", b"a", b"1")
    assert os.listdir(tmp_path) == ["tiny.aof"]
