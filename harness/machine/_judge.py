"""Replaying a reproduction with every rule a campaign judges, not only the data rules.

The driver checks the data rules at every recovery (prefix consistency, durability, phantom,
stability, availability) and reads against the model. A campaign's state machine judges more,
between steps: the reference's check-aof against its loader on every crash image it recovers
(``CheckAofDisagreement``) and two liveness rules (``LivenessViolation``: writes resume after
the faults are cleared, a rewrite takes effect). A reproduction of such a finding holds the
steps the rule ran; ``Judge`` applies the same rule to the same place of a replay:

* check-aof before every ``Recover`` (the image that recovery loads), and, when the program
  ends crashed with no recovery (reproductions recorded before the recovery step was kept),
  on every legal crash image of that crash (bounded like the campaign's choices);
* liveness at the end, the rule the reproduction names (``expected["liveness"]``) or, for
  older ones, the rule whose steps the program ends with.

``judged`` lists the rules a replay judged, for the report. Used by ``aofcrash replay`` (step
by step, with its trace on) and by the pytest plugin's reproduction items (``replay_judged``).
"""

from __future__ import annotations

from typing import Any

from faults import PersistenceModel
from harness.machine._driver import Driver
from harness.machine._rules import (
    LIVENESS_REWRITE,
    LIVENESS_WRITES,
    CheckAofDisagreement,
    LivenessViolation,
    check_aof_agrees,
)
from harness.machine._steps import (
    BgRewrite,
    ChildStep,
    ClearFaults,
    Recover,
    Reproduction,
    Step,
    Tick,
    Write,
)
from harness.oracle import Outcome
from harness.targets import TargetFactory

__all__ = ["Judge", "replay_judged"]

DATA_RULES = ("prefix-consistency", "durability", "phantom", "stability", "availability",
              "damage")
# Crash images of a final crash judged by check-aof at most (distinct AOF contents).
MAX_FINAL_IMAGES = 4096
# The steps ``writes_resume`` runs (harness.machine._machine): cleared faults, then a write
# after 10 s and another 1.1 s later.
_WRITES_RESUME_TAIL = (ClearFaults(), Tick(10_000), Write((b"SET", b"k0", b"after-faults")),
                       Tick(1_100), Write((b"SET", b"k0", b"after-faults")))


class Judge:
    """The campaign's rules beyond the driver's, on one replay: call ``before(step)`` before
    the driver runs each step and ``finish()`` at the end; they raise the finding."""

    def __init__(self, driver: Driver, repro: Reproduction) -> None:
        self.driver = driver
        self.repro = repro
        config = repro.config
        # check-aof judges the safe reference's own files (as the campaign does).
        self.check_aof = config.target is None and config.profile == "safe" and not config.defects
        self.liveness = self._liveness_rule()
        self._marks: list[int] = []  # trace length before each step
        self._steps: list[Step] = []

    @property
    def judged(self) -> list[str]:
        rules = list(DATA_RULES)
        if any(s.kind == "read" for s in self.repro.steps):
            rules.append("model-divergence")
        if self.check_aof:
            rules.append("check-aof")
        if self.liveness is not None:
            rules.append(f"liveness ({self.liveness})")
        return rules

    def _liveness_rule(self) -> str | None:
        named = self.repro.expected.get("liveness")
        if named in (LIVENESS_WRITES, LIVENESS_REWRITE):
            return str(named)
        steps = tuple(self.repro.steps)
        if steps[-len(_WRITES_RESUME_TAIL):] == _WRITES_RESUME_TAIL:
            return LIVENESS_WRITES
        if self.repro.expected.get("outcome") == "liveness" and steps[-1:] == (Tick(100),):
            return LIVENESS_REWRITE
        return None

    def before(self, step: Step) -> None:
        self._marks.append(len(self.driver.disk.trace))
        self._steps.append(step)
        if isinstance(step, Recover) and self.check_aof and self.driver.crashed:
            driver = self.driver
            choice = step.choice or driver.disk.draw_crash_choice(
                step.model, step.seed, limits=driver.config.image_limits)
            self._check_image(step.model, choice, step.downtime_ms)

    def _check_image(self, model: PersistenceModel, choice: Any, downtime_ms: int) -> None:
        driver = self.driver
        data = driver.disk.crash(model, choice).get(_aof_name(driver))
        if not data:
            return
        with driver.cpu_limited(f"check-aof of the {model.value} crash image"):
            problem = check_aof_agrees(bytes(data), now_ms=driver.clock.now_ms + downtime_ms)
        if problem is not None:
            driver.failed = True
            raise CheckAofDisagreement(
                f"check-aof disagrees with the loader on the {model.value} crash image "
                f"{choice.to_json()}: {problem}",
                driver.reproduction(outcome="check-aof", rules=["check-aof"]))

    def finish(self) -> None:
        driver = self.driver
        if driver.crashed and self.check_aof:
            self._check_final_images()
        if self.liveness is not None and driver.alive:
            problem = self._liveness_problem()
            if problem is not None:
                driver.failed = True
                raise LivenessViolation(f"liveness: {problem}", driver.reproduction(
                    outcome="liveness", rules=["liveness"], liveness=self.liveness))

    def _check_final_images(self) -> None:
        """Every legal image of the crash the program ends with (bounded), both models."""
        driver = self.driver
        seen: set[bytes] = set()
        name = _aof_name(driver)
        for model in (PersistenceModel.PROCESS, PersistenceModel.POWER):
            for choice in driver.disk.crash_choices(model, limits=driver.config.image_limits):
                data = driver.disk.crash(model, choice).get(name)
                if not data or bytes(data) in seen:
                    continue
                if len(seen) >= MAX_FINAL_IMAGES:
                    return
                seen.add(bytes(data))
                self._check_image(model, choice, 0)

    def _liveness_problem(self) -> str | None:
        driver = self.driver
        if self.liveness == LIVENESS_WRITES:
            entries = driver.history.entries
            if entries and entries[-1].outcome is not Outcome.OK:
                return ("writes are still refused or unacknowledged 11 s after every fault "
                        "was cleared (the write error or failed fsync is never retried or "
                        "cleared)")
            return None
        # LIVENESS_REWRITE: the steps of ``rewrite_takes_effect`` end the program.
        cleared = max((i for i, s in enumerate(self._steps) if isinstance(s, ClearFaults)),
                      default=None)
        started = any(isinstance(s, BgRewrite | ChildStep) for s in self._steps[-3:])
        if driver.rewriting:
            return ("BGREWRITEAOF is still running after its child ran to its end (or was "
                    "killed) and a cron period passed")
        if cleared is None or not started:
            return None
        aof = _aof_name(driver)
        renamed = any(e.op.value == "rename" and e.result >= 0 and e.payload == aof
                      for e in driver.disk.trace[self._marks[cleared]:])
        if not renamed:
            return ("with no fault armed, BGREWRITEAOF ended without its file replacing "
                    f"{aof} (the old file stays and grows)")
        return None


def _aof_name(driver: Driver) -> str:
    return str(getattr(getattr(driver.target, "server_config", None), "aof_filename",
                       "appendonly.aof"))


def replay_judged(repro: Reproduction, *, factory: TargetFactory | None = None) -> Driver:
    """``harness.replay`` with every rule a campaign judges: raises ContractViolation,
    ModelDivergence, CheckAofDisagreement or LivenessViolation (both ModelDivergences)."""
    driver = Driver(repro.config, factory=factory)
    judge = Judge(driver, repro)
    for step in repro.steps:
        judge.before(step)
        driver.run(step)
    judge.finish()
    return driver
