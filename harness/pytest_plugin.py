"""pytest plugin (registered as ``aofcrash``): test your own AOF implementation, replay findings.

Installed with aofcrash (entry point ``pytest11``), so any test suite in the environment can use
it without a ``conftest.py``.

The ready-made state machine. Subclass ``AofStateMachine`` and name your target (an in-process
implementation of ``harness.targets.Target``, as ``"MODULE:FACTORY"`` or the factory itself);
the subclass *is* the harness's state machine (``harness.machine.make_state_machine``) for that
target: writes, reads checked against the model, faults, crashes under every persistence model,
recoveries checked against the contract. Hypothesis runs it through its ``TestCase``::

    from harness.pytest_plugin import AofStateMachine

    class MyStoreMachine(AofStateMachine):
        target = "mystore:make_target"
        policy = "always"

    TestMyStore = MyStoreMachine.TestCase

Class attributes: ``target`` (None: ``--aofcrash-target``, else the bundled reference),
``policy``, ``config`` (a whole ``RunConfig``; its policy wins over ``policy``), ``models``,
``features``, ``profile`` (``dev``, ``ci``, ``nightly``: the Hypothesis settings profiles
``aofcrash-*``; None: ``--aofcrash-profile``, default ``dev``), ``shrink_budget_s``. Features
the target cannot run (no rewrite, commands it does not declare in its ``commands``) are
switched off (``harness.machine.unsupported_features``).
``aofcrash_state_machine(target=..., ...)`` builds the same class without a class statement,
``find_violation(Machine)`` runs one and returns what it found (for a test that expects a bug),
and ``write_reproduction`` saves a finding as a ``*.aofrepro.json`` file.

Reproductions. A violation raised by the machine carries a reproduction whose config names the
target by its ``MODULE:FACTORY`` (a factory given as an object is named that way when it can be
imported back); ``aofcrash replay`` and this plugin re-run it against that same target. Every
``*.aofrepro.json`` file under a collected directory becomes a test that replays it and
asserts it still shows the outcome it recorded (``expected.outcome``): a regression suite of
findings that needs no Python code.

Fixtures (``pytest --fixtures`` lists them with their docs): ``aofcrash_clock``,
``aofcrash_disk``, ``aofcrash_fs``, ``aofcrash_target_factory``, ``aofcrash_target``,
``aofcrash_driver``.

Failures. A failing TestCase raises ``AofcrashFailure``, shown as ``aofcrash fuzz`` shows a
finding (its renderer): the verdict with the lost writes and the diff, the program as numbered
steps, the crash and its image in words; the reproduction is saved (temp + rename) in the
reproductions folder as ``MODULE.CLASS.aofrepro.json``, recording where the target's module
came from, and the command that replays it is printed. Shrinking is bounded by time.

Options (and ini settings): ``--aofcrash-target MODULE:FACTORY`` (the default target of the
fixtures and of machines that name none), ``--aofcrash-profile dev|ci|nightly``,
``--aofcrash-reproductions DIR`` / ``aofcrash_reproductions`` (default
``.aofcrash/reproductions`` under the rootdir), ``--aofcrash-shrink-budget SECONDS`` /
``aofcrash_shrink_budget`` (default 60; a class's ``shrink_budget_s`` wins).
"""

from __future__ import annotations

import contextlib
import importlib
import time
import unittest
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

import pytest
from hypothesis.stateful import RuleBasedStateMachine, StateMachineMeta

if TYPE_CHECKING:
    from hypothesis.stateful import _StateMachineTestCase

    from faults import Clock, FaultyFileSystem, PersistenceModel, SimDisk
    from harness.machine._driver import Driver
    from harness.machine._steps import RunConfig
    from harness.targets import Target, TargetFactory

__all__ = [
    "AofStateMachine",
    "AofcrashFailure",
    "ReproItem",
    "aofcrash_state_machine",
    "find_violation",
    "write_reproduction",
]

SUFFIX = ".aofrepro.json"
PROFILE_NAMES = ("dev", "ci", "nightly")
#: Where a failing AofStateMachine test saves its reproduction (relative to the rootdir).
DEFAULT_REPRODUCTIONS = ".aofcrash/reproductions"
#: The most a failing AofStateMachine test shrinks its program for (seconds).
DEFAULT_SHRINK_BUDGET_S = 60.0

