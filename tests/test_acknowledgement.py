"""An acknowledgement is a point in the filesystem trace (issue 22): a target that hands each
reply to the harness's reply channel (``TargetEnv.release``) is judged acknowledged there, so
a store that releases a reply before its fsync, within one event-loop iteration, loses an
acknowledged write at the crash points between the two, and fuzz and explore see it; a target
that only answers ``released()`` is judged at the end of the iteration, as before.

The sensitivity variant is local to this module: tinyaof (examples/tiny-aof-store) with its
``_fsync`` releasing every written reply first, so under ``always`` the reply goes out between
the write and the fsync of the same iteration.
"""

from __future__ import annotations

from typing import Any

import pytest
from tinyaof import TinyStore
from tinyaof.aofcrash_target import TinyTarget

from faults import Crash as CrashFault
from faults import FaultOp, FaultPlan, PersistenceModel
from harness.explore import ExploreLimits, explore
from harness.machine._driver import ContractViolation, Driver, replay
from harness.machine._steps import (
    ArmCrash,
    Recover,
    Reproduction,
    RunConfig,
    Write,
    steps_from_json,
    steps_to_json,
)
from harness.oracle import Outcome
from harness.pytest_plugin import aofcrash_state_machine, find_violation
from harness.targets import TargetEnv

POWER = PersistenceModel.POWER


class _EarlyReleaseStore(TinyStore):
    """tinyaof whose fsync first releases every reply whose record is written: the reply goes
    out before the fsync that makes it durable, inside one iteration."""

    def _fsync(self) -> bool:
        self._release_through(self._written)
        return super()._fsync()


def _early_release(env: TargetEnv, *, channel: bool) -> TinyTarget:
    target = TinyTarget(env)
    config = env.config
    target.store = _EarlyReleaseStore(
        env.fs, env.clock, appendfsync=config.appendfsync,
        load_truncated=config.aof_load_truncated,
        on_release=env.release if channel else None)
    return target


def make_early_release(env: TargetEnv) -> TinyTarget:
    """The variant reporting each release through the reply channel (the new protocol)."""
    return _early_release(env, channel=True)


def make_early_release_unreported(env: TargetEnv) -> TinyTarget:
    """The same variant answering only ``released()`` (the protocol before the channel)."""
    return _early_release(env, channel=False)


EARLY = f"{__name__}:make_early_release"
EARLY_UNREPORTED = f"{__name__}:make_early_release_unreported"
TINY = "tinyaof:make_target"
WRITES = tuple(Write((b"SET", b"k%d" % i, b"v%d" % i)) for i in range(4))


def _explore(target: str) -> Any:
    return explore(RunConfig(policy="always", target=target), WRITES,
                   models=(PersistenceModel.PROCESS, POWER),
                   limits=ExploreLimits(confirm_reproductions=1))


# -- the driver -------------------------------------------------------------------------------


def test_a_reply_released_through_the_channel_is_acknowledged_before_the_iteration_ends() -> None:
    # The crash is at the fsync right after the release: the write was acknowledged, its
    # record is not durable, so a power loss there loses an acknowledged write.
    config = RunConfig(policy="always", target=EARLY)
    driver = Driver(config)
    driver.run(ArmCrash(FaultPlan((CrashFault(nth=1, op=FaultOp.FSYNC),))))
    driver.run(WRITES[0])
    assert driver.crashed
    assert driver.history.entries[0].outcome is Outcome.OK
    with pytest.raises(ContractViolation) as caught:
        driver.run(Recover(model=POWER, choice=next(iter(driver.disk.crash_choices(POWER)))))
    assert {v.rule.value for v in caught.value.verdict.violations} == {"durability"}


def test_without_the_channel_the_same_crash_leaves_the_write_unanswered() -> None:
    driver = Driver(RunConfig(policy="always", target=EARLY_UNREPORTED))
    driver.run(ArmCrash(FaultPlan((CrashFault(nth=1, op=FaultOp.FSYNC),))))
    driver.run(WRITES[0])
    assert driver.crashed
    assert driver.history.entries[0].outcome is Outcome.UNKNOWN
    driver.run(Recover(model=POWER, choice=next(iter(driver.disk.crash_choices(POWER)))))


def test_a_crash_armed_after_a_release_dies_at_the_next_filesystem_operation() -> None:
    driver = Driver(RunConfig(policy="always", target=EARLY))
    driver.run(ArmCrash(FaultPlan((CrashFault(nth=1),)), after_release=True))
    driver.run(WRITES[0])
    assert driver.crashed
    fired = [f for f in driver.fs.fired if isinstance(f.fault, CrashFault)]
    assert [f.op for f in fired] == [FaultOp.FSYNC]


