"""The crash-state explorer (harness.explore): counts, verdicts, defects, reproductions, CLI."""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from faults import FaultOp, PersistenceModel
from harness.cli import main
from harness.explore import (
    WORKLOADS,
    ExploreLimits,
    ExploreResult,
    explore,
    make_workload,
    workload_from_reproduction,
)
from harness.explore._record import record
from harness.explore._workloads import DEFAULT_SUITE, suite_config
from harness.machine._driver import ContractViolation, Driver, replay
from harness.machine._steps import (
    ArmCrash,
    BgRewrite,
    Recover,
    Reproduction,
    RunConfig,
    Tick,
    Write,
)
from harness.oracle import frontier
from reference.defects import DEFECTS

PROCESS, POWER, EAGER = (PersistenceModel.PROCESS, PersistenceModel.POWER,
                         PersistenceModel.POWER_EAGER_METADATA)
ALL_MODELS = (PROCESS, POWER, EAGER)
POSIX_MODELS = (PROCESS, PersistenceModel.POWER_POSIX_METADATA)
# The default images (process; power with sector prefixes and strict or eager metadata).
# Torn and reordered sectors are opt-in, see test_torn_sector_in_a_bulk_payload_...
PREFIX_IMAGES = ExploreLimits(audit_every=5)


def _by_group(result: ExploreResult) -> dict[Any, tuple[set[Any], int]]:
    """Outcomes per (point, model, kept metadata, AOF image), with how many states each."""
    assert result.states_log is not None
    groups: dict[Any, tuple[set[Any], int]] = defaultdict(lambda: (set(), 0))
    for s in result.states_log:
        key = (s.point, s.model, s.choice.metadata_kept, s.aof)
        outcomes, count = groups[key]
        outcomes.add((s.outcome, s.rules))
        groups[key] = (outcomes, count + s.count)
    return dict(groups)


# -- counting ------------------------------------------------------------------------------


def test_image_count_of_one_synced_write_across_a_sector_equals_the_hand_count() -> None:
    # policy always, one write of SELECT 0 (23 B) + SET k <600 x> (628 B) = 651 B at offset 0,
    # then fdatasync. Crash points after the boot (open + fsync_dir of the new AOF):
    #   before the write; inside it at the sector boundary 512; before the fdatasync; the end.
    # process: one image per point -> 4.
    # power: before the write the (empty) AOF is durable: 1. Inside at 512 (dlen 0, 512
    #   visible): DURABLE + PREFIX/TORN_ZERO/TORN_GARBAGE at 512 (one sector: no reorder): 4.
    #   Before the fdatasync (651 visible): DURABLE; at 512 PREFIX/TZ/TG; at 651 PREFIX/TZ/TG
    #   and REORDERED with sector 0 zeroed: 1 + 3 + 4 = 8. At the end all is synced: 1.
    #   1 + 4 + 8 + 1 = 14.
    # Without torn/reordered sectors: 1 + 2 + 3 + 1 = 7.
    steps = (Write((b"SET", b"k", b"x" * 600)),)
    prefixes = explore(RunConfig(policy="always"), steps, models=(POWER,),
                       limits=ExploreLimits(small_write_bytes=False))
    assert prefixes.states == 7
    limits = ExploreLimits(small_write_bytes=False, torn=True, reorder=True)
    result = explore(RunConfig(policy="always"), steps, models=(PROCESS, POWER), limits=limits)
    assert result.points_total == result.points_explored == 4
    assert result.coverage()["process"]["states_checked"] == 4
    assert result.coverage()["power-ext4"]["states_checked"] == 14
    assert result.coverage()["power-ext4"]["legal_states_at_explored_points"] == 14
    assert result.kinds[("power-ext4", "reordered")] == 1
    naive = explore(RunConfig(policy="always"), steps, models=(PROCESS, POWER), limits=limits,
                    naive=True)
    assert naive.states == result.states == 18