# Set from the command line and the ini file in pytest_configure (before test modules are
# imported): the target and profile options, the reproductions folder (absolute), the shrink
# budget (seconds) and the rootdir.
_OPTIONS: dict[str, str | None] = {"target": None, "profile": None, "reproductions": None,
                                   "shrink_budget_s": None, "rootdir": None}


# -- options -------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aofcrash", "aofcrash: crash-consistency testing of AOF stores")
    group.addoption("--aofcrash-target", metavar="MODULE:FACTORY", default=None,
                    help="the in-process target (harness.targets.Target factory) of the "
                    "aofcrash fixtures and of AofStateMachine subclasses that name none "
                    "(default: the bundled reference)")
    group.addoption("--aofcrash-profile", choices=PROFILE_NAMES, default=None,
                    help="Hypothesis settings of AofStateMachine subclasses that name none: "
                    "the aofcrash-dev, -ci or -nightly profile (default: dev)")
    group.addoption("--aofcrash-reproductions", metavar="DIR", default=None,
                    help="where a failing AofStateMachine test saves its *.aofrepro.json "
                    "(default: the ini option aofcrash_reproductions, else "
                    f"{DEFAULT_REPRODUCTIONS} under the rootdir)")
    group.addoption("--aofcrash-shrink-budget", metavar="SECONDS", default=None,
                    help="the most a failing AofStateMachine test shrinks its program for "
                    "(default: the ini option aofcrash_shrink_budget, else "
                    f"{DEFAULT_SHRINK_BUDGET_S:.0f})")
    parser.addini("aofcrash_reproductions", default=DEFAULT_REPRODUCTIONS,
                  help="where failing AofStateMachine tests save their *.aofrepro.json "
                  "(relative to the rootdir; a dot folder, so they are not collected until "
                  "copied into the suite)")
    parser.addini("aofcrash_shrink_budget", default=str(DEFAULT_SHRINK_BUDGET_S),
                  help="seconds a failing AofStateMachine test shrinks its program for at most")


_SAVED = pytest.StashKey[dict[str, "str | None"]]()


