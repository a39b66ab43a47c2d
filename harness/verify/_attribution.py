"""Cause attribution (``attribute_trial``; on by default in ``run_verify``, ``--no-attribution``
in the CLI): which sets of ingredients are enough for a violating trial to break its rule.

1. The trial is re-run as it was, up to `repeats` times. A violation that does not come back
   *unchanged* (the same rules and the same mechanism, ``TrialResult.mechanism``: what the
   image lacks or resurrects, why the server refused) is timing-dependent: not attributed.
2. Its ingredients: the fault (when it fired; taken out, it is drawn and placed exactly as
   before but never armed), strict metadata (a model stricter than the next weaker calibrated
   one: ``power-posix-metadata`` -> ``power-ext4``; ``power-ext4``/``-xfs``/``-btrfs`` ->
   ``power-eager-metadata``), the rewrite (the BGREWRITEAOF;
   the faults built on it, ``kill-child``, ``incr-fsync-error`` and ``rewrite-completes``,
   need it). Every subset of them is kept in turn, smallest first (at
   most 8 variants, the trial itself being the full set); a variant re-runs up to `repeats`
   times and is *sufficient* at its first violation of a rule the trial broke the same way
   (``_mechanism.same_mechanism_part``: what its image lacks or resurrects, and its refusal,
   are a part of the trial's; a loss of the same writes another way is another violation).
   A superset of a sufficient set is not run (taken as sufficient), nor a set that keeps
   the killed child without the rewrite it needs (it is the set without it).
3. The minimal sufficient sets are the causes: one set of two reads "needs the rewrite AND
   strict metadata", two sets of one "either the fault OR strict metadata", the empty set
   "needs none of them". ``minimal_sufficient_sets`` is that search, on any predicate (tested
   with fakes); ``attribute_trial`` runs it on real re-runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import combinations
from typing import Final

from harness.verify._config import (
    Attribution,
    Dumper,
    Launcher,
    TrialResult,
    Variant,
    VerifyConfig,
)
from harness.verify._dispatch import run_trial
from harness.verify._faults import REWRITE_FAULTS
from harness.verify._mechanism import same_mechanism_part

__all__ = ["attribute_trial", "minimal_sufficient_sets", "weaker_model"]

# The next weaker calibrated model: what "strict metadata taken out" runs under.
_WEAKER: Final = {
    "power-posix-metadata": "power-ext4",
    "power-ext4": "power-eager-metadata",
    "power": "power-eager-metadata",
    "power-xfs": "power-eager-metadata",
    "power-btrfs": "power-eager-metadata",
}


# Faults built on the rewrite, named for what they add to it.
_FAULT_LABELS: Final = {
    "kill-child": "killed rewrite child",
    "incr-fsync-error": "fault incr-fsync-error (EIO on the old incr's fsync)",
    "rewrite-completes": "completed rewrite (awaited, paced writes after it)",
}


def weaker_model(model: str) -> str | None:
    """The model strict metadata is replaced by, or None when `model` has none stricter than
    its replacement (``process``, ``power-eager-metadata``)."""
    return _WEAKER.get(model)


@dataclass(frozen=True)
class _Search:
    minimal: tuple[frozenset[str], ...]
    evaluated: dict[frozenset[str], bool]  # kept set -> sufficient (run)
    skipped: dict[frozenset[str], str]  # kept set -> why it was not run


def minimal_sufficient_sets(
    ingredients: Sequence[str],
    sufficient: Callable[[frozenset[str]], bool],
    *,
    requires: Mapping[str, str] | None = None,
) -> _Search:
    """Search the subsets of `ingredients` (kept sets, smallest first) for the minimal ones
    for which `sufficient` holds. The full set is the trial itself and is taken as sufficient
    without a call. A superset of a sufficient set is not evaluated; a set keeping x without
    ``requires[x]`` is the same variant as the set without x and is not evaluated either."""
    needs = dict(requires or {})
    full = frozenset(ingredients)
    evaluated: dict[frozenset[str], bool] = {}
    skipped: dict[frozenset[str], str] = {}
    minimal: list[frozenset[str]] = []
    for size in range(len(ingredients) + 1):
        for combo in combinations(ingredients, size):
            kept = frozenset(combo)
            if any(x in kept and needs[x] not in kept for x in needs if x in full):
                skipped[kept] = "the same variant as without " + ", ".join(
                    sorted(x for x in kept if x in needs and needs[x] not in kept))
                continue
            if any(m <= kept for m in minimal):
                skipped[kept] = "contains a sufficient set"
                continue
            ok = True if kept == full else sufficient(kept)
            evaluated[kept] = ok
            if ok:
                minimal.append(kept)
    order = {x: i for i, x in enumerate(ingredients)}
    minimal.sort(key=lambda m: (len(m), sorted(order[x] for x in m)))
    return _Search(tuple(minimal), evaluated, skipped)


def attribute_trial(
    config: VerifyConfig,
    trial: TrialResult,
    *,
    repeats: int = 3,
    launcher: Launcher | None = None,
    dump: Dumper | None = None,
) -> Attribution:
    """The minimal sets of ingredients of violating `trial` (of `config`) that are enough for
    it to break one of its rules again; see the module docstring."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be an int >= 1, got {repeats!r}")
    rules = tuple(sorted({v.rule.value for v in trial.violations}))
    mechanism = trial.mechanism

    # The ingredients this trial has (a fault that never fired, or a rewrite never sent,
    # is not one).
    labels: dict[str, str] = {}
    if config.fault != "none" and trial.fault_fired:
        labels["fault"] = _FAULT_LABELS.get(config.fault, f"fault {config.fault}")
    weaker = weaker_model(config.model)
    if weaker is not None:
        labels["metadata"] = f"strict metadata ({config.model}; weaker: {weaker})"
    if trial.events.get("bgrewriteaof sent"):
        labels["rewrite"] = "rewrite"
    # The killed child needs its rewrite; a rewrite whose child is killed is the fault's own.
    requires = {"fault": "rewrite"} if config.fault in REWRITE_FAULTS and "rewrite" in labels \
        else {}

    def run(kept: frozenset[str]) -> list[TrialResult]:
        removed = set(labels) - kept
        cfg = config if "metadata" not in removed or weaker is None \
            else replace(config, model=weaker)
        out = []
        for _ in range(repeats):
            again = run_trial(cfg, trial.index, launcher=launcher, dump=dump,
                              without=sorted(removed - {"metadata"}))
            out.append(again)
            if recurs(again):
                break
        return out

    def recurs(again: TrialResult) -> bool:
        return bool({v.rule.value for v in again.violations} & set(rules)) \
            and same_mechanism_part(again.mechanism_parts, trial.mechanism_parts)

    def describe(t: TrialResult) -> str:
        return t.outcome + (f" ({t.mechanism})" if t.mechanism else "")

    # 1. As it was: the same rules and the same mechanism.
    as_is: list[TrialResult] = []
    for _ in range(repeats):
        again = run_trial(config, trial.index, launcher=launcher, dump=dump)
        as_is.append(again)
        if again.mechanism == mechanism:
            break
    recurred = sum(1 for t in as_is if t.mechanism == mechanism)
    as_is_outcomes = tuple(describe(t) for t in as_is)
    if not recurred:
        return Attribution(rules, repeats, len(as_is), 0, mechanism=mechanism,
                           as_is_outcomes=as_is_outcomes)

    # 2. Every subset of the ingredients, smallest first.
    order = list(labels)
    runs: dict[frozenset[str], list[TrialResult]] = {}

    def sufficient(kept: frozenset[str]) -> bool:
        runs[kept] = run(kept)
        return recurs(runs[kept][-1])

    search = minimal_sufficient_sets(order, sufficient, requires=requires)
    variants = []
    for kept, ok in search.evaluated.items():
        made = runs.get(kept, [])
        removed = tuple(x for x in order if x not in kept)
        model = weaker if "metadata" in removed and weaker is not None else config.model
        variants.append(Variant(
            tuple(labels[x] for x in order if x in kept), removed, model,
            runs=len(made) if made else len(as_is), recurred=int(ok),
            outcomes=tuple(describe(t) for t in made) if made else ("the trial itself",)))
    for kept, why in search.skipped.items():
        removed = tuple(x for x in order if x not in kept)
        model = weaker if "metadata" in removed and weaker is not None else config.model
        variants.append(Variant(tuple(labels[x] for x in order if x in kept), removed, model,
                                runs=0, recurred=0, skipped=why))
    minimal = tuple(tuple(labels[x] for x in order if x in m) for m in search.minimal)
    return Attribution(rules, repeats, len(as_is), recurred,
                       ingredients=tuple(labels[x] for x in order), variants=tuple(variants),
                       minimal=minimal, mechanism=mechanism, as_is_outcomes=as_is_outcomes,
                       implied=tuple((labels[x], labels[y]) for x, y in requires.items()
                                     if x in labels and y in labels))
