"""Fuzz campaigns: run the state machines over configurations within a budget, on every core.

A campaign is a list of configurations (policy x profile x defects x target, with the
persistence models a machine may crash under) cut into *units*: unit u is slice ``u // C`` of
configuration ``u % C`` (C configurations, round robin), a slice being ``examples_per_slice``
Hypothesis examples with its own seed, derived by hashing (campaign seed, configuration label,
slice index) so that neighbouring campaign seeds share no slice. ``max_examples`` (per
configuration) makes the unit list finite; without it units run until the budget is spent.

``shard=(i, n)`` keeps the units with ``u % n == i``: n shards together run exactly the units of
the unsharded campaign, so with ``max_examples`` their union finds exactly what it finds.
``workers`` runs units in that many processes; results are merged in unit order, and with
``stop_on_first`` only units up to the first failing one count, so the verdicts (and, with
``max_examples``, the whole result apart from timings) do not depend on the number of workers.
Shrinking is the one step bounded by time (Hypothesis stops shrinking at its limit): a finding
shrunk to completion is the same whatever the load; one cut short may be larger.

The budget is a wall-clock limit on the whole campaign, shrinking included: no unit starts after
it, and a finding is shrunk for what the budget leaves, but at least ``shrink_floor_s`` (so a
failure found at the last second still gets a readable reproduction) and at most
``shrink_budget_s``. The example database (``database``: a directory or ``redis://HOST:PORT/N``)
replays the failures it stored first, per configuration; None switches it off.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import queue
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from hypothesis import seed as hypothesis_seed
from hypothesis import settings as Settings
from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase
from hypothesis.errors import Flaky
from hypothesis.reporting import with_reporter
from hypothesis.stateful import run_state_machine_as_test

from faults import PersistenceModel
from harness._hypothesis import hypothesis_engine
from harness._pool import die_on_terminate
from harness.machine._driver import ContractViolation, ModelDivergence, TargetRunaway
from harness.machine._features import PROFILES, unsupported_features
from harness.machine._machine import make_state_machine
from harness.machine._minimize import minimize
from harness.machine._rules import CheckAofDisagreement, LivenessViolation
from harness.machine._steps import Reproduction, RunConfig
from harness.targets import TargetFactory

__all__ = [
    "DEFECT_CONFIGS",
    "Campaign",
    "CampaignResult",
    "Finding",
    "config_label",
    "finding_of",
    "minimized",
    "open_database",
    "run_campaign",
    "slice_seed",
]

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

#: The least time a finding is shrunk for, even when the budget is spent (seconds).
SHRINK_FLOOR_S = 10.0


@dataclass(frozen=True)
class Campaign:
    configs: tuple[RunConfig, ...]
    models: tuple[PersistenceModel, ...] = tuple(PersistenceModel)
    settings_profile: str = "dev"
    budget_s: float = 60.0
    seed: int = 0
    examples_per_slice: int = 10
    stop_on_first: bool = True
    shrink_budget_s: float = 90.0  # the most one finding is shrunk for
    shrink_floor_s: float = SHRINK_FLOOR_S
    max_examples: int | None = None  # per configuration; None: until the budget
    workers: int = 1
    shard: tuple[int, int] = (0, 1)
    database: str | None = None  # a directory or redis://HOST:PORT/N; None: no database

    def __post_init__(self) -> None:
        errors = []
        index, count = self.shard
        if count < 1 or not 0 <= index < count:
            errors.append(f"shard must be i/n with 0 <= i < n, got {index}/{count}")
        if self.workers < 1:
            errors.append(f"workers must be >= 1, got {self.workers}")
        if self.max_examples is not None and self.max_examples < 1:
            errors.append(f"max_examples must be >= 1, got {self.max_examples}")
        if self.examples_per_slice < 1:
            errors.append(f"examples_per_slice must be >= 1, got {self.examples_per_slice}")
        if self.settings_profile not in PROFILES:
            errors.append(f"settings profile: unknown {self.settings_profile!r} "
                          f"(known: {', '.join(PROFILES)})")
        if errors:
            raise ValueError("; ".join(errors))

    def units(self) -> Iterator[int]:
        """The unit indices this shard runs, in order (endless without max_examples)."""
        index, count = self.shard
        total = None
        if self.max_examples is not None:
            slices = -(-self.max_examples // self.examples_per_slice)
            total = slices * len(self.configs)
        u = index
        while total is None or u < total:
            yield u
            u += count

    def unit(self, u: int) -> tuple[RunConfig, int, int]:
        """(configuration, slice index, slice seed) of unit `u`."""
        config = self.configs[u % len(self.configs)]
        slice_index = u // len(self.configs)
        return config, slice_index, slice_seed(self.seed, config_label(config), slice_index)


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
    unit: int = 0

    @property
    def steps(self) -> int | None:
        return None if self.reproduction is None else len(self.reproduction.steps)

    @property
    def first_failure_s(self) -> float:
        """Campaign time of the first failing example, before shrinking (``elapsed_s`` when
        the failure was not seen as it happened, e.g. a flaky run)."""
        return self.elapsed_s if self.first_seen_s is None else self.first_seen_s


@dataclass
class CampaignResult:
    findings: list[Finding] = field(default_factory=list)
    examples: int = 0
    slices: int = 0
    elapsed_s: float = 0.0
    per_config: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: Counter[str] = field(default_factory=Counter)
    # Campaign time of the first failing example of the campaign, before any shrinking
    # (None: nothing failed); ``found_after_s`` of a finding also counts its shrinking.
    first_failure_s: float | None = None
    # Seconds spent running examples (all workers added up) and shrinking findings.
    time_s: dict[str, float] = field(default_factory=lambda: {"examples": 0.0,
                                                               "shrinking": 0.0})
    # The longest shrinking any slice was allowed (its share of the budget, at least the
    # floor): what bounds a campaign's overrun, whatever the machine's speed.
    shrink_allowed_s: float = 0.0
    units: list[int] = field(default_factory=list)
    stopped_by: str = "budget"  # budget | max-examples | finding | interrupted
    # Why the campaign ended before its units did ("" when it did not): Ctrl-C, or units
    # still running long past the budget, given up. The result holds the units that finished.
    interrupted: str = ""
    # Features the configurations' target cannot run (no rewrite, commands it does not
    # declare), with the reason: their rules were switched off (reports say it once).
    switched_off: dict[str, str] = field(default_factory=dict)


def config_label(config: RunConfig) -> str:
    parts = [config.policy, config.profile]
    if config.target is not None:
        parts[1] = config.target
    if config.defects:
        parts.append("+".join(sorted(config.defects)))
    if config.no_appendfsync_on_rewrite:
        parts.append("no-fsync-on-rewrite")
    return "/".join(parts)


def slice_seed(seed: int, label: str, slice_index: int) -> int:
    """A slice's Hypothesis seed: a hash of (campaign seed, configuration, slice), so campaign
    seeds s and s+1 share no slice (seed + i would repeat each other's work)."""
    digest = hashlib.blake2b(f"{seed}/{label}/{slice_index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


class _KeyedDatabase(ExampleDatabase):
    """One configuration's view of a shared example database: every key is prefixed with the
    configuration's label (all machine classes share one source, so one Hypothesis key)."""

    def __init__(self, inner: ExampleDatabase, prefix: str) -> None:
        super().__init__()
        self.inner = inner
        self.prefix = prefix.encode() + b"/"

    def save(self, key: bytes, value: bytes) -> None:
        self.inner.save(self.prefix + key, value)

    def fetch(self, key: bytes) -> Any:
        return self.inner.fetch(self.prefix + key)

    def delete(self, key: bytes, value: bytes) -> None:
        self.inner.delete(self.prefix + key, value)

    def move(self, src: bytes, dest: bytes, value: bytes) -> None:
        self.inner.move(self.prefix + src, self.prefix + dest, value)


def open_database(spec: str | None) -> ExampleDatabase | None:
    """A directory path or ``redis://HOST:PORT/N`` -> the example database (None: none)."""
    if spec is None:
        return None
    if spec.startswith("redis://"):
        import redis
        from hypothesis.extra.redis import RedisExampleDatabase

        return RedisExampleDatabase(redis.Redis.from_url(spec))
    return DirectoryBasedExampleDatabase(spec)


# -- one unit -----------------------------------------------------------------------------------


@dataclass
class _UnitResult:
    unit: int
    label: str
    examples: int
    finding: Finding | None
    events: Counter[str]
    first_fail_at: float | None  # time.monotonic() of the first failing example
    examples_s: float
    shrinking_s: float
    shrink_allowed_s: float  # the most this unit's shrinking could take (budget and floor)


#: A unit that is shrinking a finding: (unit, configuration label, steps of the smallest failing
#: program so far, the most its shrinking may take in seconds, time.monotonic() it began).
Shrinking = tuple[int, str, int, float, float]


class _Runner:
    """Runs units of one campaign (in the parent or in a worker process). `shrinking` hears of
    every failing example of a unit (the first one, then each smaller one while shrinking), at
    most once a second."""

    def __init__(self, campaign: Campaign, deadline: float,
                 shrinking: Callable[[Shrinking], None] | None = None) -> None:
        self.campaign = campaign
        self.deadline = deadline  # time.monotonic() when the budget ends
        self.base = PROFILES[campaign.settings_profile]
        self.database = open_database(campaign.database)
        self.events: Counter[str] = Counter()
        self.first_fail_at: float | None = None
        self.machines: dict[str, Any] = {}
        self.shrinking = shrinking
        self._unit = (0, "", 0.0)  # the running unit, its label and its shrink allowance
        self._told_at = 0.0

    def _on_finding(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self.first_fail_at is None:
            self.first_fail_at = now
        elif now - self._told_at < 1.0:
            return
        if self.shrinking is not None:
            repro = getattr(exc, "reproduction", None)
            steps = len(repro.steps) if repro is not None else 0
            unit, label, allowed_s = self._unit
            self._told_at = now
            self.shrinking((unit, label, steps, allowed_s, self.first_fail_at))

    def _machine(self, config: RunConfig) -> Any:
        label = config_label(config)
        if label not in self.machines:
            self.machines[label] = make_state_machine(
                config, models=self.campaign.models, on_finding=self._on_finding,
                events=self.events,
            )
        return self.machines[label]

    def run(self, u: int) -> _UnitResult:
        campaign = self.campaign
        config, _slice_index, seed = campaign.unit(u)
        label = config_label(config)
        self.first_fail_at = None
        machine = self._machine(config)
        settings = Settings(
            self.base,
            max_examples=campaign.examples_per_slice,
            derandomize=False,
            report_multiple_bugs=False,
            print_blob=False,
            database=None if self.database is None else _KeyedDatabase(self.database, label),
        )
        started = time.monotonic()
        shrink_s = min(campaign.shrink_budget_s,
                       max(campaign.shrink_floor_s, self.deadline - started))
        self._unit = (u, label, shrink_s)
        finding = _run_slice(machine, settings, seed, config, shrink_s)
        ended = time.monotonic()
        # The machine classes count into self.events: take this unit's share.
        events = Counter(self.events)
        self.events.clear()
        fail_at = self.first_fail_at
        examples_s = (ended - started) if fail_at is None else (fail_at - started)
        if finding is not None:
            finding.unit = u
        return _UnitResult(u, label, campaign.examples_per_slice, finding, events, fail_at,
                           examples_s, 0.0 if fail_at is None else ended - fail_at, shrink_s)


def _run_slice(
    machine: Any, settings: Settings, seed: int, config: RunConfig, shrink_budget_s: float,
) -> Finding | None:
    seeded = hypothesis_seed(seed)(machine)
    try:
        # Hypothesis reports falsifying examples and shrink warnings on stdout, which belongs
        # to the CLI's own output (--json); the finding and its reproduction carry all of it.
        with hypothesis_engine(shrink_budget_s=shrink_budget_s), with_reporter(lambda _text: None):
            run_state_machine_as_test(seeded, settings=settings)
    except (ContractViolation, ModelDivergence) as exc:
        return finding_of(minimized(exc), config, seed)
    except Flaky as exc:
        return Finding("error", config, f"flaky: {exc}", ["flaky"], None, seed, 0.0)
    return None


def minimized(exc: ContractViolation | ModelDivergence, *,
              factory: TargetFactory | None = None) -> ContractViolation | ModelDivergence:
    """The shrunk finding with the steps and faults it does not need dropped (``minimize``,
    replaying against `factory` or the reproduction's target); its reproduction keeps what
    the original recorded as expected. A runaway is returned as it is: every replay of one
    spends the step's CPU limit."""
    if isinstance(exc, TargetRunaway):
        return exc
    smaller = minimize(exc.reproduction, exc, factory=factory)
    if not smaller.removed_steps and not smaller.removed_faults:
        return exc
    found = smaller.finding
    assert isinstance(found, ContractViolation | ModelDivergence)
    found.reproduction = replace(smaller.reproduction, expected=exc.reproduction.expected)
    return found


def finding_of(exc: ContractViolation | ModelDivergence, config: RunConfig,
               seed: int = 0) -> Finding:
    """What a state machine raised, as a campaign's finding: its kind and rules (the data
    rules of a violation; liveness, check-aof or model-divergence otherwise)."""
    if isinstance(exc, ContractViolation):
        rules = sorted({v.rule.value for v in exc.verdict.violations})
        return Finding("violation", config, str(exc), rules, exc.reproduction, seed, 0.0)
    if isinstance(exc, (LivenessViolation, TargetRunaway)):
        return Finding("violation", config, str(exc), ["liveness"], exc.reproduction, seed, 0.0)
    if isinstance(exc, CheckAofDisagreement):
        return Finding("violation", config, str(exc), ["check-aof"], exc.reproduction, seed,
                       0.0)
    return Finding("divergence", config, str(exc), ["model-divergence"], exc.reproduction,
                   seed, 0.0)


# -- worker processes ---------------------------------------------------------------------------

_WORKER: _Runner | None = None


def _worker_init(campaign: Campaign, deadline: float, news: Any) -> None:
    global _WORKER
    die_on_terminate()  # the pool is terminated when the budget ends: nothing to clean here
    _WORKER = _Runner(campaign, deadline, shrinking=news.put_nowait)


def _worker_run(u: int) -> _UnitResult:
    assert _WORKER is not None
    return _WORKER.run(u)


# -- the campaign -------------------------------------------------------------------------------


class _ShrinkWatch:
    """The units shrinking a finding now; `tell(label, shrunk_s, allowed_s, steps)` about each
    at most once a second (a finding may shrink for minutes with nothing else to say)."""

    def __init__(self, tell: Callable[[str, float, float, int], None] | None) -> None:
        self.tell = tell
        self.units: dict[int, Shrinking] = {}
        self._lock = threading.Lock()
        self._told_at = 0.0

    def heard(self, news: Shrinking) -> None:
        with self._lock:
            self.units[news[0]] = news
        self.tick()

    def done(self, unit: int) -> None:
        with self._lock:
            self.units.pop(unit, None)

    def tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            if self.tell is None or not self.units or now - self._told_at < 1.0:
                return
            self._told_at = now
            _unit, label, steps, allowed_s, since = min(self.units.values(),
                                                        key=lambda n: n[4])
        self.tell(label, now - since, allowed_s, steps)


def run_campaign(
    campaign: Campaign,
    *,
    progress: Callable[[float, CampaignResult, str], None] | None = None,
    shrinking: Callable[[str, float, float, int], None] | None = None,
) -> CampaignResult:
    """Run the campaign's units (see the module docstring); `progress(elapsed, result, label)`
    after each unit; `shrinking(label, shrunk_s, allowed_s, steps)` about once a second while
    a unit shrinks a finding (the configuration, seconds so far, the most it may take, steps of
    the smallest failing program yet). The budget is the only wall-clock input: it decides how
    many units run."""
    clock = time.monotonic
    result = CampaignResult()
    start = clock()
    if not campaign.configs:
        return result
    for config in campaign.configs:  # also raises TargetError for an unusable target
        for feature, why in unsupported_features(config).items():
            result.switched_off.setdefault(feature, why)
    deadline = start + campaign.budget_s
    done: dict[int, _UnitResult] = {}
    watch = _ShrinkWatch(shrinking)

    def accept(r: _UnitResult) -> None:
        watch.done(r.unit)
        done[r.unit] = r
        _tally(result, r, start)
        if progress is not None:
            progress(clock() - start, result, r.label)
        if ctrl_c.is_set():
            raise KeyboardInterrupt  # one that a gc callback swallowed (see _sigint_seen)

    units = campaign.units()
    ctrl_c = threading.Event()
    # Hypothesis holds the one-worker run's thread while it shrinks: a ticker says how it goes.
    stop = threading.Event()
    ticker = threading.Thread(target=_tick_until, args=(watch, stop), daemon=True)
    if shrinking is not None and campaign.workers == 1:
        ticker.start()
    try:
        with _sigint_seen(ctrl_c):
            _run_units(campaign, units, deadline, accept, clock, start, watch, result)
    except KeyboardInterrupt:
        result.interrupted = f"Ctrl-C (SIGINT) after {len(done)} slice(s)"
    except Exception:
        if not ctrl_c.is_set():
            raise
        # A KeyboardInterrupt raised inside Hypothesis or a target can come out as another
        # error (an assertion about state it left half-made): once a Ctrl-C came, that error
        # is the interruption (a fresh-clone suite run exited 2, "internal error", once).
        result.interrupted = f"Ctrl-C (SIGINT) after {len(done)} slice(s)"
    finally:
        stop.set()
        if ticker.is_alive():
            ticker.join()
    _finish(result, campaign, done)
    if result.interrupted:
        result.stopped_by = "interrupted"
    result.elapsed_s = clock() - start
    return result


@contextlib.contextmanager
def _sigint_seen(seen: threading.Event) -> Iterator[None]:
    """Set `seen` on every SIGINT, then raise KeyboardInterrupt as Python does. The exception
    alone can be lost: raised while the interpreter runs a gc callback (Hypothesis registers
    one to time collections) it is printed as "Exception ignored" and dropped, and a Ctrl-C'd
    campaign ran on to its budget (2 of about 20 tries on a busy machine). The campaign checks
    `seen` after every unit."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() \
            or previous in (signal.SIG_IGN, None):
        yield  # a pool worker ignores SIGINT; elsewhere than the main thread, no handler
        return

    def on_sigint(signum: int, frame: Any) -> None:
        seen.set()
        if callable(previous):
            previous(signum, frame)  # the default handler raises KeyboardInterrupt
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _run_units(campaign: Campaign, units: Iterator[int], deadline: float,
               accept: Callable[[_UnitResult], None], clock: Callable[[], float],
               start: float, watch: _ShrinkWatch, result: CampaignResult) -> None:
    if campaign.workers == 1:
        runner = _Runner(campaign, deadline, shrinking=watch.heard)
        for u in units:
            if clock() - start >= campaign.budget_s:
                break
            r = runner.run(u)
            accept(r)
            if r.finding is not None and campaign.stop_on_first:
                break
        return
    given_up = _run_parallel(campaign, units, deadline, accept, clock, start, watch)
    if given_up:
        result.interrupted = (f"{given_up} slice(s) still running "
                              f"{campaign.shrink_budget_s + 30:.0f} s past the budget "
                              "were given up")


def _tick_until(watch: _ShrinkWatch, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        watch.tick()


def _run_parallel(
    campaign: Campaign, units: Iterator[int], deadline: float,
    accept: Callable[[_UnitResult], None], clock: Callable[[], float], start: float,
    watch: _ShrinkWatch,
) -> int:
    """Keep `workers` units in flight until the units or the budget run out (or, with
    stop_on_first, a unit fails: units before it still finish, so the merged result is the
    one worker's). Returns how many units were given up (stuck long past the budget). Workers
    tell of their shrinking through a queue."""
    context = multiprocessing.get_context("fork")
    news = context.Queue()
    pool = context.Pool(campaign.workers, initializer=_worker_init,
                        initargs=(campaign, deadline, news))
    try:
        in_flight: dict[int, Any] = {}
        first_failed: int | None = None
        exhausted = False
        while True:
            while (not exhausted and len(in_flight) < campaign.workers
                   and clock() - start < campaign.budget_s):
                u = next(units, None)
                if u is None or (first_failed is not None and u > first_failed):
                    exhausted = True
                    break
                in_flight[u] = pool.apply_async(_worker_run, (u,))
            if not in_flight:
                break
            while True:
                try:
                    heard: Shrinking = news.get_nowait()
                except queue.Empty:
                    break
                if heard[0] in in_flight:
                    watch.heard(heard)
            watch.tick()
            ready = [u for u, job in in_flight.items() if job.ready()]
            if not ready:
                time.sleep(0.02)
                if clock() - start >= campaign.budget_s + campaign.shrink_budget_s + 30:
                    return len(in_flight)  # stuck units: given up (the pool is terminated)
                continue
            for u in sorted(ready):
                r: _UnitResult = in_flight.pop(u).get()
                accept(r)
                if r.finding is not None and campaign.stop_on_first:
                    first_failed = u if first_failed is None else min(first_failed, u)
            if first_failed is not None:
                # Units after the first failure are not part of the one-worker result.
                for u in [u for u in in_flight if u > first_failed]:
                    in_flight.pop(u)
                exhausted = True
            if clock() - start >= campaign.budget_s:
                exhausted = True
    finally:
        pool.terminate()  # by PID, the pool's own children
        pool.join()
        news.close()
        news.cancel_join_thread()
    return 0


def _tally(result: CampaignResult, r: _UnitResult, start: float) -> None:
    """Running totals for progress reports (``_finish`` recomputes them in unit order)."""
    result.examples += r.examples
    result.slices += 1
    result.events.update(r.events)
    result.time_s["examples"] += r.examples_s
    result.time_s["shrinking"] += r.shrinking_s
    result.shrink_allowed_s = max(result.shrink_allowed_s, r.shrink_allowed_s)
    if r.first_fail_at is not None:
        at = max(0.0, r.first_fail_at - start)
        if result.first_failure_s is None or at < result.first_failure_s:
            result.first_failure_s = at
        if r.finding is not None:
            r.finding.first_seen_s = at
    if r.finding is not None:
        r.finding.elapsed_s = time.monotonic() - start
        result.findings.append(r.finding)


def _finish(result: CampaignResult, campaign: Campaign, done: dict[int, _UnitResult]) -> None:
    """Merge the units in unit order; with stop_on_first only up to the first failing one."""
    kept = sorted(done)
    if campaign.stop_on_first:
        failing = [u for u in kept if done[u].finding is not None]
        if failing:
            kept = [u for u in kept if u <= failing[0]]
            result.stopped_by = "finding"
    if result.stopped_by != "finding" and campaign.max_examples is not None:
        expected = list(campaign.units())
        if kept == expected:
            result.stopped_by = "max-examples"
    result.units = kept
    result.findings = []
    result.examples = result.slices = 0
    result.events = Counter()
    for u in kept:
        r = done[u]
        stats = result.per_config.setdefault(
            r.label, {"configuration": r.label, "examples": 0, "slices": 0, "findings": 0})
        stats["slices"] += 1
        stats["examples"] += r.examples
        result.slices += 1
        result.examples += r.examples
        result.events.update(r.events)
        if r.finding is not None:
            stats["findings"] += 1
            result.findings.append(r.finding)
