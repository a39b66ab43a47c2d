"""aofcrash verify: cause attribution (which ingredients a violation needs) and kill-child."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from _real import needs_fuse

from harness import verify
from harness.verify import VerifyConfig, run_verify, verify_report
from harness.verify._faults import CHILD_TEMP_GLOB, draw_fault

# -- fast: no server needed -------------------------------------------------------------------


def _ablation(ingredient: str, label: str, *, recurred: int, reason: str = ""
              ) -> verify.Ablation:
    return verify.Ablation(ingredient, label, runs=0 if reason else 3 - 2 * recurred,
                           recurred=recurred, reason=reason)


def test_an_ingredient_is_needed_only_when_the_violation_never_came_back_without_it() -> None:
    attribution = verify.Attribution(
        ("durability",), 3, as_is_runs=1, as_is_recurred=1,
        ablations=(_ablation("fault", "fault io-error", recurred=0),
                   _ablation("metadata", "strict metadata (power)", recurred=0),
                   _ablation("rewrite", "rewrite", recurred=1)))
    assert attribution.needs == ["fault io-error", "strict metadata (power)"]
    assert attribution.happens_without == ["rewrite"]
    assert attribution.summary() == ("needs: fault io-error, strict metadata (power); "
                                     "happens without the rewrite")
    assert attribution.to_dict()["needs"] == attribution.needs


def test_a_loss_that_also_happens_without_the_fault_does_not_name_the_fault() -> None:
    # A missing directory fsync under strict metadata, with an fsync error injected too.
    attribution = verify.Attribution(
        ("durability",), 3, as_is_runs=1, as_is_recurred=1,
        ablations=(_ablation("fault", "fault fsync-error", recurred=1),
                   _ablation("metadata", "strict metadata (power)", recurred=0)))
    assert attribution.needs == ["strict metadata (power)"]
    assert "fault" not in " ".join(attribution.needs)
    assert "happens without the fault fsync-error" in attribution.summary()


def test_a_fault_that_never_fired_is_not_needed_and_says_why() -> None:
    attribution = verify.Attribution(
        ("durability",), 3, as_is_runs=1, as_is_recurred=1,
        ablations=(_ablation("fault", "fault slow-sync", recurred=0, reason="it never fired"),))
    assert attribution.needs == []
    assert attribution.summary() == ("happens without the fault slow-sync (it never fired); "
                                     "needs none of them")


def test_a_violation_that_does_not_recur_as_is_is_not_attributed() -> None:
    attribution = verify.Attribution(("durability",), 3, as_is_runs=3, as_is_recurred=0,
                                     ablations=(_ablation("fault", "fault x", recurred=0),))
    assert not attribution.reproducible and attribution.needs == []
    assert "did not recur in 3 re-run(s)" in attribution.summary()


def test_a_violation_with_nothing_to_take_out_needs_only_the_crash() -> None:
    attribution = verify.Attribution(("durability",), 3, as_is_runs=1, as_is_recurred=1)
    assert "only the workload and the crash" in attribution.summary()


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
    assert attribution.summary() == "needs: fault fsync-error"
    # With the fault: a violation; the same trial without it: it holds.
    without = verify.run_trial(config, 3, launcher=launcher, without=("fault",))
    assert without.outcome in ("consistent", "not-exercised") and not without.fault_asked
    assert without.fired == [] and without.entries == trial.entries
    # The report and the text say it.
    assert "cause: needs: fault fsync-error" in trial.render()
    report = verify_report(result, run_id="test")
    violation = report["violations"][0]
    assert violation["cause"] == "needs: fault fsync-error"
    assert violation["attribution"]["ablations"][0]["needed"] is True
    assert report["configurations"][0]["cause"] == "needs: fault fsync-error"
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
    assert attribution.summary().startswith("happens without the fault no-space")
    text = verify_report(result, run_id="t")["violations"][0]["text"]
    assert "cause: happens without the fault no-space" in text


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
