"""Damage to synced bytes through the harness: the driver's damaged recovery and rule 5, the
state machines' opt-in rule, explore's damage plan, and the CLI flags; a target that is not
checksummed is never judged by it (one line says why)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faults import Damage, DamageKind, FaultPlan, PersistenceModel, ShortWrite
from harness.cli import main
from harness.explore import DEFAULT_DAMAGE, ExploreLimits, explore, make_workload
from harness.machine._driver import ContractViolation, Driver, replay
from harness.machine._features import DAMAGE_SKIPPED, unsupported_features
from harness.machine._steps import Crash, Recover, Reproduction, RunConfig, Write

POWER = PersistenceModel.POWER
SKIP_CHECKSUM = "kvlog.aofcrash_target:make_skip_checksum_target"
# Half-way into data.log's synced bytes: inside the value of the second of three SETs.
FLIP = Damage(kind=DamageKind.FLIP, at_permille=500, length_bytes=2)


def _three_sets(target: str) -> Driver:
    driver = Driver(RunConfig(policy="always", target=target))
    for key in (b"a", b"b", b"c"):
        driver.run(Write((b"SET", key, b"value-of-" + key)))
    driver.run(Crash())
    return driver


def test_a_checksummed_store_may_lose_acknowledged_writes_at_the_damage() -> None:
    driver = _three_sets("kvlog:make_target")
    driver.run(Recover(model=POWER, damage=FLIP))  # no violation: rule 5, not rule 2
    (record,) = driver.stats.recoveries
    assert record.k is not None and record.k < record.frontier == 3


def test_a_store_that_loads_damaged_bytes_breaks_the_damage_rule_and_says_where() -> None:
    driver = _three_sets(SKIP_CHECKSUM)
    with pytest.raises(ContractViolation) as info:
        driver.run(Recover(model=POWER, damage=FLIP))
    (violation,) = info.value.verdict.violations
    assert violation.rule.value == "damage"
    assert "synced byte(s) of data.log flipped at offset" in violation.details["damage"]
    # The reproduction carries the damage and replays to the same rule.
    text = info.value.reproduction.to_json()
    again = Reproduction.from_json(text)
    assert again.steps[-1] == info.value.reproduction.steps[-1]
    with pytest.raises(ContractViolation) as replayed:
        replay(again)
    assert {v.rule.value for v in replayed.value.verdict.violations} == {"damage"}


def test_a_damage_that_hits_no_synced_file_leaves_the_recovery_undamaged() -> None:
    driver = _three_sets("kvlog:make_target")
    driver.run(Recover(model=POWER, damage=Damage(path_glob="appendonly.aof")))
    (record,) = driver.stats.recoveries
    assert record.k == record.frontier == 3


def test_a_reproduction_refuses_a_damage_that_is_not_a_damage_fault() -> None:
    repro = Reproduction(config=RunConfig(), steps=(Crash(), Recover(model=POWER, damage=FLIP)))
    data = json.loads(repro.to_json())
    data["steps"][1]["damage"] = ShortWrite(written_bytes=1).to_dict()
    with pytest.raises(ValueError, match="expected a Damage fault"):
        Reproduction.from_dict(data)


@pytest.mark.parametrize("target", [None, "tinyaof:make_target"])
def test_damage_is_switched_off_with_a_reason_for_a_target_without_checksums(
    target: str | None,
) -> None:
    off = unsupported_features(RunConfig(target=target, damage=True))
    assert off["damage"] == DAMAGE_SKIPPED
    assert "damage" not in unsupported_features(RunConfig(target=target))


def test_damage_runs_for_a_checksummed_target() -> None:
    assert "damage" not in unsupported_features(RunConfig(target="kvlog:make_target",
                                                          damage=True))


def test_explore_skips_damage_for_the_reference_and_says_why() -> None:
    result = explore(RunConfig(policy="always"), make_workload("mixed", ops=5, seed=1),
                     models=(POWER,), limits=ExploreLimits(damage=DEFAULT_DAMAGE))
    assert result.damage_skipped is not None and "not checksummed" in result.damage_skipped
    assert not result.damaged_outcomes


def test_explore_limits_take_damage_faults_only() -> None:
    with pytest.raises(ValueError, match="damage: must be a FaultPlan of Damage faults"):
        ExploreLimits(damage=FaultPlan((ShortWrite(written_bytes=1),)))


def test_fuzz_damage_on_a_target_without_checksums_says_once_why_it_is_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["fuzz", "--policy", "always", "--damage", "--max-examples", "2",
                 "--workers", "1", "--progress", "never", "--reports", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert out.count("damage (not checksummed") == 1


def test_explore_damage_on_the_reference_is_skipped_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["explore", "--workload", "mixed", "--ops", "3", "--policy", "always",
                 "--damage", "--workers", "1", "--progress", "never", "--reports",
                 str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 0
    assert [line for line in err.splitlines() if "damage" in line] == [
        "explore: damage skipped: the bundled reference is not checksummed (its AOF has no "
        "checksums): damaged synced bytes are judged only for a store that declares "
        "checksums (contract rule 5)"]


def test_explore_finds_the_skipped_checksum_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(FaultPlan((FLIP,)).to_json())
    code = main(["explore", "--target", SKIP_CHECKSUM, "--workload", "mixed", "--ops", "10",
                 "--policy", "always", "--damage-plan", str(plan), "--workers", "1",
                 "--progress", "never", "--json", "--reports", str(tmp_path)])
    out = json.loads(capsys.readouterr().out)
    assert code == 1
    assert {rule.split("/")[1] for rule in out["violations_by_rule"]} == {"damage"}


def test_a_damage_plan_with_another_fault_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(FaultPlan((FLIP, ShortWrite(written_bytes=1))).to_json())
    code = main(["explore", "--workload", "mixed", "--damage-plan", str(plan),
                 "--reports", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "expected Damage faults only, got ShortWrite" in err[0]


def _damage_flag(*argv: str) -> bool:
    from harness.cli import build_parser
    from harness.cli._fuzz import damage_asked

    return damage_asked(build_parser().parse_args(["fuzz", *argv]))


def test_damage_is_on_by_default_for_a_target_that_declares_checksums() -> None:
    # The declaration is the author's opt-in: a store's checksum is otherwise never tested
    # (segstore's skip-crc-on-load was found only with --damage before this default).
    assert _damage_flag("--target", "kvlog:make_target") is True
    assert _damage_flag("--target", "kvlog:make_target", "--no-damage") is False


@pytest.mark.parametrize("argv", [(), ("--target", "tinyaof:make_target")])
def test_damage_is_off_by_default_for_a_target_without_checksums(argv: tuple[str, ...]) -> None:
    assert _damage_flag(*argv) is False
    assert _damage_flag(*argv, "--damage") is True  # asked: then skipped with one line


def test_explore_without_flags_says_nothing_about_damage_for_the_reference(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["explore", "--workload", "mixed", "--ops", "3", "--policy", "always",
                 "--workers", "1", "--progress", "never", "--reports", str(tmp_path)])
    assert code == 0
    assert "damage" not in capsys.readouterr().err
