"""A differential loader campaign: generate, run every tool, compare, shrink, classify.

1. ``generate_cases``: Hypothesis draws ``examples`` files (seeded; generation only, no
   database), after a fixed corpus (``CORPUS``) of hand-made files for the boundaries that
   matter most, so every report covers them whatever the seed.
2. Every file goes through every tool (``run_matrix``) in a process pool, one file per task.
3. ``disagreements`` of each file are collected by key; the smallest file per key is kept.
4. Each key's file is shrunk (``shrink_bytes``) with a predicate that re-runs only the tools
   of that disagreement, then the minimal file goes through every tool once more: that run is
   what the report shows.
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field, replace
from typing import Any

from harness.loaders import _procs
from harness.loaders._diff import Disagreement, Outcomes, disagreements
from harness.loaders._gen import AofCase, aof_cases, encode
from harness.loaders._run import (
    CheckRun,
    LoadOutcome,
    RunSettings,
    available_tools,
    run_tool,
)
from harness.loaders._shrink import ShrinkStats, shrink_bytes

__all__ = [
    "CORPUS",
    "CampaignResult",
    "Finding",
    "generate_cases",
    "reproduces",
    "run_campaign",
    "run_matrix",
    "scratch_dir",
    "settings_for",
]

_SET = encode(b"SET", b"a", b"1")
# Hand-made files: every report covers these boundaries whatever the seed.
CORPUS: tuple[AofCase, ...] = (
    AofCase("valid", _SET),
    AofCase("torn", _SET + encode(b"SET", b"b", b"2")[:-1]),
    AofCase("torn", _SET + b"*3\r"),
    AofCase("zero-tail", _SET + b"\x00" * 16),
    AofCase("garbage-tail", _SET + b"xyz"),
    AofCase("header", _SET + b"*3\n$3\r\nSET\r\n$1\r\nb\r\n$1\r\n2\r\n"),
    AofCase("header", _SET + b"*1\r\n$-1\r\n"),
    AofCase("header", _SET + b"*-1\r\n"),
    AofCase("header", _SET + b"*3\r\n$3\r\nSET\r\n$1\r\nb\r\n$9223372036854775807\r\n"),
    AofCase("header", _SET + b"*99999999999\r\n"),
    AofCase("header", _SET + b"*3\r\n$03\r\nSET\r\n$1\r\nb\r\n$+1\r\n2\r\n"),
    AofCase("arity", _SET + encode(b"SET", b"a")),
    AofCase("unknown", _SET + encode(b"FOO")),
    AofCase("case", encode(b"sEt", b"a", b"1")),
    AofCase("multi", _SET + encode(b"MULTI") + encode(b"SET", b"b", b"2")),
    AofCase("multi", _SET + encode(b"MULTI") + encode(b"SET", b"b", b"2")[:-4]),
    AofCase("multi", _SET + encode(b"MULTI") + encode(b"MULTI") + encode(b"EXEC")),
    AofCase("multi", _SET + encode(b"EXEC")),
    AofCase("annotation", b"#TS:1700000000\r\n" + _SET),
    AofCase("annotation", _SET + b"#TS:1700000000"),
    AofCase("select", encode(b"SELECT", b"16") + _SET),
    AofCase("rdb-preamble", b"REDIS" + b"junk" + _SET),
    AofCase("rdb-preamble", b"REDIS0009\xff" + b"\x00" * 8 + _SET),
)


def scratch_dir() -> str | None:
    """A tmpfs for the servers' directories when there is one (migration fsyncs are free)."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def generate_cases(examples: int, *, seed: int, families: Sequence[str] | None = None,
                   with_corpus: bool = True) -> list[AofCase]:
    """The corpus, then ``examples`` files drawn by Hypothesis with ``seed``."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed

    from harness._hypothesis import hypothesis_engine
    from harness.loaders._gen import FAMILIES

    drawn: list[AofCase] = []
    if examples > 0:
        @hseed(seed)
        @settings(max_examples=examples, phases=[Phase.generate], database=None,
                  deadline=None, suppress_health_check=list(HealthCheck))
        @given(aof_cases(tuple(families) if families else FAMILIES))
        def collect(case: AofCase) -> None:
            drawn.append(case)

        with hypothesis_engine():  # the same files for a seed, whatever is imported
            collect()
    seen: set[bytes] = set()
    out: list[AofCase] = []
    for case in (*(CORPUS if with_corpus else ()), *drawn):
        if case.data not in seen:
            seen.add(case.data)
            out.append(case)
    return out


def run_matrix(data: bytes, tools: Iterable[str], settings: RunSettings) -> dict[str, Any]:
    """Every tool's outcome on ``data`` (tool id -> LoadOutcome | CheckRun)."""
    return {tool: run_tool(tool, data, settings) for tool in tools}


