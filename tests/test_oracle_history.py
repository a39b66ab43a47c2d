"""History recording, validation and JSON round trip; snapshots and snapshot_from_dump."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.oracle import History, KeyValue, Outcome, Snapshot, snapshot_from_dump


def test_submit_returns_consecutive_indices_and_entries_start_unknown() -> None:
    h = History()
    assert h.submit([[b"SET", b"a", b"1"]], db=0, executed_ms=0) == 0
    assert h.submit([[b"INCR", b"a"], [b"INCR", b"b"]], db=2, executed_ms=5, client=3) == 1
    entry = h.entries[1]
    assert entry.commands == ((b"INCR", b"a"), (b"INCR", b"b"))
    assert (entry.db, entry.executed_ms, entry.client) == (2, 5, 3)
    assert entry.outcome is Outcome.UNKNOWN and entry.ack_ms is None


def test_resolve_records_the_ack_time_and_refuses_a_second_resolution() -> None:
    h = History()
    i = h.submit([[b"SET", b"a", b"1"]], db=0, executed_ms=10)
    h.resolve(i, "ok", at_ms=12)
    assert h[i].outcome is Outcome.OK and h[i].ack_ms == 12
    with pytest.raises(ValueError, match="already resolved as ok"):
        h.resolve(i, Outcome.ERROR, at_ms=13)


def test_ok_requires_an_ack_time_not_before_execution() -> None:
    h = History()
    i = h.submit([[b"SET", b"a", b"1"]], db=0, executed_ms=10)
    with pytest.raises(ValueError, match=r"at_ms \(the ack time\) is required"):
        h.resolve(i, Outcome.OK)
    with pytest.raises(ValueError, match="before the entry's executed_ms"):
        h.resolve(i, Outcome.OK, at_ms=9)


def test_refused_entries_leave_the_executed_sequence() -> None:
    h = History()
    for n in range(4):
        h.submit([[b"SET", b"k", str(n).encode()]], db=0, executed_ms=n)
    h.resolve(1, "error", at_ms=1)
    h.resolve(2, "unknown")
    assert h.executed_indices() == [0, 2, 3]
    assert h.retractions == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"commands": []}, "at least one command"),
        ({"commands": [[]]}, r"commands\[0\] must be a non-empty"),
        ({"commands": [["SET", "a", "b"]]}, r"commands\[0\]\[0\] must be bytes"),
        ({"commands": b"SET a b"}, "sequence of commands"),
        ({"commands": [[b"SELECT", b"1"]]}, "SELECT is not an entry"),
        ({"commands": [[b"MULTI"]]}, "MULTI is not an entry"),
        ({"db": 16}, "db must be in 0..15"),
        ({"db": -1}, "db must be >= 0"),
        ({"executed_ms": 1.5}, "executed_ms must be an int"),
        ({"client": -2}, "client must be >= 0"),
        ({"during_rewrite": 1}, "during_rewrite must be a bool"),
    ],
)
def test_submit_rejects_bad_input_naming_the_field(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"commands": [[b"SET", b"a", b"1"]], "db": 0, "executed_ms": 0}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        History().submit(**args)  # type: ignore[arg-type]


def test_execution_time_must_not_go_backwards() -> None:
    h = History()
    h.submit([[b"SET", b"a", b"1"]], db=0, executed_ms=100)
    with pytest.raises(ValueError, match="must not go backwards"):
        h.submit([[b"SET", b"a", b"2"]], db=0, executed_ms=99)


def test_history_json_round_trip_keeps_every_field_and_arbitrary_bytes() -> None:
    h = History()
    raw = bytes(range(256))
    h.submit([[b"SET", raw, b"\x00\xff"]], db=3, executed_ms=1, client=2, during_rewrite=True)
    h.submit([[b"INCR", b"a"], [b"DEL", b"b"]], db=0, executed_ms=2)
    h.submit([[b"SET", b"c", b"1"]], db=0, executed_ms=3)
    h.submit([[b"SET", b"d", b"1"]], db=0, executed_ms=4)
    h.resolve(0, "ok", at_ms=5)
    h.resolve(1, "error", at_ms=6)
    h.resolve(2, "unknown")
    text = json.dumps(h.to_dict())
    back = History.from_dict(json.loads(text))
    assert back.entries[:] == h.entries[:]
    assert back.retractions == 1
    assert History.from_json(h.to_json()).entries[:] == h.entries[:]
    assert h.to_dict()["bytes_encoding"] == "latin-1"


def test_history_from_dict_names_the_bad_entry() -> None:
    data = History().to_dict()
    data["entries"] = [{"index": 0, "commands": [["SET", "a", "1"]], "db": 99, "executed_ms": 0}]
    with pytest.raises(ValueError, match=r"entries\[0\]: db must be in 0..15"):
        History.from_dict(data)
    with pytest.raises(ValueError, match="format must be"):
        History.from_dict({"format": "other"})


def test_snapshot_from_dump_canonicalises_every_type() -> None:
    dump: dict[int, dict[bytes, tuple[str, Any, int | None]]] = {
        0: {
            b"s": ("string", b"v", None),
            b"l": ("list", [b"a", b"b"], 1000),
            b"st": ("set", {b"x", b"y"}, None),
            b"z": ("zset", {b"m": 1, b"n": 2.5}, None),
            b"h": ("hash", {b"f": b"v"}, None),
        },
        5: {b"s": ("string", b"five", None)},
    }
    snap = snapshot_from_dump(dump)
    assert snap[(0, b"l")] == KeyValue("list", (b"a", b"b"), 1000)
    assert snap[(0, b"st")] == KeyValue("set", frozenset({b"x", b"y"}), None)
    assert snap[(0, b"z")] == KeyValue("zset", frozenset({(b"m", 1.0), (b"n", 2.5)}), None)
    assert snap[(0, b"h")] == KeyValue("hash", frozenset({(b"f", b"v")}), None)
    assert snap[(5, b"s")].value == b"five"
    assert snapshot_from_dump(snap.to_dump()) == snap
    assert Snapshot.from_dict(json.loads(json.dumps(snap.to_dict()))) == snap
    assert hash(snapshot_from_dump(dump)) == hash(snap)


def test_snapshot_json_keeps_infinite_scores() -> None:
    snap = snapshot_from_dump({0: {b"z": ("zset", {b"a": float("inf"), b"b": -1e300}, None)}})
    assert Snapshot.from_dict(json.loads(json.dumps(snap.to_dict()))) == snap


@pytest.mark.parametrize(
    ("dump", "message"),
    [
        ({16: {b"k": ("string", b"v", None)}}, "db must be an int in 0..15"),
        ({0: {"k": ("string", b"v", None)}}, "key: expected bytes"),
        ({0: {b"k": ("str", b"v", None)}}, "type 'str' is not one of"),
        ({0: {b"k": ("string", "v", None)}}, "expected bytes, got str"),
        ({0: {b"k": ("list", b"v", None)}}, "list value must be a list"),
        ({0: {b"k": ("zset", {b"m": float("nan")}, None)}}, "score is NaN"),
        ({0: {b"k": ("zset", {b"m": "1"}, None)}}, "score must be a number"),
        ({0: {b"k": ("string", b"v", 1.5)}}, "expire_at_ms must be an int"),
        ({0: {b"k": ("string", b"v")}}, r"expected \(type, value, expire_at_ms\)"),
        ({0: [b"k"]}, "expected a mapping key -> value"),
    ],
)
def test_snapshot_from_dump_rejects_bad_input_naming_the_field(dump: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        snapshot_from_dump(dump)  # type: ignore[arg-type]


def test_snapshot_at_drops_keys_expired_at_that_time() -> None:
    snap = snapshot_from_dump(
        {
            0: {
                b"a": ("string", b"1", 100),
                b"b": ("string", b"2", 101),
                b"c": ("string", b"3", None),
            }
        }
    )
    assert set(snap.at(100)) == {(0, b"b"), (0, b"c")}
    assert snap.at(0) is snap


def test_queued_writes_take_the_execution_time_of_their_iteration_later_ones_first() -> None:
    h = History()
    first = h.submit([(b"SET", b"k", b"v")], db=0, executed_ms=0)
    second = h.submit([(b"APPEND", b"k", b"v")], db=0, executed_ms=0)
    with pytest.raises(ValueError, match="must stay in order"):
        h.executed_later(first, 100)  # the second would then run before the first
    h.executed_later(second, 100)
    h.executed_later(first, 100)
    assert [e.executed_ms for e in h.entries] == [100, 100]


def test_executed_later_refuses_going_backwards_or_a_resolved_entry() -> None:
    h = History()
    index = h.submit([(b"SET", b"k", b"v")], db=0, executed_ms=50)
    with pytest.raises(ValueError, match="must stay in order"):
        h.executed_later(index, 10)
    h.executed_later(index, 100)
    assert h.entries[index].executed_ms == 100
    h.resolve(index, "ok", at_ms=100)
    with pytest.raises(ValueError, match="already resolved"):
        h.executed_later(index, 200)
