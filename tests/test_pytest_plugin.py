"""The pytest plugin's failures and reproductions: a failing AofStateMachine test reads as the
aofcrash program (not Hypothesis's state-machine listing), saves its ``.aofrepro.json`` where
the options say and prints the replay command; reproductions carry where their target's module
came from, so they replay from a regressions folder and from another directory without
PYTHONPATH; the settings profiles are sized like the CLI's campaigns."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.machine._driver import ContractViolation
from harness.machine._steps import Reproduction, ReproError
from harness.targets import TargetSource, make_importable, target_source

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parent.parent
TINY_DIR = REPO / "examples" / "tiny-aof-store"
BUGGY = "tinyaof:make_buggy_target"

_BUGGY_MACHINE = '''
    from harness.pytest_plugin import AofStateMachine

    class Buggy(AofStateMachine):
        target = "tinyaof:make_buggy_target"
        policy = "always"
        profile = "ci"
        {extra}

    TestBuggy = Buggy.TestCase
'''


def _pytest(pytester: pytest.Pytester, *args: str) -> Any:
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-W",
                                        "ignore::pytest.PytestAssertRewriteWarning", *args)


def _clean_env() -> dict[str, str]:
    """This checkout importable, the example store not: what a user's shell has."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)
    return env


# -- the failure -------------------------------------------------------------------------------


