"""Fuzz campaigns: run the state machines over configurations until a budget is spent.

A campaign is a list of configurations (policy x profile x defects, with the persistence models a
machine may crash under). It runs Hypothesis on each in turn, in slices of a few examples with
consecutive seeds (``seed``, ``seed + 1``, ...), until the time budget is used or a violation is
found. Same seed and same configurations: same slices, same examples, same verdicts. The budget
is the only wall-clock input, and it decides only how many slices run.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from hypothesis import seed as hypothesis_seed
from hypothesis import settings as Settings
from hypothesis.errors import Flaky
from hypothesis.internal.conjecture import engine
from hypothesis.reporting import with_reporter
from hypothesis.stateful import run_state_machine_as_test

from faults import PersistenceModel
from harness.machine._driver import ContractViolation, ModelDivergence
from harness.machine._machine import PROFILES, make_state_machine
from harness.machine._steps import Reproduction, RunConfig

__all__ = ["DEFECT_CONFIGS", "Campaign", "CampaignResult", "Finding", "run_campaign"]

# Defect -> (fsync policy, strict availability): the configuration that exercises it. Two
# defects show as a server that refuses to start (garbage in the middle of the AOF), which only
# strict availability calls a violation.
DEFECT_CONFIGS: dict[str, tuple[str, bool]] = {
    "reply-before-fsync": ("always", False),
    "short-write-kept": ("no", True),
    "rewrite-buffer-dropped": ("always", False),
    "select-not-reemitted-after-rewrite": ("always", False),
    "temp-not-fsynced-before-rename": ("always", False),
    "relative-expiry-verbatim": ("everysec", False),
    "everysec-fsync-skipped": ("everysec", False),
    "multi-applied-on-load": ("always", False),
    "fsync-error-cleared": ("everysec", False),
    "write-error-ignored": ("no", False),
    "no-dir-fsync-after-rename": ("always", False),
    "rewrite-drops-expiry": ("always", False),
    "truncated-tail-not-truncated-on-disk": ("always", True),
    "set-expiry-split": ("always", False),
}



@dataclass(frozen=True)
class Campaign:
    configs: tuple[RunConfig, ...]
    models: tuple[PersistenceModel, ...] = tuple(PersistenceModel)
    settings_profile: str = "dev"
    budget_s: float = 60.0
    seed: int = 0
    examples_per_slice: int = 10
    stop_on_first: bool = True
    shrink_budget_s: float = 90.0


@dataclass
class Finding:
    kind: str  # "violation" | "divergence" | "error"
    config: RunConfig
    text: str
    rules: list[str]
    reproduction: Reproduction | None
    seed: int
    elapsed_s: float  # campaign time when the finding was reported (after shrinking)
    first_seen_s: float | None = None  # campaign time when a run first failed (before shrinking)

    @property
    def steps(self) -> int | None:
        return None if self.reproduction is None else len(self.reproduction.steps)


@dataclass
class CampaignResult:
    findings: list[Finding] = field(default_factory=list)
    examples: int = 0
    slices: int = 0
    elapsed_s: float = 0.0
    per_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: Counter[str] = field(default_factory=Counter)


def config_label(config: RunConfig) -> str:
    parts = [config.policy, config.profile]
    if config.defects:
        parts.append("+".join(sorted(config.defects)))
    if config.no_appendfsync_on_rewrite:
        parts.append("no-fsync-on-rewrite")
    return "/".join(parts)


def run_campaign(
    campaign: Campaign,
    *,
    progress: Callable[[float, CampaignResult, str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> CampaignResult:
    if campaign.settings_profile not in PROFILES:
        raise ValueError(
            f"settings profile: unknown {campaign.settings_profile!r} "
            f"(known: {', '.join(PROFILES)})"
        )
    base = PROFILES[campaign.settings_profile]
    result = CampaignResult()
    start = clock()
    slice_index = 0
    first_seen: list[float] = []

    def on_finding(_exc: BaseException) -> None:
        if not first_seen:
            first_seen.append(clock() - start)

    machines = {
        config_label(c): make_state_machine(
            c, models=campaign.models, on_finding=on_finding, events=result.events
        )
        for c in campaign.configs
    }
    while True:
        elapsed = clock() - start
        if elapsed >= campaign.budget_s or not campaign.configs:
            break
        config = campaign.configs[slice_index % len(campaign.configs)]
        label = config_label(config)
        slice_seed = campaign.seed + slice_index
        machine = machines[label]
        stats = result.per_config.setdefault(
            label, {"configuration": label, "examples": 0, "slices": 0, "findings": 0}
        )
        settings = Settings(
            base,
            max_examples=campaign.examples_per_slice,
            derandomize=False,
            report_multiple_bugs=False,
            print_blob=False,
        )
        finding = _run_slice(machine, settings, slice_seed, config, result,
                             campaign.shrink_budget_s)
        stats["slices"] += 1
        stats["examples"] += campaign.examples_per_slice
        result.slices += 1
        result.examples += campaign.examples_per_slice
        slice_index += 1
        if finding is not None:
            finding.elapsed_s = clock() - start
            finding.first_seen_s = first_seen[0] if first_seen else None
            first_seen.clear()
            stats["findings"] += 1
            result.findings.append(finding)
        if progress is not None:
            progress(clock() - start, result, label)
        if finding is not None and campaign.stop_on_first:
            break
    result.elapsed_s = clock() - start
    return result


@contextmanager
def _shrink_budget(seconds: float) -> Iterator[None]:
    # Hypothesis shrinks for up to 5 minutes; a campaign wants its finding sooner. The limit is
    # a module constant of Hypothesis's engine (not a setting), so it is set around the run.
    old = engine.MAX_SHRINKING_SECONDS
    engine.MAX_SHRINKING_SECONDS = seconds  # type: ignore[assignment]
    try:
        yield
    finally:
        engine.MAX_SHRINKING_SECONDS = old


def _run_slice(
    machine: Any, settings: Settings, slice_seed: int, config: RunConfig, result: CampaignResult,
    shrink_budget_s: float,
) -> Finding | None:
    seeded = hypothesis_seed(slice_seed)(machine)
    try:
        # Hypothesis reports falsifying examples and shrink warnings on stdout, which belongs
        # to the CLI's own output (--json); the finding and its reproduction carry all of it.
        with _shrink_budget(shrink_budget_s), with_reporter(lambda _text: None):
            run_state_machine_as_test(seeded, settings=settings)
    except ContractViolation as exc:
        rules = sorted({v.rule.value for v in exc.verdict.violations})
        return Finding("violation", config, str(exc), rules, exc.reproduction, slice_seed, 0.0)
    except ModelDivergence as exc:
        return Finding("divergence", config, str(exc), ["model-divergence"], exc.reproduction,
                       slice_seed, 0.0)
    except Flaky as exc:
        return Finding("error", config, f"flaky: {exc}", ["flaky"], None, slice_seed, 0.0)
    return None
