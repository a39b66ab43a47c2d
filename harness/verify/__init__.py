"""Real server processes under the same workload, faults and oracle (``aofcrash verify``).

``run_verify`` runs trials: start a server (any ``harness.targets.resolve_server`` form: a
preset, a binary, a command template; optionally on a ``faults.fuse`` mount of a SimDisk),
drive a seeded workload over RESP with a fault armed where the workload reaches it, crash it,
restart, dump, and check the recovery with ``harness.oracle``; on one process or forked
workers. One module per part, from the bottom up: ``_config`` (what runs and what it found),
``_environment`` (the server and FUSE: can it start here), ``_workload`` (the seeded writes),
``_conn`` (the RESP connection), ``_site`` (the scratch directory and its mount), ``_faults``
(the fault and the kill: drawn, placed), ``_mechanism`` (what a crash image lacks or
resurrects: the mechanism of a violation), ``_trial`` (one trial on a directory or the FUSE
SimDisk), ``_verify_kernel`` (one trial on the real kernel's ext4, xfs or btrfs), ``_dispatch``
(which of the two a configuration needs), ``_attribution`` (a violation's causes: the minimal
sufficient sets of its ingredients), ``_runner`` (every trial, on workers).
``_explore_server`` is ALICE's method on an unmodified binary (``aofcrash explore --server``):
one traced run on a FUSE SimDisk, then every crash point x every legal image recovered by the
real binary (each distinct image once, on every core) and checked with the oracle.
``_explore_kernel`` does the same on the real kernel's ext4, xfs and btrfs
(``--model ext4|xfs|btrfs``): the server runs on a ``faults.kernel.BlockRecorder`` and every
crash image is mounted by Linux before the server recovers from it.
May import ``faults``, ``harness.oracle`` and ``harness.targets``; never the in-process machine,
the explorer or the CLI.
"""

from __future__ import annotations

from harness.verify import _config, _explore_server
from harness.verify._attribution import attribute_trial
from harness.verify._config import *  # noqa: F403
from harness.verify._dispatch import run_trial
from harness.verify._environment import check_environment
from harness.verify._explore_server import *  # noqa: F403
from harness.verify._runner import run_verify, worker_pool

__all__ = [
    *_config.__all__,
    *_explore_server.__all__,
    "attribute_trial",
    "check_environment",
    "run_trial",
    "run_verify",
    "worker_pool",
]
