"""Campaigns: units, shards, workers, the example database, the budget and progress lines."""

from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faults import PersistenceModel
from harness.cli._progress import Progress
from harness.machine._campaign import Campaign, CampaignResult, run_campaign, slice_seed
from harness.machine._steps import RunConfig

POWER = PersistenceModel.POWER
SAFE = RunConfig(policy="always")
BUGGY = RunConfig(policy="always", defects=frozenset({"reply-before-fsync"}))


def _found(result: CampaignResult) -> list[tuple[int, int, tuple[str, ...]]]:
    return sorted((f.unit, f.seed, tuple(f.rules)) for f in result.findings)


def test_units_go_round_robin_over_configurations_and_stop_at_max_examples() -> None:
    campaign = Campaign(configs=(SAFE, BUGGY), max_examples=25, examples_per_slice=10)
    assert list(campaign.units()) == [0, 1, 2, 3, 4, 5]  # 3 slices x 2 configurations
    config, slice_index, _seed = campaign.unit(3)
    assert (config, slice_index) == (BUGGY, 1)


def test_shards_split_the_units_without_overlap_or_gap() -> None:
    base = Campaign(configs=(SAFE, BUGGY), max_examples=40, examples_per_slice=10)
    whole = list(base.units())
    parts = [list(Campaign(configs=base.configs, max_examples=40, examples_per_slice=10,
                           shard=(i, 3)).units()) for i in range(3)]
    assert sorted(u for part in parts for u in part) == whole
    assert not set(parts[0]) & set(parts[1])


def test_slice_seeds_are_hashed_so_neighbouring_campaign_seeds_share_no_slice() -> None:
    seeds_0 = {slice_seed(0, "always/safe", i) for i in range(50)}
    seeds_1 = {slice_seed(1, "always/safe", i) for i in range(50)}
    assert not seeds_0 & seeds_1
    assert slice_seed(0, "always/safe", 1) != slice_seed(0, "everysec/safe", 1)
    assert slice_seed(7, "always/safe", 3) == slice_seed(7, "always/safe", 3)


def test_bad_campaign_settings_are_named_all_at_once() -> None:
    with pytest.raises(ValueError, match=r"shard.*workers.*max_examples"):
        Campaign(configs=(SAFE,), shard=(2, 2), workers=0, max_examples=0)


def test_the_union_of_shards_finds_exactly_what_the_unsharded_campaign_finds() -> None:
    kwargs = {"configs": (SAFE, BUGGY), "models": (POWER,), "max_examples": 20,
              "examples_per_slice": 5, "stop_on_first": False, "shrink_budget_s": 2.0,
              "shrink_floor_s": 0.0, "budget_s": 300.0, "seed": 4}
    whole = run_campaign(Campaign(**kwargs))  # type: ignore[arg-type]
    assert whole.findings, "the defect went unnoticed: the test proves nothing"
    shards = [run_campaign(Campaign(**kwargs, shard=(i, 2)))  # type: ignore[arg-type]
              for i in range(2)]
    assert sorted(u for s in shards for u in s.units) == whole.units
    assert sorted(f for s in shards for f in _found(s)) == _found(whole)
    assert sum(s.examples for s in shards) == whole.examples


def test_two_workers_give_the_result_of_one() -> None:
    # Shrinking is the one step bounded by time, so it is off here (a zero budget stops it
    # before its first attempt): the first failing example is deterministic. Shrinking to the
    # end took 77 s quiet, 180 s on a busy machine, and proved nothing more about workers.
    kwargs = {"configs": (SAFE, BUGGY), "models": (POWER,), "max_examples": 20,
              "examples_per_slice": 5, "shrink_budget_s": 0.0, "shrink_floor_s": 0.0,
              "budget_s": 300.0, "seed": 3}
    one = run_campaign(Campaign(**kwargs))  # type: ignore[arg-type]
    two = run_campaign(Campaign(**kwargs, workers=2))  # type: ignore[arg-type]
    assert one.findings, "the defect went unnoticed: the test proves nothing"
    assert (one.units, one.examples, _found(one)) == (two.units, two.examples, _found(two))
    assert [f.text for f in one.findings] == [f.text for f in two.findings]
    assert one.per_config == two.per_config
    assert one.stopped_by == two.stopped_by == "finding"


