"""Differential loader fuzzing (harness.loaders): generators, classification, shrinking, and
(marked real) the regression cases re-run on the real binaries."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.loaders import (
    CORPUS,
    FAMILIES,
    AofCase,
    CheckRun,
    Disagreement,
    LoadOutcome,
    LoadRun,
    RunSettings,
    Verdict,
    aof_cases,
    ddmin,
    disagreements,
    encode,
    family_cases,
    run_matrix,
    run_tool,
    server_paths,
    shrink_bytes,
)
from harness.loaders._canon import canon_expiry, show_bytes
from harness.loaders._diff import reason_class
from harness.loaders._report import render_markdown, version_steps
from harness.loaders._run import _crash_site
from harness.loaders._shrink import split_lines, split_tokens
from reference import check_aof

REGRESSIONS = Path(__file__).parent / "regressions" / "loaders"
SET_A = encode("SET", "a", "1")
KS_A = ((0, "a", "string", "1", None),)


def loaded(keyspace: Any = KS_A, *, restart_keyspace: Any = KS_A,
           verdict: Verdict = Verdict.LOADED, offset: int | None = None,
           tool: str = "t") -> LoadOutcome:
    first = LoadRun(verdict, offset=offset, keyspace=keyspace)
    return LoadOutcome(tool, first, LoadRun(Verdict.LOADED, keyspace=restart_keyspace))


def refused(tool: str = "t") -> LoadOutcome:
    run = LoadRun(Verdict.REFUSED, reason="bad file format")
    return LoadOutcome(tool, run, run)


def check(verdict: Verdict, ok_up_to: int | None, tool: str = "c") -> CheckRun:
    return CheckRun(tool, verdict, ok_up_to, None)


def agreeing(**overrides: Any) -> dict[str, Any]:
    """Every real tool loads the file whole and every checker calls it valid."""
    outcomes: dict[str, Any] = {}
    for server in ("redis-6.0", "redis-6.2", "redis-7.0", "redis-8.2", "valkey-9.1", "ref-safe"):
        for flag in ("yes", "no"):
            outcomes[f"load:{server}:{flag}"] = loaded()
    for server in ("redis-6.0", "redis-6.2", "redis-7.0", "redis-8.2", "valkey-9.1", "aofcrash"):
        outcomes[f"check:{server}"] = check(Verdict.VALID, len(SET_A))
    outcomes.update(overrides)
    return outcomes


# -- generators ---------------------------------------------------------------------------


@given(family_cases("valid"))
@settings(max_examples=40)
def test_valid_family_files_pass_the_reference_checker(case: AofCase) -> None:
    assert check_aof(case.data).valid, case


def test_a_valid_workload_with_multi_is_valid_for_the_reference_checker() -> None:
    data = SET_A + encode("MULTI") + encode("INCR", "n") + encode("EXEC")
    assert check_aof(data).valid


@given(family_cases("torn"))
@settings(max_examples=40)
def test_torn_family_files_end_inside_a_command(case: AofCase) -> None:
    result = check_aof(case.data)
    assert not result.valid
    assert result.last_valid_offset_bytes < len(case.data)


def test_a_file_cut_one_byte_before_its_end_is_torn() -> None:
    assert not check_aof(SET_A[:-1]).valid


@given(aof_cases())
@settings(max_examples=60)
def test_every_case_names_a_known_family_and_has_bytes(case: AofCase) -> None:
    assert case.family in FAMILIES
    assert isinstance(case.data, bytes)


def test_an_unknown_family_is_refused_with_the_known_ones_named() -> None:
    with pytest.raises(ValueError, match="known: valid"):
        family_cases("nope")


def test_the_corpus_covers_negative_lengths_annotations_and_rdb_preambles() -> None:
    datas = [c.data for c in CORPUS]
    assert any(b"$-1\r\n" in d for d in datas)
    assert any(d.startswith(b"#TS:") for d in datas)
    assert any(d.startswith(b"REDIS") for d in datas)


# -- canonical keyspace -------------------------------------------------------------------


def test_near_expiries_are_relative_and_far_ones_absolute_in_whole_seconds() -> None:
    now = 1_700_000_000_000
    assert canon_expiry(1_000_000 - 7, now) == "ttl=1000"
    assert canon_expiry(None, now) is None
    far = 4_102_444_800_000 - now - 3  # PEXPIREAT in 2100, measured 3 ms late
    assert canon_expiry(far, now) == "at=4102444800"


def test_long_values_are_summarised_by_length_and_digest() -> None:
    assert show_bytes(b"ab\r\n") == "ab\\r\\n"
    assert show_bytes(b"x" * 100).startswith("<100 bytes sha1:")


# -- classification -----------------------------------------------------------------------


def test_tools_that_all_agree_show_no_disagreement() -> None:
    assert disagreements(agreeing()) == []


def test_a_crashed_loader_is_a_crash_named_by_server_and_signal() -> None:
    crashed = LoadOutcome("x", LoadRun(Verdict.CRASHED, reason="signal 11"), None)
    found = disagreements(agreeing(**{"load:redis-6.2:yes": crashed}))
    crashes = [d for d in found if d.cls == "crash"]
    assert [d.key for d in crashes] == [("crash", "redis-6.2", "load", "crashed", "signal 11")]
    assert crashes[0].tools == ("load:redis-6.2:yes",)


def test_a_crash_is_keyed_by_its_site_whatever_the_report_got_to_print() -> None:
    keys = set()
    for reason in ("assertion failed at sds.c:100", "crashed by signal at sds.c:100"):
        crashed = LoadOutcome("x", LoadRun(Verdict.CRASHED, reason=reason), None)
        found = disagreements(agreeing(**{"load:valkey-9.1:yes": crashed}))
        keys |= {d.key for d in found if d.cls == "crash"}
    assert keys == {("crash", "valkey-9.1", "load", "crashed", "at sds.c:100")}


def test_a_checker_that_calls_valid_what_its_loader_refuses_is_check_vs_loader() -> None:
    found = disagreements(agreeing(**{"load:redis-7.0:yes": refused()}))
    keys = {d.key for d in found if d.cls == "check-vs-loader"}
    assert ("check-vs-loader", "redis-7.0", "check valid, loader refused(format)") in keys


def test_a_checker_and_loader_cutting_at_different_offsets_disagree() -> None:
    outcomes = agreeing(**{
        "check:valkey-9.1": check(Verdict.INVALID, 10),
        "load:valkey-9.1:yes": loaded(verdict=Verdict.TRUNCATED, offset=27),
    })
    keys = {d.key for d in disagreements(outcomes) if d.cls == "check-vs-loader"}
    assert ("check-vs-loader", "valkey-9.1", "check and loader cut at different offsets") in keys


def test_a_checker_and_loader_cutting_at_the_same_offset_agree() -> None:
    outcomes = agreeing(**{
        f"check:{s}": check(Verdict.INVALID, 27)
        for s in ("redis-6.0", "redis-6.2", "redis-7.0", "redis-8.2", "valkey-9.1", "aofcrash")
    })
    for server in ("redis-6.0", "redis-6.2", "redis-7.0", "redis-8.2", "valkey-9.1", "ref-safe"):
        outcomes[f"load:{server}:yes"] = loaded(verdict=Verdict.TRUNCATED, offset=27)
    assert [d for d in disagreements(outcomes) if d.cls == "check-vs-loader"] == []


def test_real_loaders_that_split_are_version_vs_version_with_the_partition_in_the_key() -> None:
    outcomes = agreeing(**{"load:valkey-9.1:no": refused()})
    found = [d for d in disagreements(outcomes) if d.cls == "version-vs-version"]
    assert [d.key for d in found] == [(
        "version-vs-version", "loaders:no",
        "redis-6.0,redis-6.2,redis-7.0,redis-8.2: loaded | valkey-9.1: refused(format)")]


def test_checkers_that_all_call_a_file_invalid_but_at_other_offsets_disagree() -> None:
    outcomes = agreeing(**{
        "check:redis-6.0": check(Verdict.INVALID, 27),
        "check:redis-6.2": check(Verdict.INVALID, 27),
        "check:redis-7.0": check(Verdict.INVALID, 1050),
        "check:redis-8.2": check(Verdict.INVALID, 1050),
        "check:valkey-9.1": check(Verdict.INVALID, 1050),
    })
    found = [d.key for d in disagreements(outcomes) if d.key[1] == "checkers"]
    assert found == [("version-vs-version", "checkers",
                      "redis-6.0,redis-6.2: invalid[offset#1] | "
                      "redis-7.0,redis-8.2,valkey-9.1: invalid[offset#0]")]


def test_loaders_with_the_same_verdict_but_another_keyspace_are_told_apart() -> None:
    other = ((0, "a", "string", "2", None),)
    outcomes = agreeing(**{"load:redis-6.0:yes": loaded(other, restart_keyspace=other)})
    (found,) = [d for d in disagreements(outcomes) if d.cls == "version-vs-version"]
    assert "keyspace" in found.key[2]


def test_a_reference_profile_like_no_real_server_is_reference_vs_real() -> None:
    found = disagreements(agreeing(**{"load:ref-safe:yes": refused()}))
    keys = [d.key for d in found if d.cls == "reference-vs-real"]
    assert keys == [("reference-vs-real", "load:ref-safe:yes",
                     "redis-6.0,redis-6.2,redis-7.0,redis-8.2,valkey-9.1: loaded"
                     " | ref-safe: refused(format)")]


def _finding(id_: int, outcomes: dict[str, Any]) -> dict[str, Any]:
    return {"id": id_, "class": "crash", "key": ["crash"], "summary": "s", "size_bytes": 1,
            "hex": "00", "text": "b''", "found_in_family": "header", "original_size_bytes": 1,
            "files_showing": 1, "reproduced": True, "upstream": [],
            "outcomes": {tool: o.to_dict() for tool, o in outcomes.items()}}


def test_the_report_names_each_version_step_and_the_findings_whose_file_it_changes() -> None:
    same = agreeing()
    moved = agreeing(**{"load:redis-8.2:yes": loaded(verdict=Verdict.TRUNCATED, offset=27),
                        "check:redis-8.2": check(Verdict.INVALID, 27)})
    report = {"command": "c", "versions": {"redis-7.0": "7.0.15", "redis-8.2": "8.2.3",
                                           "valkey-9.1": "9.1.2"},
              "missing": {}, "files": 2, "loader_runs": 0, "check_runs": 0,
              "matrix_seconds": 1, "workers": 1, "shrink_seconds": 0, "coverage": {},
              "counts": {"crash": 2}, "findings": [_finding(1, same), _finding(2, moved)]}
    assert version_steps(report) == [("redis-7.0", "redis-8.2", [2], [2]),
                                     ("redis-8.2", "valkey-9.1", [2], [2])]
    assert "| redis-7.0 | redis-8.2 | #2 | #2 |" in render_markdown(report)
    report["findings"] = [_finding(1, same)]
    assert "| redis-7.0 | redis-8.2 | none | none |" in render_markdown(report)


def test_a_reference_profile_like_one_real_server_is_not_reference_vs_real() -> None:
    outcomes = agreeing(**{"load:ref-safe:yes": refused(), "load:redis-6.0:yes": refused()})
    assert [d for d in disagreements(outcomes) if d.cls == "reference-vs-real"] == []


def test_a_restart_that_refuses_after_a_truncation_is_a_restart_disagreement() -> None:
    bad = LoadOutcome("x", LoadRun(Verdict.TRUNCATED, offset=5, keyspace=KS_A),
                      LoadRun(Verdict.REFUSED, reason="bad file format"))
    found = [d for d in disagreements(agreeing(**{"load:redis-7.0:yes": bad}))
             if d.cls == "restart"]
    assert [d.key for d in found] == [("restart", "redis-7.0", "truncated then refused(format)")]
    assert found[0].restart


def test_refusal_reasons_of_every_tool_map_to_shared_classes() -> None:
    assert reason_class("bad file format") == "format"
    assert reason_class("Bad file format reading the append only file: x") == "format"
    assert reason_class("wrong number of arguments for 'set' command in the AOF") == "arity"
    assert reason_class("Unknown command 'FOO' reading the append only file") == "unknown-command"
    assert reason_class(None) == "other"


def test_a_disagreement_round_trips_through_its_dict_and_has_a_file_safe_slug() -> None:
    d = Disagreement("crash", ("crash", "redis-6.0", "load", "crashed", "signal 11"),
                     ("load:redis-6.0:yes",), "s")
    assert Disagreement.from_dict(d.to_dict()) == d
    assert d.slug.startswith("crash-redis-6.0-") and "/" not in d.slug


def test_a_crash_is_placed_at_its_failed_assertion_or_first_own_stack_frame() -> None:
    report = ("x # ==> sds.c:100 'initlen + hdrlen + 1 > initlen' is not true\n")
    assert _crash_site(report) == "at sds.c:100"
    frames = ("/usr/bin/redis-server 127.0.0.1:1(logStackTrace+0x2e)[0x1]\n"
              "/usr/bin/redis-server 127.0.0.1:1(tryObjectEncoding+0x9)[0x2]\n")
    assert _crash_site(frames) == "in tryObjectEncoding"
    assert _crash_site("nothing") is None


# -- shrinking ----------------------------------------------------------------------------


def test_ddmin_finds_the_one_element_that_matters() -> None:
    assert ddmin(list(range(50)), lambda xs: 37 in xs) == [37]


@given(st.binary(min_size=1, max_size=60), st.data())
@settings(max_examples=40)
def test_shrinking_keeps_the_predicate_and_never_grows(data: bytes, draw: st.DataObject) -> None:
    needle = data[draw.draw(st.integers(0, len(data) - 1))]
    small = shrink_bytes(data, lambda d: needle in d)
    assert needle in small and len(small) <= len(data)
    assert small in (bytes([needle]), b"\r\n")  # CRLF is one token


def test_shrinking_a_file_to_the_line_with_a_negative_length_keeps_just_that() -> None:
    data = SET_A + encode("SET", "b", "2") + b"*1\r\n$-1\r\n" + SET_A
    small = shrink_bytes(data, lambda d: b"$-1" in d)
    assert small == b"$-1"


def test_shrinking_stops_at_its_evaluation_budget_with_the_best_so_far() -> None:
    calls: list[bytes] = []

    def predicate(d: bytes) -> bool:
        calls.append(d)
        return b"x" in d

    small = shrink_bytes(b"a" * 40 + b"x" + b"b" * 40, predicate, max_evals=3)
    assert len(calls) == 3 and b"x" in small


def test_lines_and_tokens_join_back_to_the_file_and_keep_crlf_whole() -> None:
    data = b"*1\r\n$4\r\nPING\nab\r"
    assert b"".join(split_lines(data)) == data
    assert b"".join(split_tokens(data)) == data
    assert b"\r\n" in split_tokens(data)


# -- tools on real binaries ---------------------------------------------------------------


def _settings() -> RunSettings:
    paths, missing = server_paths()
    if missing:
        pytest.skip("missing servers: " + "; ".join(missing.values()))
    return RunSettings(paths=paths, workdir="/dev/shm" if Path("/dev/shm").is_dir() else None)


@pytest.mark.real
@pytest.mark.slow
def test_every_real_loader_truncates_a_torn_tail_at_the_last_complete_command() -> None:
    st_ = _settings()
    data = SET_A + encode("SET", "b", "2")[:-3]
    for server in ("redis-6.0", "redis-6.2", "redis-7.0", "redis-8.2", "valkey-9.1"):
        outcome = run_tool(f"load:{server}:yes", data, st_)
        assert isinstance(outcome, LoadOutcome)
        assert (outcome.first.verdict, outcome.first.offset) == (Verdict.TRUNCATED, len(SET_A))
        assert outcome.first.keyspace == KS_A
        assert outcome.restart is not None and outcome.restart.keyspace == KS_A
        checked = run_tool(f"check:{server}", data, st_)
        assert isinstance(checked, CheckRun)
        assert (checked.verdict, checked.ok_up_to) == (Verdict.INVALID, len(SET_A))


def _cases() -> list[Path]:
    return sorted(REGRESSIONS.glob("*.json"))


@pytest.mark.real
@pytest.mark.slow
@pytest.mark.parametrize("path", _cases(), ids=lambda p: p.stem)
def test_regression_case_still_shows_its_disagreement_with_the_recorded_verdicts(
        path: Path) -> None:
    case = json.loads(path.read_text())
    disagreement = Disagreement.from_dict(case["disagreement"])
    data = bytes.fromhex(case["hex"])
    # One run of the disagreement's tools serves both checks (the file must stay under 60 s).
    outcomes = run_matrix(data, disagreement.tools,
                          replace(_settings(), restart=disagreement.restart))
    for tool, expected in case["expected"].items():
        outcome = outcomes[tool]
        if isinstance(outcome, CheckRun):
            got = {"verdict": outcome.verdict.value, "ok_up_to": outcome.ok_up_to}
        else:
            got = {"verdict": outcome.first.verdict.value, "offset": outcome.first.offset}
        assert got == expected, tool
    assert disagreement.key in {d.key for d in disagreements(outcomes)}
