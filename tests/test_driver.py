"""The in-process driver: steps as data, checks at every recovery, deterministic replay."""

from __future__ import annotations

import json
from typing import Any

import pytest

from faults import Crash as CrashFault
from faults import (
    CrashChoice,
    FaultOp,
    FaultPlan,
    FileChoice,
    ImageKind,
    IOFault,
    PersistenceModel,
    ShortWrite,
)
from harness.machine._driver import ContractViolation, Driver, replay
from harness.machine._steps import (
    ArmCrash,
    BgRewrite,
    ChildStep,
    Crash,
    InjectFaults,
    Multi,
    Read,
    Recover,
    Reproduction,
    ReproError,
    RunConfig,
    Tick,
    Write,
    steps_from_json,
    steps_to_json,
)
from harness.oracle import snapshot_from_dump

POWER = PersistenceModel.POWER
PROCESS = PersistenceModel.PROCESS
DURABLE_ONLY = CrashChoice(POWER, 0, ())


def _set(key: bytes, value: bytes) -> Write:
    return Write((b"SET", key, value))


def test_every_step_kind_round_trips_through_json() -> None:
    steps = (
        _set(b"k", b"\x00\xff binary"),
        Write((b"INCR", b"n"), client=1, iterate=False),
        Multi(((b"SET", b"a", b"1"), (b"DEL", b"b"))),
        Read((b"GET", b"k")),
        Tick(1500),
        BgRewrite(),
        ChildStep(3),
        InjectFaults(FaultPlan((ShortWrite(nth=2, written_bytes=5),))),
        ArmCrash(FaultPlan((CrashFault(nth=1, op=FaultOp.WRITE, torn_bytes=3),))),
        Crash(),
        Recover(POWER, CrashChoice(POWER, 1, (FileChoice(1, ImageKind.PREFIX, 512),)),
                seed=4, downtime_ms=10, crash_during_recovery_op=2),
    )
    encoded = json.loads(json.dumps(steps_to_json(steps)))
    assert steps_from_json(encoded) == steps
    # Printable arguments stay readable; others are base64.
    assert encoded[0]["argv"][:2] == ["SET", "k"]
    assert "b64" in encoded[0]["argv"][2]


def test_bad_reproductions_name_the_field_that_is_wrong() -> None:
    with pytest.raises(ReproError, match=r"steps\[0\].step: unknown step 'jump'"):
        steps_from_json([{"step": "jump"}])
    with pytest.raises(ReproError, match=r"steps\[0\]: unknown field\(s\) colour"):
        steps_from_json([{"step": "tick", "delta_ms": 1, "colour": "red"}])
    with pytest.raises(ReproError, match="not valid JSON"):
        Reproduction.from_json("{")
    with pytest.raises(ReproError, match="format"):
        Reproduction.from_json('{"format": "something-else"}')
    with pytest.raises(ReproError, match="policy: must be one of"):
        RunConfig(policy="sometimes")


def test_acknowledged_writes_survive_power_loss_under_always() -> None:
    driver = Driver(RunConfig(policy="always"))
    driver.run_all([_set(b"a", b"1"), _set(b"b", b"2"), Crash()])
    driver.run(Recover(POWER, DURABLE_ONLY))
    assert driver.alive
    assert driver.stats.recoveries[-1].k == 2
    assert driver.target.dump() == {0: {b"a": ("string", b"1", None), b"b": ("string", b"2", None)}}


def test_reply_before_fsync_defect_is_caught_as_a_durability_violation() -> None:
    config = RunConfig(policy="always", defects=frozenset({"reply-before-fsync"}))
    driver = Driver(config)
    driver.run_all([_set(b"a", b"1"), Crash()])
    with pytest.raises(ContractViolation) as info:
        driver.run(Recover(POWER, DURABLE_ONLY))
    assert {v.rule.value for v in info.value.verdict.violations} == {"durability"}
    assert "SET a 1" in str(info.value)
    # The reproduction it carries replays to the same violation.
    again = Reproduction.from_json(info.value.reproduction.to_json())
    with pytest.raises(ContractViolation) as second:
        replay(again)
    assert str(second.value) == str(info.value)


def test_a_refused_write_never_counts_and_the_server_keeps_going() -> None:
    driver = Driver(RunConfig(policy="everysec"))
    driver.run(InjectFaults(FaultPlan((IOFault(op=FaultOp.WRITE, nth=1, times=1),))))
    driver.run(_set(b"a", b"1"))  # the write fails; safe holds the reply until a retry works
    driver.run(Tick(1200))  # cron retries the write, which succeeds now
    driver.run(Read((b"GET", b"a")))
    assert driver.alive
    assert [e.outcome.value for e in driver.history.entries] == ["ok"]


def test_a_crash_armed_inside_a_write_leaves_the_torn_bytes_for_recovery() -> None:
    driver = Driver(RunConfig(policy="always"))
    driver.run(_set(b"a", b"1"))
    driver.run(ArmCrash(FaultPlan((CrashFault(nth=1, op=FaultOp.WRITE, torn_bytes=7),))))
    driver.run(_set(b"b", b"2"))
    assert driver.crashed
    driver.run(Recover(PROCESS, CrashChoice(PROCESS, 0, ())))
    # The torn command is cut off at load; the unacknowledged SET b is simply absent.
    assert driver.target.dump() == {0: {b"a": ("string", b"1", None)}}


def test_recover_before_a_crash_and_steps_after_one_are_misuse_with_a_clear_message() -> None:
    driver = Driver(RunConfig())
    with pytest.raises(ValueError, match="has not crashed"):
        driver.run(Recover(POWER))
    driver.run(Crash())
    with pytest.raises(ValueError, match="only 'recover' can follow a crash"):
        driver.run(_set(b"a", b"1"))