def test_small_writes_are_cut_at_every_byte_by_default() -> None:
    # SELECT 0 (23 B) + SET k v (27 B): one 50-byte write, 49 crash points inside it, plus
    # before the write, before its fdatasync and at the end.
    steps = (Write((b"SET", b"k", b"v")),)
    result = explore(RunConfig(policy="always"), steps, models=(PROCESS,))
    assert result.points_total == 3 + 49
    sector_only = explore(RunConfig(policy="always"), steps, models=(PROCESS,),
                          limits=ExploreLimits(small_write_bytes=False))
    assert sector_only.points_total == 3


def test_cut_offs_are_counted_in_the_coverage() -> None:
    steps = make_workload("mixed", ops=20, seed=3)
    limits = ExploreLimits(max_crash_points=10, max_images_per_point=1)
    result = explore(RunConfig(), steps, models=(PROCESS, POWER), limits=limits)
    cov = result.coverage()
    assert result.points_explored == 10 < result.points_total
    assert cov["crash_points"] == f"10/{result.points_total}"
    power = cov["power-ext4"]
    assert power["states_checked"] + power["cut_by_max_images"] == power[
        "legal_states_at_explored_points"]
    assert power["cut_by_max_images"] > 0
    assert power["states_checked"] <= 10


def test_explore_limits_reject_bad_values_naming_the_field() -> None:
    with pytest.raises(ValueError, match="max_crash_points"):
        ExploreLimits(max_crash_points=0)
    with pytest.raises(ValueError, match="max_choices_per_point"):
        ExploreLimits(max_images_per_point=0)
    with pytest.raises(ValueError, match="ops"):
        make_workload("mixed", ops=0)
    with pytest.raises(ValueError, match="unknown name 'nope'"):
        make_workload("nope", ops=3)


# -- verdicts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("workload", "policy"),
    [("rewrite", "always"), ("rewrite", "everysec"), ("killed-child", "everysec"),
     ("short-write", "always"), ("short-write", "everysec"), ("no-space", "everysec"),
     ("expiry", "everysec"), ("multi", "no")],
)
def test_safe_reference_has_no_violation_in_any_prefix_image(workload: str, policy: str) -> None:
    config = RunConfig(policy=policy)
    result = explore(config, make_workload(workload, ops=30, seed=2), models=ALL_MODELS,
                     limits=PREFIX_IMAGES)
    assert result.states > 1000
    assert result.ok, [v.describe() for v in result.violations[:2]]
    assert result.audits > 0  # the fast path was checked against full recoveries


def test_torn_sector_in_a_bulk_payload_is_a_phantom_value_even_on_safe() -> None:
    # A finding, not a harness bug: the AOF has no checksum and the loader skips the two
    # bytes after a bulk unchecked, so a torn last sector inside a long value parses as a
    # complete command with zeros (or garbage) in the value. The explorer reports it, and the
    # reproduction replays to the same violation.
    steps = (Write((b"SET", b"k", b"x" * 600)),)
    result = explore(RunConfig(policy="always"), steps, models=(POWER,),
                     limits=ExploreLimits(small_write_bytes=False, torn=True, reorder=True))
    kinds = {fc.kind.value for v in result.violations for fc in v.choice.files}
    # A torn-zero sector ends the file in zeros: `safe` refuses that (zeros completing a
    # command), which the contract accepts on a damaged image; garbage still loads as a value.
    assert kinds == {"torn-garbage"}
    assert all(v.rules == ("prefix-consistency",) for v in result.violations)
    assert all(v.confirmed for v in result.violations)


@pytest.mark.parametrize(("workload", "ops", "policy"),
                         [("mixed", 12, "everysec"), ("rewrite", 12, "always"),
                          ("short-write", 14, "no"), ("multi", 4, "everysec")])
def test_fast_and_naive_modes_give_the_same_verdict_for_every_state(
    workload: str, ops: int, policy: str
) -> None:
    steps = make_workload(workload, ops=ops, seed=5)
    limits = ExploreLimits(max_images_per_point=60, audit_every=3, torn=True, reorder=True)
    kwargs: dict[str, Any] = {"models": ALL_MODELS, "limits": limits, "keep_states": True}
    fast = explore(RunConfig(policy=policy), steps, **kwargs)
    naive = explore(RunConfig(policy=policy), steps, naive=True, **kwargs)
    assert fast.states == naive.states
    assert fast.outcomes == naive.outcomes
    fast_groups, naive_groups = _by_group(fast), _by_group(naive)
    assert fast_groups == naive_groups
    # Every state of a group (same AOF image) got one verdict: the other files never matter.
    assert all(len(outcomes) == 1 for outcomes, _ in naive_groups.values())