def test_a_failing_machine_test_shows_the_aofcrash_program_and_saves_its_reproduction(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\naofcrash_reproductions = found\n")
    pytester.makepyfile(test_store=_BUGGY_MACHINE.format(extra="shrink_budget_s = 10"))
    result = _pytest(pytester)
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "aofcrash found a violation: [durability] always/tinyaof:make_buggy_target" in text
    assert "program (" in text and "LOST" in text  # the numbered steps, the lost write a step
    assert "recover under" in text and "(image: " in text  # the crash image in words
    assert "diff against S(" in text and "expected:" in text and "recovered:" in text
    # Not Hypothesis's listing, not the harness's frames.
    for noise in ("state.choose_features", "Draw 1", "Traceback", "_driver.py",
                  "state.teardown()", "Explanation:"):
        assert noise not in text, noise
    saved = pytester.path / "found" / "test_store.Buggy.aofrepro.json"
    assert saved.is_file()
    replay_lines = [line for line in text.splitlines() if line.startswith("replay: ")]
    # Every replay line names the one file saved (seen twice once, on a loaded machine).
    assert replay_lines and all(line.endswith(f"replay {saved}") for line in replay_lines)
    repro = Reproduction.from_json(saved.read_text(encoding="utf-8"))
    assert repro.config.target == BUGGY and repro.expected["outcome"] == "violation"
    assert repro.target_source is not None and repro.target_source.module == "tinyaof"
    assert [p.name for p in saved.parent.iterdir()] == [saved.name]  # no temporary left


def test_the_option_names_the_folder_and_a_cut_shrink_is_said(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_store=_BUGGY_MACHINE.format(extra=""))
    result = _pytest(pytester, "--aofcrash-reproductions", "elsewhere",
                     "--aofcrash-shrink-budget", "0.001")
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    assert "shrinking stopped at its 0.001 s limit" in text
    assert "spent more than five minutes" not in text  # Hypothesis's words for our limit
    assert (pytester.path / "elsewhere" / "test_store.Buggy.aofrepro.json").is_file()
    assert not (pytester.path / ".aofcrash").exists()


def test_a_factory_object_that_cannot_be_named_says_why_no_reproduction_was_saved(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_store='''
        from harness.pytest_plugin import AofStateMachine
        from tinyaof import make_buggy_target

        def build():
            def local(env):
                return make_buggy_target(env)
            return local

        class Buggy(AofStateMachine):
            target = build()
            policy = "always"
            shrink_budget_s = 0.001

        TestBuggy = Buggy.TestCase
    ''')
    result = _pytest(pytester)
    result.assert_outcomes(failed=1)
    text = result.stdout.str()
    # Its replay would run the reference, not this store: no program drawn from it either.
    assert "VIOLATION [durability]" in text
    assert "no reproduction saved: the target is a factory object" in text
    assert not (pytester.path / ".aofcrash").exists()


@pytest.mark.parametrize("value", ["nope", "0", "-3", "inf"])
def test_a_shrink_budget_that_is_not_positive_seconds_is_one_usage_line(
    pytester: pytest.Pytester, value: str
) -> None:
    result = _pytest(pytester, "--aofcrash-shrink-budget", value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"--aofcrash-shrink-budget: expected seconds > 0, got {value!r}" in (
        result.stderr.str())


# -- where the target came from -----------------------------------------------------------------


def test_a_reproduction_records_the_target_module_directory_relative_to_the_root() -> None:
    import tinyaof  # noqa: F401  (imported, as it is once a run has built the target)

    source = target_source(BUGGY, root=REPO)
    assert source == TargetSource(module="tinyaof", path="examples/tiny-aof-store",
                                  directory=str(TINY_DIR))
    outside = target_source(BUGGY, root=REPO / "tests")
    assert outside is not None and outside.path == TINY_DIR.as_posix()
    for own in (None, "harness.targets:reference_target", "hypothesis:given"):
        assert target_source(own, root=REPO) is None  # the reference, ours, installed


def test_an_old_reproduction_without_target_source_still_loads() -> None:
    from harness.machine._steps import RunConfig, Write

    old = Reproduction(config=RunConfig(target=BUGGY), steps=(Write((b"SET", b"k", b"v")),))
    data = json.loads(old.to_json())
    assert "target_source" not in data
    assert Reproduction.from_dict(data) == old
    with pytest.raises(ReproError, match="target_source: module must be a module name"):
        Reproduction.from_dict({**data, "target_source": {"module": "a b", "path": "x",
                                                          "directory": "/x"}})
    with pytest.raises(ReproError, match="target_source: path must be strings"):
        Reproduction.from_dict({**data, "target_source": {"module": "a", "path": 3,
                                                          "directory": "/x"}})


def test_the_directory_is_found_near_the_file_when_the_project_moved(tmp_path: Path) -> None:
    project = tmp_path / "moved"
    (project / "src" / "storexyz").mkdir(parents=True)
    (project / "src" / "storexyz" / "__init__.py").write_text("")
    regressions = project / "tests" / "regressions"
    regressions.mkdir(parents=True)
    source = TargetSource(module="storexyz", path="src",
                          directory=str(tmp_path / "before" / "src"))
    try:
        assert make_importable(source, near=[regressions]) == project / "src"
        assert sys.path[-1] == str(project / "src")
    finally:
        sys.path.remove(str(project / "src"))
    # Importable already (installed, on the path): nothing to add.
    assert make_importable(TargetSource(module="json", path="src", directory="/x"),
                           near=[regressions]) is None


@pytest.fixture(scope="module")
def buggy_finding() -> ContractViolation:
    from harness.pytest_plugin import aofcrash_state_machine, find_violation

    finding = find_violation(aofcrash_state_machine(target=BUGGY, policy="always"),
                             shrink=False)
    assert isinstance(finding, ContractViolation)
    return finding


def _project_with_a_regression(tmp_path: Path, finding: ContractViolation) -> Path:
    """A user's project: the store in src/, the finding copied into tests/regressions/; then
    the project moves, so the absolute directory recorded is gone."""
    before = tmp_path / "before"
    shutil.copytree(TINY_DIR / "tinyaof", before / "src" / "tinyaof")
    repro = finding.reproduction
    assert repro is not None
    recorded = Reproduction(config=repro.config, steps=repro.steps, expected=repro.expected,
                            target_source=TargetSource(module="tinyaof", path="src",
                                                       directory=str(before / "src")))
    regressions = before / "tests" / "regressions"
    regressions.mkdir(parents=True)
    (regressions / "lost-write.aofrepro.json").write_text(recorded.to_json(), encoding="utf-8")
    project = tmp_path / "project"
    before.rename(project)
    return project


def test_a_regression_replays_from_another_directory_without_pythonpath(
    tmp_path: Path, buggy_finding: ContractViolation
) -> None:
    project = _project_with_a_regression(tmp_path, buggy_finding)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    file = project / "tests" / "regressions" / "lost-write.aofrepro.json"
    replay = subprocess.run(
        [sys.executable, "-c", "import sys; from harness.cli import main; sys.exit(main())",
         "replay", "--json", str(file)],
        cwd=elsewhere, env=_clean_env(), capture_output=True, text=True, timeout=120,
        check=False)
    assert replay.returncode == 1, replay.stderr
    out = json.loads(replay.stdout)
    assert out["status"] == "violation" and out["matches_expected"]
    # Installed, the plugin loads by its entry point; from a bare checkout, by name.
    from importlib.metadata import entry_points

    installed = any(e.name == "aofcrash" for e in entry_points(group="pytest11"))
    load = [] if installed else ["-p", "harness.pytest_plugin"]
    suite = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *load, "-q",
         str(project / "tests" / "regressions")],
        cwd=elsewhere, env=_clean_env(), capture_output=True, text=True, timeout=120,
        check=False)
    assert suite.returncode == 0, suite.stdout + suite.stderr
    assert "1 passed" in suite.stdout


# -- profiles ----------------------------------------------------------------------------------


def test_the_ci_profile_is_sized_for_a_bug_fuzz_finds_in_a_thousand_examples(
    pytester: pytest.Pytester,
) -> None:
    from harness.machine import PROFILES

    # One run of N examples finds a bug about as soon as fuzz's slices do (measured; see the
    # comment at PROFILES): 2000 finds a bug fuzz finds after ~1000 with odds of >= 85%.
    assert PROFILES["ci"].max_examples >= 2000 and PROFILES["ci"].derandomize
    assert PROFILES["dev"].max_examples >= 100
    pytester.makepyfile(test_profiles='''
        from harness.pytest_plugin import AofStateMachine

        class Chosen(AofStateMachine):
            target = "tinyaof:make_target"

        class Named(AofStateMachine):
            target = "tinyaof:make_target"
            profile = "nightly"

        def test_the_option_sets_the_profile_of_machines_that_name_none():
            assert Chosen.TestCase.settings.max_examples == 2000
            assert Chosen.TestCase.settings.derandomize
            assert Named.TestCase.settings.max_examples == 10_000
    ''')
    _pytest(pytester, "--aofcrash-profile", "ci").assert_outcomes(passed=1)