def test_the_same_steps_give_the_same_history_and_disk() -> None:
    steps = [_set(b"a", b"1"), Tick(1100), Write((b"INCR", b"n")), BgRewrite(), ChildStep(5),
             Tick(300), Crash(), Recover(POWER, seed=9)]
    first, second = Driver(RunConfig()), Driver(RunConfig())
    first.run_all(steps)
    second.run_all(steps)
    assert first.history.to_dict() == second.history.to_dict()
    assert first.disk.visible_image() == second.disk.visible_image()
    assert first.steps == second.steps


# -- a refused write whose reply the crash lost ----------------------------------------------


def _single_key_del_target(*, declare: bool, drop_del: bool = False) -> Any:
    """tinyaof (the worked example) that refuses DEL of several keys with an error reply (a
    correct store may: a command shape it does not implement), declaring it through
    ``accepts`` or not; `drop_del` plants a real bug instead: DEL of one key is acknowledged
    and applied in memory but never logged."""
    from tinyaof._store import StoreError, TinyStore
    from tinyaof.aofcrash_target import TinyTarget

    class Store(TinyStore):
        @staticmethod
        def _check(argv: list[bytes]) -> StoreError | None:
            if argv[0].upper() == b"DEL" and len(argv) > 2:
                return StoreError("ERR DEL takes one key in this store")
            return TinyStore._check(argv)

        def _log(self, db: int, argv: list[bytes]) -> None:
            if drop_del and argv[0] == b"DEL":
                return
            super()._log(db, argv)

    class Target(TinyTarget):
        def __init__(self, env: Any) -> None:
            super().__init__(env)
            old = self.store
            self.store = Store(env.fs, env.clock, appendfsync=old.appendfsync,
                               load_truncated=env.config.aof_load_truncated)

    if declare:
        Target.accepts = staticmethod(  # type: ignore[attr-defined]
            lambda argv: not (argv[0].upper() == b"DEL" and len(argv) > 2))
    return Target


def _lost_refusal_steps(deleted: tuple[bytes, ...]) -> list[Any]:
    """a and b acknowledged; then DEL `deleted` pipelined before SET c, the process crashing
    at the fsync of that iteration: both replies are lost, SET c is in the file."""
    return [
        Write((b"SET", b"a", b"1")), Write((b"SET", b"b", b"2")),
        Write((b"DEL", *deleted), iterate=False),
        ArmCrash(FaultPlan((CrashFault(nth=1, op=FaultOp.FSYNC),))),
        Write((b"SET", b"c", b"3")),
        Recover(model=PersistenceModel.PROCESS,
                choice=CrashChoice(PersistenceModel.PROCESS, 0, ())),
    ]


@pytest.mark.parametrize("declare", [True, False], ids=["declared", "refused-before"])
def test_a_lost_refusal_of_a_write_the_target_could_refuse_is_no_violation(
    declare: bool,
) -> None:
    """The false alarm of issue 22: the oracle assumed the refused DEL ran and found {a, b, c}
    matching no prefix. The target could refuse it: it declares so (``accepts``), or it refused
    a DEL of that shape earlier in the run."""
    factory = _single_key_del_target(declare=declare)
    driver = Driver(RunConfig(policy="always"), factory=factory)
    steps = _lost_refusal_steps((b"a", b"b"))
    if not declare:
        steps.insert(2, Write((b"DEL", b"x", b"y")))  # refused, its reply seen
    driver.run_all(steps)
    assert driver.alive
    assert driver.stats.recoveries[-1].outcome == "consistent"
    assert snapshot_from_dump(driver.target.dump()).keys() == {(0, b"a"), (0, b"b"),
                                                                (0, b"c")}


def test_a_lost_write_the_target_accepts_is_still_a_prefix_violation() -> None:
    """A DEL of one key the store accepts, applied in memory but never logged, is gone after the
    crash while the SET after it survived: a hole, still found (the possibly-refused reading
    is only for writes the target could refuse)."""
    factory = _single_key_del_target(declare=True, drop_del=True)
    driver = Driver(RunConfig(policy="always"), factory=factory)
    with pytest.raises(ContractViolation) as caught:
        driver.run_all(_lost_refusal_steps((b"a",)))
    assert "prefix-consistency" in {v.rule.value for v in caught.value.verdict.violations}


def test_a_key_a_tolerant_recovery_kept_may_have_expired_in_the_store_already() -> None:
    # tinyaof's first fsync stalls 200 ms (its later commands run late); a SET with a 1 ms
    # expiry is lost by the power cut, and the recovery, matched with expiries compared within
    # that 200 ms, keeps it in the history: a read of it at once may find it gone.
    repro = Reproduction.from_json(json.dumps({
        "format": "aofcrash-repro/1",
        "config": {"policy": "everysec", "target": "tinyaof:make_target"},
        "steps": [
            {"step": "inject", "plan": {"faults": [{"type": "SlowSync", "delay_ms": 200,
                                                    "nth": 1}]}},
            {"step": "write", "argv": ["SET", "k1", "v"]},
            {"step": "tick", "delta_ms": 1100},
            {"step": "write", "argv": ["SET", "k1", "v"]},
            {"step": "tick", "delta_ms": 1100},
            {"step": "write", "argv": ["SET", "k0", "a", "PX", "1"]},
            {"step": "crash"},
            {"step": "recover", "model": "power-ext4",
             "choice": {"model": "power-ext4", "metadata_kept": 0, "files": []}},
            {"step": "read", "argv": ["GET", "k0"]},
        ]}))
    replay(repro)  # no ModelDivergence
