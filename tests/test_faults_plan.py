"""Fault plans: validation (every error at once, each naming its field) and JSON round-trip."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from faults import (
    Crash,
    Fault,
    FaultOp,
    FaultPlan,
    FaultPlanError,
    IOFault,
    KillChild,
    NoSpace,
    ShortWrite,
    SlowSync,
)

globs = st.sampled_from(["*", "appendonly.aof*", "temp-*.aof", "dir/[ab]?.aof"])
counts = st.integers(1, 1000)
maybe_times = st.none() | st.integers(1, 50)
maybe_bytes = st.none() | st.integers(0, 4096)

faults = st.one_of(
    st.builds(ShortWrite, written_bytes=st.integers(0, 4096), nth=counts, path_glob=globs),
    st.builds(NoSpace, nth=counts, times=maybe_times, partial_bytes=maybe_bytes, path_glob=globs),
    st.builds(IOFault, op=st.sampled_from([FaultOp.WRITE, FaultOp.FSYNC, FaultOp.FDATASYNC,
                                           FaultOp.RENAME, FaultOp.FSYNC_DIR]),
              nth=counts, times=maybe_times, path_glob=globs),
    st.builds(SlowSync, delay_ms=st.integers(0, 10_000), nth=counts, times=maybe_times,
              path_glob=globs),
    st.builds(Crash, nth=counts, op=st.sampled_from(list(FaultOp)), path_glob=globs),
    st.builds(Crash, nth=counts, op=st.sampled_from([FaultOp.WRITE, FaultOp.ANY]),
              torn_bytes=maybe_bytes),
    st.builds(KillChild, at_step=st.integers(0, 100), nth_rewrite=counts),
)


@given(st.lists(faults, max_size=8))
def test_every_plan_survives_a_json_round_trip(items: list[Fault]) -> None:
    plan = FaultPlan(tuple(items))
    assert FaultPlan.from_json(plan.to_json()) == plan
    assert FaultPlan.from_dict(json.loads(plan.to_json())) == plan


def test_a_plan_with_every_fault_type_round_trips_with_enums_as_values() -> None:
    plan = FaultPlan((
        ShortWrite(written_bytes=3, nth=2),
        NoSpace(nth=4, partial_bytes=10, path_glob="appendonly.aof"),
        IOFault(op=FaultOp.FSYNC_DIR, times=None),
        SlowSync(delay_ms=3000),
        Crash(nth=7, op=FaultOp.WRITE, torn_bytes=5),
        KillChild(at_step=2, nth_rewrite=3),
    ))
    data = json.loads(plan.to_json())
    assert data["faults"][2] == {"type": "IOFault", "op": "fsync_dir", "nth": 1, "times": None,
                                 "path_glob": "*"}
    assert FaultPlan.from_json(plan.to_json()) == plan
    assert FaultPlan.from_json("{}") == FaultPlan()


def test_every_problem_in_a_plan_is_reported_at_once_naming_its_field() -> None:
    text = json.dumps({"faults": [
        {"type": "ShortWrite", "written_bytes": 3, "nth": 1},
        {"type": "IOFault", "op": "fsync", "nth": 0},
        {"type": "Foo"},
        {"type": "NoSpace", "times": -1, "colour": "red"},
        {"type": "Crash"},
        {"type": "IOFault", "op": "open"},
        {"type": "Crash", "nth": 1, "op": "rename", "torn_bytes": 4},
        {"type": "SlowSync", "delay_ms": 1, "path_glob": "/abs"},
        {"type": "SlowSync", "delay_ms": True, "path_glob": "x[ab"},
    ]})
    with pytest.raises(FaultPlanError) as info:
        FaultPlan.from_json(text)
    errors = info.value.errors
    assert errors == [
        "faults[1].nth: must be >= 1, got 0",
        "faults[2]: unknown fault type 'Foo' (known: Crash, Damage, IOFault, KillChild, "
        "NoSpace, ShortWrite, SlowSync)",
        "faults[3]: unknown field 'colour' for NoSpace (known: nth, partial_bytes, path_glob, "
        "times)",
        "faults[3].times: must be >= 1, got -1",
        "faults[4].nth: required",
        "faults[5].op: 'open' is not allowed here (allowed: write, fsync, fdatasync, rename, "
        "fsync_dir)",
        "faults[6].torn_bytes: only a write can be torn, but op is 'rename'",
        "faults[7].path_glob: must be relative to the filesystem root, got '/abs'",
        "faults[8].delay_ms: must be an integer, got True",
        "faults[8].path_glob: unclosed '[' in 'x[ab'",
    ]
    message = str(info.value)
    assert message.startswith("invalid fault plan: faults[1].nth: must be >= 1, got 0; ")
    assert "\n" not in message


@pytest.mark.parametrize(("text", "expected"), [
    ("{", "plan: malformed JSON at line 1 column 2"),
    ("[]", "plan: expected an object, got list"),
    ('{"faults": 3}', "faults: expected a list, got int"),
    ('{"faults": [], "extra": 1}', "plan: unknown field 'extra'"),
    ('{"faults": [3]}', "faults[0]: expected an object, got int"),
    ('{"faults": [{}]}', "faults[0].type: required"),
    ('{"faults": [{"type": "IOFault", "op": "explode"}]}', "faults[0].op: unknown operation"),
])
def test_malformed_plans_get_one_clear_error_naming_the_field(text: str, expected: str) -> None:
    with pytest.raises(FaultPlanError) as info:
        FaultPlan.from_json(text)
    assert expected in str(info.value)
    assert isinstance(info.value, ValueError)


def test_direct_construction_validates_too() -> None:
    with pytest.raises(FaultPlanError) as info:
        NoSpace(nth=-1, partial_bytes=-2, path_glob="")
    assert info.value.errors == [
        "NoSpace.nth: must be >= 1, got -1",
        "NoSpace.partial_bytes: must be >= 0, got -2",
        "NoSpace.path_glob: must not be empty (use '*' for every path)",
    ]
    with pytest.raises(FaultPlanError, match=r"faults\[1\]: expected a fault"):
        FaultPlan((ShortWrite(written_bytes=1), "ShortWrite"))  # type: ignore[arg-type]
    with pytest.raises(FaultPlanError, match="op: must be a FaultOp"):
        IOFault(op="fsync")  # type: ignore[arg-type]


def test_plans_are_immutable_and_extendable() -> None:
    plan = FaultPlan((ShortWrite(written_bytes=1),))
    bigger = plan.extended(SlowSync(delay_ms=5))
    assert len(plan) == 1 and len(bigger) == 2
    assert next(iter(bigger)) == plan.faults[0]
    with pytest.raises(AttributeError):
        plan.faults = ()  # type: ignore[misc]