def _shrink_budget_option(config: pytest.Config) -> str:
    given = config.getoption("aofcrash_shrink_budget", None)
    text = str(given if given is not None else config.getini("aofcrash_shrink_budget"))
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds == float("inf"):
        where = "--aofcrash-shrink-budget" if given is not None else "aofcrash_shrink_budget"
        raise pytest.UsageError(f"{where}: expected seconds > 0, got {text!r}")
    return str(seconds)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SAVED] = dict(_OPTIONS)  # a session inside a session (pytester) restores it
    _OPTIONS["target"] = config.getoption("aofcrash_target", None)
    _OPTIONS["profile"] = config.getoption("aofcrash_profile", None)
    _OPTIONS["rootdir"] = str(config.rootpath)
    given = config.getoption("aofcrash_reproductions", None)
    folder = (Path(given).absolute() if given is not None
              else config.rootpath / str(config.getini("aofcrash_reproductions")))
    _OPTIONS["reproductions"] = str(folder)
    _OPTIONS["shrink_budget_s"] = _shrink_budget_option(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    saved: dict[str, str | None] = config.stash.get(_SAVED, {})
    _OPTIONS.update(saved)


def pytest_report_header(config: pytest.Config) -> str | None:
    target, profile = _OPTIONS["target"], _OPTIONS["profile"]
    if target is None and profile is None:
        return None
    return f"aofcrash: target {target or 'reference'}, profile {profile or 'dev'}"


def _default_spec() -> str | None:
    return _OPTIONS["target"]


def _spec_of(target: str | Callable[..., Any] | None) -> tuple[str | None, Any]:
    """(spec for RunConfig.target, factory object or None) of a target attribute.

    A factory object is named by ``module:qualname`` when that imports back to the same object,
    so reproductions name it; otherwise it is passed as is (its reproductions then replay only
    with the same factory)."""
    if target is None:
        target = _default_spec()
    if target is None or isinstance(target, str):
        return target, None
    module = getattr(target, "__module__", None)
    qualname = getattr(target, "__qualname__", "")
    if module and qualname and "<" not in qualname:
        try:
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
        except (ImportError, AttributeError):
            obj = None
        if obj is target:
            return f"{module}:{qualname}", None
    return None, target


# -- the ready-made state machine ------------------------------------------------------------


class _AofMachineMeta(StateMachineMeta):
    """Builds a subclass of AofStateMachine on the harness's state machine for its target."""

    def __new__(mcls, name: str, bases: tuple[type, ...], namespace: dict[str, Any],
                **kwargs: Any) -> _AofMachineMeta:
        if namespace.get("_aofcrash_base", False):
            return super().__new__(mcls, name, bases, namespace, **kwargs)

        def attr(key: str) -> Any:
            if key in namespace:
                return namespace[key]
            for base in bases:
                if hasattr(base, key):
                    return getattr(base, key)
            return None

        machine = _build(target=attr("target"), policy=attr("policy"), config=attr("config"),
                         models=attr("models"), features=attr("features"))
        cls = super().__new__(mcls, name, (machine, *bases), namespace, **kwargs)
        profile = attr("profile") or _OPTIONS["profile"] or "dev"
        _set_profile(cls, profile)
        return cls


def _set_profile(cls: Any, profile: str) -> None:
    from harness.machine import PROFILES

    if profile not in PROFILES:
        raise ValueError(f"profile: one of {', '.join(PROFILES)}, got {profile!r}")
    cls.TestCase.settings = PROFILES[profile]


def _build(*, target: Any, policy: str | None, config: RunConfig | None,
           models: tuple[PersistenceModel, ...] | None,
           features: tuple[str, ...] | None) -> type[RuleBasedStateMachine]:
    import dataclasses

    from harness.machine import make_state_machine
    from harness.machine._steps import RunConfig

    spec: str | None
    factory: Any
    if target is None and config is not None and config.target is not None:
        spec, factory = config.target, None  # the config names its target itself
    else:
        spec, factory = _spec_of(target)
    base = config if config is not None else RunConfig(policy=policy or "everysec")
    base = dataclasses.replace(base, target=spec)
    kwargs: dict[str, Any] = {"factory": factory, "on_finding": _FAILURE_CLOCK.note}
    if models is not None:
        kwargs["models"] = tuple(models)
    if features is not None:
        kwargs["features"] = tuple(features)
    machine = make_state_machine(base, **kwargs)
    # A factory object that cannot be named: its reproductions would replay the reference.
    machine._aofcrash_unnamed_factory = factory is not None
    return machine


class _FailureClock:
    """When the running test's first failing example was seen (before shrinking): whether
    shrinking then ran into its time limit."""

    def __init__(self) -> None:
        self.first_at: float | None = None

    def reset(self) -> None:
        self.first_at = None

    def note(self, _exc: BaseException) -> None:
        if self.first_at is None:
            self.first_at = time.monotonic()


_FAILURE_CLOCK = _FailureClock()


class AofcrashFailure(AssertionError):
    """An AofStateMachine test found a violation: the message is the aofcrash program (the
    numbered steps, the lost writes, the crash and its image, the diff), where the reproduction
    was saved and the command that replays it. pytest shows the message alone (no traceback,
    no Hypothesis state-machine listing)."""


class AofStateMachine(RuleBasedStateMachine, metaclass=_AofMachineMeta):
    """The harness's state machine for the target a subclass names (see the module docstring).

    A subclass sets ``target = "MODULE:FACTORY"`` (or a factory), optionally ``policy``,
    ``config``, ``models``, ``features``, ``profile``, ``shrink_budget_s``;
    ``Subclass.TestCase`` is the test. A subclass may add its own rules and invariants
    (``self.driver`` is the run's Driver). A failing test raises ``AofcrashFailure``.
    """

    _aofcrash_base: ClassVar[bool] = True
    target: ClassVar[str | Callable[..., Any] | None] = None
    policy: ClassVar[str] = "everysec"
    config: ClassVar[RunConfig | None] = None
    models: ClassVar[tuple[PersistenceModel, ...] | None] = None
    features: ClassVar[tuple[str, ...] | None] = None
    profile: ClassVar[str | None] = None
    shrink_budget_s: ClassVar[float | None] = None

    @classmethod
    def _to_test_case(cls) -> type[_StateMachineTestCase]:
        # Hypothesis's own TestCase, with the run of `_run_test` (the failure as the aofcrash
        # program); kept in the class's own __dict__ as Hypothesis keeps it.
        from harness.machine import PROFILES

        cached: type[_StateMachineTestCase] | None = cls.__dict__.get("_test_case")
        if cached is not None:
            return cached
        machine = cls

        class AofcrashTestCase(unittest.TestCase):
            settings = PROFILES["dev"]

            def runTest(self) -> None:
                __tracebackhide__ = True
                _run_test(machine, self.settings)

            runTest.is_hypothesis_test = True  # type: ignore[attr-defined]
            runTest._hypothesis_state_machine_class = cls  # type: ignore[attr-defined]

        AofcrashTestCase.__name__ = cls.__name__ + ".TestCase"
        AofcrashTestCase.__qualname__ = cls.__qualname__ + ".TestCase"
        type.__setattr__(cls, "_test_case", AofcrashTestCase)
        return cast("type[_StateMachineTestCase]", AofcrashTestCase)


def _shrink_budget_of(machine: type[RuleBasedStateMachine]) -> float:
    chosen = getattr(machine, "shrink_budget_s", None)
    if chosen is not None:
        return float(chosen)
    option = _OPTIONS["shrink_budget_s"]
    return float(option) if option is not None else DEFAULT_SHRINK_BUDGET_S


def _run_test(machine: type[RuleBasedStateMachine], chosen: Any) -> None:
    """Run `machine` as its TestCase does; a finding becomes an ``AofcrashFailure``."""
    __tracebackhide__ = True
    from hypothesis import Verbosity, settings
    from hypothesis.reporting import with_reporter
    from hypothesis.stateful import run_state_machine_as_test

    from harness._hypothesis import hypothesis_engine
    from harness.machine._driver import ContractViolation, ModelDivergence

    budget_s = _shrink_budget_of(machine)
    _FAILURE_CLOCK.reset()
    # Hypothesis's reports (the falsifying steps, "spent more than five minutes shrinking"
    # when our own limit stopped it, the @seed hint) would follow the aofcrash program in a
    # "Hypothesis" section; the failure says all of it. Verbose runs still get them.
    quiet = chosen.verbosity < Verbosity.verbose
    reporter = with_reporter(lambda _text: None) if quiet else contextlib.nullcontext()
    try:
        with hypothesis_engine(shrink_budget_s=budget_s), reporter:
            run_state_machine_as_test(machine,
                                      settings=settings(chosen, report_multiple_bugs=False))
    except (ContractViolation, ModelDivergence) as exc:
        first_at = _FAILURE_CLOCK.first_at
        cut = first_at is not None and time.monotonic() - first_at >= budget_s
        text = _failure_text(exc, machine, shrink_cut_s=budget_s if cut else None)
        raise AofcrashFailure(text) from None


def _reproductions_folder() -> Path:
    given = _OPTIONS["reproductions"]
    return Path(given) if given is not None else Path.cwd() / DEFAULT_REPRODUCTIONS


def _failure_text(exc: Any, machine: type[RuleBasedStateMachine], *,
                  shrink_cut_s: float | None) -> str:
    """The finding as ``aofcrash fuzz`` prints it (its renderer), with the reproduction saved
    in the reproductions folder and the command that replays it."""
    from harness.cli._fileio import slug
    from harness.cli._report_violations import fuzz_violations, violation_lines
    from harness.machine._campaign import config_label, finding_of, minimized

    repro = exc.reproduction
    if repro is None:
        return str(exc)
    if getattr(machine, "_aofcrash_unnamed_factory", False):
        return (f"{exc}\n(no reproduction saved: the target is a factory object that cannot "
                "be imported back by name; give it as \"MODULE:FACTORY\" to get one)")
    exc = minimized(exc)  # as fuzz does: drop the steps and faults the finding does not need
    repro = exc.reproduction
    root = Path(_OPTIONS["rootdir"] or Path.cwd())
    finding = finding_of(exc, repro.config)
    finding.reproduction = repro.with_target_source(root)
    name = slug(f"{machine.__module__}.{machine.__qualname__}")
    folder = _reproductions_folder()
    try:
        (v,), _groups = fuzz_violations([finding], folder, config_label, names=[name])
    except OSError as err:  # an unwritable folder: still show the program, say why
        return (f"{exc}\n(the reproduction could not be saved in {folder}: "
                f"{err.strerror or err})")
    kind = "model divergence" if finding.kind == "divergence" else "violation"
    lines = [f"aofcrash found a {kind}: [{v['rule']}] {v['configuration']}, model "
             f"{v['model'] or '-'}, fault: {v['fault']}"]
    lines.extend(violation_lines(v))
    if shrink_cut_s is not None:
        lines.append(f"(shrinking stopped at its {shrink_cut_s:g} s limit, "
                     "--aofcrash-shrink-budget: the program may not be minimal)")
    lines.append(f"saved: {v['reproduction_path']} (copy it into a folder pytest collects, "
                 "e.g. tests/regressions/, to keep it as a regression test)")
    return "\n".join(lines)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    excinfo = call.excinfo
    if excinfo is not None and isinstance(excinfo.value, AofcrashFailure):
        report = outcome.get_result()  # type: ignore[attr-defined]
        if report.failed:
            report.longrepr = str(excinfo.value)


def aofcrash_state_machine(
    *, target: str | TargetFactory | None = None, policy: str = "everysec",
    config: RunConfig | None = None, models: tuple[PersistenceModel, ...] | None = None,
    features: tuple[str, ...] | None = None, profile: str | None = None,
    name: str = "AofMachine",
) -> type[AofStateMachine]:
    """An AofStateMachine subclass for `target` (same attributes as the class statement);
    ``aofcrash_state_machine(target="mystore:make_target").TestCase`` is a test."""
    namespace: dict[str, Any] = {"target": target, "policy": policy, "config": config,
                                 "models": models, "features": features, "profile": profile,
                                 "__module__": __name__}
    return _AofMachineMeta(name, (AofStateMachine,), namespace)  # type: ignore[return-value]


def find_violation(machine: type[RuleBasedStateMachine], *, profile: str | None = None,
                   max_examples: int | None = None, shrink: bool = True,
                   shrink_budget_s: float | None = None) -> AssertionError | None:
    """Run `machine` like its TestCase does and return what it found (a ContractViolation or
    a ModelDivergence, with ``.reproduction``), or None when every example kept the contract.
    `shrink` False returns the first failing example unshrunk (faster; otherwise it is shrunk,
    then minimized by replays as fuzz does, when its target is named); `shrink_budget_s`
    bounds shrinking (default: the machine's ``shrink_budget_s``, else
    ``--aofcrash-shrink-budget``, else 60 s; a slow machine then shrinks less far).
    Like a campaign, it draws no literals mined from the project's source, so a seed means
    the same program whatever else changed."""
    from hypothesis import Phase, settings
    from hypothesis.stateful import run_state_machine_as_test

    from harness._hypothesis import hypothesis_engine
    from harness.machine import PROFILES
    from harness.machine._driver import ContractViolation, ModelDivergence

    chosen = PROFILES[profile] if profile is not None else machine.TestCase.settings
    changes: dict[str, Any] = {}
    if max_examples is not None:
        changes["max_examples"] = max_examples
    if not shrink:
        changes["phases"] = [p for p in Phase if p is not Phase.shrink]
    if shrink_budget_s is None:
        shrink_budget_s = _shrink_budget_of(machine)
    try:
        with hypothesis_engine(shrink_budget_s=shrink_budget_s):
            run_state_machine_as_test(machine, settings=settings(chosen, **changes))
    except (ContractViolation, ModelDivergence) as exc:
        if shrink and not getattr(machine, "_aofcrash_unnamed_factory", False):
            from harness.machine._campaign import minimized

            return minimized(exc)  # as fuzz does: without the steps it does not need
        return exc
    return None


def write_reproduction(finding: Any, path: str | Path) -> Path:
    """Save the reproduction a finding carries as a ``*.aofrepro.json`` file (the suffix is
    added when missing; written whole, temp + rename, with where the target's module came
    from); this plugin replays it from then on, against the recorded target."""
    from harness.cli._fileio import write_atomic

    target = Path(path)
    if not target.name.endswith(SUFFIX):
        target = target.with_name(target.name.removesuffix(".json") + SUFFIX)
    root = Path(_OPTIONS["rootdir"] or Path.cwd())
    write_atomic(target, finding.reproduction.with_target_source(root).to_json())
    return target


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def aofcrash_clock() -> Clock:
    """A fresh virtual clock (``faults.Clock``, milliseconds from 0): the only time a target
    may read; ``advance(ms)`` moves it."""
    from faults import Clock

    return Clock()


@pytest.fixture
def aofcrash_disk() -> SimDisk:
    """A fresh in-memory disk (``faults.SimDisk``) with a page cache over durable storage:
    ``crash(model, choice)`` gives the image after a crash, ``SimDisk.from_image`` boots on
    one, ``trace`` lists every operation."""
    from faults import SimDisk

    return SimDisk()


@pytest.fixture
def aofcrash_fs(aofcrash_disk: SimDisk, aofcrash_clock: Clock) -> FaultyFileSystem:
    """A ``faults.FaultyFileSystem`` over ``aofcrash_disk`` on ``aofcrash_clock``, with no
    fault yet: ``add_faults(FaultPlan(...))`` injects short writes, ENOSPC, EIO, slow fsync,
    crashes."""
    from faults import FaultPlan, FaultyFileSystem

    return FaultyFileSystem(aofcrash_disk, FaultPlan(), clock=aofcrash_clock)


@pytest.fixture
def aofcrash_target_factory() -> TargetFactory:
    """The target factory of ``--aofcrash-target MODULE:FACTORY`` (the bundled reference
    without it); a bad spec fails the test with one clear line (``TargetError``)."""
    from harness.targets import load_target_factory, reference_target

    spec = _default_spec()
    return reference_target if spec is None else load_target_factory(spec)


@pytest.fixture
def aofcrash_target(aofcrash_target_factory: TargetFactory, aofcrash_fs: FaultyFileSystem,
                    aofcrash_clock: Clock) -> Target:
    """A started target (``aofcrash_target_factory``) on ``aofcrash_fs`` and
    ``aofcrash_clock`` with the default ``TargetConfig`` (everysec). Drive it by hand:
    ``submit(argv, client=0)``, ``run_iteration()``, ``released(ticket)``, ``pop_reply``."""
    from harness.targets import TargetConfig, TargetEnv, check_target

    env = TargetEnv(fs=aofcrash_fs, clock=aofcrash_clock, config=TargetConfig(),
                    kill_child=aofcrash_fs.should_kill_child)
    target = check_target(aofcrash_target_factory(env), _default_spec() or "reference")
    target.start()
    return target


@pytest.fixture
def aofcrash_driver() -> Callable[..., Driver]:
    """A factory of in-process runs: ``aofcrash_driver(policy="always", target=...)`` gives a
    fresh ``Driver`` (its own SimDisk, clock, history) for the target named (a
    ``MODULE:FACTORY`` or a factory; default ``--aofcrash-target``, else the reference); other
    keywords are ``RunConfig`` fields. ``driver.run(step)`` executes steps and checks every
    recovery."""
    from harness.machine._driver import Driver
    from harness.machine._steps import RunConfig

    def make(*, target: str | TargetFactory | None = None, **config: Any) -> Driver:
        spec, factory = _spec_of(target)
        return Driver(RunConfig(target=spec, **config), factory=factory)

    return make


# -- reproductions as tests ----------------------------------------------------------------


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.name.endswith(SUFFIX):
        return ReproFile.from_parent(parent, path=file_path)
    return None


class ReproFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        yield ReproItem.from_parent(self, name=self.path.name[: -len(SUFFIX)])


class ReproItem(pytest.Item):
    """One reproduction file, replayed against the target it records; passes when the
    recorded outcome is seen again."""

    def runtest(self) -> None:
        from harness.machine._driver import ContractViolation, ModelDivergence, TargetRunaway
        from harness.machine._judge import replay_judged
        from harness.machine._rules import CheckAofDisagreement, LivenessViolation
        from harness.machine._steps import Reproduction
        from harness.targets import TargetError, make_importable

        repro = Reproduction.from_json(self.path.read_text(encoding="utf-8"))
        # The directory its target's module came from, found near the file or the rootdir.
        make_importable(repro.target_source, near=[self.path.parent, self.config.rootpath])
        expected = repro.expected.get("outcome", "consistent")
        rules: list[str] = []
        try:
            driver = replay_judged(repro)  # every rule a campaign judges
            outcome = "unavailable" if driver.unavailable else "consistent"
        except ContractViolation as exc:
            outcome = "violation"
            rules = sorted({v.rule.value for v in exc.verdict.violations})
        except CheckAofDisagreement:
            outcome, rules = "check-aof", ["check-aof"]
        except (LivenessViolation, TargetRunaway):
            outcome, rules = "liveness", ["liveness"]
        except ModelDivergence:
            outcome = "divergence"
        except TargetError as exc:
            raise ReproMismatch(f"cannot replay it: {exc}") from None
        if outcome != expected:
            raise ReproMismatch(f"recorded outcome {expected!r}, replay gave {outcome!r}")
        want_rules = repro.expected.get("rules")
        if want_rules is not None and sorted(want_rules) != rules:
            raise ReproMismatch(f"recorded rules {want_rules}, replay gave {rules}")

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, ReproMismatch):
            return f"{self.path}: {excinfo.value}"
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"replay {self.path.name}"


class ReproMismatch(AssertionError):
    """A reproduction no longer shows what it recorded."""
