"""The explorer split into shards and over worker processes finds what one run finds."""

from __future__ import annotations

from collections import Counter

import pytest

from faults import PersistenceModel
from harness.explore import ExploreLimits, explore, make_workload
from harness.machine._steps import RunConfig

# The defect below loses a rename only under the POSIX minimum (ext4 commits it with the next
# fsync of the new AOF).
MODELS = (PersistenceModel.PROCESS, PersistenceModel.POWER_POSIX_METADATA)
BUGGY = RunConfig(policy="always", defects=frozenset({"no-dir-fsync-after-rename"}))


def _steps() -> tuple[object, ...]:
    return tuple(make_workload("rewrite", ops=12, seed=3))


@pytest.mark.parametrize("limits", [ExploreLimits(), ExploreLimits(max_crash_points=25)],
                         ids=["all-points", "at-most-25-points"])
def test_the_union_of_shards_explores_exactly_the_states_of_one_run(
        limits: ExploreLimits) -> None:
    whole = explore(BUGGY, _steps(), models=MODELS, limits=limits)  # type: ignore[arg-type]
    if limits.max_crash_points is None:
        assert whole.violation_total, "the defect went unnoticed: the test proves nothing"
    parts = [explore(BUGGY, _steps(), models=MODELS, limits=limits,  # type: ignore[arg-type]
                     shard=(i, 3)) for i in range(3)]
    outcomes: Counter[tuple[str, str]] = Counter()
    violations: Counter[tuple[str, str]] = Counter()
    for part in parts:
        outcomes.update(part.outcomes)
        violations.update(part.violation_counts)
    assert outcomes == whole.outcomes
    assert violations == whole.violation_counts
    assert sum(p.points_explored for p in parts) == whole.points_explored


def test_two_workers_give_the_counts_of_one() -> None:
    one = explore(BUGGY, _steps(), models=MODELS)  # type: ignore[arg-type]
    two = explore(BUGGY, _steps(), models=MODELS, workers=2)  # type: ignore[arg-type]
    assert one.violation_total
    assert (one.outcomes, one.violation_counts, one.points_explored) == (
        two.outcomes, two.violation_counts, two.points_explored)
    first = one.violations[0]
    assert (first.point, first.model, first.rules) == (
        two.violations[0].point, two.violations[0].model, two.violations[0].rules)


def test_a_bad_shard_is_refused_with_its_value() -> None:
    with pytest.raises(ValueError, match=r"shard must be"):
        explore(BUGGY, _steps(), shard=(3, 3))  # type: ignore[arg-type]


def test_two_shards_of_an_always_run_hold_about_half_the_crash_points_each() -> None:
    # Under `always` a write (torn offsets: many points) alternates with an fsync (one point):
    # dealing positions i mod 2 gave one shard nearly every state.
    steps = tuple(make_workload("mixed", ops=60, seed=1))
    parts = [explore(RunConfig(policy="always"), steps, models=MODELS,  # type: ignore[arg-type]
                     shard=(i, 2)) for i in range(2)]
    points = [p.points_explored for p in parts]
    assert min(points) >= 0.45 * sum(points), points
    states = [p.states for p in parts]
    assert min(states) >= 0.4 * sum(states), states


def test_shards_and_workers_split_a_python_targets_exploration_too() -> None:
    config = RunConfig(policy="always", target="tinyaof:make_buggy_target")
    steps = tuple(make_workload("mixed", ops=10, seed=1))
    whole = explore(config, steps, models=MODELS)  # type: ignore[arg-type]
    assert whole.violation_total, "the buggy store went unnoticed: the test proves nothing"
    parts = [explore(config, steps, models=MODELS, shard=(i, 2))  # type: ignore[arg-type]
             for i in range(2)]
    assert all(0 < p.points_explored < whole.points_explored for p in parts)
    assert sum(p.points_explored for p in parts) == whole.points_explored
    assert sum((p.outcomes for p in parts), Counter()) == whole.outcomes
    two = explore(config, steps, models=MODELS, workers=2)  # type: ignore[arg-type]
    assert (two.outcomes, two.violation_counts) == (whole.outcomes, whole.violation_counts)
    assert two.generic and whole.generic
