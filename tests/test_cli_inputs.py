"""Every bad input to ``aofcrash`` is one clear line on stderr and exit 2, never a traceback:
random bytes as a reproduction, workload or report, unusable --reports paths, mistyped names
(with a suggestion), negative budgets; --seed only where it does something; a warning when
the chosen policy or model cannot show the chosen defect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.cli import main
from harness.cli._common import DEFECT_NEEDS, defect_names, defect_warnings


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _one_clear_line(code: int, err: str) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err


# -- files that are not what they should be --------------------------------------------------

LOADERS = {
    "replay": lambda path: ["replay", str(path)],
    "report": lambda path: ["report", str(path)],
    "explore --workload": lambda path: ["explore", "--workload", str(path),
                                        "--max-crash-points", "1", "--reports",
                                        str(path.parent / "reports")],
}


@pytest.mark.parametrize("loader", sorted(LOADERS))
@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "not UTF-8"),
        (b"{not json", "JSON"),
        (b"[" * 100_000, ""),
        (b'{"format": "aofcrash-repro/1", "config": {"defects": 5}, "steps": []}', ""),
        (b'{"format": "aofcrash-repro/1", "steps": [{"step": ["x"]}]}', ""),
        (b'{"format": "aofcrash-report/1", "violations": 3}', ""),
    ],
    ids=["binary", "broken-json", "deep-json", "defects-not-a-list", "unhashable-step",
         "report-field-type"],
)
def test_a_file_that_is_not_a_reproduction_or_report_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], loader: str, content: bytes, says: str
) -> None:
    path = tmp_path / "input.json"
    path.write_bytes(content)
    code, _, err = _run(capsys, *LOADERS[loader](path))
    _one_clear_line(code, err)
    assert str(path) in err and says in err


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(content=st.binary(max_size=300), loader=st.sampled_from(sorted(LOADERS)))
def test_arbitrary_bytes_never_make_a_loader_raise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, loader: str
) -> None:
    path = tmp_path / "fuzzed.json"
    path.write_bytes(content)
    code, _, err = _run(capsys, *LOADERS[loader](path))
    _one_clear_line(code, err)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=12,
)
_STEP = st.fixed_dictionaries(
    {"step": st.sampled_from(["write", "tick", "recover", "crash", "inject", "multi", "jump"])},
    optional={"argv": _JSON, "delta_ms": _JSON, "model": _JSON, "choice": _JSON,
              "plan": _JSON, "commands": _JSON},
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=st.dictionaries(st.sampled_from(["policy", "defects", "window_ms", "profile",
                                               "fsync_failure", "torn_sectors"]), _JSON,
                              max_size=3),
       steps=st.lists(_STEP, max_size=4) | _JSON)
def test_a_reproduction_with_fields_of_any_type_replays_or_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: object, steps: object
) -> None:
    path = tmp_path / "shaped.aofrepro.json"
    path.write_text(json.dumps({"format": "aofcrash-repro/1", "config": config,
                                "steps": steps}))
    code, _, err = _run(capsys, "replay", str(path))
    assert code in (0, 1, 2), err
    assert "Traceback" not in err
    if code == 2:
        _one_clear_line(code, err)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(report=st.dictionaries(st.sampled_from(["run", "totals", "violations", "groups",
                                               "events", "configurations", "summary",
                                               "coverage_matrix", "progress_series"]),
                              _JSON, max_size=4))
def test_a_report_with_fields_of_any_type_renders_or_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], report: dict[str, object]
) -> None:
    (tmp_path / "report.json").write_text(json.dumps({"format": "aofcrash-report/1", **report}))
    code, _, err = _run(capsys, "report", str(tmp_path))
    assert code in (0, 1, 2), err
    assert "Traceback" not in err
    if code == 2:
        _one_clear_line(code, err)


# -- unusable --reports ----------------------------------------------------------------------


@pytest.mark.parametrize("where", ["a file", "/proc", "/proc/nowhere"])
def test_an_unusable_reports_path_is_one_line_exit_2_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], where: str
) -> None:
    if where == "a file":
        target = tmp_path / "file"
        target.write_text("x")
    else:
        target = Path(where)
    code, _, err = _run(capsys, "explore", "--reports", str(target), "--max-crash-points", "1")
    _one_clear_line(code, err)
    assert "--reports" in err and str(target) in err


# -- names: suggestions, lists ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "suggestion"),
    [
        (["fuzz", "--defect", "reply-before-fsynk"], "did you mean 'reply-before-fsync'?"),
        (["explore", "--defect", "no-dir-fsync-after-renam"],
         "did you mean 'no-dir-fsync-after-rename'?"),
        (["explore", "--workload", "rewrit"], "did you mean 'rewrite'?"),
        (["fuzz", "--policy", "alwys"], "did you mean 'always'?"),
        (["fuzz", "--model", "powr"], "did you mean 'power'?"),
        (["explore", "--model", "power-ext3"], "did you mean 'power-ext4'?"),
        (["verify", "--server", "7.1"], "did you mean '7.0'?"),
        (["verify", "--server", "7.0", "--fault", "enospc2"], "did you mean"),
        (["chek-aof", "x"], "did you mean 'check-aof'?"),
    ],
)
def test_a_mistyped_name_gets_a_suggestion_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], suggestion: str
) -> None:
    code, _, err = _run(capsys, *argv, *(["--reports", str(tmp_path)]
                                         if argv[0] in ("fuzz", "explore") else []))
    _one_clear_line(code, err)
    assert suggestion in err


def test_a_name_with_no_close_match_lists_every_known_one(
    capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "fuzz", "--defect", "zzzz")
    _one_clear_line(code, err)
    assert "known: " in err and all(name in err for name in defect_names())


@pytest.mark.parametrize("command", ["fuzz", "explore"])
def test_defect_help_lists_every_defect(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, _ = _run(capsys, command, "--help")
    assert code == 0
    flat = " ".join(out.split())
    assert all(name in flat for name in defect_names())


# -- budgets and seeds -----------------------------------------------------------------------


@pytest.mark.parametrize("budget", ["-5s", "-5", "-1m"])
def test_a_negative_budget_says_it_must_be_positive(
    capsys: pytest.CaptureFixture[str], budget: str
) -> None:
    code, _, err = _run(capsys, "fuzz", "--budget", budget)
    _one_clear_line(code, err)
    assert f"invalid budget '{budget}': must be positive" in err
    assert "expected one argument" not in err


def test_an_option_followed_by_another_option_still_says_a_value_is_missing(
    capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "fuzz", "--budget", "--json")
    _one_clear_line(code, err)
    assert "expected one argument" in err


@pytest.mark.parametrize(("command", "has_seed"),
                         [("fuzz", True), ("explore", True), ("verify", True),
                          ("replay", False), ("check-aof", False), ("report", False)])
def test_seed_is_offered_only_where_randomness_exists(
    capsys: pytest.CaptureFixture[str], command: str, has_seed: bool
) -> None:
    code, out, _ = _run(capsys, command, "--help")
    assert code == 0 and "--json" in out
    assert ("--seed" in out) is has_seed


# -- which defect needs which policy and model -----------------------------------------------


def test_every_defect_in_the_needs_table_exists() -> None:
    assert set(DEFECT_NEEDS) <= set(defect_names())


def test_a_policy_that_cannot_show_the_defect_is_warned_about() -> None:
    lines = defect_warnings(["everysec-fsync-skipped"], policies=["always"], models=["power"])
    assert len(lines) == 1 and "only shows under policy everysec" in lines[0]
    assert defect_warnings(["everysec-fsync-skipped"], policies=["always", "everysec"],
                           models=["power"]) == []


def test_a_model_that_cannot_show_the_defect_is_warned_about() -> None:
    lines = defect_warnings(["reply-before-fsync"], policies=["always"], models=["process"])
    assert len(lines) == 1 and "power" in lines[0]
    lines = defect_warnings(["no-dir-fsync-after-rename"], policies=["always"],
                            models=["power-eager-metadata"])
    assert len(lines) == 1


def test_explore_warns_on_stderr_and_still_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = _run(capsys, "explore", "--defect", "everysec-fsync-skipped", "--policy",
                          "always", "--max-crash-points", "2", "--workload", "mixed",
                          "--ops", "5", "--reports",
                          str(tmp_path), "--json")
    assert code == 0
    assert "warning: defect 'everysec-fsync-skipped' only shows under policy everysec" in err
    assert json.loads(out)["status"] == "ok"


@pytest.mark.parametrize("command", ["fuzz", "explore", "verify"])
def test_model_help_says_which_filesystem_each_kernel_model_stands_for(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    code, out, _ = _run(capsys, command, "--help")
    assert code == 0
    text = " ".join(out.split())
    for name in ("power-ext4", "power-xfs", "power-btrfs", "(alias power)", "POSIX minimum"):
        assert name in text, name
