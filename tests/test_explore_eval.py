"""The explorer's fast path (harness.explore._eval) against the loader it stands for.

The fast path parses one append-only file incrementally, tracks which keys each command
changes (a MULTI queue, the selected db) and matches the result against the history; the
oracle recovers every image from byte 0 with the reference's loader. They must agree on every
image: these tests draw AOF byte strings (nested and dangling MULTI, DISCARD, SELECT, ``#TS:``
annotations, torn and garbage tails) and compare them prefix by prefix.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faults import CrashChoice, PersistenceModel, SimDisk
from harness.explore._eval import PrefixIndex, Rec, StateEvaluator, full_recover
from harness.machine._steps import RunConfig
from harness.oracle import History, Outcome
from harness.oracle._snapshot import snapshot_from_dump
from reference import AofLoader, encode_command

AT_MS = 5_000
NAME = "appendonly.aof"
PROCESS = PersistenceModel.PROCESS

_keys = st.sampled_from([b"a", b"b", b"c"])
_values = st.sampled_from([b"1", b"2", b"x", b"yy"])
_writes = st.one_of(
    st.tuples(st.just(b"SET"), _keys, _values),
    st.tuples(st.just(b"DEL"), _keys),
    st.tuples(st.just(b"INCR"), _keys),
    st.tuples(st.just(b"APPEND"), _keys, _values),
    st.tuples(st.just(b"RPUSH"), _keys, _values),
    st.tuples(st.just(b"PEXPIREAT"), _keys, st.sampled_from([b"1000", b"9000"])),
    st.tuples(st.just(b"FLUSHDB")),
)
_selects = st.tuples(st.just(b"SELECT"), st.sampled_from([b"0", b"1"]))
_framing = st.sampled_from([(b"MULTI",), (b"EXEC",), (b"DISCARD",)])


@st.composite
def _blocks(draw: st.DrawFn) -> list[tuple[str, tuple[bytes, ...] | bytes]]:
    """MULTI, queued writes (a SELECT, a nested MULTI among them), then EXEC, DISCARD or
    nothing (a block left open, later closed or not by what follows)."""
    inner = draw(st.lists(st.one_of(_writes, _selects, st.just((b"MULTI",))), max_size=5))
    end = draw(st.sampled_from([[(b"EXEC",)], [(b"DISCARD",)], []]))
    return [("cmd", argv) for argv in [(b"MULTI",), *inner, *end]]


_items = st.one_of(
    _writes.map(lambda argv: ("cmd", argv)),
    _writes.map(lambda argv: ("cmd", argv)),
    _selects.map(lambda argv: ("cmd", argv)),
    _framing.map(lambda argv: ("cmd", argv)),
    st.integers(0, 99_999).map(lambda ts: ("raw", b"#TS:%d\r\n" % ts)),
)
_tails = st.one_of(
    st.just(b""),
    st.integers(1, 40).map(bytes),  # a torn tail read back as zeros
    st.binary(min_size=1, max_size=30),  # garbage
    st.sampled_from([b"*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n",  # garbage that parses
                     b"*1\r\n$5\r\nMULTI\r\n", b"*1\r\n$4\r\nEXEC\r\n",
                     b"#TS:1\r\n*2\r\n$3\r\nDEL\r\n$1\r\nb\r\n", b"#TS:12"]),
)


def _aof(items: list[tuple[str, tuple[bytes, ...] | bytes]]) -> bytes:
    out = bytearray()
    for kind, value in items:
        if kind == "cmd":
            assert isinstance(value, tuple)
            out += encode_command(list(value))
        else:
            assert isinstance(value, bytes)
            out += value
    return bytes(out)


def _history(items: list[tuple[str, tuple[bytes, ...] | bytes]]) -> History:
    """The writes of `items` as the loader executes them (a MULTI block is one entry, a nested
    MULTI ignored, a discarded or open block nothing), so that prefixes match often."""
    history = History()
    db = 0
    queued: list[tuple[bytes, ...]] | None = None

    def add(commands: list[tuple[bytes, ...]]) -> None:
        i = history.submit(commands, db=db, executed_ms=0)
        history.resolve(i, Outcome.OK, at_ms=0)

    for kind, value in items:
        if kind != "cmd" or not isinstance(value, tuple):
            continue
        name = value[0]
        if name == b"MULTI":
            queued = [] if queued is None else queued
        elif name == b"EXEC":
            writes = [c for c in queued or [] if c[0] != b"SELECT"]
            if writes:
                add(writes)
            for c in queued or []:
                if c[0] == b"SELECT":
                    db = int(c[1])  # (the entry's db is approximate here: matches are rarer)
            queued = None
        elif name == b"DISCARD":
            queued = None
        elif queued is not None:
            queued.append(value)
        elif name == b"SELECT":
            db = int(value[1])
        else:
            add([value])
    return history


class _Evaluator(StateEvaluator):
    """A StateEvaluator whose full recoveries read the content under test (no crash image)."""

    content: bytes | None = None

    def aof_bytes(self, disk: SimDisk, model: PersistenceModel,
                  choice: CrashChoice) -> bytes | None:
        return self.content


def _fast_vs_full(data: bytes, cuts: list[int], history: History,
                  config: RunConfig) -> list[tuple[int, Rec, Rec]]:
    """Grow one AOF through `cuts` (ascending), evaluate each prefix on the fast path and by a
    full recovery: the (cut, fast, full) pairs that disagree."""
    index = PrefixIndex(history, AT_MS)
    ev = _Evaluator(config, index, audit_every=0)
    disk = SimDisk()
    fd = disk.open(NAME, os.O_WRONLY | os.O_CREAT)
    written = 0
    wrong = []
    choice = CrashChoice(PROCESS, 0, ())
    for cut in cuts:
        if cut > written:
            disk.write(fd, data[written:cut])
            written = cut
        ev.new_point()
        ev.content = data[:cut]
        fast = ev.evaluate(disk, PROCESS, choice)
        full = full_recover(config, data[:cut], index, stability=False)[0]
        if (fast.unavailable is None) != (full.unavailable is None) or fast.ks != full.ks:
            wrong.append((cut, fast, full))
    # The incremental mirror at every boundary it parsed equals the loader's keyspace there.
    inode = disk.inode_at(NAME)
    assert inode is not None
    lineage = ev.lineages.get(inode.ino)
    if lineage is not None and lineage.mirror is not None:
        for i in range(lineage.hist_from, len(lineage.bounds)):
            loader = AofLoader(now_ms=AT_MS, rollback_multi=config.profile == "safe")
            loader.feed(data[: lineage.bounds[i]])
            expected = dict(snapshot_from_dump(loader.dump(AT_MS)).at(AT_MS).items())
            tracked = {key: kv for key in lineage.mirror.khist
                       if (kv := lineage.mirror.value_at(key, i)) is not None}
            tracked = {k: v for k, v in tracked.items()
                       if v.expire_at_ms is None or v.expire_at_ms > AT_MS}
            assert tracked == expected, f"mirror at boundary {i} ({lineage.bounds[i]} bytes)"
    return wrong


@given(
    items=st.lists(st.one_of(_items.map(lambda item: [item]), _blocks()), max_size=10).map(
        lambda groups: [item for group in groups for item in group]),
    tail=_tails,
    picks=st.lists(st.integers(0, 10_000), max_size=12),
    load_truncated=st.booleans(),
    profile=st.sampled_from(["safe", "redis-3.0"]),
)
def test_fast_path_recovers_every_prefix_as_the_loader_does(
    items: list[tuple[str, tuple[bytes, ...] | bytes]], tail: bytes, picks: list[int],
    load_truncated: bool, profile: str,
) -> None:
    body = _aof(items)
    data = body + tail
    boundaries = []
    pos = 0
    for item in items:
        pos += len(_aof([item]))
        boundaries.append(pos)
    cuts = sorted({0, len(body), len(data), *boundaries,
                   *(b - 1 for b in boundaries if b), *(p % (len(data) + 1) for p in picks)})
    config = RunConfig(aof_load_truncated=load_truncated, profile=profile)
    assert _fast_vs_full(data, cuts, _history(items), config) == []


def test_a_nested_multi_keeps_the_commands_queued_before_it() -> None:
    """MULTI; SET a 1; MULTI; SET b 2; EXEC: the loader ignores the second MULTI (an error
    reply) and applies both SETs at EXEC; the fast path used to reset its queue there, so it
    never refreshed `a` and matched the wrong prefix."""
    items: list[tuple[str, tuple[bytes, ...] | bytes]] = [
        ("cmd", (b"MULTI",)), ("cmd", (b"SET", b"a", b"1")), ("cmd", (b"MULTI",)),
        ("cmd", (b"SET", b"b", b"2")), ("cmd", (b"EXEC",)), ("cmd", (b"SET", b"c", b"3")),
    ]
    data = _aof(items)
    history = History()
    for commands in ([(b"SET", b"a", b"1"), (b"SET", b"b", b"2")], [(b"SET", b"c", b"3")]):
        history.resolve(history.submit(commands, db=0, executed_ms=0), Outcome.OK, at_ms=0)
    cuts = list(range(len(data) + 1))
    assert _fast_vs_full(data, cuts, history, RunConfig()) == []
    index = PrefixIndex(history, AT_MS)
    assert full_recover(RunConfig(), data, index, stability=False)[0].ks == (2,)


def test_a_select_inside_a_discarded_multi_does_not_change_the_inherited_db() -> None:
    """A lineage inherited at a boundary (after an overwrite) learns the selected db from the
    bytes before it: a SELECT queued in a discarded block never ran."""
    from harness.explore._eval import _selected_db

    data = bytearray(_aof([("cmd", (b"SELECT", b"1")), ("cmd", (b"MULTI",)),
                           ("cmd", (b"SELECT", b"2")), ("cmd", (b"DISCARD",))]))
    assert _selected_db(data, len(data)) == 1
    data += _aof([("cmd", (b"MULTI",)), ("cmd", (b"SELECT", b"3")), ("cmd", (b"MULTI",)),
                  ("cmd", (b"EXEC",))])
    assert _selected_db(data, len(data)) == 3


def test_a_select_after_a_flush_in_one_exec_block_moves_the_tracked_db() -> None:
    """MULTI; FLUSHDB; SELECT 1; EXEC; SET a 1: the fast path rebuilt its mirror at FLUSHDB and
    stopped reading the block there, so it kept db 0 and tracked `a` in the wrong db (found by
    the property test above)."""
    items: list[tuple[str, tuple[bytes, ...] | bytes]] = [
        ("cmd", (b"MULTI",)), ("cmd", (b"FLUSHDB",)), ("cmd", (b"SELECT", b"1")),
        ("cmd", (b"EXEC",)), ("cmd", (b"SET", b"a", b"1")),
    ]
    data = _aof(items)
    history = History()
    history.resolve(history.submit([(b"FLUSHDB",)], db=0, executed_ms=0), Outcome.OK, at_ms=0)
    history.resolve(history.submit([(b"SET", b"a", b"1")], db=1, executed_ms=0), Outcome.OK,
                    at_ms=0)
    assert _fast_vs_full(data, list(range(len(data) + 1)), history, RunConfig()) == []


def _small_workload() -> tuple[RunConfig, tuple[Any, ...]]:
    from harness.explore import make_workload

    return RunConfig(policy="always"), make_workload("multi", ops=12, seed=3)


def test_an_audit_disagreement_falls_back_to_the_oracle_and_is_reported(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The evaluator's audit recoveries disagree with its fast path (planted: they match no
    prefix): those states are judged by the oracle, each disagreement is a harness bug with a
    reproduction, and the walk explores every crash point instead of aborting."""
    import harness.explore._eval as evaluation
    from harness.explore import ExploreLimits, explore

    monkeypatch.setattr(evaluation, "full_recover",
                        lambda *a, **k: (Rec(None, (), True, True, True), None))
    config, steps = _small_workload()
    result = explore(config, steps, limits=ExploreLimits(audit_every=1))
    assert result.harness_bugs
    assert result.points_explored == result.points_total
    assert result.violation_total == 0  # the oracle's verdicts: the reference is correct
    assert "disagrees with a full one" in result.harness_bugs[0].what
    for bug in result.harness_bugs:
        assert bug.outcome == bug.reproduction.expected["outcome"] == "consistent"