@pytest.mark.parametrize("target", [TINY, EARLY_UNREPORTED])
def test_a_crash_armed_after_a_release_at_the_iteration_end_hits_the_next_iteration(
        target: str) -> None:
    # The correct store releases after its fsync (through the channel); without the channel
    # the release is known when the iteration returns: either way no operation follows it.
    driver = Driver(RunConfig(policy="always", target=target))
    driver.run(ArmCrash(FaultPlan((CrashFault(nth=1),)), after_release=True))
    driver.run(WRITES[0])
    assert driver.alive and driver.history.entries[0].outcome is Outcome.OK
    driver.run(WRITES[1])  # the crash hits this iteration's first operation
    assert driver.crashed


def test_a_step_armed_after_a_release_round_trips_and_plain_arming_keeps_its_json() -> None:
    plan = FaultPlan((CrashFault(nth=2),))
    steps = (ArmCrash(plan, after_release=True), ArmCrash(plan))
    encoded = steps_to_json(steps)
    assert encoded[0]["after_release"] is True and "after_release" not in encoded[1]
    assert steps_from_json(encoded) == steps


# -- explore and fuzz: found now, not before, and no false alarm -----------------------------


def test_explore_finds_a_reply_released_before_its_fsync_within_one_iteration() -> None:
    result = _explore(EARLY)
    assert not result.ok
    rules = {rule for v in result.violations for rule in v.rules}
    assert rules == {"durability"}
    assert {v.model for v in result.violations} == {POWER}
    assert result.violations[0].confirmed is True  # the reproduction replays to it


def test_explore_could_not_see_it_when_the_release_was_only_known_at_the_iteration_end() -> None:
    assert _explore(EARLY_UNREPORTED).ok


def test_explore_of_the_correct_store_using_the_channel_finds_nothing() -> None:
    result = _explore(TINY)
    assert result.ok and result.states > 0


def _machine(target: str) -> Any:
    return aofcrash_state_machine(target=target, policy="always",
                                  features=("strings", "crash_mid_op"), name="AckMachine")


def test_fuzz_finds_a_reply_released_before_its_fsync_within_one_iteration() -> None:
    finding = find_violation(_machine(EARLY), profile="ci", max_examples=100, shrink=False)
    assert isinstance(finding, ContractViolation), finding
    assert {v.rule.value for v in finding.verdict.violations} == {"durability"}
    with pytest.raises(ContractViolation):
        replay(finding.reproduction)


def test_fuzz_could_not_see_it_when_the_release_was_only_known_at_the_iteration_end() -> None:
    assert find_violation(_machine(EARLY_UNREPORTED), profile="ci", max_examples=100,
                          shrink=False) is None


def test_fuzz_of_the_correct_store_using_the_channel_finds_nothing() -> None:
    assert find_violation(_machine(TINY), profile="ci", max_examples=100, shrink=False) is None


def test_a_reproduction_with_a_release_armed_crash_replays_from_json() -> None:
    config = RunConfig(policy="always", target=EARLY)
    steps = (ArmCrash(FaultPlan((CrashFault(nth=1),)), after_release=True), WRITES[0])
    driver = Driver(config)
    driver.run_all(steps)
    durable_only = next(iter(driver.disk.crash_choices(POWER)))
    repro = Reproduction(config=config, steps=(*steps, Recover(model=POWER, choice=durable_only)))
    again = Reproduction.from_json(repro.to_json())
    with pytest.raises(ContractViolation):
        replay(again)


def test_a_read_released_with_later_writes_is_judged_without_them() -> None:
    # ENOSPC holds every reply (tinyaof releases a reply once its record is written); once
    # the disk has space the channel releases the held write, the read and a later INCR in
    # one iteration: the read ran before the INCR and is judged so.
    from faults import NoSpace
    from harness.machine._steps import ClearFaults, InjectFaults, Read

    driver = Driver(RunConfig(policy="no", target=TINY))
    driver.run(InjectFaults(FaultPlan((NoSpace(nth=1),))))
    driver.run(Write((b"SET", b"k1", b"a")))
    driver.run(Read((b"GET", b"k2")))
    driver.run(ClearFaults())
    driver.run(Write((b"INCR", b"k2")))
    assert [e.outcome for e in driver.history.entries] == [Outcome.OK, Outcome.OK]
    assert driver.channel_releases == 3
