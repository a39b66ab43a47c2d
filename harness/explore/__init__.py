"""The exhaustive crash-state explorer (ALICE/CrashMonkey style) of in-process targets.

* ``_workloads``: named, seeded workloads (tuples of driver steps);
* ``_record``: the workload once on a traced SimDisk, with what a crash at each trace position
  would see (history events, time, the fault layer's operation count);
* ``_eval``: recovering crash images fast (each distinct AOF content once, incremental loads);
* ``_generic``: recovering any target's crash images (each distinct image once), used when
  ``RunConfig.target`` names a target other than the bundled reference;
* ``_explorer``: crash points x legal images per persistence model, the oracle on each, limits
  and coverage (``explore``).

May import ``faults``, ``reference``, ``harness.oracle``, ``harness.targets`` and
``harness.machine`` (steps, driver); never verify or the CLI.
"""

from __future__ import annotations

from harness.explore import _explorer
from harness.explore._eval import ExplorerError
from harness.explore._explorer import *  # noqa: F403
from harness.explore._run import explore
from harness.explore._workloads import (
    DEFAULT_SUITE,
    WORKLOADS,
    Workload,
    fit_workload,
    make_workload,
    suite_config,
)

__all__ = [
    *_explorer.__all__,
    "DEFAULT_SUITE",
    "WORKLOADS",
    "ExplorerError",
    "Workload",
    "explore",
    "fit_workload",
    "make_workload",
    "suite_config",
]