def test_the_budget_covers_shrinking_with_a_floor() -> None:
    result = run_campaign(Campaign(configs=(BUGGY,), models=(POWER,), budget_s=3.0,
                                   shrink_budget_s=90.0, shrink_floor_s=2.0))
    assert result.findings
    # Found within the budget, shrunk for what it left but at least the floor, not 90 s
    # (what each slice was allowed, not how long it took: that is the machine's business).
    assert 2.0 <= result.shrink_allowed_s <= 3.0, result.shrink_allowed_s
    assert result.time_s["shrinking"] > 0


@pytest.mark.parametrize("workers", [1, 2])
def test_shrinking_is_told_about_while_it_runs(workers: int) -> None:
    # A finding may shrink for minutes after the last unit's progress line (a 3-step program
    # used a 60 s budget in silence): the campaign says it is shrinking, about once a second.
    heard: list[tuple[str, float, float, int]] = []
    result = run_campaign(
        Campaign(configs=(BUGGY,), models=(POWER,), budget_s=60.0, shrink_budget_s=4.0,
                 shrink_floor_s=4.0, workers=workers, seed=3),
        shrinking=lambda label, shrunk_s, allowed_s, steps: heard.append(
            (label, shrunk_s, allowed_s, steps)))
    assert result.findings, "the defect went unnoticed: the test proves nothing"
    assert heard, "nothing said while shrinking"
    assert {label for label, *_ in heard} == {"always/safe/reply-before-fsync"}
    assert {allowed for _l, _s, allowed, _n in heard} == {4.0}
    assert all(steps >= 1 for *_, steps in heard)
    shrunk = [s for _l, s, _a, _n in heard]
    assert shrunk == sorted(shrunk)


def test_a_failure_stored_in_the_example_database_is_replayed_first(tmp_path: Path) -> None:
    database = str(tmp_path / "examples")
    kwargs = {"configs": (BUGGY,), "models": (POWER,), "budget_s": 120.0,
              "shrink_budget_s": 5.0, "examples_per_slice": 5}
    first = run_campaign(Campaign(**kwargs, seed=11, database=database))  # type: ignore[arg-type]
    assert first.findings
    assert any(Path(database).rglob("*")), "nothing was stored"
    # Another seed: its own first slice would generate a different example, but the stored
    # failure is tried before any new one.
    again = run_campaign(Campaign(**kwargs, seed=12, database=database))  # type: ignore[arg-type]
    assert again.findings and again.units == [0]
    assert again.findings[0].rules == first.findings[0].rules


def test_without_a_database_nothing_is_stored(tmp_path: Path) -> None:
    run_campaign(Campaign(configs=(BUGGY,), models=(POWER,), budget_s=60.0,
                          shrink_budget_s=2.0))
    assert not list(tmp_path.iterdir())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.real