def test_point_frontiers_equal_the_oracle_frontier_of_the_point_history() -> None:
    from harness.explore._explorer import _Frontiers

    steps = (*make_workload("fsync-error", ops=40, seed=1), Tick(delta_ms=2500))
    for policy in ("always", "everysec", "no"):
        config = RunConfig(policy=policy, no_appendfsync_on_rewrite=True)
        rec = record(config, steps)
        fr = _Frontiers(rec)
        for p in range(rec.boot_ops, len(rec.trace) + 1):
            crash_ms = rec.time_at[p] if p < len(rec.trace) else rec.end_ms
            history = rec.history_at(p)
            for model in ALL_MODELS:
                expected = frontier(history, policy=policy, model=model.value, crash_ms=crash_ms,
                                    window_ms=config.window_ms, stalls=rec.stalls_at(p),
                                    error_stalls=rec.error_stalls_at(p),
                                    no_appendfsync_on_rewrite=True)
                assert fr.frontier(p, crash_ms, model) == expected, (policy, p, model)
            if not fr.refused_pending(p):  # else the explorer asks the oracle itself
                assert fr.submitted(p) == len(history.executed_indices())


# -- defects -------------------------------------------------------------------------------

# Defect -> the first (workload, policy) of the default suite that shows it (ops=40, seed=2).
REVEALED = {
    "del-feeds-first-key": ("boundaries", "always"),
    "everysec-fsync-skipped": ("boundaries", "everysec"),
    "everysec-offset-advanced-while-busy": ("slow-fsync", "everysec"),
    "everysec-postponed-without-limit": ("slow-fsync", "everysec"),
    "fsync-error-cleared": ("fsync-error", "everysec"),
    "hset-feeds-first-field": ("boundaries", "always"),
    "load-truncates-one-byte-short": ("second-epoch", "everysec"),
    "misconf-cleared-by-short-write": ("short-write", "no"),
    "multi-applied-on-load": ("multi", "always"),
    "no-dir-fsync-after-rename": ("rewrite", "everysec"),
    "old-fd-kept-after-rewrite": ("rewrite", "everysec"),
    "push-feeds-last-element": ("boundaries", "always"),
    "relative-expiry-verbatim": ("expiry", "everysec"),
    "remove-feeds-first-member": ("boundaries", "always"),
    "reply-before-fsync": ("boundaries", "always"),
    "rewrite-batch-count-wrong": ("boundaries", "always"),
    "rewrite-batch-skips-boundary-item": ("boundaries", "always"),
    "rewrite-buffer-dropped": ("rewrite", "everysec"),
    "rewrite-diff-appended-after-rename": ("boundaries", "always"),
    "rewrite-diff-not-fsynced": ("boundaries", "always"),
    "rewrite-diff-short-write-ignored": ("rewrite-faults", "always"),
    "rewrite-drops-after-first-batch": ("boundaries", "always"),
    "rewrite-drops-expiry": ("expiry", "everysec"),
    "rewrite-select-emitted-once": ("rewrite", "everysec"),
    "sadd-feeds-first-member": ("boundaries", "always"),
    "select-not-reemitted-after-rewrite": ("rewrite", "everysec"),
    "set-expiry-split": ("expiry", "everysec"),
    "short-write-kept": ("short-write", "no"),
    "temp-not-fsynced-before-rename": ("rewrite", "everysec"),
    # Needs recover -> write -> crash: only the multi-epoch workload shows it.
    "truncated-tail-not-truncated-on-disk": ("second-epoch", "everysec"),
    "write-error-ignored": ("short-write", "no"),
    "zadd-feeds-first-pair": ("boundaries", "always"),
    "zero-tail-refused": ("fsync-error", "everysec"),
}


# Liveness bugs keep every write: no crash state shows them. The state machine's liveness
# rules do (tests/test_sensitivity.py, tests/test_defects_detected.py).
LIVENESS_ONLY = {"rewrite-never-swapped"}


