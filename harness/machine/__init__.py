"""The in-process run: steps, the driver, the Hypothesis state machines and fuzz campaigns.

What is here, bottom to top:

* ``_steps``: what a run does, as data (``RunConfig``, the step classes, ``Reproduction``);
* ``_driver``: executes steps against an in-process target on a SimDisk and checks every
  recovery with the oracle (``Driver``, ``replay``, ``ContractViolation``);
* ``_features``: the swarm features, the commands each sends, what a target can run, the
  settings profiles; ``_generators``: the keys, values and command lines the rules draw;
  ``_rules``: the rules judged beyond the oracle's (liveness, check-aof agreement);
* ``_machine``: the Hypothesis state machines that produce steps (``make_state_machine``);
* ``_judge``: replays a reproduction with every rule a campaign judges;
* ``_minimize``: drops the steps and faults a shrunk finding does not need, by replays;
* ``_campaign``: runs the state machines over configurations within a budget.

May import ``faults``, ``reference``, ``harness.oracle`` and ``harness.targets``; never the
explorer, verify or the CLI. The package root ``harness`` re-exports the step vocabulary,
``Driver`` and ``replay``; this module's public names are the state machine's.
"""

from __future__ import annotations

from harness.machine._features import (
    FEATURE_COMMANDS,
    FEATURES,
    PROFILES,
    target_accepts,
    target_commands,
    unsupported_features,
)
from harness.machine._machine import make_state_machine

__all__ = [
    "FEATURES",
    "FEATURE_COMMANDS",
    "PROFILES",
    "make_state_machine",
    "target_accepts",
    "target_commands",
    "unsupported_features",
]
