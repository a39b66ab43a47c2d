"""aofcrash explore --server: ALICE's crash-state exploration on real server binaries."""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from pathlib import Path

import pytest
from _real import needs_fuse, needs_server

from harness.cli import main
from harness.cli._common import UsageError
from harness.oracle import History, Outcome, frontier
from harness.verify import _explore_server as es
from harness.verify._explore_server import (
    ServerExploreConfig,
    explore_server,
    replay_server_reproduction,
    write_server_reproductions,
)


@pytest.fixture(autouse=True)
def run_root(scratch_root: Path) -> Path:
    """Every test here runs with the scratch directory checked afterwards (conftest.py)."""
    return scratch_root


def _needs(server: str) -> None:
    needs_fuse()
    needs_server(server)


def _parser() -> argparse.ArgumentParser:
    """The real aofcrash parser: explore carries the --server options."""
    from harness.cli import build_parser

    return build_parser()


def _run_cli(argv: list[str]) -> int:
    from harness.cli._explore_server import cmd_explore_server

    args = _parser().parse_args(["explore", *argv])
    return cmd_explore_server(args)


# -- fast: no server needed -------------------------------------------------------------------


def test_a_bad_config_names_every_bad_field() -> None:
    with pytest.raises(ValueError) as err:
        ServerExploreConfig(server="9.9", policy="sometimes", models=("meteor",), ops=0,
                            rewrite_at=-2, server_config=(("-x", "1"),))
    message = str(err.value)
    for part in ("server must be one of", "policy must be one of", "models must be",
                 "ops must be", "rewrite_at must be", "server_config items"):
        assert part in message


def test_the_rewrite_goes_before_the_middle_write_unless_told_otherwise() -> None:
    assert ServerExploreConfig(ops=200).rewrite_before == 100
    assert ServerExploreConfig(ops=200, rewrite_at=7).rewrite_before == 7
    assert ServerExploreConfig(ops=200, rewrite_at=-1).rewrite_before is None
    assert ServerExploreConfig(policy="everysec").workload_duration_ms == 6000
    assert ServerExploreConfig(policy="always").workload_duration_ms == 0


def _fake_recording(seed: int, entries: int) -> es._Recording:
    """Entries sent one at a time, each answered some operations later (a few refused)."""
    rng = random.Random(seed)
    history = History()
    positions = []
    pos = 3
    now = 0
    for i in range(entries):
        now += rng.randrange(0, 400)
        index = history.submit([(b"SET", b"k%d" % (i % 3), b"v%d" % i)], db=0, executed_ms=now)
        submit = pos
        pos += rng.randrange(0, 3)
        now += rng.randrange(0, 50)
        if rng.randrange(6) == 0:
            history.resolve(index, Outcome.ERROR)
        else:
            history.resolve(index, Outcome.OK, at_ms=now)
        positions.append(es._EntryPos(submit, pos))
    return es._Recording(trace=None, start_ms=[], first_point=0, end_ms=now, history=history,
                         positions=positions, max_latency_ms=50, events=Counter())


@pytest.mark.parametrize("policy", ["always", "everysec", "no"])
@pytest.mark.parametrize("seed", range(4))
def test_the_frontier_index_agrees_with_the_oracle_at_every_crash_point(policy: str,
                                                                        seed: int) -> None:
    from faults import PersistenceModel

    rec = _fake_recording(seed, 40)
    config = ServerExploreConfig(policy=policy)
    fr = es._Frontiers(rec, config)
    last = rec.positions[-1].resolve_pos
    assert last is not None
    for p in range(last + 2):
        history = es._history_at(rec, p)
        crash_ms = 600 * p
        for model in (PersistenceModel.PROCESS, PersistenceModel.POWER):
            expected = frontier(history, policy=policy, model=model.value, crash_ms=crash_ms,
                                window_ms=config.window_ms + config.margin_ms)
            assert fr.frontier(p, crash_ms, model) == expected, (p, model)
        executed = sum(1 for e in history if e.outcome is not Outcome.ERROR)
        if not fr.refused_pending(p):
            assert fr.submitted(p) == executed


def test_an_entry_counts_as_acknowledged_only_from_the_trace_length_read_after_its_reply(
) -> None:
    history = History()
    history.submit([(b"SET", b"a", b"1")], db=0, executed_ms=10)
    history.resolve(0, Outcome.OK, at_ms=12)
    rec = es._Recording(trace=None, start_ms=[], first_point=0, end_ms=20, history=history,
                        positions=[es._EntryPos(5, 7)], max_latency_ms=2, events=Counter())
    assert len(es._history_at(rec, 4)) == 0  # not sent yet
    assert es._history_at(rec, 5)[0].outcome is Outcome.UNKNOWN  # sent, maybe on disk
    assert es._history_at(rec, 6)[0].outcome is Outcome.UNKNOWN  # reply not yet read
    assert es._history_at(rec, 7)[0].outcome is Outcome.OK


