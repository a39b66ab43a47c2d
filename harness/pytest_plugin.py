"""pytest plugin (registered as ``aofcrash``): replay reproductions as tests, and fixtures.

* Every ``*.aofrepro.json`` file under a collected directory becomes a test that replays it and
  asserts it still shows the outcome it recorded (``expected.outcome``): a regression suite of
  findings that needs no Python code. ``aofcrash fuzz`` and ``explore`` write such files.
* ``aofcrash_driver``: a factory fixture, ``aofcrash_driver(policy="always", ...)`` gives a fresh
  in-process ``Driver`` (reference server on a SimDisk) to script steps against.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["ReproItem"]

SUFFIX = ".aofrepro.json"


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> pytest.Collector | None:
    if file_path.name.endswith(SUFFIX):
        return ReproFile.from_parent(parent, path=file_path)
    return None


class ReproFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        yield ReproItem.from_parent(self, name=self.path.name[: -len(SUFFIX)])


class ReproItem(pytest.Item):
    """One reproduction file, replayed; passes when the recorded outcome is seen again."""

    def runtest(self) -> None:
        from harness.machine._driver import ContractViolation, ModelDivergence, replay
        from harness.machine._steps import Reproduction

        repro = Reproduction.from_json(self.path.read_text(encoding="utf-8"))
        expected = repro.expected.get("outcome", "consistent")
        rules: list[str] = []
        try:
            driver = replay(repro)
            outcome = "unavailable" if driver.unavailable else "consistent"
        except ContractViolation as exc:
            outcome = "violation"
            rules = sorted({v.rule.value for v in exc.verdict.violations})
        except ModelDivergence:
            outcome = "divergence"
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


@pytest.fixture
def aofcrash_driver() -> Callable[..., Any]:
    from harness.machine._driver import Driver
    from harness.machine._steps import RunConfig

    def make(**config: Any) -> Driver:
        return Driver(RunConfig(**config))

    return make
