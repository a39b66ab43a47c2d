"""Cause attribution (``attribute_trial``; on by default in ``run_verify``, ``--no-attribution``
in the CLI): a violating trial is re-run as it was (a violation that does not come back in a
few re-runs is timing-dependent and is not attributed), then once per ingredient with that
ingredient taken out: the fault (drawn and placed exactly as before, never armed), a strict
metadata model (``power-ext4``, ``-xfs``, ``-btrfs``, ``power-posix-metadata``) replaced by
``power-eager-metadata``, the
rewrite. A variant re-runs up to ``attribution_repeats`` times and counts as recurring at its
first violation of a rule the trial broke. An ingredient is *needed* when the violation never
recurred without it, so a loss that also happens without the fault (e.g. a missing directory
fsync under strict metadata) does not name the fault as a cause. A fault that never fired in
the trial is not needed (no re-run).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace
from typing import Final

from harness.verify._config import (
    Ablation,
    Attribution,
    Dumper,
    Launcher,
    TrialResult,
    VerifyConfig,
)
from harness.verify._trial import run_trial

__all__ = ["attribute_trial"]

_STRICT_METADATA: Final = ("power-ext4", "power-xfs", "power-btrfs", "power-posix-metadata",
                           "power")


def _rewrite_in(config: VerifyConfig) -> bool:
    return config.rewrite or config.fault == "kill-child"


def attribute_trial(
    config: VerifyConfig,
    trial: TrialResult,
    *,
    repeats: int = 3,
    launcher: Launcher | None = None,
    dump: Dumper | None = None,
) -> Attribution:
    """Re-check violating `trial` of `config` with one ingredient taken out at a time: the
    injected fault (drawn and placed as before, never armed), a strict metadata model
    (``power-ext4``, ``-xfs``, ``-btrfs``, ``-posix-metadata``) replaced by
    ``power-eager-metadata``, the rewrite.
    Each variant runs up to `repeats` times and stops at the first that breaks a rule the
    trial broke. A fault that never fired in the trial is not needed and is not re-run."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    rules = tuple(sorted({v.rule.value for v in trial.violations}))

    def rerun(cfg: VerifyConfig, without: Collection[str]) -> tuple[int, int, tuple[str, ...]]:
        outcomes = []
        for _ in range(repeats):
            again = run_trial(cfg, trial.index, launcher=launcher, dump=dump, without=without)
            broke = sorted({v.rule.value for v in again.violations})
            outcomes.append(again.outcome + (f" ({', '.join(broke)})" if broke else ""))
            if set(broke) & set(rules):
                return len(outcomes), 1, tuple(outcomes)
        return len(outcomes), 0, tuple(outcomes)

    runs, recurred, _ = rerun(config, ())
    if not recurred:
        return Attribution(rules, repeats, runs, 0)
    ablations = []
    if config.fault != "none":
        label = f"fault {config.fault}"
        if trial.fault_asked and not trial.fault_fired:
            ablations.append(Ablation("fault", label, 0, 0, reason="it never fired"))
        else:
            ablations.append(Ablation("fault", label, *rerun(config, ("fault",))))
    if config.model in _STRICT_METADATA:
        eager = replace(config, model="power-eager-metadata")
        ablations.append(Ablation("metadata", f"strict metadata ({config.model})",
                                  *rerun(eager, ())))
    if _rewrite_in(config):
        label = "rewrite" + (" (and the killed child)" if config.fault == "kill-child" else "")
        if not trial.events.get("bgrewriteaof sent"):
            ablations.append(Ablation("rewrite", label, 0, 0, reason="none was sent"))
        else:
            ablations.append(Ablation("rewrite", label, *rerun(config, ("rewrite",))))
    return Attribution(rules, repeats, runs, recurred, tuple(ablations))
