"""The durability frontier F for every policy x persistence model, window edges, stalls and
no-appendfsync-on-rewrite; the Checker's indexed frontier agrees with the reference function."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.oracle import (
    Checker,
    History,
    Outcome,
    effective_window_ms,
    frontier,
    window_stalls,
)

MODELS = ("process", "power", "power-eager-metadata")


def build(rows: list[tuple[str, int | None, bool]]) -> History:
    """rows: (outcome, ack_ms, during_rewrite); entry i sets key i, executed at i ms."""
    h = History()
    for i, (outcome, ack, rewrite) in enumerate(rows):
        h.submit([[b"SET", b"k%d" % i, b"v"]], db=0, executed_ms=i, during_rewrite=rewrite)
        if outcome != "pending":
            h.resolve(i, outcome, at_ms=ack)
    return h


# Positions in the executed sequence: #0 -> 1, #1 -> 2, (#2 refused), #3 -> 3, #4 -> 4.
TABLE_HISTORY = [
    ("ok", 100, False),
    ("ok", 1000, True),
    ("error", 1500, False),
    ("ok", 3000, False),
    ("pending", None, False),
]

# (policy, model, crash_ms, expected F)
FRONTIER_TABLE = [
    ("always", "process", 5000, 3),
    ("always", "power", 5000, 3),
    ("always", "power-eager-metadata", 5000, 3),
    ("everysec", "process", 5000, 3),  # #3 acked exactly W = 2000 ms before the crash
    ("everysec", "power", 5000, 3),
    ("everysec", "power-eager-metadata", 5000, 3),
    ("everysec", "power", 4999, 2),  # now #3 is 1999 ms old: only #0 and #1 must survive
    ("everysec", "process", 2999, 1),
    ("everysec", "power", 2099, 0),
    ("no", "process", 5000, 3),
    ("no", "power", 5000, 0),
    ("no", "power-eager-metadata", 5000, 0),
]


@pytest.mark.parametrize(("policy", "model", "crash_ms", "expected"), FRONTIER_TABLE)
def test_frontier_table_for_every_policy_and_model(
    policy: str, model: str, crash_ms: int, expected: int
) -> None:
    h = build(TABLE_HISTORY)
    assert frontier(h, policy=policy, model=model, crash_ms=crash_ms) == expected
    assert Checker(h).frontier(policy=policy, model=model, crash_ms=crash_ms) == expected


def test_everysec_entry_acked_exactly_w_before_the_crash_must_survive() -> None:
    h = build([("ok", 1000, False)])
    assert frontier(h, policy="everysec", model="power", crash_ms=3000) == 1
    assert frontier(h, policy="everysec", model="power", crash_ms=2999) == 0
    assert frontier(h, policy="everysec", model="power", crash_ms=2500, window_ms=1500) == 1


def test_no_appendfsync_on_rewrite_entries_need_not_survive_power_loss() -> None:
    h = build([("ok", 10, False), ("ok", 20, True), ("ok", 30, True)])
    for policy in ("always", "everysec"):
        args = {"policy": policy, "crash_ms": 10_000, "no_appendfsync_on_rewrite": True}
        assert frontier(h, model="power", **args) == 1  # type: ignore[arg-type]
        assert frontier(h, model="power-eager-metadata", **args) == 1  # type: ignore[arg-type]
        assert frontier(h, model="process", **args) == 3  # type: ignore[arg-type]
        assert frontier(h, model="power", policy=policy, crash_ms=10_000) == 3


def test_an_entry_after_the_rewrite_pulls_the_rewrite_entries_into_the_frontier() -> None:
    h = build([("ok", 10, True), ("ok", 20, False)])
    assert frontier(
        h, policy="always", model="power", crash_ms=100, no_appendfsync_on_rewrite=True
    ) == 2


def test_unknown_and_refused_entries_never_raise_the_frontier() -> None:
    h = build([("ok", 5, False), ("pending", None, False), ("error", 9, False)])
    assert frontier(h, policy="always", model="process", crash_ms=100) == 1
    assert frontier(History(), policy="always", model="process", crash_ms=0) == 0


def test_stall_overlapping_the_window_extends_it_by_its_whole_delay() -> None:
    assert effective_window_ms(5000, window_ms=2000, stalls=[(2900, 600)]) == 2600
    # The widened window [2400, 5000] takes in a stall ending at 2500: fixed point 2800.
    assert effective_window_ms(5000, window_ms=2000, stalls=[(2900, 600), (2300, 200)]) == 2800
    # A stall that ends exactly where the window starts does not overlap it.
    assert effective_window_ms(5000, window_ms=2000, stalls=[(2500, 500)]) == 2000
    # A stall that starts after the crash is irrelevant.
    assert effective_window_ms(5000, window_ms=2000, stalls=[(5001, 9000)]) == 2000
    h = build([("ok", 2500, False)])
    assert frontier(h, policy="everysec", model="power", crash_ms=5000) == 1
    assert frontier(h, policy="everysec", model="power", crash_ms=5000, stalls=[(2900, 600)]) == 0


def test_fsync_stalls_widen_the_window_under_power_models_only() -> None:
    h = build([("ok", 2500, False)])
    for model in ("power", "power-eager-metadata"):
        assert frontier(h, policy="everysec", model=model, crash_ms=5000,
                        stalls=[(2900, 600)]) == 0
    assert frontier(h, policy="everysec", model="process", crash_ms=5000,
                    stalls=[(2900, 600)]) == 1
    # I/O errors widen it under every model.
    for model in ("process", "power"):
        assert frontier(h, policy="everysec", model=model, crash_ms=5000,
                        error_stalls=[(2900, 1000)]) == 0
    # Under process a stall widens W by at most one cron period (POSTPONE_SLACK_MS).
    assert window_stalls("process", [(1, 2), (5, 600)], [(3, 1000)]) == (
        (1, 2), (5, 100), (3, 1000))
    assert window_stalls("power", [(1, 2)], [(3, 1000)]) == ((1, 2), (3, 1000))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"policy": "sometimes"}, "policy must be one of 'always', 'everysec', 'no'"),
        ({"model": "meteor"}, "model must be one of 'process', 'power-ext4'"),
        ({"crash_ms": "5"}, "crash_ms must be an int"),
        ({"window_ms": -1}, "window_ms must be >= 0"),
        ({"stalls": [(1, -2)]}, r"stalls\[0\] delay_ms must be >= 0"),
        ({"stalls": [(1,)]}, r"stalls\[0\] must be \(start_ms, delay_ms\)"),
    ],
)
def test_frontier_rejects_bad_arguments_naming_the_field(
    kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"policy": "everysec", "model": "power", "crash_ms": 10}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        frontier(History(), **args)  # type: ignore[arg-type]


rows_strategy = st.lists(
    st.tuples(
        st.sampled_from(["ok", "ok", "error", "pending", "unknown"]),
        st.integers(0, 50),
        st.booleans(),
    ),
    max_size=30,
)


@given(
    rows=rows_strategy,
    policy=st.sampled_from(["always", "everysec", "no"]),
    model=st.sampled_from(MODELS),
    crash_ms=st.integers(0, 6000),
    window_ms=st.integers(0, 3000),
    stalls=st.lists(st.tuples(st.integers(0, 6000), st.integers(0, 1500)), max_size=3),
    error_stalls=st.lists(st.tuples(st.integers(0, 6000), st.just(1000)), max_size=2),
    nafor=st.booleans(),
)
def test_indexed_frontier_agrees_with_the_reference_definition(
    rows: list[tuple[str, int, bool]],
    policy: str,
    model: str,
    crash_ms: int,
    window_ms: int,
    stalls: list[tuple[int, int]],
    error_stalls: list[tuple[int, int]],
    nafor: bool,
) -> None:
    h = History()
    for i, (outcome, gap, rewrite) in enumerate(rows):
        h.submit([[b"SET", b"k", b"%d" % i]], db=0, executed_ms=i * 100, during_rewrite=rewrite)
        if outcome != "pending":
            h.resolve(i, Outcome(outcome), at_ms=i * 100 + gap if outcome == "ok" else None)
    args = {
        "policy": policy, "model": model, "crash_ms": crash_ms, "window_ms": window_ms,
        "stalls": stalls, "error_stalls": error_stalls, "no_appendfsync_on_rewrite": nafor,
    }
    assert Checker(h).frontier(**args) == frontier(h, **args)  # type: ignore[arg-type]


def test_indexed_frontier_agrees_on_out_of_order_acks() -> None:
    # Acks of concurrent clients need not be monotone: #0 is acked after #1.
    h = build([("ok", 900, False), ("ok", 100, False)])
    for crash in (1000, 2100, 2899, 2900):
        args = {"policy": "everysec", "model": "power", "crash_ms": crash}
        assert Checker(h).frontier(**args) == frontier(h, **args)  # type: ignore[arg-type]
    assert frontier(h, policy="everysec", model="power", crash_ms=2100) == 2
    assert frontier(h, policy="everysec", model="power", crash_ms=2899) == 2
    assert frontier(h, policy="everysec", model="power", crash_ms=2099) == 0


def test_stalls_that_fire_while_another_runs_are_serial() -> None:
    # Two slow faults on one fsync (both fired at 5003): the second runs 6503..9503, so it
    # overlaps [crash - 2000, crash] for a crash at 10749 although 5003 + 3000 does not.
    stalls = [(5003, 1500), (5003, 3000)]
    assert effective_window_ms(10749, window_ms=2000, stalls=stalls) == 6500
    # Near miss on the other side: a crash 2000 ms after the second stall ends.
    assert effective_window_ms(11503, window_ms=2000, stalls=stalls) == 2000
    # An fsync queued behind a slow one starts when that one ends.
    assert effective_window_ms(8500, window_ms=2000, stalls=[(1000, 5000), (2000, 1000)]) == 8000
    h = build([("ok", 6522, False)])
    assert frontier(h, policy="everysec", model="power", crash_ms=10749) == 1
    assert frontier(h, policy="everysec", model="power", crash_ms=10749, stalls=stalls) == 0
