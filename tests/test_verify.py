"""aofcrash verify: the workload, faults and oracle against real server processes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil
import pytest
from _real import mounts_under, needs_fuse, needs_server

from harness.targets import remove_stale_run_dirs
from harness.verify import FAULTS, VerifyConfig, run_verify, verify_report
from harness.verify._faults import FaultDraw, draw_fault, kill_range
from harness.verify._workload import ItemKind, workload


@pytest.fixture(autouse=True)
def trial_root(scratch_root: Path) -> Path:
    """Every test here runs with the scratch directory checked afterwards (conftest.py)."""
    return scratch_root


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
    first = workload(random.Random(3), 300, rewrite_at=100)
    again = workload(random.Random(3), 300, rewrite_at=100)
    other = workload(random.Random(4), 300, rewrite_at=100)
    assert first == again != other
    writes = [i for i in first if i.kind is ItemKind.WRITE]
    assert len(writes) == 300
    assert any(len(i.commands) > 1 for i in writes), "no MULTI/EXEC block"
    assert any(i.kind is ItemKind.SELECT for i in first)
    assert [i.kind for i in first].count(ItemKind.REWRITE) == 1
    ttls = [int(c[2]) for i in writes for c in i.commands if c[0] in (b"EXPIRE", b"SETEX")]
    assert ttls and min(ttls) >= 2 * 3600  # hours: nothing expires during a trial


# -- real servers -----------------------------------------------------------------------------


@pytest.mark.real
@pytest.mark.parametrize("server", ["7.0", "6.2"])
def test_always_with_process_crashes_finds_no_violation(server: str) -> None:
    needs_server(server)
    result = run_verify(VerifyConfig(server=server, policy="always", trials=4, ops=120, seed=1))
    assert [t.outcome for t in result.trials] == ["consistent"] * 4
    for t in result.trials:
        # always + process: every acknowledged write survives, so k reaches the frontier.
        assert t.recovery.k is not None and t.recovery.frontier == t.acked
        assert t.recovery.k >= t.acked > 0
        assert t.stability is not None and t.stability.ok


@pytest.mark.real
def test_some_writes_are_in_flight_when_the_kill_lands() -> None:
    needs_server("7.0")
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
    needs_server("7.0")
    needs_fuse()
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
    needs_server("7.0")
    needs_fuse()
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
    needs_server("7.0")
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

    attributing: list[tuple[int, int]] = []
    result = run_verify(VerifyConfig(server="7.0", policy="always", trials=2, ops=60, seed=5),
                        dump=lossy_dump,
                        attributing=lambda done, total: attributing.append((done, total)))
    assert dropped, "the double never had a key to drop"
    assert [t.outcome for t in result.trials] == ["violation"] * 2
    # Attribution re-runs each violating trial: it says how far it is, before and after each.
    assert attributing == [(0, 2), (1, 2), (2, 2)]
    rules = {v.rule.value for t in result.trials for v in t.violations}
    assert rules <= {"prefix-consistency", "durability", "stability"} and rules
    report = verify_report(result, run_id="test")
    assert report["totals"]["violations"] == 2
    text = report["violations"][0]["text"]
    assert "VIOLATION" in text and "frontier" in text and "diff against" in text
    assert report["violations"][0]["reproduce"].startswith("aofcrash verify --server 7.0")


@pytest.mark.real
def test_a_failure_or_ctrl_c_mid_trial_leaves_no_server_and_no_mount(trial_root: Path) -> None:
    needs_server("7.0")
    needs_fuse()

    def interrupted_dump(client: Any, now_ms: int) -> Mapping[int, Any]:
        assert mounts_under(trial_root), "the trial should be running on its mount"
        raise KeyboardInterrupt

    # Ctrl-C ends the run with the trials that finished (none here), marked interrupted.
    result = run_verify(VerifyConfig(server="7.0", policy="always", model="power", trials=1,
                                     ops=30, seed=6), dump=interrupted_dump)
    assert result.interrupted.startswith("Ctrl-C") and result.trials == []
    # The autouse fixture checks: no process, no mount, no trial directory.


@pytest.mark.real
def test_the_reference_server_process_passes_verify() -> None:
    needs_server("reference")
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
    from harness.targets import _presets

    monkeypatch.setattr(_presets, "_REPO_ROOT", tmp_path)  # no .vendor/redis-6.0.9 there
    code = main(["verify", "--server", "6.0", "--reports", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "scripts/bootstrap.sh" in err


@pytest.mark.real
def test_cli_json_summary_and_report_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    needs_server("7.0")
    from harness.cli import main

    code = main(["verify", "--server", "7.0", "--trials", "2", "--ops", "40", "--seed", "9",
                 "--json", "--progress", "never", "--reports", str(tmp_path)])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["status"] == "ok" and summary["findings"] == []
    assert summary["trials"] == 2 and summary["consistent"] == 2
    assert Path(summary["report"]).is_file() and Path(summary["html"]).is_file()
    report = json.loads(Path(summary["report"]).read_text())
    assert report["command"] == "verify" and len(report["configurations"]) == 2


# -- fault placement, not-exercised, workers ----------------------------------------------------


def test_an_everysec_kill_lands_after_the_window_and_always_anywhere() -> None:
    assert kill_range(VerifyConfig(policy="always", ops=100)) == (0, 100)
    # 6 s schedule, 2.5 s window + 0.5 s: the second half.
    assert kill_range(VerifyConfig(policy="everysec", ops=100)) == (50, 100)
    # A schedule shorter than the window cannot place it: anywhere (idle trials still count).
    assert kill_range(VerifyConfig(policy="everysec", ops=100, duration_ms=1000)) == (
        0, 100)


def test_a_fault_is_drawn_from_the_seed_and_none_draws_nothing() -> None:
    rng = random.Random(1)
    assert draw_fault(rng, "none") is None
    assert rng.random() == random.Random(1).random()  # no draw consumed
    first = draw_fault(random.Random(2), "io-error")
    assert first == draw_fault(random.Random(2), "io-error")
    assert first is not None and 1 <= first.nth <= 3 and 0 <= first.position < 1


def test_an_io_error_on_sync_hits_the_kind_the_workload_used() -> None:
    from collections import Counter

    from faults import FaultOp, IOFault

    draw = FaultDraw(kind="io-error", position=0.5, nth=1, times=1, written_bytes=1,
                             partial_bytes=None, on_sync=True, delay_ms=500)
    fault, _ = draw.arm("*.aof", Counter({FaultOp.WRITE: 3, FaultOp.FSYNC: 2}),
                        expect_syncs=True)
    assert isinstance(fault, IOFault) and fault.op is FaultOp.FSYNC
    fault, _ = draw.arm("*.aof", Counter({FaultOp.WRITE: 3}), expect_syncs=True)
    assert isinstance(fault, IOFault) and fault.op is FaultOp.FDATASYNC  # none seen yet
    # appendfsync no and no fsync seen: an EIO on a write instead; a slow fsync cannot be placed.
    fault, _ = draw.arm("*.aof", Counter({FaultOp.WRITE: 3}), expect_syncs=False)
    assert isinstance(fault, IOFault) and fault.op is FaultOp.WRITE
    slow = FaultDraw(kind="slow-sync", position=0.5, nth=1, times=1, written_bytes=1,
                             partial_bytes=None, on_sync=True, delay_ms=500)
    fault, note = slow.arm("*.aof", Counter({FaultOp.WRITE: 3}), expect_syncs=False)
    assert fault is None and "appendfsync no" in note


def test_workers_above_one_refuse_test_doubles() -> None:
    with pytest.raises(ValueError, match="workers > 1"):
        run_verify(VerifyConfig(trials=2), workers=2, dump=lambda client, now_ms: {})
    with pytest.raises(ValueError, match="workers must be"):
        run_verify(VerifyConfig(trials=2), workers=0)


def test_a_template_config_re_runs_with_its_template_and_glob() -> None:
    cfg = VerifyConfig(server_cmd="my-server --port {port} --dir '{dir}'", aof_glob="*.log")
    assert cfg.server == "command"
    line = cfg.command_line(trial=2)
    assert "--server-cmd 'my-server --port {port} --dir '\"'\"'{dir}'\"'\"''" in line
    assert "--aof-glob '*.log'" in line
    with pytest.raises(ValueError, match=r"no \{port\} placeholder"):
        VerifyConfig(server_cmd="my-server --dir {dir}")
    with pytest.raises(ValueError, match="aof_glob: must be relative"):
        VerifyConfig(aof_glob="/abs/*.aof")


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.parametrize("fault", [f for f in FAULTS if f != "none"])
def test_an_asked_for_fault_fires_in_every_trial(fault: str) -> None:
    # Placement follows the program (operation counts, a gate the rewrite child is held at),
    # not the scheduler: every trial fires, however busy the machine.
    needs_server("7.0")
    needs_fuse()
    result = run_verify(VerifyConfig(server="7.0", policy="always", fault=fault, trials=10,
                                     ops=150, seed=11), workers=2)
    assert result.fault_fired == 10, [t.render() for t in result.trials if not t.fault_fired]
    assert result.ok, "\n".join(t.render() for t in result.trials)
    report = verify_report(result, run_id="test")
    assert report["totals"]["fault_asked_trials"] == 10
    assert report["totals"]["fault_fired_trials"] == result.fault_fired
    fired_rows = [r for r in report["configurations"] if r["fault_fired"]]
    assert all(r["fault_armed_at_entry"] is not None and r["fired"] for r in fired_rows)


@pytest.mark.real
def test_an_everysec_trial_with_an_empty_frontier_is_not_exercised_in_text_json_and_totals(
) -> None:
    needs_server("7.0")
    # A 200 ms schedule: unless a trial idles before its kill, nothing is older than 2.5 s.
    result = run_verify(VerifyConfig(server="7.0", policy="everysec", trials=4, ops=30,
                                     duration_ms=200, seed=2), workers=2)
    outcomes = [t.outcome for t in result.trials]
    assert "not-exercised" in outcomes, outcomes
    for t in result.trials:
        assert (t.outcome == "not-exercised") == (t.recovery.frontier == 0), t.render()
        if t.outcome == "not-exercised":
            assert "NOT-EXERCISED" in t.render() and "frontier is empty" in t.render()
    report = verify_report(result, run_id="test")
    assert report["totals"]["not_exercised"] == outcomes.count("not-exercised")
    assert report["totals"]["consistent"] == outcomes.count("consistent")
    assert {r["outcome"] for r in report["configurations"]} <= {"consistent", "not-exercised"}


@pytest.mark.real
def test_workers_give_the_same_verdicts_as_one_worker() -> None:
    needs_server("7.0")
    config = VerifyConfig(server="7.0", policy="always", trials=6, ops=150, seed=12)
    one = run_verify(config, workers=1)
    two = run_verify(config, workers=2)
    assert two.workers == 2
    assert [t.index for t in two.trials] == list(range(6))

    def verdicts(result: Any) -> list[tuple[int, str, int]]:
        return [(t.index, t.outcome, t.entries) for t in result.trials]

    assert verdicts(one) == verdicts(two)
    assert all(t.outcome == "consistent" for t in two.trials)


@pytest.mark.real
def test_the_shards_together_run_exactly_the_trials_of_one_run() -> None:
    needs_server("7.0")
    config = VerifyConfig(server="7.0", policy="always", trials=5, ops=100, seed=3)
    whole = run_verify(config, workers=1)
    parts = [run_verify(config, workers=1, shard=(i, 2)) for i in range(2)]
    assert [t.index for t in parts[0].trials] == [0, 2, 4]
    assert [t.index for t in parts[1].trials] == [1, 3]

    def verdicts(trials: Any) -> list[tuple[int, str, int]]:
        return sorted((t.index, t.outcome, t.entries) for t in trials)

    assert verdicts(parts[0].trials + parts[1].trials) == verdicts(whole.trials)


def test_a_bad_shard_is_refused_before_any_trial() -> None:
    for shard in ((2, 2), (0, 0), (-1, 3)):
        with pytest.raises(ValueError, match="shard must be"):
            run_verify(VerifyConfig(server="7.0"), shard=shard)


_HARNESS = """
import sys
from harness.verify import VerifyConfig, run_verify
run_verify(VerifyConfig(server="7.0", policy="everysec", model="power", trials=2, ops=400,
                        duration_ms=30000, seed=1), workers=int(sys.argv[1]))
