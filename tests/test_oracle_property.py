"""Property: the fast checker agrees with brute force (replay S(k) for every k and compare).

For random histories (several types, expiries, MULTI blocks, refused and unknown entries, two
dbs), every S(k) is recognised with the largest equal k, and any single-key mutation of S(k) is
flagged exactly when it equals no prefix, with the brute-force closest k. Example tests pin the
edge cases.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from harness.oracle import (
    Checker,
    History,
    KeyValue,
    Model,
    Outcome,
    Rule,
    Snapshot,
    frontier,
)

KEYS = [b"a", b"b", b"c"]
VALS = [b"1", b"2", b"x"]


@st.composite
def commands(draw: st.DrawFn) -> list[bytes]:
    key = draw(st.sampled_from(KEYS))
    val = draw(st.sampled_from(VALS))
    ms = str(draw(st.integers(1, 400))).encode()
    return draw(
        st.sampled_from(
            [
                [b"SET", key, val],
                [b"SET", key, val, b"PX", ms],
                [b"SET", key, val, b"NX"],
                [b"INCR", key],
                [b"APPEND", key, val],
                [b"DEL", key],
                [b"RPUSH", key, val],
                [b"LPUSH", key, val, val],
                [b"LPOP", key],
                [b"SADD", key, val],
                [b"SREM", key, val],
                [b"ZADD", key, val if val != b"x" else b"3", b"m" + val],
                [b"HSET", key, b"f", val],
                [b"HDEL", key, b"f"],
                [b"PEXPIRE", key, ms],
                [b"PERSIST", key],
                [b"FLUSHDB"],
            ]
        )
    )


@st.composite
def histories(draw: st.DrawFn) -> tuple[History, int]:
    h = History()
    now = 0
    for i in range(draw(st.integers(0, 14))):
        now += draw(st.integers(0, 150))
        block = draw(st.lists(commands(), min_size=1, max_size=3))
        h.submit(block, db=draw(st.sampled_from([0, 0, 1])), executed_ms=now)
        outcome = draw(st.sampled_from([Outcome.OK, Outcome.OK, Outcome.ERROR, Outcome.UNKNOWN]))
        h.resolve(i, outcome, at_ms=now + 1 if outcome is Outcome.OK else None)
    recovery_ms = now + draw(st.integers(0, 500))
    return h, recovery_ms


def brute_prefixes(h: History, t_ms: int) -> list[Snapshot]:
    """S(0..n) by replaying the executed entries once, snapshotting after each."""
    model = Model()
    out = [model.snapshot(t_ms)]
    for entry in h:
        if entry.outcome is not Outcome.ERROR:
            model.apply(entry.commands, db=entry.db, now_ms=entry.executed_ms)
            out.append(model.snapshot(t_ms))
    return out


def brute_closest(prefixes: list[Snapshot], recovered: Snapshot) -> tuple[int, int]:
    best_k, best = 0, -1
    for k, s in enumerate(prefixes):
        n = sum(1 for key in set(s) | set(recovered) if s.get(key) != recovered.get(key))
        if best < 0 or n <= best:
            best_k, best = k, n
    return best_k, best


def mutate(s: Snapshot, how: int, pick: int) -> Snapshot:
    data: dict[Any, KeyValue] = dict(s.items())
    keys = sorted(data)
    if how == 0 and keys:  # drop a key
        del data[keys[pick % len(keys)]]
    elif how == 1 and keys:  # change a value
        key = keys[pick % len(keys)]
        kv = data[key]
        if kv.type == "string":
            data[key] = kv._replace(value=kv.value + b"!")  # type: ignore[operator]
        elif kv.type == "list":
            data[key] = kv._replace(value=(*kv.value, b"!"))
        else:
            data[key] = kv._replace(expire_at_ms=(kv.expire_at_ms or 10**9) + 1)
    else:  # add a key nobody wrote
        data[(pick % 2, b"zz")] = KeyValue("string", b"new", None)
    return Snapshot(data)


def run_check(checker: Checker, recovered: Snapshot, t_ms: int, **kw: Any) -> Any:
    args: dict[str, Any] = {"policy": "no", "model": "power", "crash_ms": t_ms}
    args.update(kw)
    return checker.check(recovered, recovery_ms=t_ms, **args)


@given(histories())
def test_every_prefix_is_consistent_with_the_largest_equal_k(case: tuple[History, int]) -> None:
    h, t_ms = case
    prefixes = brute_prefixes(h, t_ms)
    checker = Checker(h)
    f = frontier(h, policy="always", model="process", crash_ms=t_ms)
    for k, s in enumerate(prefixes):
        largest = max(j for j, other in enumerate(prefixes) if other == s)
        assert largest >= k
        verdict = run_check(checker, s, t_ms)
        assert verdict.ok and verdict.k == largest
        strict = run_check(checker, s, t_ms, policy="always", model="process")
        assert strict.ok == (largest >= f)
        if not strict.ok:
            assert strict.violations[0].rule is Rule.DURABILITY


@given(histories(), st.integers(0, 2), st.integers(0, 50), st.integers(0, 50))
def test_single_key_mutation_is_flagged_exactly_when_no_prefix_matches(
    case: tuple[History, int], how: int, pick: int, which: int
) -> None:
    h, t_ms = case
    prefixes = brute_prefixes(h, t_ms)
    k = which % len(prefixes)
    mutated = mutate(prefixes[k], how, pick).at(t_ms)
    matches = [j for j, s in enumerate(prefixes) if s == mutated]
    verdict = run_check(Checker(h), mutated, t_ms)
    if matches:
        assert verdict.ok and verdict.k == max(matches)
    else:
        assert not verdict.ok
        (v,) = verdict.violations
        assert v.rule in (Rule.PREFIX_CONSISTENCY, Rule.PHANTOM)
        closest, differing = brute_closest(prefixes, mutated)
        assert (v.closest_k, v.differing_keys) == (closest, differing)


# ---------------------------------------------------------------- the edge cases as examples


def test_empty_history_accepts_only_the_empty_keyspace() -> None:
    checker = Checker(History())
    assert run_check(checker, Snapshot(), 0).k == 0
    verdict = run_check(checker, mutate(Snapshot(), 2, 0), 0)
    assert verdict.violations[0].closest_k == 0 and verdict.violations[0].differing_keys == 1


def test_mutation_that_lands_on_another_prefix_is_that_prefix() -> None:
    h = History()
    h.submit([[b"SET", b"a", b"1"]], db=0, executed_ms=0)
    h.submit([[b"APPEND", b"a", b"!"]], db=0, executed_ms=0)
    h.submit([[b"SET", b"b", b"2"]], db=0, executed_ms=0)
    for i in range(3):
        h.resolve(i, "ok", at_ms=1)
    prefixes = brute_prefixes(h, 0)
    # Changing a of S(1) from "1" to "1!" gives S(2) exactly: consistent, k = 2.
    assert mutate(prefixes[1], 1, 0) == prefixes[2]
    assert run_check(Checker(h), mutate(prefixes[1], 1, 0), 0).k == 2
    # Dropping b from S(3) gives S(2) again.
    assert run_check(Checker(h), mutate(prefixes[3], 0, 1), 0).k == 2


def test_mutation_of_a_key_in_the_second_db_is_caught() -> None:
    h = History()
    h.submit([[b"SET", b"a", b"1"]], db=1, executed_ms=0)
    h.resolve(0, "ok", at_ms=1)
    verdict = run_check(Checker(h), mutate(brute_prefixes(h, 0)[1], 1, 0), 0)
    assert verdict.violations[0].diff[0].db == 1


def test_expiry_only_mutation_of_a_volatile_key_is_caught() -> None:
    h = History()
    h.submit([[b"SADD", b"s", b"m"], [b"PEXPIRE", b"s", b"300"]], db=0, executed_ms=0)
    h.resolve(0, "ok", at_ms=1)
    s1 = brute_prefixes(h, 10)[1]
    mutated = mutate(s1, 1, 0)
    assert mutated[(0, b"s")].expire_at_ms == 301
    verdict = run_check(Checker(h), mutated, 10)
    assert not verdict.ok and verdict.violations[0].closest_k == 1
