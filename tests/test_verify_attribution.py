"""aofcrash verify: cause attribution (which ingredients a violation needs) and kill-child."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from _real import needs_fuse

from harness import verify
from harness.verify import VerifyConfig, run_verify, verify_report
from harness.verify._attribution import minimal_sufficient_sets, weaker_model
from harness.verify._faults import CHILD_TEMP_GLOB, draw_fault

# -- fast: no server needed -------------------------------------------------------------------


def _attribution(*minimal: tuple[str, ...], ingredients: tuple[str, ...] = (
        "fault io-error", "strict metadata (power-posix-metadata; weaker: power-ext4)",
        "rewrite"), recurred: int = 1) -> verify.Attribution:
    return verify.Attribution(("durability",), 3, as_is_runs=1, as_is_recurred=recurred,
                              ingredients=ingredients, minimal=minimal)


def _search(ingredients: str, sufficient_sets: list[str], **kw: Any) -> tuple[list[str], int]:
    """minimal_sufficient_sets over one-letter ingredients with a fake predicate: a kept set
    is sufficient when it contains one of `sufficient_sets`. Returns the minimal sets (as
    strings) and how many variants were run."""
    calls = []

    def sufficient(kept: frozenset[str]) -> bool:
        calls.append(kept)
        return any(set(s) <= kept for s in sufficient_sets)

    found = minimal_sufficient_sets(list(ingredients), sufficient, **kw)
    return ["".join(sorted(m)) for m in found.minimal], len(calls)


def test_two_independent_causes_read_as_either_one_not_as_none() -> None:
    # The fault alone and strict metadata alone each break the rule: neither is needed, both
    # are causes.
    minimal, runs = _search("fmr", ["f", "m"])
    assert minimal == ["f", "m"]
    assert runs == 4  # {}, {f}, {m}, {r}; every superset of {f} or {m} is not run
    attribution = _attribution(("fault io-error",), (
        "strict metadata (power-posix-metadata; weaker: power-ext4)",))
    assert attribution.summary() == (
        "either the fault io-error OR the strict metadata (power-posix-metadata; weaker: "
        "power-ext4); not needed: rewrite")
    assert attribution.needs == []
    assert attribution.to_dict()["minimal_sufficient_sets"] == [
        ["fault io-error"], ["strict metadata (power-posix-metadata; weaker: power-ext4)"]]


def test_a_conjunction_is_one_set_of_two_and_both_are_needed() -> None:
    minimal, _ = _search("fmr", ["mr"])
    assert minimal == ["mr"]
    attribution = _attribution(("strict metadata (power-ext4; weaker: power-eager-metadata)",
                                "rewrite"),
                               ingredients=("strict metadata (power-ext4; weaker: "
                                            "power-eager-metadata)", "rewrite"))
    assert attribution.summary() == ("needs the strict metadata (power-ext4; weaker: "
                                     "power-eager-metadata) AND rewrite")
    assert attribution.needs == list(attribution.ingredients)


def test_a_violation_with_no_ingredient_needs_none_of_them_in_one_run() -> None:
    minimal, runs = _search("fmr", [""])
    assert minimal == [""] and runs == 1
    text = _attribution((), ingredients=("fault io-error", "rewrite")).summary()
    assert text == "needs none of them: it recurs without the fault io-error, the rewrite"


def test_only_the_full_set_is_sufficient_when_each_ingredient_is_needed() -> None:
    minimal, runs = _search("fm", ["fm"])
    assert minimal == ["fm"] and runs == 3  # {}, {f}, {m}; the full set is the trial itself


def test_a_killed_child_without_its_rewrite_is_not_a_variant() -> None:
    # f (the killed child) requires r (its rewrite): {f} is the same as {} and is not run.
    found = minimal_sufficient_sets(["f", "r"], lambda kept: kept == frozenset("fr"),
                                    requires={"f": "r"})
    assert [sorted(m) for m in found.minimal] == [["f", "r"]]
    assert frozenset("f") in found.skipped and frozenset("f") not in found.evaluated
    assert set(found.evaluated) == {frozenset(), frozenset("r"), frozenset("fr")}


def test_the_rewrite_a_killed_child_implies_is_not_repeated_in_the_summary() -> None:
    attribution = verify.Attribution(
        ("durability",), 2, as_is_runs=1, as_is_recurred=1,
        ingredients=("killed rewrite child", "rewrite"),
        minimal=(("killed rewrite child", "rewrite"),),
        implied=(("killed rewrite child", "rewrite"),))
    assert attribution.summary() == "needs the killed rewrite child"
    assert attribution.needs == ["killed rewrite child", "rewrite"]
    assert attribution.happens_without == []


def test_at_most_eight_variants_for_three_ingredients() -> None:
    found = minimal_sufficient_sets(list("fmr"), lambda kept: False)
    assert len(found.evaluated) + len(found.skipped) == 8
    assert [sorted(m) for m in found.minimal] == [["f", "m", "r"]]  # the trial itself


def test_a_violation_that_does_not_recur_unchanged_is_timing_dependent() -> None:
    attribution = _attribution(recurred=0)
    assert not attribution.reproducible and attribution.needs == []
    assert attribution.summary().startswith("timing-dependent: it did not recur unchanged in 1")


def test_a_violation_with_nothing_to_take_out_needs_only_the_crash() -> None:
    attribution = verify.Attribution(("durability",), 3, as_is_runs=1, as_is_recurred=1)
    assert "only the workload and the crash" in attribution.summary()


def test_strict_metadata_is_replaced_by_the_next_weaker_calibrated_model() -> None:
    assert weaker_model("power-posix-metadata") == "power-ext4"
    assert weaker_model("power-ext4") == weaker_model("power-btrfs") == "power-eager-metadata"
    assert weaker_model("power-eager-metadata") is None and weaker_model("process") is None


def test_run_trial_takes_out_only_the_fault_or_the_rewrite() -> None:
    with pytest.raises(ValueError, match="without: only 'fault' and 'rewrite'"):
        verify.run_trial(VerifyConfig(), 0, without=("metadata",))


def test_fsync_error_draws_like_io_error_but_always_on_a_sync() -> None:
    import random

    plain = draw_fault(random.Random(5), "io-error")
    on_sync = draw_fault(random.Random(5), "fsync-error")
    assert plain is not None and on_sync is not None
    assert on_sync.kind == "io-error" and on_sync.on_sync and on_sync.syncs
    # The same draws otherwise: the trial's workload does not depend on the fault kind.
    assert (plain.position, plain.nth, plain.times) == (on_sync.position, on_sync.nth,
                                                        on_sync.times)


def test_a_killed_child_injects_no_error_and_is_not_a_persistence_stall() -> None:
    draw = draw_fault(__import__("random").Random(1), "kill-child")
    assert draw is not None and draw.errors == 0 and not draw.syncs
    # The child is held at a gate on its own temp file, never on the parent's AOF or bg file.
    from fnmatch import fnmatchcase

    assert fnmatchcase("temp-rewriteaof-1234.aof", CHILD_TEMP_GLOB)
    assert not fnmatchcase("temp-rewriteaof-bg-1234.aof", CHILD_TEMP_GLOB)
    assert not fnmatchcase("appendonly.aof", CHILD_TEMP_GLOB)


def test_attribution_options_are_validated() -> None:
    with pytest.raises(ValueError, match="attribution_repeats"):
        run_verify(VerifyConfig(trials=1), attribution_repeats=0)
    with pytest.raises(ValueError, match="attribution_max"):
        run_verify(VerifyConfig(trials=1), attribution_max=-1)


def test_cli_no_attribution_switches_it_off() -> None:
    import argparse

    from harness.cli._verify import add_parser

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(["verify", "--server", "7.0", "--no-attribution"])
    assert args.attribution is False and args.attribution_repeats == 3
    args = parser.parse_args(["verify", "--server", "7.0", "--fault", "kill-child"])
    assert args.attribution is True and args.fault == "kill-child"


# -- real processes ---------------------------------------------------------------------------


def _reference_with(*defects: str) -> verify.Launcher:
    from harness.targets import ReferenceProcess

    def launch(data_dir: str, log_path: str, policy: str) -> Any:
        return ReferenceProcess(data_dir, appendfsync=policy, log_path=log_path,
                                aof_load_truncated=True, defects=defects)

    return launch


@pytest.mark.real
@pytest.mark.slow
def test_a_planted_fsync_error_bug_needs_the_fault_and_holds_without_it(scratch_root: Path
                                                                       ) -> None:
    needs_fuse()
    # The reference with fsync-error-cleared (what Redis 6.2's bio did): after one failed
    # background fsync the data it dropped is never written again, so a power loss loses
    # acknowledged writes; without the EIO nothing is lost. Trial 3 of seed 3 violates.
    config = VerifyConfig(server="reference", policy="everysec", model="power-eager-metadata",
                          fault="fsync-error", trials=1, first_trial=3, ops=60, seed=3,
                          duration_ms=4000)
    launcher = _reference_with("fsync-error-cleared")
    result = run_verify(config, launcher=launcher, attribution_repeats=2)
    trial = result.trials[0]
    assert trial.outcome == "violation" and trial.fault_fired, trial.render()
    attribution = trial.attribution
    assert attribution is not None and attribution.reproducible, trial.render()
    assert attribution.needs == ["fault fsync-error"], attribution.summary()
    assert attribution.summary() == "needs the fault fsync-error"
    # With the fault: a violation; the same trial without it: it holds.
    without = verify.run_trial(config, 3, launcher=launcher, without=("fault",))
    assert without.outcome in ("consistent", "not-exercised") and not without.fault_asked
    assert without.fired == [] and without.entries == trial.entries
    # The report and the text say it.
    assert "cause: needs the fault fsync-error" in trial.render()
    report = verify_report(result, run_id="test")
    violation = report["violations"][0]
    assert violation["cause"] == "needs the fault fsync-error"
    assert violation["attribution"]["minimal_sufficient_sets"] == [["fault fsync-error"]]
    assert report["configurations"][0]["cause"] == "needs the fault fsync-error"
    assert report["totals"]["attributed_trials"] == 1


@pytest.mark.real
def test_a_loss_without_the_fault_is_attributed_as_happening_without_it(scratch_root: Path
                                                                        ) -> None:
    needs_fuse()
    from harness.targets import dump_keyspace

    def lossy_dump(client: Any, now_ms: int) -> Mapping[int, Any]:
        dump = dump_keyspace(client, now_ms=now_ms)
        for keys in dump.values():
            if keys:
                del keys[sorted(keys)[0]]
                break
        return dump

    config = VerifyConfig(server="reference", policy="always", model="process",
                          fault="no-space", trials=1, ops=40, seed=5)
    result = run_verify(config, launcher=_reference_with(), dump=lossy_dump,
                        attribution_repeats=2)
    trial = result.trials[0]
    assert trial.outcome == "violation", trial.render()
    attribution = trial.attribution
    assert attribution is not None
    assert attribution.needs == [], attribution.summary()
    assert attribution.summary().startswith("needs none of them: it recurs without the fault")
    text = verify_report(result, run_id="t")["violations"][0]["text"]
    assert "cause: needs none of them" in text


@pytest.mark.real
def test_no_attribution_leaves_violations_unattributed(scratch_root: Path) -> None:
    needs_fuse()
    from harness.targets import dump_keyspace

    def lossy_dump(client: Any, now_ms: int) -> Mapping[int, Any]:
        dump = dump_keyspace(client, now_ms=now_ms)
        dump.setdefault(0, {})[b"phantom"] = ("string", b"x", None)
        return dump

    result = run_verify(VerifyConfig(server="reference", trials=1, ops=20, seed=1),
                        launcher=_reference_with(), dump=lossy_dump, attribution=False)
    assert result.trials[0].outcome == "violation"
    assert result.trials[0].attribution is None and result.attribution_s < 1
    assert verify_report(result, run_id="t")["violations"][0]["cause"] is None


@pytest.mark.real
def test_kill_child_kills_the_rewrite_child_in_most_trials(scratch_root: Path) -> None:
    needs_fuse()
    try:
        verify.check_environment(VerifyConfig(server="7.0", model="power"))
    except verify.VerifyEnvironmentError as exc:
        pytest.skip(str(exc))
    result = run_verify(VerifyConfig(server="7.0", fault="kill-child", trials=6, ops=120,
                                     seed=4), workers=2)
    fired = [t for t in result.trials if t.fault_fired]
    assert len(fired) >= 5, [t.render() for t in result.trials]
    for t in fired:
        assert t.events["bgrewriteaof sent"] == 1 and t.events["rewrite child killed"] == 1
        assert t.fired[0].startswith("KillChild: rewrite child")
        assert t.outcome == "consistent", t.render()  # a killed child loses nothing


# -- the fault columns built on a rewrite (fast: plans only) ----------------------------------


def _plan(fault: str, removed: frozenset[str] = frozenset()) -> Any:
    import random

    from harness.verify._faults import plan_trial

    config = VerifyConfig(fault=fault, ops=200, seed=2)
    return plan_trial(config, random.Random("aofcrash-verify/2/0"), removed)


def test_write_error_draws_like_io_error_but_always_on_a_write() -> None:
    import random

    plain = draw_fault(random.Random(5), "io-error")
    on_write = draw_fault(random.Random(5), "write-error")
    assert plain is not None and on_write is not None
    assert on_write.kind == "io-error" and not on_write.on_sync and not on_write.syncs
    assert (plain.position, plain.nth, plain.times) == (on_write.position, on_write.nth,
                                                        on_write.times)


def test_incr_fsync_error_fails_the_old_incr_files_sync_and_kills_the_child() -> None:
    from collections import Counter

    from faults import FaultOp, IOFault

    plan = _plan("incr-fsync-error")
    assert plan.rewrite_at == plan.arm_entry and plan.kill_child and plan.split_at_rewrite
    assert plan.draw is not None and plan.draw.syncs
    fault, note = plan.draw.arm("*.aof", Counter({FaultOp.FDATASYNC: 3}), expect_syncs=True,
                                incr_path="appendonlydir/appendonly.aof.1.incr.aof")
    assert isinstance(fault, IOFault) and not note
    assert fault.op is FaultOp.FDATASYNC and fault.nth == 1
    assert fault.path_glob == "appendonlydir/appendonly.aof.1.incr.aof"
    # A single-file AOF (6.x) has no incr file: not armed, and the trial says why.
    fault, note = plan.draw.arm("*.aof", Counter(), expect_syncs=True, incr_path=None)
    assert fault is None and "no incr file" in note
    # Without the fault the rewrite and its killed child stay (they are the workload here).
    without = _plan("incr-fsync-error", frozenset({"fault"}))
    assert without.kill_child and without.rewrite_at == plan.rewrite_at
    assert without.arm_entry is None


def test_rewrite_completes_awaits_the_rewrite_and_only_with_the_fault() -> None:
    plan = _plan("rewrite-completes")
    assert plan.await_rewrite and not plan.kill_child and plan.rewrite_at == plan.arm_entry
    assert plan.arm_entry is not None and plan.arm_entry < plan.kill_at
    without = _plan("rewrite-completes", frozenset({"fault"}))
    assert not without.await_rewrite and without.rewrite_at == plan.rewrite_at
    assert _plan("rewrite-completes", frozenset({"rewrite"})).rewrite_at is None


def test_a_rewrite_in_the_middle_of_a_batch_starts_a_batch_of_its_own() -> None:
    from harness.verify._trial import _split_at_rewrite
    from harness.verify._workload import Item, ItemKind

    write = Item(ItemKind.WRITE, ((b"SET", b"k", b"v"),), 0)
    rewrite = Item(ItemKind.REWRITE)
    batches = list(_split_at_rewrite(iter([([write, rewrite, write, write], 3), ([write], 1)])))
    assert batches == [([write], 1), ([rewrite, write, write], 2), ([write], 1)]


@pytest.mark.real
@pytest.mark.slow
def test_a_resurrected_old_aof_needs_the_completed_rewrite_and_strict_metadata(
        scratch_root: Path) -> None:
    needs_fuse()
    try:
        verify.check_environment(VerifyConfig(server="6.2", model="power-posix-metadata"))
    except verify.VerifyEnvironmentError as exc:
        pytest.skip(str(exc))
    # Redis 6.2 renames its rewritten AOF over appendonly.aof and never fsyncs the directory:
    # under the POSIX minimum the old file comes back, without the writes acknowledged after
    # the rename. Under power-ext4 (the next weaker calibrated model) the next fsync of the
    # file commits the rename; without the completed rewrite there is no rename to lose.
    config = VerifyConfig(server="6.2", policy="always", model="power-posix-metadata",
                          fault="rewrite-completes", trials=1, ops=60, seed=0)
    result = run_verify(config, attribution_repeats=2)
    trial = result.trials[0]
    assert trial.outcome == "violation", trial.render()
    assert "has an older appendonly.aof" in trial.mechanism, trial.mechanism
    attribution = trial.attribution
    assert attribution is not None and attribution.reproducible, trial.render()
    assert [sorted(group) for group in attribution.minimal] == [sorted(
        attribution.ingredients)], attribution.summary()
    assert attribution.summary() == (
        "needs the completed rewrite (awaited, paced writes after it) AND strict metadata "
        "(power-posix-metadata; weaker: power-ext4)")