def reproduces(disagreement: Disagreement, data: bytes, settings: RunSettings) -> bool:
    """Whether ``data`` shows ``disagreement`` (re-running only its tools)."""
    settings = replace(settings, restart=disagreement.restart)
    outcomes = run_matrix(data, disagreement.tools, settings)
    return any(d.key == disagreement.key for d in disagreements(outcomes))


@dataclass(slots=True)
class Finding:
    """One distinct disagreement, its smallest file and every tool's outcome on that file."""

    disagreement: Disagreement
    data: bytes
    family: str
    original_size_bytes: int
    files_showing: int
    outcomes: dict[str, Any] = field(default_factory=dict)
    shrink_evals: int = 0
    reproduced: bool = True


@dataclass(slots=True)
class CampaignResult:
    findings: list[Finding]
    files: int
    coverage: Counter[str]
    loader_runs: int
    check_runs: int
    matrix_seconds: float
    shrink_seconds: float
    tools: list[str]
    workers: int
    stopped_early: bool = False


# -- worker side ----------------------------------------------------------------------------

_SETTINGS: RunSettings | None = None


def _init_worker(settings: RunSettings) -> None:
    global _SETTINGS
    _SETTINGS = settings
    # Ctrl-C is the parent's to handle (it stops us with SIGTERM); SIGTERM, or the parent's
    # death, stops this worker's servers first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _procs.install_term_handler()
    _procs.set_parent_death_signal(signal.SIGTERM)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """SIGTERM every worker (by PID): each stops its servers, then exits."""
    processes = dict(getattr(pool, "_processes", None) or {})
    for process in processes.values():
        with contextlib.suppress(Exception):
            process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes.values():
        with contextlib.suppress(Exception):
            process.join(timeout=5)


def _matrix_job(data: bytes, tools: Sequence[str]) -> dict[str, Any]:
    assert _SETTINGS is not None
    try:
        return run_matrix(data, tools, _SETTINGS)
    finally:
        _procs.kill_all()


def _shrink_job(disagreement: Disagreement, data: bytes, max_evals: int,
                deadline: float | None, tools: Sequence[str]) -> tuple[bytes, int, bool,
                                                                       dict[str, Any]]:
    assert _SETTINGS is not None
    settings = _SETTINGS
    stats = ShrinkStats()
    try:
        ok = reproduces(disagreement, data, settings)
        small = data
        if ok:
            small = shrink_bytes(data, lambda d: reproduces(disagreement, d, settings),
                                 max_evals=max_evals, deadline=deadline, stats=stats)
        outcomes = run_matrix(small, tools, settings)
        return small, stats.evals, ok, outcomes
    finally:
        _procs.kill_all()


# -- driver -----------------------------------------------------------------------------------


def _outcome_runs(outcomes: Outcomes) -> tuple[int, int]:
    loads = checks = 0
    for outcome in outcomes.values():
        if isinstance(outcome, CheckRun):
            checks += 1
        elif isinstance(outcome, LoadOutcome):
            loads += 1 + (outcome.restart is not None)
    return loads, checks