def test_shards_share_found_examples_through_a_redis_database(tmp_path: Path) -> None:
    binary = shutil.which("redis-server", path="/usr/bin")
    if binary is None:
        pytest.fail("redis-server is missing: run scripts/bootstrap.sh")
    port = _free_port()
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--dir", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import redis

        client = redis.Redis(host="127.0.0.1", port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        url = f"redis://127.0.0.1:{port}/0"
        kwargs = {"configs": (BUGGY,), "models": (POWER,), "budget_s": 120.0,
                  "shrink_budget_s": 5.0, "examples_per_slice": 5, "database": url}
        first = run_campaign(Campaign(**kwargs, seed=21))  # type: ignore[arg-type]
        assert first.findings
        assert client.dbsize() > 0, "no example reached the shared database"
        # A shard on "another machine": its first unit replays what the first one found.
        other = run_campaign(Campaign(**kwargs, seed=22, shard=(1, 2)))  # type: ignore[arg-type]
        assert other.findings and other.units == [1]
    finally:
        server.kill()  # by PID: the process this test started
        server.wait(timeout=10)


def test_progress_without_a_terminal_is_one_plain_line_per_interval() -> None:
    stream = io.StringIO()
    progress = Progress(enabled=True, total=60, unit="s", stream=stream, interval_s=3600)
    for second in range(1, 30):
        progress.update(second, f"examples {second * 10}")
    progress.close()
    lines = stream.getvalue().splitlines()
    # The first update at once, then nothing until the interval, then the last one at close.
    assert lines == ["[1/60 s] examples 10", "[29/60 s] examples 290"]
    assert "\r" not in stream.getvalue()


def test_progress_never_writes_when_disabled() -> None:
    stream = io.StringIO()
    progress = Progress(enabled=False, total=10, unit="s", stream=stream, interval_s=0)
    progress.update(5, "x")
    progress.close()
    assert stream.getvalue() == ""


def test_report_merge_adds_up_the_shards_of_a_campaign(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from harness.cli import main

    common = ["fuzz", "--policy", "always", "--defect", "reply-before-fsync", "--model", "power",
              "--max-examples", "40", "--keep-going", "--workers", "1", "--database", "none",
              "--shrink-budget", "2s", "--progress", "never", "--reports", str(tmp_path),
              "--json"]
    totals = []
    for shard in ("0/2", "1/2"):
        assert main([*common, "--shard", shard]) == 1
        totals.append(json.loads(capsys.readouterr().out))
    shard_dirs = sorted(p for p in tmp_path.iterdir() if p.name.startswith("fuzz-"))
    assert len(shard_dirs) == 2
    code = main(["report", "--merge", *map(str, shard_dirs), "--reports", str(tmp_path),
                 "--json"])
    merged = json.loads(capsys.readouterr().out)
    assert code == 1
    assert merged["examples"] == sum(t["examples"] for t in totals)
    assert merged["violations"] == sum(t["violations"] for t in totals)
    report = json.loads(next(tmp_path.glob("merged-*/report.json")).read_text())
    assert all(Path(v["reproduction"]).is_file() for v in report["violations"])


def test_report_of_several_directories_without_merge_is_a_usage_error(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    assert main(["report", str(tmp_path), str(tmp_path)]) == 2
    assert "--merge" in capsys.readouterr().err


def test_the_ci_recipe_uses_only_options_the_cli_has() -> None:
    import re
    import shlex

    from harness.cli import build_parser

    recipe = (Path(__file__).parent.parent / "examples" / "ci" / "aofcrash-fuzz.yml").read_text()
    commands = re.findall(r"run: >\n((?:\s{10}.*\n)+)", recipe)
    commands += re.findall(r"- run: (aofcrash .*)", recipe)
    assert len(commands) >= 2
    for text in commands:
        words = shlex.split(re.sub(r"\$\{\{[^}]*\}\}", "1", " ".join(text.split())))
        assert words[0] == "aofcrash"
        build_parser().parse_args([w.replace("shards/*/fuzz-*", "x") for w in words[1:]])


_SAME_SEED = """
import json, sys
{imports}
from faults import PersistenceModel
from harness.machine._campaign import Campaign, run_campaign
from harness.machine._steps import RunConfig
result = run_campaign(Campaign(configs=(RunConfig(policy="everysec"),),
                               models=(PersistenceModel.POWER,), max_examples=10,
                               examples_per_slice=10, seed=4))
print(json.dumps(sorted(result.events.items())))
"""


def test_the_same_seed_draws_the_same_programs_whatever_modules_are_imported() -> None:
    # Hypothesis draws literals mined from every local module imported; a campaign must not
    # depend on whether the CLI (and its literals) was imported first.
    runs = [subprocess.run([sys.executable, "-c", _SAME_SEED.format(imports=imports)],
                           capture_output=True, text=True, check=True,
                           cwd=Path(__file__).resolve().parent.parent).stdout
            for imports in ("", "import harness.cli, harness.explore, harness.verify")]
    assert json.loads(runs[0]), "no events: the comparison proves nothing"
    assert runs[0] == runs[1]


def _sigterm_is_default() -> bool:
    import signal

    return signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_pool_workers_die_of_sigterm_whatever_handler_their_parent_has() -> None:
    # Pool.terminate() sends SIGTERM; a Python handler inherited from the parent (server and
    # mount clean-up) may never run in a worker blocked on a semaphore, and the join hung.
    import multiprocessing
    import signal

    from harness._pool import die_on_terminate

    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
    try:
        context = multiprocessing.get_context("fork")
        plain = context.Pool(1)
        try:
            assert not plain.apply(_sigterm_is_default)  # the inherited handler: the hazard
        finally:
            # Closed, not terminated: its worker ignores SIGTERM, so terminate() is the very
            # hang this test is about (it hung the suite for 15 to 30 minutes at a time).
            plain.close()
            plain.join()
        with context.Pool(1, initializer=die_on_terminate) as pool:
            assert pool.apply(_sigterm_is_default)
    finally:
        signal.signal(signal.SIGTERM, previous)