def test_every_defect_is_revealed_by_a_workload_of_the_default_suite() -> None:
    assert set(REVEALED) | LIVENESS_ONLY == set(DEFECTS)
    assert not set(REVEALED) & LIVENESS_ONLY
    assert set(REVEALED.values()) <= {(w, p) for w, p, _ in DEFAULT_SUITE}


@functools.cache
def _clean(workload: str, policy: str) -> bool:
    return explore(RunConfig(policy=policy), make_workload(workload, ops=40, seed=2)).ok


@pytest.mark.parametrize("defect", sorted(REVEALED))
def test_explore_finds_each_defect_at_default_settings(defect: str) -> None:
    workload, policy = REVEALED[defect]
    config = RunConfig(policy=policy, defects=frozenset([defect]))
    limits = ExploreLimits(confirm_reproductions=1, stop_at_first_violation=True)
    # A missing directory fsync loses a rename only under the POSIX minimum (on ext4, xfs and
    # btrfs the next fsync of the new AOF makes the rename durable).
    models = POSIX_MODELS if defect == "no-dir-fsync-after-rename" else (PROCESS, POWER)
    result = explore(config, make_workload(workload, ops=40, seed=2), models=models,
                     limits=limits)
    assert not result.ok
    assert result.violations[0].confirmed is True
    assert _clean(workload, policy)  # the violation is the defect's, not the workload's


# -- reproductions -------------------------------------------------------------------------


def test_violation_reproduction_replays_to_the_same_violation(tmp_path: Path) -> None:
    config = RunConfig(policy="always", defects=frozenset(["rewrite-buffer-dropped"]))
    result = explore(config, make_workload("rewrite", ops=20, seed=2), models=(PROCESS, POWER),
                     limits=ExploreLimits(max_reproductions=3))
    assert result.violations
    for v in result.violations[:3]:
        assert v.reproduction is not None
        path = tmp_path / "repro.json"
        path.write_text(v.reproduction.to_json(), encoding="utf-8")
        loaded = Reproduction.from_json(path.read_text(encoding="utf-8"))
        with pytest.raises(ContractViolation) as info:
            replay(loaded)
        got = sorted({x.rule.value for x in info.value.verdict.violations})
        assert got == sorted(v.rules) == loaded.expected["rules"]
        assert info.value.verdict.crash is not None
        assert info.value.verdict.crash.trace_index == v.point.trace_index + (
            v.point.torn_bytes is not None)


