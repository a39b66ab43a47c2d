"""Command shapes, not names (issue 22): a target declares what it accepts (``CommandShapes``:
names and per-command forms in the reference's vocabulary, plus an optional ``accepts``), and
fuzz, explore's workloads and the pytest plugin's state machine send only that; what was left
out is said once. SELECT and MULTI follow the same declaration.

The target here is tinyaof declaring less than it implements: strings only, one keyspace (no
SELECT), no MULTI, DEL of one key; it records every command line it is sent, and the tests
assert on what it saw.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import pytest
from tinyaof._store import COMMANDS
from tinyaof.aofcrash_target import TinyTarget

from harness.cli import main
from harness.explore import DEFAULT_SUITE, WORKLOADS, ExploreLimits, explore, make_workload
from harness.explore._workloads import fit_workload
from harness.machine import target_accepts, unsupported_features
from harness.machine._driver import Driver, could_refuse
from harness.machine._machine import make_state_machine
from harness.machine._steps import Multi, Read, RunConfig, Write
from harness.pytest_plugin import aofcrash_state_machine, find_violation
from harness.targets import CommandShapes, TargetEnv, accepts_of, shapes_of

pytest_plugins = ["pytester"]

NARROW_COMMANDS = frozenset(c.decode() for c in COMMANDS) - {"SELECT", "MULTI", "EXEC",
                                                             "DISCARD"}


class NarrowTarget(TinyTarget):
    """tinyaof declaring strings only, no SELECT, no MULTI, single-key DEL; it notes every
    command line submitted to it (``SEEN``, across instances)."""

    SEEN: ClassVar[list[tuple[bytes, ...]]] = []
    commands = frozenset(c.encode() for c in NARROW_COMMANDS)
    shapes = CommandShapes(commands=NARROW_COMMANDS,
                           forms={"DEL": {"one"}, "SET": {"plain", "EX", "PX", "NX", "XX"}})

    def submit(self, argv: Sequence[bytes], *, client: int) -> int:
        NarrowTarget.SEEN.append(tuple(argv))
        return super().submit(argv, client=client)


def make_narrow(env: TargetEnv) -> NarrowTarget:
    return NarrowTarget(env)


NARROW = f"{__name__}:make_narrow"


def _excluded(argv: tuple[bytes, ...]) -> bool:
    name = argv[0].upper()
    return (name in (b"SELECT", b"MULTI", b"EXEC", b"DISCARD")
            or (name == b"DEL" and len(argv) > 2)
            or (name == b"SET" and any(o.upper() in (b"EXAT", b"PXAT", b"KEEPTTL")
                                       for o in argv[3:]))
            or name.decode() not in NARROW_COMMANDS)


@pytest.fixture(autouse=True)
def _fresh_log() -> None:
    NarrowTarget.SEEN.clear()


# -- the declaration ---------------------------------------------------------------------------


def test_shapes_take_the_reference_vocabulary_and_refuse_the_forms_left_out() -> None:
    shapes = CommandShapes(commands={"SET", "DEL", b"GET"},
                           forms={"DEL": {"one"}, "SET": {"plain", "NX", "XX"}})
    assert shapes.allows((b"del", b"k"))
    assert not shapes.allows((b"DEL", b"a", b"b"))
    assert shapes.allows((b"SET", b"k", b"v", b"NX"))
    assert not shapes.allows((b"SET", b"k", b"v", b"EX", b"5"))
    assert not shapes.allows((b"SELECT", b"1"))
    assert shapes.allows((b"GET", b"k"))


def test_bad_shapes_are_refused_with_every_problem_at_once() -> None:
    with pytest.raises(ValueError) as caught:
        CommandShapes(commands={"SET"}, forms={"DEL": {"one"}, "SET": {"EXX"}, "NOPE": {"x"}})
    message = str(caught.value)
    assert "DEL is not among the commands" in message
    assert "SET has no form EXX" in message
    assert "NOPE has no forms" in message


def test_names_alone_and_an_accepts_predicate_are_declarations_too() -> None:
    class Names:
        commands = frozenset({b"SET", b"DEL"})

        def accepts(self, argv: Sequence[bytes]) -> bool:
            return len(argv) <= 3

    assert shapes_of(Names()).commands == frozenset({"SET", "DEL"})
    accept = accepts_of(Names())
    assert accept((b"DEL", b"a", b"b")) and not accept((b"DEL", b"a", b"b", b"c"))
    assert not accept((b"INCR", b"k"))
    assert shapes_of(object()) == CommandShapes()


def test_a_lost_reply_of_a_shape_the_target_does_not_declare_may_have_been_refused() -> None:
    target = NarrowTarget.__new__(NarrowTarget)
    assert could_refuse(((b"DEL", b"a", b"b"),), target, set())
    assert not could_refuse(((b"DEL", b"a"),), target, set())


def test_tinyaof_declares_the_set_options_it_refuses() -> None:
    # A SET ... PXAT the store refused, with its reply lost in a crash, was taken for a write
    # that ran: a false alarm on the correct store (once in a suite run, by test order).
    target = TinyTarget.__new__(TinyTarget)
    assert could_refuse(((b"SET", b"k", b"v", b"PXAT", b"5"),), target, set())
    assert not could_refuse(((b"SET", b"k", b"v", b"PX", b"5"),), target, set())
    assert "SET EXAT, PXAT, KEEPTTL" in unsupported_features(
        RunConfig(target="tinyaof:make_target"))["shapes"]


def test_what_is_left_out_is_said_once_in_the_reasons() -> None:
    off = unsupported_features(RunConfig(target=NARROW))
    assert off["select"] == "does not implement SELECT"
    assert off["multi"] == "does not implement EXEC MULTI"
    assert off["shapes"].startswith("not declared, never sent: ")
    assert "DEL several" in off["shapes"]


# -- what the target saw -----------------------------------------------------------------------


def test_fuzz_sends_a_narrow_target_none_of_the_shapes_it_left_out() -> None:
    machine = make_state_machine(RunConfig(policy="always", target=NARROW))
    assert find_violation(machine, profile="ci", max_examples=60, shrink=False) is None
    assert NarrowTarget.SEEN
    assert [argv for argv in NarrowTarget.SEEN if _excluded(argv)] == []
    assert any(argv[0] == b"DEL" for argv in NarrowTarget.SEEN)  # the DEL it does accept


def test_the_plugin_machine_sends_a_narrow_target_none_of_the_shapes_it_left_out() -> None:
    machine = aofcrash_state_machine(target=make_narrow, policy="everysec", name="Narrow")
    assert find_violation(machine, profile="ci", max_examples=40, shrink=False) is None
    assert NarrowTarget.SEEN
    assert [argv for argv in NarrowTarget.SEEN if _excluded(argv)] == []


def test_explore_workloads_send_a_narrow_target_none_of_the_shapes_it_left_out() -> None:
    accept = target_accepts(RunConfig(target=NARROW))
    assert accept is not None
    for workload, policy, _ in DEFAULT_SUITE:
        if WORKLOADS[workload].reference_only is not None or workload in (
                "auto-rewrite",):
            continue  # (the reference's surface; a rewrite started by the server itself)
        steps = make_workload(workload, ops=25, seed=1, accept=accept)
        assert not any(isinstance(step, Multi) for step in steps), workload
        config = RunConfig(policy=policy, target=NARROW)
        # (A multi-epoch workload whose crash never fires on this store's files is refused.)
        with contextlib.suppress(ValueError):
            explore(config, steps, limits=ExploreLimits(max_crash_points=3,
                                                        max_images_per_point=4,
                                                        confirm_reproductions=0))
    assert NarrowTarget.SEEN
    assert [argv for argv in NarrowTarget.SEEN if _excluded(argv)] == []


def test_fitting_cuts_to_an_accepted_shape_replaces_or_unwraps_and_counts_it() -> None:
    accept = accepts_of(NarrowTarget.__new__(NarrowTarget))
    steps = (Write((b"DEL", b"s1", b"s2")), Write((b"SELECT", b"1")),
             Write((b"HSET", b"h3", b"f", b"long-value")),
             Multi(((b"SET", b"s1", b"a"), (b"INCR", b"n1"))), Read((b"GET", b"s1")))
    fitted, changes = fit_workload(steps, accept)
    assert fitted == (Write((b"DEL", b"s1")), Write((b"SET", b"s3", b"long-value")),
                      Write((b"SET", b"s1", b"a"), iterate=False), Write((b"INCR", b"n1")),
                      Read((b"GET", b"s1")))
    assert changes == {"DEL several -> DEL one": 1, "SELECT dropped (one keyspace)": 1,
                       "HSET -> SET": 1, "MULTI blocks sent as pipelined commands": 1}


def test_cli_explore_says_once_what_it_sent_instead(capsys: pytest.CaptureFixture[str],
                                                    tmp_path: Path) -> None:
    try:
        code = main(["explore", "--target", NARROW, "--workload", "multi", "--ops", "12",
                     "--policy", "always", "--max-crash-points", "3", "--workers", "1",
                     "--reports", str(tmp_path), "--progress", "never"])
    except SystemExit as exc:
        code = int(exc.code or 0)
    _, err = capsys.readouterr()
    assert code == 0, err
    lines = [line for line in err.splitlines() if "does not accept" in line]
    assert len(lines) == 1 and "MULTI blocks sent as pipelined commands" in lines[0]
    assert [argv for argv in NarrowTarget.SEEN if _excluded(argv)] == []


# -- SELECT follows the reply ------------------------------------------------------------------


class _OneKeyspace(TinyTarget):
    def submit(self, argv: Sequence[bytes], *, client: int) -> int:
        if argv[0].upper() == b"SELECT":
            argv = (b"SELECT", b"99")  # refused: out of range
        return super().submit(argv, client=client)


def test_a_refused_select_leaves_the_client_in_its_database() -> None:
    driver = Driver(RunConfig(policy="always"), factory=lambda env: _OneKeyspace(env))
    driver.run(Write((b"SELECT", b"1")))
    driver.run(Write((b"SET", b"k", b"v")))
    driver.run(Read((b"GET", b"k")))  # the model agrees: db 0
    assert driver.history.entries[-1].db == 0