def test_a_fast_violation_the_oracle_refutes_is_counted_as_the_oracle_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fast path says every state violates prefix consistency (a planted bug); the oracle's
    re-check says consistent: the state counts as consistent and the disagreement is reported,
    no ExplorerError ends the run."""
    from harness.explore import explore
    from harness.explore._explorer import _Walk
    from harness.machine._driver import replay

    monkeypatch.setattr(_Walk, "_fast",
                        lambda self, *a: ("violation", ("prefix-consistency",)))
    config, steps = _small_workload()
    result = explore(config, steps)
    assert result.harness_bugs and result.violation_total == 0
    bug = result.harness_bugs[0]
    assert bug.outcome == "consistent" and "prefix-consistency" in bug.what
    replay(bug.reproduction)  # the oracle, through the driver: no violation


def test_explore_of_a_target_judges_a_lost_refusal_as_possibly_refused() -> None:
    """tinyaof (the worked example) refuses HSET (not in its ``commands``); in the no-space
    workload a crash lost the refusal of a pipelined HSET while later writes reached the log:
    the generic explorer reported a prefix violation on the correct store (issue 22's false
    alarm, in explore)."""
    from harness.explore import explore, make_workload

    config = RunConfig(policy="no", target="tinyaof:make_target")
    result = explore(config, make_workload("no-space", ops=150, seed=0), models=(PROCESS,))
    assert result.generic and result.states > 0
    assert result.violation_total == 0, [v.describe() for v in result.violations]


def test_an_unanswered_command_the_model_does_not_know_counts_as_refused() -> None:
    """The multi workload pipelines NOSUCHCOMMAND; on the store with reply-before-fsync a crash
    can leave it unanswered, and the oracle raised UnsupportedCommand (the suite skipped the
    run as one that "cannot be run"): now it is judged refused, and the planted bug found."""
    from harness.explore import explore, make_workload

    config = RunConfig(policy="always", target="tinyaof:make_buggy_target")
    result = explore(config, make_workload("multi", ops=150, seed=0))
    assert result.violation_total > 0
    assert set(result.violations_by_rule()) == {"power-ext4/durability"}