def test_reproductions_crash_at_the_explored_trace_index() -> None:
    from harness.explore._explorer import _Walk

    config = RunConfig(policy="everysec")
    steps = make_workload("killed-child", ops=12, seed=4)
    rec = record(config, steps)
    walk = _Walk(rec, (POWER,), ExploreLimits(), naive=False, keep_states=False, progress=None)
    trace = rec.trace
    positions = walk._positions()
    sample = [*positions[::max(1, len(positions) // 15)], positions[-1]]
    writes = [p for p in positions if p < len(trace) and trace[p].op.value == "write"
              and trace[p].result > 3]
    points = [walk.point(p, None) for p in sample] + [walk.point(p, 2) for p in writes[:5]]
    for point in points:
        repro = walk.reproduction(point, PROCESS, _process_choice(), ("none",))
        driver = Driver(config)
        *live, recover = repro.steps
        driver.run_all(tuple(live))
        assert driver.crashed
        expected = point.trace_index + (point.torn_bytes is not None)
        assert len(driver.disk.trace) == expected
        assert driver.crash_ms == point.crash_ms
        assert isinstance(recover, Recover)
        # The explored choice is legal on the replayed disk, and recovery is at the end time.
        assert recover.downtime_ms == rec.end_ms - point.crash_ms
        driver.run(Recover(PROCESS, choice=_pending_choice(driver), downtime_ms=0))
        assert not driver.crashed


def _process_choice() -> Any:
    from faults import CrashChoice

    return CrashChoice(PROCESS, 0, ())


def _pending_choice(driver: Driver) -> Any:
    from faults import CrashChoice

    return CrashChoice(PROCESS, driver.disk.pending_metadata, ())


def test_workload_from_reproduction_keeps_the_steps_before_the_first_crash() -> None:
    from faults import Crash, FaultPlan

    steps = (Write((b"SET", b"a", b"1")), BgRewrite(),
             ArmCrash(FaultPlan((Crash(nth=1, op=FaultOp.WRITE),))), Write((b"SET", b"b", b"2")),
             Recover(PROCESS))
    repro = Reproduction(RunConfig(policy="no"), steps)
    config, kept = workload_from_reproduction(repro)
    assert config.policy == "no"
    assert kept == steps[:2]


# -- CLI -----------------------------------------------------------------------------------


def test_cli_explore_reports_a_defect_with_exit_code_1(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["explore", "--workload", "mixed", "--ops", "25", "--seed", "2", "--policy",
                 "always", "--defect", "reply-before-fsync", "--torn",
                 "--json", "--progress", "never", "--reports", str(tmp_path),
                 "--max-reproductions", "2"])
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert out["status"] == "violation"
    assert out["violating_states"] > 0
    run_dir = Path(out["report"]).parent
    report = json.loads((run_dir / "report.json").read_text())
    assert report["command"] == "explore"
    names = [v["reproduction"] for v in report["violations"] if v["reproduction"]]
    assert len(report["groups"]) > 2 and len(names) == 2  # one per cause, at most 2
    repro = Reproduction.from_json((run_dir / names[0]).read_text())
    assert main(["replay", str(run_dir / names[0])]) == 1
    assert repro.expected["outcome"] == "violation"
    assert (run_dir / "report.html").read_text().count("aofcrash replay") == 2


def test_cli_explore_exits_0_without_violation_and_takes_a_reproduction_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repro = Reproduction(RunConfig(policy="everysec"),
                         (*make_workload("rewrite", ops=12, seed=1), Recover(PROCESS)))
    path = tmp_path / "w.json"
    path.write_text(repro.to_json(), encoding="utf-8")
    code = main(["explore", "--workload", str(path), "--model", "process", "--progress",
                 "never", "--reports", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert code == 0
    assert "no violation" in out
    assert "steps before its first crash" in out


def test_cli_explore_rejects_an_unknown_workload_with_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["explore", "--workload", "nope", "--reports", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2
    assert "--workload" in err and "nope" in err
    assert len(err.strip().splitlines()) == 1


def test_every_named_workload_runs_and_is_deterministic() -> None:
    for name in WORKLOADS:
        a, b = make_workload(name, ops=15, seed=9), make_workload(name, ops=15, seed=9)
        assert a == b
        rec = record(RunConfig(), a)
        assert not rec.ended_crashed
        assert len(rec.trace) > rec.boot_ops


# -- multi-epoch workloads and the default suite ---------------------------------------------


def test_a_second_epoch_is_recorded_on_the_recovered_disk_with_the_recovered_prefix() -> None:
    steps = make_workload("second-epoch", ops=40, seed=2)
    recover_at = max(i for i, s in enumerate(steps) if isinstance(s, Recover))
    rec = record(RunConfig(), steps)
    # The setup ran (its Recover has its crash choice resolved), the trace is the second
    # epoch's: it starts from the recovered image, and the recovered prefix is known (and
    # acknowledged) before its first crash point.
    resolved = rec.steps[recover_at]
    assert isinstance(resolved, Recover)
    assert resolved.choice is not None
    assert rec.trace.initial is not None and "appendonly.aof" in rec.trace.initial.files
    setup = Driver(RunConfig())
    setup.run_all(steps[: recover_at + 1])
    recovered = len(setup.history.entries)
    first = rec.history_at(rec.boot_ops)
    assert recovered > 0
    assert [e.commands for e in first.entries[:recovered]] == [
        e.commands for e in setup.history.entries]
    assert all(e.outcome.value == "ok" for e in first.entries[:recovered])
    assert rec.step_of[rec.boot_ops] > recover_at  # every crash point is after the recovery


def test_every_crash_point_of_the_second_epoch_is_explored_and_safe_passes() -> None:
    steps = make_workload("second-epoch", ops=40, seed=2)
    result = explore(RunConfig(policy="always"), steps)
    assert result.ok, [v.describe() for v in result.violations[:2]]
    assert result.points_explored == result.points_total > 100


def test_a_bug_of_the_second_epoch_only_is_found_and_its_reproduction_spans_both_epochs() -> None:
    config = RunConfig(defects=frozenset(["truncated-tail-not-truncated-on-disk"]))
    result = explore(config, make_workload("second-epoch", ops=40, seed=2),
                     limits=ExploreLimits(confirm_reproductions=1))
    assert not result.ok
    v = result.violations[0]
    assert v.rules == ("availability",)  # appended after the garbage: refuses to start
    assert v.reproduction is not None
    assert sum(isinstance(s, Recover) for s in v.reproduction.steps) == 2
    assert v.confirmed is True


def test_a_violation_in_the_setup_recovery_is_reported_with_a_reproduction() -> None:
    # The defect damages the file at the setup's own recovery (stability), before any point.
    config = RunConfig(defects=frozenset(["load-truncates-one-byte-short"]))
    result = explore(config, make_workload("second-epoch", ops=40, seed=2))
    assert not result.ok
    assert result.violations[0].reproduction is not None
    with pytest.raises(ContractViolation):
        replay(result.violations[0].reproduction)


def test_stop_at_first_violation_ends_the_walk_early() -> None:
    config = RunConfig(policy="always", defects=frozenset(["reply-before-fsync"]))
    steps = make_workload("mixed", ops=30, seed=2)
    full = explore(config, steps)
    first = explore(config, steps, limits=ExploreLimits(stop_at_first_violation=True))
    assert not first.ok and first.points_explored < full.points_explored


def test_the_default_suite_exercises_always_and_everysec() -> None:
    policies = {p for _, p, _ in DEFAULT_SUITE}
    assert {"always", "everysec"} <= policies
    assert {w for w, _, _ in DEFAULT_SUITE} >= {"boundaries", "rewrite-faults", "second-epoch"}
    assert all(w in WORKLOADS for w, _, _ in DEFAULT_SUITE)


@pytest.mark.slow
@pytest.mark.parametrize(("workload", "policy", "ops"), DEFAULT_SUITE)
def test_the_safe_reference_passes_the_default_suite(workload: str, policy: str, ops: int) -> None:
    result = explore(suite_config(workload, policy), make_workload(workload, ops=ops, seed=0))
    assert result.ok, [v.describe() for v in result.violations[:2]]


def test_big_aof_recovers_a_file_of_several_loader_pieces_torn_inside_a_multi() -> None:
    from harness.machine._steps import Multi

    steps = make_workload("big-aof", ops=10, seed=0)
    recover_at = max(i for i, s in enumerate(steps) if isinstance(s, Recover))
    assert isinstance(steps[recover_at - 1], Multi)  # the crash tears a MULTI block's write
    driver = Driver(RunConfig(policy="always"))
    driver.run_all(list(steps[:recover_at]))
    assert driver.crashed
    aof = driver.disk.crash(PersistenceModel.PROCESS).get("appendonly.aof")
    assert aof is not None and len(aof) > 2 * 64 * 1024  # the loader's hiredis pieces: 3+
    assert aof.rstrip(b"\n").rsplit(b"MULTI", 1)[-1].count(b"EXEC") == 0  # open at the tail
    driver.run(steps[recover_at])
    assert driver.alive


def test_fast_and_naive_modes_agree_when_models_keep_different_pending_operations() -> None:
    # At one crash point "k pending operations kept" names a different image per model (ext4
    # has committed the rename the POSIX minimum still holds pending): verdicts are per model.
    steps = make_workload("rewrite", ops=12, seed=5)
    config = RunConfig(policy="always", defects=frozenset({"no-dir-fsync-after-rename"}))
    models = (POWER, PersistenceModel.POWER_POSIX_METADATA)
    limits = ExploreLimits(max_images_per_point=60)
    fast = explore(config, steps, models=models, limits=limits)
    naive = explore(config, steps, models=models, limits=limits, naive=True)
    assert fast.outcomes == naive.outcomes
    assert fast.violation_counts.get(("power-posix-metadata", "durability"))


# -- images the kernel's ext4 and xfs produce (SIZE_BEFORE_DATA, IN_PLACE): on by default ----


def test_a_zero_tail_state_is_explored_by_default_and_finds_what_prefixes_missed() -> None:
    # The second SET grows the AOF inside its durable last block: ext4 journals the new size
    # at once, so a power loss before the fsync leaves the file at its new size over zeros
    # (measured on the kernel). A loader that refuses a zero tail (as redis 6.2/7.0 do) then
    # refuses to start: before, only prefix images were explored and the run held.
    config = RunConfig(policy="always", defects=frozenset(["zero-tail-refused"]))
    steps = (Write((b"SET", b"a", b"1")), Write((b"SET", b"b", b"2")))
    before = explore(config, steps, models=(POWER,),
                     limits=ExploreLimits(size_before_data=False, in_place=False))
    assert before.ok
    assert before.coverage()["power-ext4"]["by_kind"].get("size-before-data", 0) == 0
    now = explore(config, steps, models=(POWER,), keep_states=True)
    assert not now.ok
    assert now.coverage()["power-ext4"]["by_kind"]["size-before-data"] > 0
    assert {rule for (_, rule) in now.violation_counts} == {"availability"}
    assert {f.kind.value for v in now.violations for f in v.choice.files} \
        == {"size-before-data"}
    # The fast path's verdicts on these states are the naive (oracle) ones.
    naive = explore(config, steps, models=(POWER,), naive=True, keep_states=True)
    assert _by_group(now) == _by_group(naive)
    assert not now.harness_bugs


def test_the_safe_reference_holds_with_zero_tail_images() -> None:
    # `safe` loads a zero tail as a torn one: the same states are consistent.
    steps = (Write((b"SET", b"a", b"1")), Write((b"SET", b"b", b"2")))
    result = explore(RunConfig(policy="always"), steps, models=(POWER,))
    assert result.ok
    assert result.coverage()["power-ext4"]["by_kind"]["size-before-data"] > 0


def test_zero_tail_images_are_explored_only_under_models_whose_filesystem_makes_them() -> None:
    # ext4 and xfs journal the size first (and the POSIX minimum allows it); the kernel's btrfs
    # never showed such a state, and eager metadata is the optimistic bound.
    steps = (Write((b"SET", b"a", b"1")), Write((b"SET", b"b", b"2")))
    models = tuple(PersistenceModel)
    result = explore(RunConfig(policy="always"), steps, models=models)
    kinds = {m.value: result.coverage()[m.value]["by_kind"] for m in models if m is not PROCESS}
    for name in ("power-ext4", "power-xfs", "power-posix-metadata"):
        assert kinds[name].get("size-before-data", 0) > 0, name
    for name in ("power-btrfs", "power-eager-metadata"):
        assert kinds[name].get("size-before-data", 0) == 0, name


def test_the_default_suite_runs_every_workload_small_before_any_at_full_size() -> None:
    from harness.explore._workloads import FULL_PASS, QUICK_PASS_OPS

    quick, full = DEFAULT_SUITE[:len(FULL_PASS)], DEFAULT_SUITE[len(FULL_PASS):]
    assert [(w, p) for w, p, _ in quick] == [(w, p) for w, p, _ in FULL_PASS]
    assert all(ops == min(QUICK_PASS_OPS, full_ops)
               for (_, _, ops), (_, _, full_ops) in zip(quick, FULL_PASS, strict=True))
    assert full == FULL_PASS


@pytest.mark.parametrize("workload", sorted({w for w, _, _ in DEFAULT_SUITE}))
def test_a_quick_pass_workload_keeps_every_kind_of_step_of_its_full_size(workload: str) -> None:
    from harness.explore._workloads import QUICK_PASS_OPS

    def kinds(ops: int) -> set[str]:
        return {type(step).__name__ for step in make_workload(workload, ops=ops, seed=0)}

    full_ops = max(ops for w, _, ops in DEFAULT_SUITE if w == workload)
    assert kinds(QUICK_PASS_OPS) == kinds(full_ops)