def test_server_options_that_mean_nothing_for_a_real_binary_are_refused() -> None:
    with pytest.raises(UsageError, match="--workload"):
        _run_cli(["--server", "7.0", "--workload", "basic"])
    with pytest.raises(UsageError, match="only the reference has named defects"):
        _run_cli(["--server", "7.0", "--defect", "reply-before-fsync"])
    with pytest.raises(UsageError, match="server must be one of"):
        _run_cli(["--server", "nine", "--reports", "/tmp/unused-aofcrash-reports"])


def test_a_server_setting_must_be_name_equals_value() -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["explore", "--server", "7.0", "--server-config", "novalue"])
    args = _parser().parse_args(["explore", "--server", "7.0", "--server-config",
                                 "aof-use-rdb-preamble=yes"])
    assert args.server_config == [("aof-use-rdb-preamble", "yes")]


def test_a_file_that_is_not_a_reproduction_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"format": "something else"}), encoding="utf-8")
    with pytest.raises(ValueError, match="not an explore --server reproduction"):
        replay_server_reproduction(path)


# -- real servers -----------------------------------------------------------------------------


@pytest.mark.real
def test_redis_7_always_with_a_rewrite_holds_in_every_state_and_the_fast_path_agrees() -> None:
    _needs("7.0")
    # Prefix images only: the zero tails of size-before-data images are the next test's.
    config = ServerExploreConfig(server="7.0", ops=30, seed=3, exact=True,
                                 size_before_data=False, in_place=False)
    result = explore_server(config, workers=2)
    assert result.ok, "\n".join(v.describe() for v in result.violations[:3])
    assert result.events["bgrewriteaof: started"] == 1
    assert result.points_explored == result.points_total > 30
    for model in config.models:
        assert sum(n for (m, _), n in result.outcomes.items() if m == model) > 0
    # Every state group was judged by the oracle and by the fast path (which must agree).
    assert result.exact_checks == result.state_groups
    # Dedup: far fewer real recoveries than states, and each image recovered once.
    assert result.distinct_contents < result.states
    assert result.real_recoveries == result.distinct_contents
    assert result.coverage()["power-ext4"]["fraction"] == 1.0


@pytest.mark.real
def test_redis_7_always_refuses_a_file_at_its_new_size_over_zeros_under_the_ext4_model() -> None:
    # ext4 journals a file's new size before its data (measured on the kernel, and the kernel
    # column of reports/findings-explore.md shows the same refusal): with the size-before-data
    # images on by default, every violation is 7.0 refusing such an image ("Bad file format").
    _needs("7.0")
    config = ServerExploreConfig(server="7.0", ops=30, seed=3, models=("process", "power-ext4"))
    result = explore_server(config, workers=2)
    assert not result.ok
    assert {rule for (_, rule) in result.violation_counts} == {"availability"}
    assert {model for (model, _) in result.violation_counts} == {"power-ext4"}
    for v in result.violations:
        assert any(f.kind.value == "size-before-data" for f in v.choice.files)
        assert "Bad file format" in (v.reason or "")


@pytest.mark.real
def test_a_planted_reply_before_fsync_in_the_reference_process_is_found_under_power(
    tmp_path: Path,
) -> None:
    _needs("reference")
    config = ServerExploreConfig(server="reference", ops=12, seed=1, rewrite_at=-1,
                                 models=("process", "power-ext4"),
                                 server_config=(("defect", "reply-before-fsync"),))
    result = explore_server(config, workers=2)
    assert not result.ok
    rules = {rule for (model, rule) in result.violation_counts}
    assert rules == {"durability"}
    assert {model for (model, _) in result.violation_counts} == {"power-ext4"}
    assert result.outcomes[("process", "violation")] == 0
    first = result.violations[0]
    assert first.verdict is not None and not first.verdict.ok
    # The reproduction holds the image and re-runs to the same verdict.
    rows = write_server_reproductions(result, tmp_path / "repros", max_groups=1)
    assert rows[0]["reproduction"] is not None
    repro = Path(rows[0]["reproduction"])
    assert (repro.parent / "image").is_dir()
    verdict = replay_server_reproduction(repro)
    assert not verdict.ok
    assert {v.rule.value for v in verdict.violations} == {"durability"}
    # `aofcrash replay FILE` re-runs it too (exit 1: the violation is still there).
    assert main(["replay", str(repro)]) == 1


@pytest.mark.real
def test_the_clean_reference_process_holds_where_the_planted_bug_fails() -> None:
    _needs("reference")
    config = ServerExploreConfig(server="reference", ops=12, seed=1, rewrite_at=-1,
                                 models=("process", "power-ext4"))
    result = explore_server(config, workers=2)
    assert result.ok, "\n".join(v.describe() for v in result.violations[:3])


@pytest.mark.real
def test_a_run_without_the_posix_minimum_says_in_one_line_how_to_add_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _needs("7.0")
    code = _run_cli(["--server", "7.0", "--ops", "6", "--model", "process", "--workers", "2",
                     "--reports", str(tmp_path / "reports"), "--progress", "never"])
    lines = capsys.readouterr().out.splitlines()
    assert code == 0
    (note,) = [line for line in lines if "power-posix-metadata" in line]
    assert note.startswith("note: power-posix-metadata (the POSIX minimum")
    assert "add --model power-posix-metadata" in note


