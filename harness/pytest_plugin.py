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
``aofcrash-*``; None: ``--aofcrash-profile``, default ``dev``). Features the target cannot run
(no rewrite, commands it does not declare in its ``commands``) are switched off
(``harness.machine.unsupported_features``). ``aofcrash_state_machine(target=..., ...)`` builds
the same class without a class statement, ``find_violation(Machine)`` runs one and returns
what it found (for a test that expects a bug), and ``write_reproduction`` saves a finding as a
``*.aofrepro.json`` file.

Reproductions. A violation raised by the machine carries a reproduction whose config names the
target by its ``MODULE:FACTORY`` (a factory given as an object is named that way when it can be
imported back); ``aofcrash replay`` and this plugin re-run it against that same target. Every
``*.aofrepro.json`` file under a collected directory becomes a test that replays it and
asserts it still shows the outcome it recorded (``expected.outcome``): a regression suite of
findings that needs no Python code.

Fixtures (``pytest --fixtures`` lists them with their docs): ``aofcrash_clock``,
``aofcrash_disk``, ``aofcrash_fs``, ``aofcrash_target_factory``, ``aofcrash_target``,
``aofcrash_driver``.

Options: ``--aofcrash-target MODULE:FACTORY`` (the default target of the fixtures and of
machines that name none), ``--aofcrash-profile dev|ci|nightly``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pytest
from hypothesis.stateful import RuleBasedStateMachine, StateMachineMeta

if TYPE_CHECKING:
    from faults import Clock, FaultyFileSystem, PersistenceModel, SimDisk
    from harness.machine._driver import Driver
    from harness.machine._steps import RunConfig
    from harness.targets import Target, TargetFactory

__all__ = [
    "AofStateMachine",
    "ReproItem",
    "aofcrash_state_machine",
    "find_violation",
    "write_reproduction",
]

SUFFIX = ".aofrepro.json"
PROFILE_NAMES = ("dev", "ci", "nightly")

# Set from the command line in pytest_configure (before test modules are imported).
_OPTIONS: dict[str, str | None] = {"target": None, "profile": None}


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


_SAVED = pytest.StashKey[dict[str, "str | None"]]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SAVED] = dict(_OPTIONS)  # a session inside a session (pytester) restores it
    _OPTIONS["target"] = config.getoption("aofcrash_target", None)
    _OPTIONS["profile"] = config.getoption("aofcrash_profile", None)


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
    kwargs: dict[str, Any] = {"factory": factory}
    if models is not None:
        kwargs["models"] = tuple(models)
    if features is not None:
        kwargs["features"] = tuple(features)
    return make_state_machine(base, **kwargs)


class AofStateMachine(RuleBasedStateMachine, metaclass=_AofMachineMeta):
    """The harness's state machine for the target a subclass names (see the module docstring).

    A subclass sets ``target = "MODULE:FACTORY"`` (or a factory), optionally ``policy``,
    ``config``, ``models``, ``features``, ``profile``; ``Subclass.TestCase`` is the test. A
    subclass may add its own rules and invariants (``self.driver`` is the run's Driver).
    """

    _aofcrash_base: ClassVar[bool] = True
    target: ClassVar[str | Callable[..., Any] | None] = None
    policy: ClassVar[str] = "everysec"
    config: ClassVar[RunConfig | None] = None
    models: ClassVar[tuple[PersistenceModel, ...] | None] = None
    features: ClassVar[tuple[str, ...] | None] = None
    profile: ClassVar[str | None] = None


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
    `shrink` False returns the first failing example unshrunk (faster); `shrink_budget_s`
    replaces Hypothesis's own 5-minute shrinking limit (a slow machine then shrinks as far).
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
    try:
        with hypothesis_engine(shrink_budget_s=shrink_budget_s):
            run_state_machine_as_test(machine, settings=settings(chosen, **changes))
    except (ContractViolation, ModelDivergence) as exc:
        return exc
    return None


def write_reproduction(finding: Any, path: str | Path) -> Path:
    """Save the reproduction a finding carries as a ``*.aofrepro.json`` file (the suffix is
    added when missing); this plugin replays it from then on, against the recorded target."""
    target = Path(path)
    if not target.name.endswith(SUFFIX):
        target = target.with_name(target.name.removesuffix(".json") + SUFFIX)
    target.write_text(finding.reproduction.to_json(), encoding="utf-8")
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
        from harness.machine._machine import CheckAofDisagreement, LivenessViolation
        from harness.machine._steps import Reproduction
        from harness.targets import TargetError

        repro = Reproduction.from_json(self.path.read_text(encoding="utf-8"))
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
