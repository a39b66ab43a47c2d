"""Benchmarks of in-process targets (prints figures side by side; not a timed test).

1. State-machine examples per second: the harness's state machine (``aofcrash-dev`` settings,
   generation only, derandomized) against the worked example's store (tinyaof, which runs
   fewer features: no rewrite, no collections) and against the bundled reference, with every
   feature and with tinyaof's features only (the like-for-like ratio), per policy. Steps per
   second are shown too, since the rule mixes differ.
2. The driver's overhead per command through the Target protocol: the same SET workload
   (appendfsync always, one command per event-loop iteration) run
   a. directly on ``reference.Server`` (submit, run_iteration, released, pop_reply in a loop;
      on a SimDisk behind an empty fault layer, as the driver has it);
   b. the same loop through ``ReferenceTarget`` (the protocol's adapter);
   c. by the ``Driver`` with the raw ``Server`` as its target (the driver's direct path: no
      adapter in between);
   d. by the ``Driver`` through ``ReferenceTarget`` (what fuzz and the plugin run).
   The protocol's cost is d/c (goal: within 10%) and b/a; d/a is everything the driver adds
   per command (history, model, steps), protocol or not.

Usage: .venv/bin/python benchmarks/targets.py [--quick]
(run from the repository root; examples/tiny-aof-store is put on the path here)
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import Any

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(__file__)]
sys.path.insert(0, os.path.join(_ROOT, "examples", "tiny-aof-store"))
sys.path.insert(0, _ROOT)

from hypothesis import Phase, settings  # noqa: E402
from hypothesis.stateful import run_state_machine_as_test  # noqa: E402

from faults import Clock, FaultPlan, FaultyFileSystem, SimDisk  # noqa: E402
from harness.machine import FEATURES, PROFILES, make_state_machine  # noqa: E402
from harness.machine._driver import Driver  # noqa: E402
from harness.machine._features import unsupported_features  # noqa: E402
from harness.machine._steps import RunConfig, Write  # noqa: E402
from harness.targets import Target, TargetConfig, TargetEnv, reference_target  # noqa: E402
from harness.targets._reference import reference_server_config  # noqa: E402
from reference import AppendFsync, Server, ServerConfig  # noqa: E402

GOAL_RATIO = 1.10
TINY = "tinyaof:make_target"


# -- 1. state-machine examples per second -----------------------------------------------------


def machine_rate(spec: str | None, policy: str, examples: int,
                 features: tuple[str, ...] = FEATURES) -> tuple[float, float]:
    """(examples/s, steps/s) of the state machine against `spec` (None: the reference)."""
    machine: Any = make_state_machine(RunConfig(policy=policy, target=spec), features=features)
    steps: list[int] = []

    class Counted(machine):  # type: ignore[misc]
        def teardown(self) -> None:
            steps.append(len(self.driver.steps))
            super().teardown()

    chosen = settings(PROFILES["dev"], max_examples=examples, derandomize=True, database=None,
                      phases=[Phase.generate])
    start = time.perf_counter()
    run_state_machine_as_test(Counted, settings=chosen)
    elapsed = time.perf_counter() - start
    return len(steps) / elapsed, sum(steps) / elapsed


# -- 2. the driver's overhead per command -----------------------------------------------------


def _commands(n: int) -> list[tuple[bytes, ...]]:
    return [(b"SET", b"key:%d" % (i % 1000), b"value-%d" % i) for i in range(n)]


def _fs() -> tuple[FaultyFileSystem, Clock]:
    clock = Clock()
    return FaultyFileSystem(SimDisk(), FaultPlan(), clock=clock), clock


def loop_server(commands: list[tuple[bytes, ...]]) -> float:
    fs, clock = _fs()
    server = Server(fs, clock, ServerConfig(appendfsync=AppendFsync.ALWAYS))
    server.start()
    submit, iterate, released, pop = (server.submit, server.run_iteration, server.released,
                                      server.pop_reply)
    argvs = [list(a) for a in commands]
    start = time.perf_counter()
    for argv in argvs:
        ticket = submit(argv)
        iterate()
        if released(ticket):
            pop(ticket)
    return time.perf_counter() - start


def loop_protocol(commands: list[tuple[bytes, ...]]) -> float:
    fs, clock = _fs()
    target = reference_target(TargetEnv(fs=fs, clock=clock,
                                        config=TargetConfig(appendfsync="always")))
    target.start()
    submit, iterate, released, pop = (target.submit, target.run_iteration, target.released,
                                      target.pop_reply)
    start = time.perf_counter()
    for argv in commands:
        ticket = submit(argv, client=0)
        iterate()
        if released(ticket):
            pop(ticket)
    return time.perf_counter() - start


def raw_server(env: TargetEnv) -> Target:
    """The reference's Server itself as the driver's target: no adapter in between."""
    server: Any = Server(env.fs, env.clock, reference_server_config(env.config),
                         child_killer=env.kill_child)
    return server  # type: ignore[no-any-return]


def driver_run(commands: list[tuple[bytes, ...]], factory: Callable[[TargetEnv], Target]
               ) -> float:
    driver = Driver(RunConfig(policy="always"), factory=factory)
    steps = [Write(argv) for argv in commands]
    run = driver.run
    start = time.perf_counter()
    for step in steps:
        run(step)
    return time.perf_counter() - start


def best_us_per_command(variants: dict[str, Callable[[], float]], n: int,
                        repeats: int) -> dict[str, float]:
    """Best time per command of each variant, the variants interleaved round by round (a
    shared machine's noise then hits them alike)."""
    best = {name: float("inf") for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            best[name] = min(best[name], fn() / n * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs")
    args = parser.parse_args()
    examples = 20 if args.quick else 60
    rounds = 1 if args.quick else 3
    n = 5_000 if args.quick else 10_000
    repeats = 3 if args.quick else 9

    off = unsupported_features(RunConfig(target=TINY))
    shared = tuple(f for f in FEATURES if f not in off)
    cells = {"reference": (None, FEATURES), "reference, tiny's features": (None, shared),
             "tinyaof": (TINY, shared)}
    print(f"1. state machine, aofcrash-dev settings, {examples} examples per cell, generation "
          f"only, derandomized, best of {rounds} (examples/s, steps/s)")
    print(f"   tinyaof runs {len(shared)} of {len(FEATURES)} features (off: {', '.join(off)})")
    print(f"   {'policy':<10}" + "".join(f"{name:>30}" for name in cells) + f"{'tiny/ref':>10}")
    for policy in ("always", "everysec", "no"):
        rates = {name: (0.0, 0.0) for name in cells}
        for _ in range(rounds):  # interleaved, so a busy moment hits every cell alike
            for name, (spec, features) in cells.items():
                rates[name] = max(rates[name], machine_rate(spec, policy, examples, features))
        row = "".join(f"{ex:>20.1f}{st:>10.0f}" for ex, st in rates.values())
        ratio = rates["tinyaof"][0] / rates["reference, tiny's features"][0]
        print(f"   {policy:<10}{row}{ratio:>9.2f}x")

    cmds = _commands(n)
    best = best_us_per_command({
        "a": lambda: loop_server(cmds),
        "b": lambda: loop_protocol(cmds),
        "c": lambda: driver_run(cmds, raw_server),
        "d": lambda: driver_run(cmds, reference_target),
    }, n, repeats)
    a, b, c, d = best["a"], best["b"], best["c"], best["d"]
    print(f"\n2. SET, appendfsync always, one command per iteration, {n:,} commands, "
          f"best of {repeats} (us per command)")
    print(f"   {'':<44}{'direct':>10}{'protocol':>10}{'ratio':>8}")
    print(f"   {'a/b. loop on Server vs on ReferenceTarget':<44}{a:>10.2f}{b:>10.2f}"
          f"{b / a:>7.2f}x")
    goal = "met" if d / c <= GOAL_RATIO else "NOT met"
    print(f"   {'c/d. Driver on Server vs on ReferenceTarget':<44}{c:>10.2f}{d:>10.2f}"
          f"{d / c:>7.2f}x  (goal <= {GOAL_RATIO:.2f}x: {goal})")
    print(f"   the driver's own work per command (d - b): {d - b:.2f} us "
          f"({d / a:.1f}x the bare loop: history, model, steps; not the protocol)")


if __name__ == "__main__":
    main()
