"""The state machines: the safe reference passes them; the redis-3.0 profile does not."""

from __future__ import annotations

import os

import pytest
from hypothesis import seed, settings
from hypothesis.stateful import run_state_machine_as_test

from faults import PersistenceModel
from harness.machine import FEATURES, PROFILES, make_state_machine
from harness.machine._campaign import Campaign, run_campaign
from harness.machine._driver import ContractViolation
from harness.machine._steps import RunConfig

POLICIES = ("always", "everysec", "no")
MODELS = tuple(PersistenceModel)
# The ci profile in CI, a smaller one while developing.
BASE = PROFILES["ci" if os.environ.get("HYPOTHESIS_PROFILE", "dev") != "dev" else "dev"]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.value)
@pytest.mark.parametrize("policy", POLICIES)
def test_safe_reference_passes_the_state_machine(policy: str, model: PersistenceModel) -> None:
    machine = make_state_machine(RunConfig(policy=policy), models=(model,))
    run_state_machine_as_test(machine, settings=settings(BASE, max_examples=40))


@pytest.mark.parametrize("policy", POLICIES)
def test_safe_reference_passes_the_boundary_rules_on_their_own(policy: str) -> None:
    # Swarm off: every run has multi-key commands on existing keys, collections past the
    # rewrite's 64-item batch and faults in the rewrite done handler (issue 9).
    features = ("multi_key", "big_collections", "rewrite_done", "strings", "collections")
    machine = make_state_machine(RunConfig(policy=policy), features=features, swarm=False)
    run_state_machine_as_test(machine, settings=settings(BASE, max_examples=20))


@pytest.mark.slow
@pytest.mark.parametrize("policy", POLICIES)
def test_safe_reference_passes_a_larger_budget_with_torn_and_reordered_sectors_off(
    policy: str,
) -> None:
    machine = make_state_machine(RunConfig(policy=policy))
    run_state_machine_as_test(seed(2026)(machine), settings=settings(BASE, max_examples=400))


@pytest.mark.slow
def test_safe_reference_passes_with_no_appendfsync_on_rewrite_and_retry_fsync_semantics() -> None:
    from faults import FsyncFailure

    config = RunConfig(policy="everysec", no_appendfsync_on_rewrite=True,
                       fsync_failure=FsyncFailure.RETRY)
    run_state_machine_as_test(make_state_machine(config), settings=settings(BASE, max_examples=150))


def test_redis_3_0_loses_acknowledged_writes_under_the_posix_minimum() -> None:
    # Redis 3.0 never fsyncs the directory after the rewrite's rename (or at creation): only
    # the POSIX minimum loses the rename for that (ext4's journal commits it with the next
    # fsync of the new AOF; see the test below).
    config = RunConfig(policy="always", profile="redis-3.0")
    posix = PersistenceModel.POWER_POSIX_METADATA
    result = run_campaign(Campaign(configs=(config,), models=(posix,),
                                   settings_profile="dev", budget_s=120, seed=1,
                                   shrink_budget_s=10))
    assert result.findings, "the missing directory fsync went unnoticed"
    finding = result.findings[0]
    assert finding.rules == ["durability"]
    assert finding.reproduction is not None
    with pytest.raises(ContractViolation):
        from harness.machine._driver import replay

        replay(finding.reproduction)


@pytest.mark.slow
@pytest.mark.parametrize("policy", POLICIES)
def test_redis_3_0_keeps_its_promises_when_only_the_process_dies(policy: str) -> None:
    # Process crashes between operations, no injected I/O errors: what Redis 3.0 wrote
    # survives. (With write errors it acknowledges writes that never reached the file: see
    # the test below.)
    off = {"crash_mid_op", "io_error", "no_space", "short_write", "rewrite_done"}
    features = tuple(f for f in FEATURES if f not in off)
    machine = make_state_machine(RunConfig(policy=policy, profile="redis-3.0"),
                                 models=(PersistenceModel.PROCESS,), features=features)
    run_state_machine_as_test(seed(7)(machine), settings=settings(BASE, max_examples=150))


def test_unknown_features_and_empty_model_lists_are_refused_with_the_known_names() -> None:
    with pytest.raises(ValueError, match="features: unknown teleport"):
        make_state_machine(RunConfig(), features=("teleport",))
    with pytest.raises(ValueError, match="at least one persistence model"):
        make_state_machine(RunConfig(), models=())


@pytest.mark.parametrize(("profile", "model", "lost"), [
    ("redis-3.0", PersistenceModel.POWER_POSIX_METADATA, True),
    ("safe", PersistenceModel.POWER_POSIX_METADATA, False),
    # ext4 and xfs: the fsync of the new AOF after the rename commits the journal, rename too.
    ("redis-3.0", PersistenceModel.POWER, False),
    ("redis-3.0", PersistenceModel.POWER_XFS, False),
    # btrfs: the new AOF's fsync logs its own names, the rename with them.
    ("redis-3.0", PersistenceModel.POWER_BTRFS, False),
])
def test_a_rename_without_a_directory_fsync_is_undone_by_power_loss_only_under_posix(
    profile: str, model: PersistenceModel, lost: bool
) -> None:
    from faults import CrashChoice
    from harness.machine._driver import Driver
    from harness.machine._steps import BgRewrite, ChildStep, Crash, Recover, Tick, Write

    driver = Driver(RunConfig(policy="always", profile=profile))
    driver.run_all([Write((b"SET", b"a", b"1")), BgRewrite(), ChildStep(20), Tick(200),
                    Write((b"SET", b"b", b"2")), Crash()])
    assert not driver.rewriting
    assert driver.disk.pending_metadata_for(model) > 0 or not lost
    # Keep none of the namespace operations that were not made durable.
    choice = CrashChoice(model, 0, ())
    if lost:
        with pytest.raises(ContractViolation) as info:
            driver.run(Recover(model, choice))
        assert "SET b 2" in str(info.value)
    else:
        driver.run(Recover(model, choice))
        assert b"b" in driver.target.dump()[0]


@pytest.mark.parametrize(("profile", "lost"), [("redis-3.0", True), ("safe", False)])
def test_a_write_acknowledged_while_the_aof_write_failed_is_lost_by_a_process_crash(
    profile: str, lost: bool
) -> None:
    from faults import FaultOp, FaultPlan, IOFault
    from harness.machine._driver import Driver
    from harness.machine._steps import Crash, InjectFaults, Recover, Write

    driver = Driver(RunConfig(policy="no", profile=profile))
    driver.run(InjectFaults(FaultPlan((IOFault(op=FaultOp.WRITE, nth=1, times=1),))))
    driver.run(Write((b"SET", b"k", b"v")))
    driver.run(Crash())
    outcome = driver.history.entries[0].outcome.value
    recover = Recover(PersistenceModel.PROCESS)  # the one process image, drawn
    if lost:
        # Redis replies +OK although the write failed; the bytes only sat in its buffer.
        assert outcome == "ok"
        with pytest.raises(ContractViolation, match="SET k v"):
            driver.run(recover)
    else:
        # safe holds the reply until a write succeeds, so nothing acknowledged is lost.
        assert outcome == "unknown"
        driver.run(recover)
        assert driver.alive
