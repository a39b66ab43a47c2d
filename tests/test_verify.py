"""aofcrash verify: the workload, faults and oracle against real server processes."""

from __future__ import annotations

import json
import random
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.verify import _verify as verify
from harness.verify import VerifyConfig, run_verify, verify_report


def _mounts_under(root: Path) -> list[str]:
    with open("/proc/mounts", encoding="utf-8") as fh:
        points = [line.split()[1] for line in fh]
    return [p for p in points if p.startswith(str(root))]


@pytest.fixture(autouse=True)
def trial_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Trials make their directories (and mounts) under this test's tmp_path; afterwards no
    process, mount or trial directory of ours may be left."""
    root = tmp_path / "trials"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    yield root
    assert psutil.Process().children(recursive=True) == [], "processes left behind"
    assert _mounts_under(root) == [], "FUSE mounts left behind"
    assert list(root.iterdir()) == [], "trial directories left behind"


def _needs(server: str) -> None:
    try:
        verify.check_environment(VerifyConfig(server=server))
    except verify.VerifyEnvironmentError as exc:
        pytest.skip(str(exc))


def _needs_fuse() -> None:
    from faults.fuse import fuse_unavailable_reason

    reason = fuse_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


# -- fast: no server needed -------------------------------------------------------------------


def test_a_bad_config_names_every_bad_field() -> None:
    with pytest.raises(ValueError) as err:
        VerifyConfig(server="9.9", policy="sometimes", trials=0, fault="meteor")
    message = str(err.value)
    for field in ("server must be one of", "policy must be one of", "trials must be",
                  "fault must be one of"):
        assert field in message


def test_everysec_spreads_the_writes_over_seconds_by_default_and_always_does_not() -> None:
    assert VerifyConfig(policy="everysec").workload_duration_ms == 6000
    assert VerifyConfig(policy="always").workload_duration_ms == 0
    assert VerifyConfig(policy="everysec", duration_ms=10).workload_duration_ms == 10


def test_a_trial_command_line_re_runs_exactly_that_trial() -> None:
    cfg = VerifyConfig(server="6.2", policy="no", model="power", fault="io-error", seed=7,
                       rewrite=True, image="drawn-damaged")
    line = cfg.command_line(trial=4)
    assert line.startswith("aofcrash verify --server 6.2 --policy no --model power")
    assert "--seed 7 --trials 1 --first-trial 4" in line
    assert "--rewrite" in line and "--image drawn-damaged" in line and "--fault io-error" in line


def test_the_workload_is_a_function_of_the_seed_with_transactions_selects_and_long_ttls() -> None:
    first = verify._workload(random.Random(3), 300, rewrite_at=100)
    again = verify._workload(random.Random(3), 300, rewrite_at=100)
    other = verify._workload(random.Random(4), 300, rewrite_at=100)
    assert first == again != other
    writes = [i for i in first if i.kind is verify._Kind.WRITE]
    assert len(writes) == 300
    assert any(len(i.commands) > 1 for i in writes), "no MULTI/EXEC block"
    assert any(i.kind is verify._Kind.SELECT for i in first)
    assert [i.kind for i in first].count(verify._Kind.REWRITE) == 1
    ttls = [int(c[2]) for i in writes for c in i.commands if c[0] in (b"EXPIRE", b"SETEX")]
    assert ttls and min(ttls) >= 2 * 3600  # hours: nothing expires during a trial


# -- real servers -----------------------------------------------------------------------------


@pytest.mark.real
@pytest.mark.parametrize("server", ["7.0", "6.2"])
def test_always_with_process_crashes_finds_no_violation(server: str) -> None:
    _needs(server)
    result = run_verify(VerifyConfig(server=server, policy="always", trials=4, ops=120, seed=1))
    assert [t.outcome for t in result.trials] == ["consistent"] * 4
    for t in result.trials:
        # always + process: every acknowledged write survives, so k reaches the frontier.
        assert t.recovery.k is not None and t.recovery.frontier == t.acked
        assert t.recovery.k >= t.acked > 0
        assert t.stability is not None and t.stability.ok


@pytest.mark.real
def test_some_writes_are_in_flight_when_the_kill_lands() -> None:
    _needs("7.0")
    result = run_verify(VerifyConfig(server="7.0", policy="always", trials=8, ops=80, seed=2))
    events: dict[str, int] = {}
    for t in result.trials:
        for name, n in t.events.items():
            events[name] = events.get(name, 0) + n
    assert result.ok
    # Unanswered writes stay unknown; replies already on the socket are read after the kill.
    assert sum(t.unknown for t in result.trials) > 0
    assert events.get("replies read after the kill", 0) > 0


@pytest.mark.real
def test_power_loss_with_always_on_redis_7_keeps_every_acknowledged_write() -> None:
    _needs("7.0")
    _needs_fuse()
    result = run_verify(VerifyConfig(server="7.0", policy="always", model="power", trials=4,
                                     ops=120, seed=3))
    assert result.ok, "\n".join(t.render() for t in result.trials)
    assert {t.crash_image for t in result.trials} <= {"drawn", "durable-only"}
    for t in result.trials:
        if t.outcome == "consistent":
            assert t.recovery.frontier == t.acked
            assert t.recovery.k is not None and t.recovery.k >= t.acked


@pytest.mark.real
def test_policy_no_under_power_loss_loses_acknowledged_writes_without_a_violation() -> None:
    _needs("7.0")
    _needs_fuse()
    result = run_verify(VerifyConfig(server="7.0", policy="no", model="power", trials=3,
                                     ops=80, seed=4, image="durable"))
    assert result.ok
    report = verify_report(result, run_id="test")
    rows = report["configurations"]
    assert [r["outcome"] for r in rows] == ["consistent"] * 3
    assert all(r["frontier"] == 0 for r in rows)  # `no` promises nothing under power
    assert all(r["k"] < r["acked"] for r in rows), rows  # and acknowledged writes were lost


@pytest.mark.real
def test_a_target_whose_dump_drops_a_key_is_reported_as_a_violation() -> None:
    _needs("7.0")
    from harness.targets import dump_keyspace

    dropped: list[bytes] = []

    def lossy_dump(client: Any, now_ms: int) -> Mapping[int, Any]:
        dump = dump_keyspace(client, now_ms=now_ms)
        for keys in dump.values():
            key = sorted(keys)[0]
            del keys[key]
            dropped.append(key)
            break
        return dump

    result = run_verify(VerifyConfig(server="7.0", policy="always", trials=2, ops=60, seed=5),
                        dump=lossy_dump)
    assert dropped, "the double never had a key to drop"
    assert [t.outcome for t in result.trials] == ["violation"] * 2
    rules = {v.rule.value for t in result.trials for v in t.violations}
    assert rules <= {"prefix-consistency", "durability", "stability"} and rules
    report = verify_report(result, run_id="test")
    assert report["totals"]["violations"] == 2
    text = report["violations"][0]["text"]
    assert "VIOLATION" in text and "frontier" in text and "diff against" in text
    assert report["violations"][0]["reproduce"].startswith("aofcrash verify --server 7.0")


@pytest.mark.real
def test_a_failure_or_ctrl_c_mid_trial_leaves_no_server_and_no_mount(trial_root: Path) -> None:
    _needs("7.0")
    _needs_fuse()

    def interrupted_dump(client: Any, now_ms: int) -> Mapping[int, Any]:
        assert _mounts_under(trial_root), "the trial should be running on its mount"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_verify(VerifyConfig(server="7.0", policy="always", model="power", trials=1,
                                ops=30, seed=6), dump=interrupted_dump)
    # The autouse fixture checks: no process, no mount, no trial directory.


@pytest.mark.real
def test_the_reference_server_process_passes_verify() -> None:
    _needs("reference")
    result = run_verify(VerifyConfig(server="reference", policy="always", trials=2, ops=60,
                                     seed=8))
    assert result.ok, "\n".join(t.render() for t in result.trials)
    assert all(t.outcome == "consistent" for t in result.trials)


# -- the CLI ----------------------------------------------------------------------------------


def test_cli_unknown_server_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["verify", "--server", "9.9"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--server" in err and "9.9" in err


def test_cli_missing_binary_says_to_run_bootstrap(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from harness.cli import main
    from harness.targets import _servers

    monkeypatch.setattr(_servers, "_REPO_ROOT", tmp_path)  # no .vendor/redis-6.0.9 there
    code = main(["verify", "--server", "6.0", "--reports", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "scripts/bootstrap.sh" in err


@pytest.mark.real
def test_cli_json_summary_and_report_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _needs("7.0")
    from harness.cli import main

    code = main(["verify", "--server", "7.0", "--trials", "2", "--ops", "40", "--seed", "9",
                 "--json", "--progress", "never", "--reports", str(tmp_path)])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["status"] == "ok" and summary["findings"] == []
    assert summary["trials"] == 2 and summary["consistent"] == 2
    assert Path(summary["report"]).is_file() and Path(summary["html"]).is_file()
    report = json.loads(Path(summary["report"]).read_text())
    assert report["command"] == "verify" and len(report["configurations"]) == 2