def run_campaign(cases: Sequence[AofCase], settings: RunSettings, *, workers: int,
                 tools: Sequence[str] | None = None, shrink: bool = True,
                 shrink_evals: int = 300, budget_s: float | None = None,
                 progress: Callable[[str, int, int], None] | None = None) -> CampaignResult:
    """Run ``cases`` through every tool, then shrink each distinct disagreement.

    ``budget_s`` bounds the wall clock of the whole campaign: generation stops taking new files
    at 60% of it and shrinking stops at the end (each finding keeps its best file so far).
    """
    start = time.monotonic()
    deadline = None if budget_s is None else start + budget_s
    matrix_deadline = None if budget_s is None else start + 0.6 * budget_s
    chosen = available_tools(settings, tools)
    # Per (key, family): one key can have several causes (a reference refusing an LF-only
    # header and an RDB preamble look alike), and the family tells them apart cheaply.
    best: dict[tuple[tuple[str, ...], str], tuple[Disagreement, AofCase, int]] = {}
    coverage: Counter[str] = Counter()
    loads = checks = files = 0
    stopped_early = False
    _procs.install_term_handler()
    pool = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                               initargs=(settings,))
    try:
        pending: dict[Future[dict[str, Any]], AofCase] = {}
        queue = list(cases)
        queue.reverse()
        while queue or pending:
            while queue and len(pending) < 2 * workers:
                if matrix_deadline is not None and time.monotonic() > matrix_deadline:
                    stopped_early = True
                    queue.clear()
                    break
                case = queue.pop()
                pending[pool.submit(_matrix_job, case.data, chosen)] = case
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                case = pending.pop(future)
                outcomes = future.result()
                files += 1
                coverage[case.family] += 1
                lo, ch = _outcome_runs(outcomes)
                loads, checks = loads + lo, checks + ch
                for d in disagreements(outcomes):
                    slot = (d.key, case.family)
                    seen = best.get(slot)
                    if seen is None:
                        best[slot] = (d, case, 1)
                    elif len(case.data) < len(seen[1].data):
                        best[slot] = (d, case, seen[2] + 1)
                    else:
                        best[slot] = (seen[0], seen[1], seen[2] + 1)
                if progress is not None:
                    progress("run", files, len(cases))
        matrix_seconds = time.monotonic() - start
        findings: list[Finding] = []
        shrink_start = time.monotonic()
        jobs: dict[Future[tuple[bytes, int, bool, dict[str, Any]]], Finding] = {}
        for d, case, count in sorted(best.values(), key=lambda v: (len(v[1].data), v[0].key)):
            finding = Finding(d, case.data, case.family, len(case.data), count)
            findings.append(finding)
            evals = shrink_evals if shrink else 0
            jobs[pool.submit(_shrink_job, d, case.data, evals, deadline, chosen)] = finding
        for done_count, (job, finding) in enumerate(jobs.items(), start=1):
            small, evals, ok, final = job.result()
            finding.data, finding.shrink_evals, finding.reproduced = small, evals, ok
            finding.outcomes = final
            if progress is not None:
                progress("shrink", done_count, len(jobs))
    except BaseException:
        # Ctrl-C, or an error: stop the workers (and so their servers) now, not after the
        # queued jobs ran.
        _stop_workers(pool)
        raise
    pool.shutdown(wait=True)
    # The same key found from two families may shrink to the same file: keep one. (Two keys
    # with the same file stay: both are true of it.)
    unique: dict[tuple[tuple[str, ...], bytes], Finding] = {}
    for f in findings:
        unique.setdefault((f.disagreement.key, f.data), f)
    findings = sorted(unique.values(),
                      key=lambda f: (f.disagreement.cls, f.disagreement.key, len(f.data)))
    return CampaignResult(findings, files, coverage, loads, checks, matrix_seconds,
                          time.monotonic() - shrink_start, chosen, workers, stopped_early)


def settings_for(paths: Mapping[str, str], *, timeout_s: float = 10.0) -> RunSettings:
    return RunSettings(paths=dict(paths), workdir=scratch_dir() or tempfile.gettempdir(),
                       timeout_s=timeout_s)