@pytest.mark.real
def test_the_cli_writes_a_report_and_exits_0_on_a_clean_run(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]
                                                            ) -> None:
    _needs("7.0")
    code = _run_cli(["--server", "7.0", "--ops", "10", "--model", "process", "--workers", "2",
                     "--reports", str(tmp_path / "reports"), "--json", "--progress", "never"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["status"] == "ok"
    assert out["real_recoveries"] == out["distinct_aof_contents"] > 0
    report = json.loads(Path(out["report"]).read_text(encoding="utf-8"))
    assert report["command"] == "explore" and report["run"]["server"] == "7.0"
    assert Path(out["html"]).exists()


@pytest.mark.real
@pytest.mark.slow
def test_the_cli_finds_the_planted_bug_and_its_reproduction_replays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _needs("reference")
    code = _run_cli(["--server", "reference", "--defect", "reply-before-fsync", "--ops", "8",
                     "--rewrite-at", "-1", "--model", "power-ext4", "--workers", "2",
                     "--reports", str(tmp_path / "reports"), "--progress", "never"])
    text = capsys.readouterr().out
    assert code == 1, text
    assert "durability" in text
    repro = next((tmp_path / "reports").rglob("repro.json"))
    assert _run_cli(["--server", "reference", "--replay", str(repro)]) == 1


@pytest.mark.real
@pytest.mark.slow
def test_redis_7_everysec_holds_under_the_process_model() -> None:
    _needs("7.0")
    config = ServerExploreConfig(server="7.0", policy="everysec", ops=40, seed=2,
                                 duration_ms=3500, models=("process",), exact=True)
    result = explore_server(config, workers=2)
    assert result.ok, "\n".join(v.describe() for v in result.violations[:3])
    assert result.exact_checks == result.state_groups


def _everysec_reference(defects: tuple[str, ...], seed: int = 4) -> ServerExploreConfig:
    # Writes 25 ms apart: the everysec-fsync-skipped server still fsyncs the first write of
    # each second, so the last write must rarely be one (100 ms apart it was 1 in 10, and more
    # often on a loaded machine, where the test then found nothing).
    return ServerExploreConfig(server="reference", policy="everysec", ops=40, seed=seed,
                               duration_ms=1000, rewrite_at=-1, models=("process", "power-ext4"),
                               server_config=tuple(("defect", d) for d in defects))


@pytest.mark.real
@pytest.mark.slow
def test_an_everysec_server_that_never_fsyncs_before_an_idle_period_is_found() -> None:
    # The recording ends with an idle period longer than the window, and the end state's
    # crash time is the kill: the writes before the idle period must be durable by then.
    # Whether the last write before the idle period happened to be the first of a new second
    # (which this server does fsync) is the scheduler's choice: a run where it was proves
    # nothing, so up to five seeds run until one has unsynced writes to lose; every run must
    # judge only durability, and never under a process crash.
    _needs("reference")
    found = set()
    for seed in range(4, 9):
        result = explore_server(_everysec_reference(("everysec-fsync-skipped",), seed), workers=2)
        rules = {rule for (_, rule) in result.violation_counts}
        assert rules <= {"durability"}, rules
        assert result.outcomes[("process", "violation")] == 0
        found |= rules
        if found:
            break
    assert found == {"durability"}


@pytest.mark.real
@pytest.mark.slow
def test_the_clean_everysec_reference_holds_with_the_same_workload() -> None:
    _needs("reference")
    result = explore_server(_everysec_reference(()), workers=2)
    assert result.ok, "\n".join(v.describe() for v in result.violations[:3])


@pytest.mark.real
def test_the_lost_create_and_the_resurrected_old_file_are_two_mechanisms_none_dropped(
        scratch_root: Path) -> None:
    # Redis 6.2 under the POSIX minimum, writes paced around a rewrite: the image may lack
    # appendonly.aof (its create never followed by a directory fsync) or hold the OLD one (the
    # rewrite's rename never followed by one). One group kept past the first of each mechanism.
    _needs("6.2")
    result = explore_server(ServerExploreConfig(
        server="6.2", policy="always", models=("power-posix-metadata",), ops=30,
        duration_ms=1500, rewrite_at=10, max_exact_violations=1), workers=2)
    kinds = {m["mechanism"] for m in result.mechanisms}
    assert "durability: the image lacks appendonly.aof" in kinds, kinds
    assert "durability: the image has an older appendonly.aof" in kinds, kinds
    # Every mechanism keeps its first group (with its verdict, for a reproduction) ...
    kept = {v.mechanism for v in result.violations}
    assert kinds <= kept and all(v.verdict is not None for v in result.violations)
    # ... and what is past the cap is counted, not dropped.
    groups = sum(m["state_groups"] for m in result.mechanisms)
    assert len(result.violations) + result.groups_left_out == groups
    states = sum(m["states"] for m in result.mechanisms)
    assert states == result.violating_states
    assert result.to_dict()["violation_groups_left_out"] == result.groups_left_out
