"""Every rule of the contract with hand-built histories and recovered keyspaces, near misses
included, plus the report forms and the Checker's caches."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from harness.oracle import (
    Checker,
    CrashInfo,
    History,
    KeyValue,
    Outcome,
    Rule,
    Snapshot,
    check_recovery,
    check_stability,
    snapshot_from_dump,
)


def hist(*rows: tuple[str, str, int | None] | tuple[str, str, int | None, int]) -> History:
    """rows: ("SET a 1" or "INCR a; INCR b" for a block, outcome, ack_ms[, executed_ms])."""
    h = History()
    for i, row in enumerate(rows):
        text, outcome, ack = row[0], row[1], row[2]
        executed = row[3] if len(row) == 4 else i * 10
        commands = [[w.encode() for w in part.split()] for part in text.split(";")]
        h.submit(commands, db=0, executed_ms=executed)
        if outcome != "pending":
            h.resolve(i, outcome, at_ms=ack)
    return h


def snap(**keys: Any) -> Snapshot:
    """snap(a=b"1", l=("list", [b"x"]), e=("string", b"v", 100)) in db 0."""
    dump: dict[bytes, tuple[str, Any, int | None]] = {}
    for name, spec in keys.items():
        if isinstance(spec, bytes):
            dump[name.encode()] = ("string", spec, None)
        else:
            dump[name.encode()] = (spec[0], spec[1], spec[2] if len(spec) > 2 else None)
    return snapshot_from_dump({0: dump} if dump else {})


def check(h: History, recovered: Snapshot | None, **kwargs: Any) -> Any:
    args: dict[str, Any] = {
        "policy": "always", "model": "power", "crash_ms": 1000, "recovery_ms": 1000,
    }
    args.update(kwargs)
    return check_recovery(h, recovered, **args)


# ---------------------------------------------------------------- rule 1: prefix consistency


def test_every_prefix_is_recognised_with_its_k() -> None:
    h = hist(("SET a 1", "ok", 1), ("SET b 2", "ok", 11), ("INCR a", "unknown", None))
    expected = [snap(), snap(a=b"1"), snap(a=b"1", b=b"2"), snap(a=b"2", b=b"2")]
    for k, recovered in enumerate(expected):
        verdict = check(h, recovered, policy="no")
        assert (verdict.ok, verdict.outcome, verdict.k) == (True, "consistent", k)


def test_hole_is_a_prefix_violation() -> None:
    h = hist(("SET a 1", "ok", 1), ("SET b 1", "ok", 11), ("SET c 1", "ok", 21))
    verdict = check(h, snap(a=b"1", c=b"1"), policy="no")
    assert not verdict.ok and verdict.outcome == "violation"
    (v,) = verdict.violations
    assert v.rule is Rule.PREFIX_CONSISTENCY
    assert v.closest_k == 3 and v.differing_keys == 1
    assert (v.diff[0].key, v.diff[0].expected, v.diff[0].recovered) == (
        b"b", KeyValue("string", b"1", None), None,
    )


def test_reordered_list_pushes_are_a_prefix_violation() -> None:
    h = hist(("RPUSH l a", "ok", 1), ("RPUSH l b", "ok", 11))
    assert check(h, snap(l=("list", [b"a", b"b"]))).ok
    verdict = check(h, snap(l=("list", [b"b", b"a"])), policy="no")
    assert verdict.violations[0].rule is Rule.PREFIX_CONSISTENCY


def test_half_a_transaction_is_a_prefix_violation() -> None:
    h = hist(("SET x 0", "ok", 1), ("INCR a; INCR b", "unknown", None))
    assert check(h, snap(x=b"0", a=b"1", b=b"1")).k == 2
    assert check(h, snap(x=b"0")).k == 1
    verdict = check(h, snap(x=b"0", a=b"1"), policy="no")
    assert verdict.violations[0].rule is Rule.PREFIX_CONSISTENCY
    assert verdict.violations[0].closest_k == 2  # tie (1 key off from S(1) and S(2)): largest


def test_near_miss_each_key_matches_some_prefix_but_no_single_prefix_matches() -> None:
    h = hist(
        ("SET a 1", "ok", 1), ("SET a 2", "ok", 11), ("SET a 3", "ok", 21), ("SET b 1", "ok", 31)
    )
    # a == 2 only in S(2); b == 1 only in S(4): each key is some prefix's, together none is.
    verdict = check(h, snap(a=b"2", b=b"1"), policy="no")
    (v,) = verdict.violations
    assert v.rule is Rule.PREFIX_CONSISTENCY
    assert v.closest_k == 4  # S(2) and S(4) both differ in one key; ties go to the largest k
    assert [(d.key, d.expected, d.recovered) for d in v.diff] == [
        (b"a", KeyValue("string", b"3", None), KeyValue("string", b"2", None))
    ]


def test_value_from_nowhere_is_a_prefix_violation() -> None:
    h = hist(("SET a 1", "ok", 1))
    verdict = check(h, snap(a=b"1", z=b"?"))
    assert verdict.violations[0].rule is Rule.PREFIX_CONSISTENCY
    assert verdict.violations[0].diff[0].key == b"z"


def test_a_different_type_with_the_same_bytes_is_not_a_match() -> None:
    h = hist(("SADD s a", "ok", 1))
    assert not check(h, snap(s=("list", [b"a"]))).ok
    assert check(h, snap(s=("set", {b"a"}))).ok


def test_repeated_states_report_the_largest_matching_k() -> None:
    h = hist(("SET a 1", "ok", 1), ("DEL a", "ok", 11), ("SET a 1", "ok", 21), ("DEL a", "ok", 31))
    assert check(h, snap()).k == 4
    assert check(h, snap(a=b"1")).k == 3
    assert Checker(h).matching_prefixes(snap(a=b"1"), at_ms=1000) == [1, 3]


# ---------------------------------------------------------------- phantoms of refused writes


def test_refused_write_that_shows_up_after_recovery_is_a_phantom() -> None:
    h = hist(("SET a 1", "ok", 1), ("SET a 2", "error", 11), ("SET b 1", "ok", 21))
    assert check(h, snap(a=b"1", b=b"1")).ok
    verdict = check(h, snap(a=b"2", b=b"1"))
    (v,) = verdict.violations
    assert v.rule is Rule.PHANTOM
    assert any(line.startswith("#1 ") for line in v.details["refused_entries"])
    assert "refused" in v.message


def test_phantom_counts_a_value_built_on_a_refused_write() -> None:
    # The refused SET 10 and then the acknowledged INCR: 11 exists only if the refusal applied.
    h = hist(("SET c 1", "ok", 1), ("SET c 10", "error", 11), ("INCR c", "ok", 21))
    assert check(h, snap(c=b"2")).ok
    verdict = check(h, snap(c=b"11"))
    assert verdict.violations[0].rule is Rule.PHANTOM
    assert verdict.violations[0].details["refused_entries"][0].startswith("#1 ")


def test_value_from_another_prefix_is_not_called_a_phantom() -> None:
    h = hist(
        ("SET a 2", "ok", 1), ("SET a 3", "ok", 11), ("SET a 2", "error", 21), ("SET b 1", "ok", 31)
    )
    verdict = check(h, snap(a=b"2", b=b"1"))
    assert verdict.violations[0].rule is Rule.PREFIX_CONSISTENCY


# ---------------------------------------------------------------- rule 2: durability


def test_lost_acknowledged_write_under_always_is_a_durability_violation() -> None:
    h = hist(("SET a 1", "ok", 1), ("SET b 1", "ok", 11), ("SET c 1", "unknown", None))
    verdict = check(h, snap(a=b"1"), policy="always", model="power")
    assert verdict.k == 1 and verdict.frontier == 2 and not verdict.ok
    (v,) = verdict.violations
    assert v.rule is Rule.DURABILITY
    assert v.closest_k == 1 and v.diff_k == 2
    assert [(d.key, d.recovered) for d in v.diff] == [(b"b", None)]
    assert v.details["lost_entries"][0].startswith("#1 db0 SET b 1 (ok)")
    # The unknown entry may be lost or kept.
    assert check(h, snap(a=b"1", b=b"1")).ok
    assert check(h, snap(a=b"1", b=b"1", c=b"1")).ok


def test_no_policy_may_lose_everything_under_power_but_nothing_under_process() -> None:
    h = hist(("SET a 1", "ok", 1), ("SET b 1", "ok", 11))
    assert check(h, snap(), policy="no", model="power").ok
    assert check(h, snap(), policy="no", model="power-eager-metadata").ok
    verdict = check(h, snap(), policy="no", model="process")
    assert verdict.violations[0].rule is Rule.DURABILITY and verdict.frontier == 2


def test_everysec_window_edge_acked_exactly_w_before_crash_must_survive() -> None:
    h = hist(("SET a 1", "ok", 1000, 1000), ("SET b 1", "ok", 1001, 1001))
    # Crash at 3000: a was acked exactly 2000 ms before, b 1999 ms before.
    verdict = check(h, snap(a=b"1"), policy="everysec", crash_ms=3000, recovery_ms=3000)
    assert verdict.ok and verdict.frontier == 1
    verdict = check(h, snap(), policy="everysec", crash_ms=3000, recovery_ms=3000)
    assert verdict.violations[0].rule is Rule.DURABILITY
    assert check(h, snap(), policy="everysec", crash_ms=2999, recovery_ms=3000).ok


def test_fsync_stall_overlapping_the_window_extends_it_under_power() -> None:
    h = hist(("SET a 1", "ok", 500, 500))
    plain = check(h, snap(), policy="everysec", crash_ms=3000, recovery_ms=3000)
    assert plain.violations[0].rule is Rule.DURABILITY
    stalled = check(
        h, snap(), policy="everysec", crash_ms=3000, recovery_ms=3000, stalls=[(900, 600)]
    )
    assert stalled.ok and stalled.frontier == 0


def test_fsync_stall_does_not_widen_the_window_after_a_process_crash() -> None:
    # Acked at 500, crash at 3000: 2500 ms before, so it must survive a process crash even
    # though an fsync stalled for 600 ms inside the window (a correct server still writes).
    h = hist(("SET a 1", "ok", 500, 500))
    verdict = check(h, snap(), policy="everysec", model="process", crash_ms=3000,
                    recovery_ms=3000, stalls=[(900, 600)])
    assert verdict.violations[0].rule is Rule.DURABILITY and verdict.frontier == 1
    # Near miss on the other side: acked 1999 ms before the crash is inside W either way.
    h2 = hist(("SET a 1", "ok", 1001, 1001))
    assert check(h2, snap(), policy="everysec", model="process", crash_ms=3000,
                 recovery_ms=3000, stalls=[(900, 600)]).ok


def test_io_error_widens_the_window_under_every_model() -> None:
    # Acked at 500, crash at 3000 (2500 ms before): one failed write at 1500 keeps the buffer
    # for a retry period, so W = 3000 and the write may be lost, under process and power alike.
    h = hist(("SET a 1", "ok", 500, 500))
    for model in ("process", "power", "power-eager-metadata"):
        verdict = check(h, snap(), policy="everysec", model=model, crash_ms=3000,
                        recovery_ms=3000, error_stalls=[(1500, 1000)])
        assert verdict.ok and verdict.frontier == 0, model
        # Near miss: the error fired after the crash, so it widens nothing.
        late = check(h, snap(), policy="everysec", model=model, crash_ms=3000,
                     recovery_ms=3000, error_stalls=[(3001, 1000)])
        assert late.violations[0].rule is Rule.DURABILITY, model


def test_no_appendfsync_on_rewrite_entries_may_be_lost_only_under_power() -> None:
    h = History()
    h.submit([[b"SET", b"a", b"1"]], db=0, executed_ms=0)
    h.resolve(0, "ok", at_ms=1)
    h.submit([[b"SET", b"b", b"1"]], db=0, executed_ms=10, during_rewrite=True)
    h.resolve(1, "ok", at_ms=11)
    lost_b = snap(a=b"1")
    assert check(h, lost_b, model="power", no_appendfsync_on_rewrite=True).ok
    assert not check(h, lost_b, model="process", no_appendfsync_on_rewrite=True).ok
    assert not check(h, lost_b, model="power", no_appendfsync_on_rewrite=False).ok


# ---------------------------------------------------------------- expiry at recovery time


def test_keys_expired_at_recovery_time_are_absent_from_every_prefix() -> None:
    h = hist(("SET a 1 PX 100", "ok", 1, 0), ("SET b 1", "ok", 11, 10))
    assert check(h, snap(b=b"1"), crash_ms=50, recovery_ms=200).k == 2
    assert check(h, snap(a=("string", b"1", 100), b=b"1"), crash_ms=50, recovery_ms=60).k == 2
    # A recovered key already expired at the recovery time is ignored, as a server hides it.
    assert check(h, snap(a=("string", b"1", 100), b=b"1"), crash_ms=50, recovery_ms=200).ok
    # Before expiry, a missing `a` means the prefix was not kept.
    assert not check(h, snap(b=b"1"), crash_ms=50, recovery_ms=60).ok


def test_recovered_key_that_lost_its_expiry_is_flagged() -> None:
    h = hist(("SET a 1", "ok", 1, 0), ("PEXPIRE a 500", "ok", 11, 10))
    verdict = check(h, snap(a=b"1"), crash_ms=50, recovery_ms=100)
    (v,) = verdict.violations
    assert v.rule is Rule.DURABILITY  # it equals S(1): the PEXPIRE was lost
    assert v.diff[0].expected == KeyValue("string", b"1", 510)
    assert check(h, snap(a=("string", b"1", 510)), crash_ms=50, recovery_ms=100).ok


def test_expiry_evaluated_at_execution_time_not_recovery_time() -> None:
    # INCR ran after the key expired, so it started from 0: the recovered value is 1, not 42.
    h = hist(("SET c 41 PX 100", "ok", 1, 0), ("INCR c", "ok", 201, 200))
    assert check(h, snap(c=b"1"), crash_ms=300, recovery_ms=300).k == 2
    assert not check(h, snap(c=b"42"), crash_ms=300, recovery_ms=300).ok


def test_hash_tables_are_reused_between_expiries_and_rebuilt_across_one() -> None:
    h = hist(("SET a 1 PX 100", "ok", 1, 0), ("SET b 1", "ok", 11, 10))
    checker = Checker(h)
    both = snap(a=("string", b"1", 100), b=b"1")
    kw: dict[str, Any] = {"policy": "always", "model": "power", "crash_ms": 20}
    assert checker.check(both, recovery_ms=50, **kw).k == 2
    assert checker.check(both, recovery_ms=99, **kw).k == 2
    assert len(checker._tables) == 1  # no expiry between 50 and 99: one table serves both
    assert checker.check(snap(b=b"1"), recovery_ms=100, **kw).k == 2
    assert len(checker._tables) == 2
    assert not checker.check(snap(b=b"1"), recovery_ms=99, **kw).ok


# ---------------------------------------------------------------- growth and retraction


def test_checker_follows_a_growing_history() -> None:
    h = hist(("SET a 1", "ok", 1))
    checker = Checker(h)
    kw: dict[str, Any] = {"policy": "always", "model": "power", "crash_ms": 100, "recovery_ms": 100}
    assert checker.check(snap(a=b"1"), **kw).k == 1
    h.submit([[b"INCR", b"a"]], db=0, executed_ms=50)
    h.resolve(1, "ok", at_ms=51)
    assert checker.check(snap(a=b"2"), **kw).k == 2
    assert checker.check(snap(a=b"1"), **kw).violations[0].rule is Rule.DURABILITY


def test_checker_rebuilds_when_a_pending_entry_is_refused() -> None:
    h = hist(("SET a 1", "ok", 1), ("SET a 2", "pending", None))
    checker = Checker(h)
    kw: dict[str, Any] = {"policy": "always", "model": "power", "crash_ms": 100, "recovery_ms": 100}
    assert checker.check(snap(a=b"2"), **kw).k == 2
    h.resolve(1, "error", at_ms=20)
    assert checker.executed_count == 1
    assert checker.check(snap(a=b"2"), **kw).violations[0].rule is Rule.PHANTOM
    assert checker.check(snap(a=b"1"), **kw).k == 1


# ---------------------------------------------------------------- rule 4: availability


def test_refusing_to_start_after_a_legal_crash_is_an_availability_violation() -> None:
    h = hist(("SET a 1", "ok", 1))
    verdict = check(h, None, unavailable_reason="Bad file format reading the append only file")
    assert not verdict.ok and verdict.outcome == "violation"
    assert [v.rule for v in verdict.violations] == [Rule.AVAILABILITY]
    assert "acknowledged 1 write(s), then refused to start" in verdict.render()
    assert "Bad file format" in verdict.render()


def test_refusing_to_start_with_nothing_acknowledged_is_still_a_violation() -> None:
    verdict = check(hist(("SET a 1", "pending", None)), None, unavailable_reason="garbage")
    assert [v.rule for v in verdict.violations] == [Rule.AVAILABILITY]
    assert "acknowledged" not in verdict.render()


def test_allow_unavailable_reports_a_refusal_without_failing() -> None:
    h = hist(("SET a 1", "ok", 1))
    verdict = check(h, None, unavailable_reason="garbage", allow_unavailable=True)
    assert (verdict.ok, verdict.outcome, verdict.k, verdict.violations) == (
        True, "unavailable", None, [],
    )
    assert "garbage" in verdict.render()


def test_refusing_a_damaged_image_is_the_right_answer() -> None:
    h = hist(("SET a 1", "ok", 1))
    verdict = check(h, None, unavailable_reason="garbage", damaged_image=True)
    assert verdict.ok and verdict.outcome == "unavailable"
    # Damage does not excuse a wrong keyspace: only the refusal.
    assert check(h, snap(), damaged_image=True).violations[0].rule is Rule.DURABILITY


# ---------------------------------------------------------------- rule 3: stability


def test_stability_holds_for_equal_keyspaces_and_flags_a_changed_one() -> None:
    first = snap(a=b"1", l=("list", [b"x"]))
    assert check_stability(first, snap(a=b"1", l=("list", [b"x"]))).ok
    verdict = check_stability(first, snap(a=b"1", l=("list", [b"x", b"x"])))
    (v,) = verdict.violations
    assert v.rule is Rule.STABILITY and v.differing_keys == 1
    assert v.diff[0].key == b"l"


def test_stability_compares_at_one_time_when_asked() -> None:
    first = snap(a=("string", b"1", 100), b=b"2")
    assert check_stability(first, snap(b=b"2"), at_ms=100).ok
    assert not check_stability(first, snap(b=b"2"), at_ms=99).ok


def test_second_recovery_refusing_to_start_is_a_stability_violation() -> None:
    verdict = check_stability(snap(a=b"1"), None, unavailable_reason="Bad file format")
    assert verdict.violations[0].rule is Rule.STABILITY
    assert "Bad file format" in verdict.violations[0].message


# ---------------------------------------------------------------- tolerance for real servers


def test_expiry_tolerance_accepts_small_skew_and_uncertain_keys() -> None:
    h = hist(("SET a 1 PX 1000", "ok", 1, 0), ("SET b 1 PX 5000", "ok", 11, 10))
    skewed = snap(a=("string", b"1", 1003), b=("string", b"1", 5008))
    assert not check(h, skewed, crash_ms=20, recovery_ms=500).ok
    assert check(h, skewed, crash_ms=20, recovery_ms=500, expiry_tolerance_ms=5).k == 2
    # `a` expires 2 ms after the recovery time: within tolerance it may already be gone.
    assert check(
        h, snap(b=("string", b"1", 5010)), crash_ms=20, recovery_ms=998, expiry_tolerance_ms=5
    ).k == 2
    assert not check(
        h, snap(b=("string", b"1", 5010)), crash_ms=20, recovery_ms=990, expiry_tolerance_ms=5
    ).ok


# ---------------------------------------------------------------- bad input and reports


@pytest.mark.parametrize(
    ("recovered", "kwargs", "message"),
    [
        (None, {}, "give unavailable_reason"),
        (Snapshot(), {"unavailable_reason": "x"}, "unavailable_reason given but recovered"),
        (Snapshot(), {"recovery_ms": 10}, r"recovery_ms \(10\) must be >= crash_ms"),
        ({}, {}, "recovered must be a Snapshot or None"),
        (Snapshot(), {"policy": "fast"}, "policy must be one of"),
    ],
)
def test_check_rejects_bad_input_naming_the_field(
    recovered: object, kwargs: Mapping[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        check(History(), recovered, **kwargs)  # type: ignore[arg-type]


def test_violation_report_names_rule_crash_frontier_closest_k_and_key_diff() -> None:
    h = hist(
        ("SET a 1", "ok", 1), ("SET a 2", "ok", 11), ("SET a 3", "ok", 21), ("SET b 1", "ok", 31)
    )
    crash = CrashInfo("power", {"metadata_kept": 0, "lengths": [512]}, 57, 1000)
    verdict = check(h, snap(a=b"2", b=b"1"), crash=crash)
    text = verdict.violations[0].render()
    for needle in ("prefix-consistency", "model=power", "trace_index=57", "F=4", "closest k: 4",
                   "S(4)", "db0 b'a'", "expected:  string b'3'", "recovered: string b'2'"):
        assert needle in text, needle
    data = json.loads(json.dumps(verdict.to_dict()))
    v = data["violations"][0]
    assert v["rule"] == "prefix-consistency" and v["frontier"] == 4 and v["closest_k"] == 4
    assert v["crash"] == {"model": "power", "choice": {"metadata_kept": 0, "lengths": [512]},
                          "trace_index": 57, "crash_ms": 1000}
    assert v["diff"] == [{
        "db": 0, "key": "a",
        "expected": {"type": "string", "value": "3", "expire_at_ms": None},
        "recovered": {"type": "string", "value": "2", "expire_at_ms": None},
    }]


def test_report_diff_is_capped_but_counts_every_differing_key() -> None:
    h = History()
    h.submit([[b"SET", b"k%03d" % i, b"v"] for i in range(120)], db=0, executed_ms=0)
    h.resolve(0, Outcome.OK, at_ms=1)
    verdict = check(h, snap(**{f"x{i}": b"v" for i in range(3)}))
    v = verdict.violations[0]
    assert v.closest_k == 0 and v.differing_keys == 3
    verdict = check(h, snap(other=b"v"), policy="no")
    v = verdict.violations[0]
    assert v.differing_keys == 1
    full = check(h, Snapshot(), policy="always").violations[0]
    assert full.rule is Rule.DURABILITY and full.differing_keys == 120 and len(full.diff) == 50
    assert "and 70 more" in full.render()


# ---------------------------------------------------------------- hash collisions


def test_hash_candidates_are_confirmed_exactly_so_a_collision_cannot_pass(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import harness.oracle._checker as checker_module

    h = hist(("SET a 1", "ok", 1), ("SET b 1", "ok", 11))
    checker = Checker(h)
    kw: dict[str, Any] = {"policy": "no", "model": "power", "crash_ms": 100, "recovery_ms": 100}
    assert checker.check(snap(a=b"1", b=b"1"), **kw).k == 2
    s2_hash = checker._tables[0].hashes[2]
    # Make {a: 1} (which is S(1), a strict subset of S(2)) collide with S(2)'s hash.
    monkeypatch.setattr(checker_module, "_snapshot_hash", lambda _: s2_hash)
    assert checker.check(snap(a=b"1"), **kw).k == 1
    assert checker.check(snap(a=b"2"), **kw).violations[0].rule is Rule.PREFIX_CONSISTENCY


def test_a_hash_miss_cannot_cause_a_false_alarm(monkeypatch: pytest.MonkeyPatch) -> None:
    import harness.oracle._checker as checker_module

    h = hist(("SET a 1", "ok", 1), ("SET b 1", "ok", 11))
    monkeypatch.setattr(checker_module, "_snapshot_hash", lambda _: 12345)
    verdict = Checker(h).check(
        snap(a=b"1", b=b"1"), policy="always", model="power", crash_ms=100, recovery_ms=100
    )
    assert verdict.ok and verdict.k == 2


def test_prefix_confirmed_twice_is_kept_and_still_compared_exactly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import harness.oracle._checker as checker_module

    h = hist(("SET a 1", "ok", 1), ("SET b 1", "ok", 11), ("SET b 2", "ok", 21))
    checker = Checker(h)
    kw: dict[str, Any] = {"policy": "no", "model": "power", "crash_ms": 100, "recovery_ms": 100}
    s2 = snap(a=b"1", b=b"1")
    assert [checker.check(s2, **kw).k for _ in range(3)] == [2, 2, 2]
    table = checker._tables[0]
    assert set(table.states) == {2}
    # Same key count and a forced hash collision with S(2): the kept state must reject it.
    monkeypatch.setattr(checker_module, "_snapshot_hash", lambda _: table.hashes[2])
    verdict = checker.check(snap(a=b"1", b=b"2"), **kw)
    assert verdict.k == 3  # found by the exact pass, not by the collision


def test_frontier_follows_a_pending_entry_resolved_as_ok_after_a_check() -> None:
    h = hist(("SET a 1", "ok", 1), ("SET b 1", "pending", None))
    checker = Checker(h)
    kw: dict[str, Any] = {"policy": "always", "model": "power", "crash_ms": 100, "recovery_ms": 100}
    assert checker.check(snap(a=b"1"), **kw).ok  # b may be lost while unacknowledged
    h.resolve(1, "ok", at_ms=20)
    verdict = checker.check(snap(a=b"1"), **kw)
    assert verdict.frontier == 2 and verdict.violations[0].rule is Rule.DURABILITY


# ---------------------------------------------------------------- rule 5: damage (checksummed)


def test_a_checksummed_target_may_truncate_at_damaged_synced_bytes_losing_acknowledged_writes(
) -> None:
    h = hist(("SET a 1", "ok", 1), ("SET b 1", "ok", 11), ("SET c 1", "ok", 21))
    # Under rule 2 this would be a durability violation; on a damaged image it is the truncation.
    verdict = check(h, snap(a=b"1"), damaged_synced=True)
    assert (verdict.ok, verdict.outcome, verdict.k) == (True, "consistent", 1)
    assert check(h, snap(), damaged_synced=True).ok


def test_a_checksummed_target_may_refuse_to_start_on_damaged_synced_bytes() -> None:
    h = hist(("SET a 1", "ok", 1))
    verdict = check(h, None, unavailable_reason="bad checksum at byte 3", damaged_synced=True)
    assert (verdict.ok, verdict.outcome) == (True, "unavailable")


def test_loading_a_damaged_value_is_a_damage_violation_not_a_prefix_violation() -> None:
    h = hist(("SET a 1", "ok", 1), ("SET b 1", "ok", 11))
    verdict = check(h, snap(a=b"0", b=b"1"), damaged_synced=True)
    assert not verdict.ok
    (v,) = verdict.violations
    assert v.rule is Rule.DAMAGE
    assert "checksummed target loaded damaged synced bytes" in v.message
    assert v.closest_k == 2 and [(d.key, d.recovered) for d in v.diff] == [
        (b"a", KeyValue("string", b"0", None))]
    assert v.to_dict()["rule"] == "damage"


def test_skipping_a_damaged_record_in_the_middle_is_a_damage_violation() -> None:
    h = hist(("SET a 1", "ok", 1), ("SET b 1", "ok", 11), ("SET c 1", "ok", 21))
    (v,) = check(h, snap(a=b"1", c=b"1"), damaged_synced=True).violations
    assert v.rule is Rule.DAMAGE