"""


def _servers_under(base: Path) -> list[int]:
    """Servers working in a directory under `base` (redis-server chdirs to its --dir and
    rewrites its command line, so the working directory is what identifies it)."""
    found = []
    for proc in psutil.process_iter(["pid"]):
        try:
            cwd = proc.cwd()  # a trial's server, not the probe that starts it once first
            if cwd.startswith(f"{base}/aofcrash-verify-") and proc.name().startswith("redis"):
                found.append(proc.pid)
        except psutil.Error:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


@pytest.mark.real
@pytest.mark.parametrize("workers", [1, 2])
def test_a_sigkilled_harness_leaves_no_server_or_mount_and_its_dirs_go_next_time(
    tmp_path: Path, workers: int
) -> None:
    needs_server("7.0")
    needs_fuse()
    base = tmp_path / "killed"
    base.mkdir()
    env = {**os.environ, "AOFCRASH_TMPDIR": str(base)}
    harness = subprocess.Popen([sys.executable, "-c", _HARNESS, str(workers)], env=env,
                               cwd=Path(__file__).resolve().parents[1])
    pids: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while len(pids) < workers and time.monotonic() < deadline:
            # Servers run with --dir under base (a worker's mount); wait for each worker's.
            pids = _servers_under(base)
            time.sleep(0.05)
        assert len(pids) >= workers, "no server started in time"
        assert mounts_under(base), "the trial should be running on its FUSE mount"
        harness.send_signal(signal.SIGKILL)
        harness.wait(timeout=30)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (any(_alive(p) for p in pids)
                                               or mounts_under(base)):
            time.sleep(0.02)
        assert [p for p in pids if _alive(p)] == [], "a server outlived the SIGKILLed harness"
        assert mounts_under(base) == [], "a FUSE mount outlived the SIGKILLed harness"
        left = sorted(p.name for p in base.iterdir())
        assert left and all(name.startswith("aofcrash-verify-") for name in left)
        owners = {name: (base / name / ".aofcrash-owner").read_text() for name in left}
        removed = remove_stale_run_dirs(base)
        assert sorted(Path(r).name for r in removed) == left, owners
        assert list(base.iterdir()) == []
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait()
        for pid in pids:  # ours (grandchildren): never leak them, even when the test fails
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


# -- bad input: one line, exit 2 ----------------------------------------------------------------


def _cli_error(capsys: pytest.CaptureFixture[str], tmp_path: Path, *argv: str) -> str:
    from harness.cli import main

    try:
        code = main(["verify", *argv, "--reports", str(tmp_path / "r"), "--progress", "never"])
    except SystemExit as exc:
        code = exc.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1, err
    return err


def test_cli_a_missing_binary_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    err = _cli_error(capsys, tmp_path, "--server", str(tmp_path / "no-such-server"))
    assert "no such file" in err


def test_cli_a_non_executable_path_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    script = tmp_path / "server"
    script.write_text("#!/bin/sh\n")
    err = _cli_error(capsys, tmp_path, "--server", str(script))
    assert "not executable" in err


def test_cli_a_template_without_port_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    err = _cli_error(capsys, tmp_path, "--server-cmd", "/usr/bin/redis-server --dir {dir}")
    assert "{port}" in err


def test_cli_needs_exactly_one_of_server_and_server_cmd(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert "--server" in _cli_error(capsys, tmp_path)
    assert "not allowed" in _cli_error(capsys, tmp_path, "--server", "7.0", "--server-cmd",
                                       "x --port {port}")


@pytest.mark.real
@pytest.mark.parametrize("binary", ["/bin/true", "/bin/sleep"])
def test_cli_a_binary_that_does_not_speak_resp_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, binary: str
) -> None:
    err = _cli_error(capsys, tmp_path, "--server", binary)
    assert binary in err and "during start-up" in err


@pytest.mark.real
def test_cli_reports_the_server_name_and_version_and_the_workers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    needs_server("7.0")
    from harness.cli import main

    code = main(["verify", "--server", "7.0", "--trials", "2", "--ops", "30", "--workers", "2",
                 "--json", "--progress", "never", "--reports", str(tmp_path)])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0 and summary["server_name"] == "redis"
    assert summary["server_version"].startswith("7.0.") and summary["not_exercised"] == 0
    report = json.loads(Path(summary["report"]).read_text())
    assert report["run"]["server_version"] == summary["server_version"]
    assert report["run"]["workers"] == 2
    assert "redis 7.0." in report["summary"]


@pytest.mark.real
def test_redis_6_0_under_everysec_leaves_a_failed_fsyncs_pages_as_a_hole_ending_at_a_page(
) -> None:
    # 6.0 ignores EIO on fsync and keeps appending: a second of appends spans pages, Linux
    # writes again only the page the next append lands in, and the pages before it stay zeros
    # under acknowledged data, a hole that ends at a page boundary (never inside a page).
    needs_server("6.0")
    needs_fuse()
    result = run_verify(VerifyConfig(server="6.0", policy="everysec", model="power-ext4",
                                     fault="fsync-error", trials=2, seed=0), workers=2,
                        attribution=False)
    events = [t.events for t in result.trials]
    assert any(e["crash image: zero hole ending at a page boundary"] for e in events), events
    assert not any(e["crash image: zero hole ending inside a page"] for e in events), events
    assert any("has zeros in appendonly.aof" in t.mechanism for t in result.trials), \
        [t.render() for t in result.trials]
