"""Any in-process implementation as a target: the CLI's --target, replay against the recorded
target, bad specs, capabilities switched off, the explorer's generic path (cross-checked with
the reference's fast path), and the pytest plugin. The worked example tinyaof
(examples/tiny-aof-store, on the test path) is the third-party target."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from faults import PersistenceModel
from harness.cli import main
from harness.explore import ExploreLimits, explore, make_workload
from harness.explore._generic import explore_generic
from harness.explore._record import record
from harness.machine._driver import ContractViolation
from harness.machine._features import FEATURES, unsupported_features
from harness.machine._steps import RunConfig, Write
from harness.targets import (
    Target,
    TargetEnv,
    TargetError,
    load_target_factory,
    reference_target,
)

pytest_plugins = ["pytester"]

PROCESS, POWER, EAGER = (PersistenceModel.PROCESS, PersistenceModel.POWER,
                         PersistenceModel.POWER_EAGER_METADATA)
MODELS = (PROCESS, POWER, EAGER)
TINY, BUGGY = "tinyaof:make_target", "tinyaof:make_buggy_target"
REFERENCE = "harness.targets:reference_target"  # the reference, named: the generic path


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


# -- bad specs: one clear line, exit 2 --------------------------------------------------------


def not_a_target(env: TargetEnv) -> object:
    """A factory that returns something that is not a Target."""
    return {"env": env}


def raising_factory(env: TargetEnv) -> Target:
    raise RuntimeError("no disk for me")


@pytest.mark.parametrize(("spec", "says"), [
    ("no_such_module_xyz:make", "cannot import 'no_such_module_xyz'"),
    ("tinyaof:no_such_factory", "has no attribute 'no_such_factory'"),
    ("tinyaof", "expected MODULE:FACTORY"),
    ("test_targets:not_a_target", "not a Target (missing: start, submit"),
    ("test_targets:raising_factory", "the factory raised RuntimeError: no disk for me"),
])
@pytest.mark.parametrize("command", ["fuzz", "explore"])
def test_an_unusable_target_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: str, spec: str, says: str
) -> None:
    code, out, err = _run(capsys, command, "--target", spec, "--reports", str(tmp_path),
                          "--progress", "never")
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and says in err, err
    assert not list(tmp_path.iterdir())  # refused before any run directory was made


def test_the_spec_loader_raises_target_error_naming_the_spec() -> None:
    with pytest.raises(TargetError, match=r"'x\.y:z'.*cannot import 'x\.y'"):
        load_target_factory("x.y:z")
    assert load_target_factory(REFERENCE) is reference_target


def test_a_reproduction_whose_target_is_gone_cannot_be_replayed_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from harness.machine._steps import Reproduction

    repro = Reproduction(config=RunConfig(target="gone_module_xyz:make"),
                         steps=(Write((b"SET", b"k", b"v")),))
    path = tmp_path / "gone.aofrepro.json"
    path.write_text(repro.to_json())
    code, _, err = _run(capsys, "replay", str(path))
    assert code == 2
    assert err.count("\n") == 1 and "cannot import 'gone_module_xyz'" in err


# -- capabilities ---------------------------------------------------------------------------


def test_the_reference_runs_every_feature() -> None:
    assert unsupported_features(RunConfig()) == {}


def test_a_target_without_rewrite_or_collections_has_those_features_switched_off() -> None:
    off = unsupported_features(RunConfig(target=TINY))
    assert set(off) == {"rewrite", "kill_child", "rewrite_done", "collections", "multi_key",
                        "big_collections", "shapes"}
    assert off["shapes"] == "not declared, never sent: SET EXAT, PXAT, KEEPTTL"
    assert off["rewrite"] == "no rewrite: not a RewritingTarget"
    assert off["big_collections"] == "does not implement HSET RPUSH SADD ZADD"


class _Undeclared:
    """The reference behind the required protocol only: no rewrite, no commands declared."""

    def __init__(self, env: TargetEnv) -> None:
        self.inner = reference_target(env)

    def start(self) -> None:
        self.inner.start()

    def submit(self, argv: Sequence[bytes], *, client: int) -> int:
        return self.inner.submit(argv, client=client)

    def run_iteration(self) -> None:
        self.inner.run_iteration()

    def released(self, ticket: int) -> bool:
        return self.inner.released(ticket)

    def pop_reply(self, ticket: int) -> Any:
        return self.inner.pop_reply(ticket)

    def dump(self) -> Any:
        return self.inner.dump()

    @property
    def stopped(self) -> bool:
        return self.inner.stopped


def test_without_a_commands_declaration_only_the_missing_rewrite_switches_rules_off() -> None:
    off = unsupported_features(RunConfig(), factory=_Undeclared)
    assert set(off) == {"rewrite", "kill_child", "rewrite_done"}
    assert set(unsupported_features(RunConfig(), factory=_Undeclared,
                                    features=("strings", "rewrite"))) == {"rewrite"}
    assert "rewrite" in FEATURES


# -- fuzz and replay against a target ---------------------------------------------------------


def test_fuzz_finds_the_example_stores_bug_and_replay_reruns_the_same_target(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = Path(__file__).resolve().parent.parent
    monkeypatch.chdir(repo)  # where a user runs fuzz: the store's directory under it
    code, out, err = _run(capsys, "fuzz", "--target", BUGGY, "--policy", "always", "--budget",
                          "60s", "--shrink-budget", "5s", "--workers", "1", "--database", "none",
                          "--json", "--reports", str(tmp_path), "--progress", "never")
    assert code == 1, err
    summary = json.loads(out)
    assert summary["target"] == BUGGY
    assert set(summary["switched_off"]) >= {"rewrite", "collections"}
    finding = summary["findings"][0]
    assert finding["rule"] == "durability"
    report = json.loads(Path(summary["report"]).read_text())
    assert report["run"]["target"] == BUGGY
    assert "rewrite" in report["run"]["switched_off"]
    assert BUGGY in report["summary"]
    repro = Path(summary["report"]).parent / finding["reproduction"]
    assert json.loads(repro.read_text())["config"]["target"] == BUGGY
    code, out, _ = _run(capsys, "replay", str(repro), "--json")
    assert code == 1
    replayed = json.loads(out)
    assert replayed["status"] == "violation" and replayed["matches_expected"]
    # The replay line works from another directory, without PYTHONPATH: the file records
    # where tinyaof came from.
    assert json.loads(repro.read_text())["target_source"]["path"] == "examples/tiny-aof-store"
    assert finding["replay"].endswith(f"replay {repro}")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())",
         "replay", "--json", str(repro)],
        cwd=tmp_path, env={**env, "PYTHONPATH": str(repo)}, capture_output=True, text=True,
        timeout=120, check=False)
    assert proc.returncode == 1, proc.stderr
    assert json.loads(proc.stdout)["matches_expected"]


def test_fuzz_of_the_correct_example_store_says_once_which_rules_are_off(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = _run(capsys, "fuzz", "--target", TINY, "--policy", "everysec",
                          "--max-examples", "20", "--budget", "60s", "--workers", "1",
                          "--database", "none", "--reports", str(tmp_path), "--progress", "never")
    assert code == 0, err
    lines = [line for line in out.splitlines() if "switched off" in line]
    assert len(lines) == 1
    assert "rewrite, kill_child, rewrite_done (no rewrite: not a RewritingTarget)" in lines[0]


# -- the explorer's generic path ----------------------------------------------------------------


def _explore(config: RunConfig, workload: str, ops: int, **kwargs: Any) -> Any:
    limits = ExploreLimits(max_images_per_point=40, max_reproductions=2,
                           confirm_reproductions=1)
    # A missing directory fsync loses a rename only under the POSIX minimum.
    models = MODELS + ((PersistenceModel.POWER_POSIX_METADATA,)
                       if "no-dir-fsync-after-rename" in config.defects else ())
    return explore(config, make_workload(workload, ops=ops, seed=3), models=models,
                   limits=limits, **kwargs)


@pytest.mark.parametrize(("workload", "policy", "defect"), [
    ("mixed", "everysec", None),
    ("rewrite", "always", None),
    ("short-write", "no", None),
    ("multi", "always", "multi-applied-on-load"),
    ("rewrite", "always", "no-dir-fsync-after-rename"),
    ("expiry", "always", "set-expiry-split"),
    ("mixed", "always", "reply-before-fsync"),
])
def test_the_generic_path_agrees_with_the_fast_path_on_the_reference(
    workload: str, policy: str, defect: str | None
) -> None:
    config = RunConfig(policy=policy, defects=frozenset([defect] if defect else []))
    fast = _explore(config, workload, 10)
    generic = _explore(RunConfig(**{**vars(config), "target": REFERENCE}), workload, 10)
    assert (generic.to_dict()["mode"], fast.to_dict()["mode"]) == ("generic", "fast")
    assert generic.states == fast.states
    assert generic.outcomes == fast.outcomes
    assert generic.violation_counts == fast.violation_counts
    # Coverage agrees but for the image kinds: the fast path knows which file is the AOF,
    # the generic path reports the kind of the first file not at its durable contents.
    for model in ("process", "power-ext4", "power-eager-metadata"):
        g, f = dict(generic.coverage()[model]), dict(fast.coverage()[model])
        assert sum(g.pop("by_kind").values()) == sum(f.pop("by_kind").values())
        assert g == f
    assert (defect is None) == generic.ok


def test_the_generic_path_agrees_with_the_naive_mode_state_by_state() -> None:
    config = RunConfig(policy="everysec")
    naive = _explore(config, "short-write", 8, naive=True, keep_states=True)
    generic = _explore(RunConfig(policy="everysec", target=REFERENCE), "short-write", 8,
                       keep_states=True)
    assert naive.states_log is not None and generic.states_log is not None
    assert ([(s.point, s.model, s.choice, s.outcome, s.rules) for s in naive.states_log]
            == [(s.point, s.model, s.choice, s.outcome, s.rules) for s in generic.states_log])


def test_each_distinct_image_is_recovered_once() -> None:
    builds: list[int] = []

    def counting(env: TargetEnv) -> Target:
        builds.append(1)
        return load_target_factory(TINY)(env)

    config = RunConfig(policy="always", target=TINY)
    rec = record(config, make_workload("mixed", ops=15, seed=1))
    result = explore_generic(rec, MODELS, ExploreLimits(), factory=counting)
    assert result.ok
    assert result.full_recoveries == result.distinct_contents == len(builds)
    assert result.distinct_contents < result.states / 3  # many states share an image


def test_explore_finds_the_example_stores_bug_and_confirms_it_by_replay() -> None:
    result = _explore(RunConfig(policy="always", target=BUGGY), "mixed", 15)
    assert result.violation_counts.keys() == {("power-ext4", "durability"),
                                              ("power-eager-metadata", "durability")}
    first = result.violations[0]
    assert first.confirmed and first.reproduction is not None
    assert first.reproduction.config.target == BUGGY
    assert _explore(RunConfig(policy="always", target=TINY), "mixed", 15).ok


def test_cli_explore_takes_a_target_and_reports_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = _run(capsys, "explore", "--target", BUGGY, "--policy", "always",
                          "--workload", "mixed", "--ops", "10", "--json", "--reports",
                          str(tmp_path), "--progress", "never")
    assert code == 1, err
    summary = json.loads(out)
    report = json.loads(Path(summary["report"]).read_text())
    assert report["run"]["target"] == BUGGY and report["run"]["mode"] == "generic"
    repro = Path(summary["report"]).parent / summary["findings"][0]["reproduction"]
    assert json.loads(repro.read_text())["config"]["target"] == BUGGY


# -- the pytest plugin ----------------------------------------------------------------------


def _pytest(pytester: pytest.Pytester, *args: str) -> Any:
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-W",
                                        "ignore::pytest.PytestAssertRewriteWarning", *args)


def test_fixture_docs_are_listed_by_pytest_fixtures(pytester: pytest.Pytester) -> None:
    result = _pytest(pytester, "--fixtures")
    text = result.stdout.str()
    for name in ("aofcrash_clock", "aofcrash_disk", "aofcrash_fs", "aofcrash_target_factory",
                 "aofcrash_target", "aofcrash_driver"):
        assert name in text
    assert "A fresh in-memory disk" in text


def test_a_third_party_suite_subclasses_the_machine_and_the_option_names_the_target(
    pytester: pytest.Pytester,
) -> None:
    from harness.pytest_plugin import _OPTIONS

    before = dict(_OPTIONS)
    pytester.makepyfile(test_store='''
        from harness.pytest_plugin import AofStateMachine, aofcrash_state_machine

        class Named(AofStateMachine):
            target = "tinyaof:make_target"
            policy = "no"

        class FromOption(AofStateMachine):
            policy = "always"

        TestNamed = Named.TestCase
        TestFromOption = FromOption.TestCase
        TestBuilt = aofcrash_state_machine(target="tinyaof:make_target", profile="dev").TestCase

        def test_fixtures_use_the_option(aofcrash_target, aofcrash_driver, aofcrash_clock):
            assert type(aofcrash_target).__name__ == "TinyTarget"
            ticket = aofcrash_target.submit([b"SET", b"k", b"v"], client=0)
            aofcrash_target.run_iteration()
            assert aofcrash_target.pop_reply(ticket) == "OK"
            driver = aofcrash_driver(policy="always")
            assert driver.config.target == "tinyaof:make_target"
            assert aofcrash_clock.now_ms == 0
    ''')
    result = _pytest(pytester, "--aofcrash-target", TINY, "--aofcrash-profile", "dev")
    result.assert_outcomes(passed=4)
    assert "aofcrash: target tinyaof:make_target, profile dev" in result.stdout.str()
    assert before == _OPTIONS  # the inner session's options do not leak into this one


def test_a_recorded_reproduction_replays_against_its_target_as_a_test(
    pytester: pytest.Pytester,
) -> None:
    from harness.pytest_plugin import aofcrash_state_machine, find_violation

    machine = aofcrash_state_machine(target=BUGGY, policy="always")
    finding = find_violation(machine, shrink=False)
    assert isinstance(finding, ContractViolation)
    data = json.loads(finding.reproduction.to_json())
    assert data["config"]["target"] == BUGGY
    pytester.makefile(".aofrepro.json", found=json.dumps(data))
    gone = {**data, "config": {**data["config"], "target": "gone_module_xyz:make"}}
    pytester.makefile(".aofrepro.json", gone=json.dumps(gone))
    result = _pytest(pytester, "-q")
    result.assert_outcomes(passed=1, failed=1)
    assert "cannot replay it: target 'gone_module_xyz:make'" in result.stdout.str()


def test_a_factory_object_is_recorded_by_its_import_path() -> None:
    from tinyaof import make_target

    from harness.pytest_plugin import _spec_of

    assert _spec_of(make_target) == ("tinyaof.aofcrash_target:make_target", None)

    def local(env: TargetEnv) -> Target:
        return make_target(env)

    assert _spec_of(local) == (None, local)
