"""Which trial runner a configuration needs: the real kernel's filesystems
(``_verify_kernel``) or a plain directory / the FUSE SimDisk (``_trial``). Above both, so that
neither imports the other."""

from __future__ import annotations

from collections.abc import Collection

from harness.verify._config import Dumper, Launcher, TrialResult, VerifyConfig
from harness.verify._environment import KERNEL_VERIFY_MODELS
from harness.verify._trial import run_fuse_trial
from harness.verify._verify_kernel import run_kernel_trial

__all__ = ["run_trial"]


def run_trial(
    config: VerifyConfig,
    index: int,
    *,
    launcher: Launcher | None = None,
    dump: Dumper | None = None,
    without: Collection[str] = (),
) -> TrialResult:
    """Run trial `index` of `config` (its workload, faults and crash depend only on the seed
    and the index). Every process and mount it starts is gone when it returns or raises.

    `without` takes ingredients out of the same trial (cause attribution): "fault" draws the
    fault and places the kill exactly as with it but never arms it; "rewrite" sends no
    BGREWRITEAOF. Everything else (workload, batches, kill, crash image seeds) is unchanged.
    """
    if config.model in KERNEL_VERIFY_MODELS:
        return run_kernel_trial(config, index, without=frozenset(without))
    return run_fuse_trial(config, index, launcher=launcher, dump=dump, without=without)
