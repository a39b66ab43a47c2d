"""Oracle benchmark: checks per second against a 100,000-entry history, beside the naive
"replay per candidate k" approach.

Run: .venv/bin/python benchmarks/oracle.py [--entries 100000] [--checks 100] [--repeats 3]
     [--keys 50 4000]

The workload is seeded (random.Random(seed)): strings, counters, lists, sets, sorted sets,
hashes, relative expiries, MULTI blocks, ~1% refused and a tail of unknown entries, over 2
databases; run once with a small keyspace (50 keys per type, a few hundred live keys, like a
state machine) and once with a large one (4,000 per type, ~20,000 live keys). Figures printed
(min/median/max over the repeats):

* setup: one model replay of the history and the first hash table (paid once per history);
* consistent checks/s: recovered = S(k) (a fresh Snapshot object each time) for random k, at
  one recovery time; and for 10 "hot" ks checked 10 times each (crash images of an explorer
  mostly recover to a few prefixes);
* violation checks/s: recovered = S(k) with one key changed (full pass + report);
* new-recovery-time checks/s: every check at a recovery time past a fresh expiry, so each
  needs a new hash table (the worst case for the cache);
* naive: for each candidate k from n down, replay S(k) from scratch and compare. Measured
  directly on a few checks whose answer is among the last 3 prefixes (its best case), and
  derived for a uniformly random answer from the measured per-entry replay cost.
Wall-clock timing is fine here: this is a script, not part of the harness.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from harness.oracle import (
    Checker,
    History,
    KeyValue,
    Model,
    Outcome,
    Snapshot,
    snapshot_from_dump,
)


def build_history(entries: int, seed: int, *, keys: int = 4000) -> tuple[History, int]:
    rng = random.Random(seed)
    names = [b"key:%05d" % i for i in range(keys)]
    h = History()
    now = 0
    for i in range(entries):
        now += rng.choice((0, 0, 1, 1, 2, 5))
        size = rng.choice((2, 3)) if rng.random() < 0.05 else 1
        block = [_command(rng, names) for _ in range(size)]
        h.submit(block, db=rng.choice((0, 0, 0, 1)), executed_ms=now)
        if i >= entries - 10:
            continue  # the tail is in flight at the crash: unknown
        outcome = Outcome.ERROR if rng.random() < 0.01 else Outcome.OK
        h.resolve(i, outcome, at_ms=now + 1)
    return h, now + 1


def _command(rng: random.Random, keys: list[bytes]) -> list[bytes]:
    key = rng.choice(keys)
    value = b"%d" % rng.randrange(1000)
    roll = rng.random()
    if roll < 0.20:
        return [b"SET", key, value]
    if roll < 0.25:
        return [b"SET", key, value, b"PX", b"%d" % rng.randrange(1, 600_000)]
    if roll < 0.35:
        return [b"INCR", b"ctr:" + key[-2:]]
    if roll < 0.40:
        return [b"APPEND", key, value]
    if roll < 0.45:
        return [b"DEL", key]
    if roll < 0.55:
        return [b"RPUSH", b"l" + key, value]
    if roll < 0.60:
        return [b"LPOP", b"l" + key]
    if roll < 0.70:
        return [b"SADD", b"s" + key, value]
    if roll < 0.73:
        return [b"SREM", b"s" + key, value]
    if roll < 0.80:
        return [b"ZADD", b"z" + key, b"%d" % rng.randrange(100), value]
    if roll < 0.90:
        return [b"HSET", b"h" + key, b"f" + value[:1], value]
    if roll < 0.93:
        return [b"HDEL", b"h" + key, b"f" + value[:1]]
    if roll < 0.95:
        return [b"PEXPIRE", key, b"%d" % rng.randrange(1, 600_000)]
    return [b"SET", key, value, b"NX"]


def prefixes_at(h: History, ks: list[int], t_ms: int) -> dict[int, Snapshot]:
    """S(k)@t for the given ks, by one independent replay through the model."""
    wanted = set(ks)
    model = Model()
    out = {0: model.snapshot(t_ms)} if 0 in wanted else {}
    k = 0
    for entry in h:
        if entry.outcome is Outcome.ERROR:
            continue
        model.apply(entry.commands, db=entry.db, now_ms=entry.executed_ms)
        k += 1
        if k in wanted:
            out[k] = model.snapshot(t_ms)
    return out


def naive_check(h: History, recovered: Snapshot, t_ms: int) -> int | None:
    """Replay per candidate k (from the largest), comparing the full state each time."""
    executed = [e for e in h if e.outcome is not Outcome.ERROR]
    for k in range(len(executed), -1, -1):
        model = Model()
        for entry in executed[:k]:
            model.apply(entry.commands, db=entry.db, now_ms=entry.executed_ms)
        if model.snapshot(t_ms) == recovered:
            return k
    return None


def mutate(s: Snapshot, rng: random.Random) -> Snapshot:
    data = dict(s.items())
    key = rng.choice(sorted(data))
    data[key] = KeyValue("string", b"mutated", None)
    return Snapshot(data)


def fmt(values: list[float]) -> str:
    return (f"min {min(values):,.1f}  median {statistics.median(values):,.1f}  "
            f"max {max(values):,.1f}")


def fresh(s: Snapshot) -> Snapshot:
    """A new Snapshot object with the same content (as a new recovery would produce)."""
    return Snapshot._trusted(dict(s.items()))


def run_config(entries: int, keys: int, checks: int, repeats: int, seed: int) -> None:
    rng = random.Random(seed)
    h, crash_ms = build_history(entries, seed, keys=keys)
    recovery_ms = crash_ms
    n = len(h.executed_indices())
    ks = [rng.randrange(n + 1) for _ in range(checks)]
    hot = [rng.randrange(n + 1) for _ in range(10)]
    started = time.perf_counter()
    states = prefixes_at(h, ks + hot + [n, n - 1], recovery_ms)
    replay_s = time.perf_counter() - started
    live = statistics.median(len(states[k]) for k in ks)
    print(f"\n== {len(h):,} entries ({n:,} executed) over {keys:,} keys per type; "
          f"median {live:,.0f} live keys per recovered keyspace")
    print(f"one model replay of the history: {replay_s:.2f} s")

    dump = states[n].to_dump()
    t0 = time.perf_counter()
    snapshot_from_dump(dump)
    print(f"for scale, snapshot_from_dump of the final keyspace ({len(states[n]):,} keys): "
          f"{(time.perf_counter() - t0) * 1000:.1f} ms")

    setups: list[float] = []
    consistent: list[float] = []
    repeated: list[float] = []
    violating: list[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        checker = Checker(h)
        verdict = checker.check(fresh(states[n]), policy="always", model="process",
                                crash_ms=crash_ms, recovery_ms=recovery_ms)
        setups.append(time.perf_counter() - t0)
        assert verdict.ok and verdict.k == n, verdict.render()
        inputs = [fresh(states[k]) for k in ks]
        t0 = time.perf_counter()
        for k, s in zip(ks, inputs, strict=True):
            verdict = checker.check(s, policy="no", model="power-ext4",
                                    crash_ms=crash_ms, recovery_ms=recovery_ms)
            assert verdict.ok and verdict.k is not None and verdict.k >= k
        consistent.append(len(ks) / (time.perf_counter() - t0))
        # Explorer-like: many crash images recover to the same few prefixes.
        inputs = [fresh(states[hot[i % len(hot)]]) for i in range(10 * len(hot))]
        t0 = time.perf_counter()
        for s in inputs:
            assert checker.check(s, policy="no", model="power-ext4",
                                 crash_ms=crash_ms, recovery_ms=recovery_ms).ok
        repeated.append(len(inputs) / (time.perf_counter() - t0))
        bad = [mutate(states[k], rng) for k in ks[:10]]
        t0 = time.perf_counter()
        for s in bad:
            verdict = checker.check(s, policy="no", model="power-ext4",
                                    crash_ms=crash_ms, recovery_ms=recovery_ms)
            assert not verdict.ok
        violating.append(len(bad) / (time.perf_counter() - t0))

    # Each check at a recovery time past another expiry: a new hash table per check.
    checker = Checker(h)
    expiries = sorted({kv.expire_at_ms for kv in states[n].values() if kv.expire_at_ms})
    times = [t for t in expiries if t > recovery_ms][:5]
    t0 = time.perf_counter()
    for t in times:
        verdict = checker.check(checker.state_at(n, at_ms=t), policy="always", model="process",
                                crash_ms=crash_ms, recovery_ms=t)
        assert verdict.ok
    new_t = len(times) / (time.perf_counter() - t0) if times else float("nan")

    print(f"setup (replay + first table), s:     {fmt(setups)}")
    print(f"consistent checks/s, random k:       {fmt(consistent)}   ({len(ks)} per repeat)")
    print(f"consistent checks/s, 10 hot ks:      {fmt(repeated)}   (100 per repeat)")
    print(f"violation checks/s (pass + report):  {fmt(violating)}   (10 per repeat)")
    print(f"checks/s at a new recovery time:     {new_t:,.1f}   ({len(times)} checks, "
          "a new table each)")

    naive_times: list[float] = []
    for k in (n, n - 1):
        t0 = time.perf_counter()
        assert naive_check(h, states[k], recovery_ms) == k
        naive_times.append(time.perf_counter() - t0)
    # Uniformly random answer k*: candidates n..k*, each replaying k entries, ~n^2/2 entries
    # on average, at the per-entry cost of the replay measured above.
    derived = replay_s / max(n, 1) * n * n / 2
    print(f"naive (replay per candidate k), answer n / n-1 (its best case): "
          f"{1 / naive_times[0]:.3f} / {1 / naive_times[1]:.3f} checks/s")
    print(f"naive, uniformly random answer (derived): {1 / derived:.1e} checks/s "
          f"(~{derived / 3600:.0f} h per check)")
    print(f"median speed-up, random k, over the naive best case: "
          f"{statistics.median(consistent) * naive_times[0]:,.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--entries", type=int, default=100_000)
    parser.add_argument("--checks", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keys", type=int, nargs="+", default=[50, 4000],
                        help="keys per type; one run per value")
    args = parser.parse_args()
    for keys in args.keys:
        run_config(args.entries, keys, args.checks, args.repeats, args.seed)


if __name__ == "__main__":
    main()
