"""The contract checker. The contract itself is written once, in harness.oracle's docstring;
this module implements it (frontier, prefix search, reports)."""

from __future__ import annotations

import enum
import weakref
from bisect import bisect_right, insort
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict, Unpack, cast

from harness.oracle._history import Entry, History, Outcome
from harness.oracle._model import Model
from harness.oracle._snapshot import DbKey, KeyValue, Snapshot, b2s, key_value_to_json

__all__ = [
    "Checker",
    "CrashInfo",
    "CrashModel",
    "KeyDiff",
    "Policy",
    "Rule",
    "Verdict",
    "Violation",
    "check_recovery",
    "check_stability",
    "describe_choice",
    "effective_window_ms",
    "frontier",
    "window_stalls",
]

_MASK = (1 << 64) - 1
_DIFF_LIMIT = 50  # keys listed in a report; the count of differing keys is always exact
_STATE_CACHE = 16  # materialised prefixes kept per hash table


class Policy(enum.Enum):
    """appendfsync policy."""

    ALWAYS = "always"
    EVERYSEC = "everysec"
    NO = "no"


class CrashModel(enum.Enum):
    """What survives the crash (see faults.PersistenceModel)."""

    PROCESS = "process"
    POWER = "power-ext4"
    POWER_XFS = "power-xfs"
    POWER_BTRFS = "power-btrfs"
    POWER_EAGER_METADATA = "power-eager-metadata"
    POWER_POSIX_METADATA = "power-posix-metadata"
    # The real kernel (faults.kernel): crash images mounted by Linux's own ext4, xfs, btrfs.
    # Power-loss models for the frontier, like the power-* models that claim those filesystems.
    KERNEL_EXT4 = "ext4"
    KERNEL_XFS = "xfs"
    KERNEL_BTRFS = "btrfs"

    @classmethod
    def _missing_(cls, value: object) -> CrashModel | None:
        return cls.POWER if value == "power" else None  # the name before calibration


class Rule(enum.Enum):
    """The contract rule a violation breaks (PHANTOM is the refused-write case of rule 1)."""

    PREFIX_CONSISTENCY = "prefix-consistency"
    PHANTOM = "phantom"
    DURABILITY = "durability"
    STABILITY = "stability"
    AVAILABILITY = "availability"
    DAMAGE = "damage"


def _coerce(enum_type: type[enum.Enum], value: object, name: str) -> Any:
    raw = value.value if isinstance(value, enum.Enum) else value
    try:
        return enum_type(raw)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in enum_type)
        raise ValueError(f"{name} must be one of {choices}, got {value!r}") from None


def _require_int(value: object, name: str, *, minimum: int | None = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _check_stalls(stalls: Iterable[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    out: list[tuple[int, int]] = []
    for i, stall in enumerate(stalls):
        if not isinstance(stall, tuple | list) or len(stall) != 2:
            raise ValueError(f"stalls[{i}] must be (start_ms, delay_ms), got {stall!r}")
        start = _require_int(stall[0], f"stalls[{i}] start_ms", minimum=None)
        delay = _require_int(stall[1], f"stalls[{i}] delay_ms")
        out.append((start, delay))
    return tuple(out)


def effective_window_ms(
    crash_ms: int, *, window_ms: int = 2000, stalls: Iterable[tuple[int, int]] = ()
) -> int:
    """The everysec window W: `window_ms` plus the full delay of every fsync stall overlapping
    ``[crash_ms - W, crash_ms]``, to a fixed point (a stall that widens the window can bring an
    earlier stall into it)."""
    _require_int(crash_ms, "crash_ms", minimum=None)
    _require_int(window_ms, "window_ms")
    checked = _serialized(_check_stalls(stalls))
    width = window_ms
    while True:
        lo = crash_ms - width
        grown = window_ms + sum(d for s, d in checked if s <= crash_ms and s + d > lo)
        if grown == width:
            return width
        width = grown


def _serialized(stalls: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """The stalls one after another: fsyncs are serial (one bio thread, one device queue), so a
    stall that fires while an earlier one runs (two slow faults on one fsync, or a job queued
    behind a slow one) starts when the earlier one ends."""
    out: list[tuple[int, int]] = []
    end = None
    for start, delay in sorted(stalls):
        if end is not None and start < end:
            start = end
        out.append((start, delay))
        end = start + delay
    return tuple(out)


#: Under the process model, how much an fsync stall widens W: one cron period (hz 10).
POSTPONE_SLACK_MS = 100


def window_stalls(
    model: CrashModel | str,
    stalls: Sequence[tuple[int, int]],
    error_stalls: Sequence[tuple[int, int]],
) -> tuple[tuple[int, int], ...]:
    """The stalls that widen W under `model` (contract rule 2): I/O errors always, fsync
    stalls only under power models (after a process crash only what was written counts, and
    a correct server writes within its postponement limit however slow fsync is)."""
    mdl: CrashModel = _coerce(CrashModel, model, "model")
    errors = _check_stalls(error_stalls)
    if mdl is CrashModel.PROCESS:
        # The postponed buffer is written at the first event-loop iteration past the limit:
        # a stall buys at most one cron period there.
        return tuple((s, min(d, POSTPONE_SLACK_MS)) for s, d in _check_stalls(stalls)) + errors
    return _check_stalls(stalls) + errors


def _frontier_window(
    policy: Policy | str,
    model: CrashModel | str,
    crash_ms: int,
    window_ms: int,
    stalls: Sequence[tuple[int, int]],
    error_stalls: Sequence[tuple[int, int]],
) -> tuple[Policy, bool, int]:
    """The frontier's inputs checked: the policy, whether `model` is a power-loss model, and
    W's width at `crash_ms` with the stalls that widen it under `model` (rule 2)."""
    pol: Policy = _coerce(Policy, policy, "policy")
    mdl: CrashModel = _coerce(CrashModel, model, "model")
    _require_int(crash_ms, "crash_ms", minimum=None)
    width = effective_window_ms(crash_ms, window_ms=window_ms,
                                stalls=window_stalls(mdl, stalls, error_stalls))
    return pol, mdl is not CrashModel.PROCESS, width


def frontier(
    history: History,
    *,
    policy: Policy | str,
    model: CrashModel | str,
    crash_ms: int,
    window_ms: int = 2000,
    stalls: Sequence[tuple[int, int]] = (),
    error_stalls: Sequence[tuple[int, int]] = (),
    no_appendfsync_on_rewrite: bool = False,
) -> int:
    """F: the number of leading executed entries that must survive (see the contract).

    `stalls`: injected fsync stalls (start_ms, delay_ms), which widen W under power models
    only; `error_stalls`: injected persistence-path I/O errors, which widen it under every
    model."""
    pol, power, width = _frontier_window(policy, model, crash_ms, window_ms, stalls,
                                         error_stalls)
    if pol is Policy.NO and power:
        return 0
    result = position = 0
    for entry in history:
        if entry.outcome is Outcome.ERROR:
            continue
        position += 1
        if entry.outcome is not Outcome.OK:
            continue
        if no_appendfsync_on_rewrite and power and entry.during_rewrite:
            continue  # only the `no` promise, which is nothing under power
        assert entry.ack_ms is not None
        if pol is Policy.EVERYSEC and entry.ack_ms > crash_ms - width:
            continue
        result = position
    return result


# ---------------------------------------------------------------- reports


@dataclass(frozen=True, slots=True)
class CrashInfo:
    """Which crash produced the recovered state: model, image choice, trace position, time."""

    model: str
    choice: Any = None
    trace_index: int | None = None
    crash_ms: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.model, enum.Enum):
            object.__setattr__(self, "model", str(self.model.value))

    def to_dict(self) -> dict[str, Any]:
        choice = self.choice
        if hasattr(choice, "to_dict"):
            choice = choice.to_dict()
        return {
            "model": self.model,
            "choice": choice,
            "trace_index": self.trace_index,
            "crash_ms": self.crash_ms,
        }

    def describe(self) -> str:
        parts = [f"model={self.model}"]
        if self.choice is not None:
            choice = self.choice.to_dict() if hasattr(self.choice, "to_dict") else self.choice
            parts.append(f"image: {describe_choice(choice)};")
        if self.trace_index is not None:
            parts.append(f"trace_index={self.trace_index}")
        if self.crash_ms is not None:
            parts.append(f"crash_ms={self.crash_ms}")
        return " ".join(parts)


def describe_choice(choice: Any) -> str:
    """A crash image choice (a ``CrashChoice.to_dict()``) in words, for reports."""
    if not isinstance(choice, dict):
        return str(choice)
    model = choice.get("model", "?")
    kernel = choice.get("kernel_state")
    if isinstance(kernel, dict):  # harness.verify._explore_kernel: a real kernel's crash image
        return (f"{model} (the real kernel): block writes before #{kernel.get('durable_writes')}"
                f" (the last flush) plus {len(kernel.get('kept') or [])} of "
                f"{kernel.get('in_flight')} in flight, mounted by the kernel")
    if model == "process":
        return "process crash: everything written survives"
    parts = []
    kept = choice.get("metadata_kept")
    if isinstance(kept, int):
        parts.append(f"{kept} pending directory operation(s) kept")
    files = choice.get("files") or []
    if not files:
        parts.append("every file at its durable (fsynced) contents")
    for f in files if isinstance(files, list) else []:
        if isinstance(f, dict):
            sector = "" if f.get("sector_index") is None else f" sector {f['sector_index']}"
            parts.append(f"inode {f.get('inode')}: {f.get('kind')} {f.get('length_bytes')} "
                         f"bytes{sector}")
    return f"{model}: " + "; ".join(parts)


def _fmt_bytes(data: bytes, limit: int = 40) -> str:
    text = repr(data)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _fmt_kv(kv: KeyValue | None) -> str:
    if kv is None:
        return "(absent)"
    if kv.type == "string":
        body = _fmt_bytes(kv.value)  # type: ignore[arg-type]
    else:
        if kv.type == "list":
            items = [_fmt_bytes(x, 20) for x in kv.value]  # type: ignore[arg-type]
        elif kv.type == "set":
            items = [_fmt_bytes(x, 20) for x in sorted(cast(frozenset[bytes], kv.value))]
        elif kv.type == "zset":
            items = [f"{_fmt_bytes(m, 20)}:{s!r}" for m, s in sorted(kv.value)]  # type: ignore[misc]
        else:
            items = [f"{_fmt_bytes(f, 20)}={_fmt_bytes(v, 20)}" for f, v in sorted(kv.value)]  # type: ignore[misc]
        shown = ", ".join(items[:6]) + (", ..." if len(items) > 6 else "")
        body = f"[{len(items)}] {shown}"
    expiry = "" if kv.expire_at_ms is None else f" (expires at {kv.expire_at_ms} ms)"
    return f"{kv.type} {body}{expiry}"


@dataclass(frozen=True, slots=True)
class KeyDiff:
    """One key that differs: its value expected at the compared prefix vs the recovered one."""

    db: int
    key: bytes
    expected: KeyValue | None
    recovered: KeyValue | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "db": self.db,
            "key": b2s(self.key),
            "expected": None if self.expected is None else key_value_to_json(self.expected),
            "recovered": None if self.recovered is None else key_value_to_json(self.recovered),
        }

    def render(self) -> str:
        expected, recovered = _fmt_kv(self.expected), _fmt_kv(self.recovered)
        a, b = self.expected, self.recovered
        if (a is not None and b is not None and a.type == b.type == "string"
                and a.value != b.value):
            # Cutting both values at one length can hide where they differ: elide the
            # common prefix (but a few bytes of context) and show the differing bytes.
            va, vb = cast(bytes, a.value), cast(bytes, b.value)
            same = 0
            while same < min(len(va), len(vb)) and va[same] == vb[same]:
                same += 1
            if same > 8:
                keep = same - 4

                def tail(kv: KeyValue, data: bytes) -> str:
                    expiry = ("" if kv.expire_at_ms is None
                              else f" (expires at {kv.expire_at_ms} ms)")
                    return (f"string [{keep} equal bytes] + {_fmt_bytes(data[keep:])} "
                            f"({len(data)} bytes){expiry}")

                expected, recovered = tail(a, va), tail(b, vb)
        return (
            f"db{self.db} {_fmt_bytes(self.key)}\n"
            f"      expected:  {expected}\n"
            f"      recovered: {recovered}"
        )


@dataclass(frozen=True, slots=True)
class Violation:
    """A broken rule, with what a person needs to see why.

    ``closest_k`` is the prefix the recovered keyspace is nearest to (fewest differing keys; ties
    go to the largest k). ``diff`` compares the recovered keyspace with ``S(diff_k)``: for prefix
    and phantom violations ``diff_k == closest_k``; for durability ``diff_k`` is the frontier (what
    should have survived). ``differing_keys`` counts every differing key; ``diff`` lists at most
    50 of them.
    """

    rule: Rule
    message: str
    crash: CrashInfo | None = None
    frontier: int | None = None
    closest_k: int | None = None
    diff_k: int | None = None
    diff: tuple[KeyDiff, ...] = ()
    differing_keys: int = 0
    details: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.value,
            "message": self.message,
            "crash": None if self.crash is None else self.crash.to_dict(),
            "frontier": self.frontier,
            "closest_k": self.closest_k,
            "diff_k": self.diff_k,
            "differing_keys": self.differing_keys,
            "diff": [d.to_dict() for d in self.diff],
            "details": dict(self.details),
        }

    def render(self) -> str:
        lines = [f"VIOLATION [{self.rule.value}] {self.message}"]
        if self.crash is not None:
            lines.append(f"  crash:     {self.crash.describe()}")
        if self.frontier is not None:
            lines.append(
                f"  frontier:  F={self.frontier} (leading executed entries that must survive)"
            )
        if self.closest_k is not None:
            lines.append(f"  closest k: {self.closest_k}")
        for name, value in self.details.items():
            if isinstance(value, list | tuple):
                lines.append(f"  {name}:")
                lines.extend(f"    {item}" for item in value)
            else:
                lines.append(f"  {name}: {value}")
        if self.diff_k is not None or self.diff:
            against = "" if self.diff_k is None else f" S({self.diff_k})"
            lines.append(f"  diff against{against}: {self.differing_keys} key(s) differ")
            lines.extend(f"    {d.render()}" for d in self.diff)
            if self.differing_keys > len(self.diff):
                lines.append(f"    ... and {self.differing_keys - len(self.diff)} more")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The result of one check.

    ``outcome``: "consistent" (every rule holds), "unavailable" (the server refused to start;
    ``ok`` stays True unless strict availability was asked for) or "violation". ``k`` is the
    matched prefix length (the largest k with ``S(k)`` equal to the recovered keyspace) or None.
    """

    ok: bool
    outcome: str
    k: int | None
    frontier: int | None
    violations: list[Violation]
    executed: int | None = None
    crash: CrashInfo | None = None
    unavailable_reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "outcome": self.outcome,
            "k": self.k,
            "frontier": self.frontier,
            "executed": self.executed,
            "crash": None if self.crash is None else self.crash.to_dict(),
            "unavailable_reason": self.unavailable_reason,
            "violations": [v.to_dict() for v in self.violations],
        }

    def render(self) -> str:
        head = f"{self.outcome.upper()}: k={self.k} frontier={self.frontier}"
        if self.executed is not None:
            head += f" executed={self.executed}"
        if self.unavailable_reason is not None:
            head += f"\n  refused to start: {self.unavailable_reason}"
        return "\n".join([head] + [v.render() for v in self.violations])


# ---------------------------------------------------------------- the timeline


def _live(kv: KeyValue | None, t_ms: int) -> KeyValue | None:
    if kv is None or (kv.expire_at_ms is not None and kv.expire_at_ms <= t_ms):
        return None
    return kv


def _matches(model_raw: KeyValue | None, recovered: KeyValue | None, t_ms: int, tol: int) -> bool:
    """Does one key of the recovered keyspace agree with the model's raw value, at time t_ms?

    Exact (tol == 0): the model value live at t_ms equals the recovered value. With a tolerance
    (real servers, whose expiries are re-derived from relative TTLs), expiry times may differ by
    up to tol and a key expiring within tol of t_ms may be either present or absent.
    """
    if tol == 0:
        return _live(model_raw, t_ms) == recovered
    if recovered is None:
        return model_raw is None or (
            model_raw.expire_at_ms is not None and model_raw.expire_at_ms <= t_ms + tol
        )
    if model_raw is None or model_raw.type != recovered.type or model_raw.value != recovered.value:
        return False
    if model_raw.expire_at_ms is None or recovered.expire_at_ms is None:
        return model_raw.expire_at_ms is None and recovered.expire_at_ms is None
    return abs(model_raw.expire_at_ms - recovered.expire_at_ms) <= tol


class KeyChangeLog:
    """Per key, the prefixes k (1-based, ascending) after which it changed (``key_ks``) and its
    raw value after each change (``key_vals``): S(k)[key] is one bisect away. Shared by the
    checker's timeline and the explorer's prefix index, which fill the two lists themselves."""

    def __init__(self) -> None:
        self.key_ks: dict[DbKey, list[int]] = {}
        self.key_vals: dict[DbKey, list[KeyValue | None]] = {}

    def value_at(self, dbkey: DbKey, k: int) -> KeyValue | None:
        ks = self.key_ks.get(dbkey)
        if ks is None:
            return None
        i = bisect_right(ks, k) - 1
        return None if i < 0 else self.key_vals[dbkey][i]


class _Timeline(KeyChangeLog):
    """One replay of the executed sequence through the model, kept as a change log.

    Entry k (1-based) changed ``ch_*[ends[k-1]:ends[k]]``; every change is (key, raw value before,
    raw value after, their hashes). Per key, ``key_ks``/``key_vals`` give the value after every
    change, so S(k)[key] is one bisect away. Nothing here depends on the recovery time.
    """

    def __init__(self, *, include_refused: bool = False) -> None:
        super().__init__()
        self.include_refused = include_refused
        self.model = Model()
        self.exec_hidx: list[int] = []
        self.ends: list[int] = [0]
        self.ch_key: list[DbKey] = []
        self.ch_old: list[KeyValue | None] = []
        self.ch_new: list[KeyValue | None] = []
        self.ch_hold: list[int] = []
        self.ch_hnew: list[int] = []
        self.expiries: list[int] = []  # sorted expiry times of every value in the log
        self._last: dict[DbKey, int] = {}  # key -> index of its latest change
        self.consumed = 0
        self.retractions = 0

    @property
    def n(self) -> int:
        return len(self.exec_hidx)

    def sync(self, history: History) -> bool:
        """Catch up with `history`; returns False when it must be rebuilt (an entry retracted)."""
        if self.consumed and not self.include_refused and history.retractions != self.retractions:
            return False
        state = self.model.state
        for index in range(self.consumed, len(history)):
            entry = history[index]
            if entry.outcome is Outcome.ERROR and not self.include_refused:
                continue
            state.journal = {}
            self.model.apply(entry.commands, db=entry.db, now_ms=entry.executed_ms)
            journal, state.journal = state.journal, None
            k = len(self.exec_hidx) + 1
            self.exec_hidx.append(index)
            for dbkey, old in journal.items():
                new = state.data.get(dbkey)
                if new is old or new == old:
                    continue
                self.ch_key.append(dbkey)
                self.ch_old.append(old)
                self.ch_new.append(new)
                ks = self.key_ks.get(dbkey)
                if ks is None:
                    self.key_ks[dbkey] = [k]
                    self.key_vals[dbkey] = [new]
                    hold = 0
                else:
                    ks.append(k)
                    self.key_vals[dbkey].append(new)
                    hold = self.ch_hnew[self._last[dbkey]]
                self.ch_hold.append(hold)
                self.ch_hnew.append(0 if new is None else hash((dbkey, new)))
                self._last[dbkey] = len(self.ch_key) - 1
                if new is not None and new.expire_at_ms is not None:
                    insort(self.expiries, new.expire_at_ms)
            self.ends.append(len(self.ch_key))
        self.consumed = len(history)
        self.retractions = history.retractions
        return True

    def raw_state_at(self, k: int) -> dict[DbKey, KeyValue]:
        out: dict[DbKey, KeyValue] = {}
        for dbkey, ks in self.key_ks.items():
            i = bisect_right(ks, k) - 1
            if i >= 0:
                value = self.key_vals[dbkey][i]
                if value is not None:
                    out[dbkey] = value
        return out

    def expiries_between(self, a_ms: int, b_ms: int) -> int:
        lo, hi = min(a_ms, b_ms), max(a_ms, b_ms)
        return bisect_right(self.expiries, hi) - bisect_right(self.expiries, lo)

    def mismatch_counts(
        self, recovered: Mapping[DbKey, KeyValue], t_ms: int, tol: int
    ) -> list[int]:
        """For every k, how many keys differ between S(k)@t_ms and `recovered` (one pass)."""
        mism = len(recovered)  # S(0) is empty: every recovered key differs
        out = [mism]
        ch_key, ch_old, ch_new, ends = self.ch_key, self.ch_old, self.ch_new, self.ends
        get = recovered.get
        c = 0
        for k in range(1, self.n + 1):
            end = ends[k]
            while c < end:
                r = get(ch_key[c])
                mism += _matches(ch_old[c], r, t_ms, tol) - _matches(ch_new[c], r, t_ms, tol)
                c += 1
            out.append(mism)
        return out


class _HashTable:
    """Hash and live-key count of S(k)@t for every k, and hash -> ks; valid for every recovery time
    between which and ``t_ms`` no value in the log expires."""

    __slots__ = ("by_hash", "confirmed", "counts", "hashes", "states", "t_ms")

    def __init__(self, t_ms: int) -> None:
        self.t_ms = t_ms
        self.hashes: list[int] = [0]
        self.counts: list[int] = [0]
        self.by_hash: dict[int, list[int]] = {0: [0]}
        # S(k)@t kept as dicts for ks confirmed more than once (crash images tend to recover
        # to the same few prefixes): confirming them again is one dict comparison. A prefix
        # never changes as the history grows, so these stay valid with the table.
        self.confirmed: dict[int, int] = {}
        self.states: dict[int, dict[DbKey, KeyValue]] = {}

    def extend(self, tl: _Timeline, t_ms: int) -> None:
        # The part already built is identical for t_ms (the caller checked no expiry lies
        # between the two times); the new part is computed at t_ms.
        self.t_ms = t_ms
        h, cnt = self.hashes[-1], self.counts[-1]
        ch_old, ch_new, ends = tl.ch_old, tl.ch_new, tl.ends
        ch_hold, ch_hnew = tl.ch_hold, tl.ch_hnew
        hashes, counts, by_hash = self.hashes, self.counts, self.by_hash
        c = ends[len(hashes) - 1]
        for k in range(len(hashes), tl.n + 1):
            end = ends[k]
            while c < end:
                old = ch_old[c]
                if old is not None and (old.expire_at_ms is None or old.expire_at_ms > t_ms):
                    h -= ch_hold[c]
                    cnt -= 1
                new = ch_new[c]
                if new is not None and (new.expire_at_ms is None or new.expire_at_ms > t_ms):
                    h += ch_hnew[c]
                    cnt += 1
                c += 1
            h &= _MASK
            hashes.append(h)
            counts.append(cnt)
            bucket = by_hash.get(h)
            if bucket is None:
                by_hash[h] = [k]
            else:
                bucket.append(k)


def _snapshot_hash(snapshot: Mapping[DbKey, KeyValue]) -> int:
    # Same per-key contribution as the change log's: hash((dbkey, value)).
    return sum(map(hash, snapshot.items())) & _MASK


def _diff(
    expected_raw: Mapping[DbKey, KeyValue],
    recovered: Mapping[DbKey, KeyValue],
    t_ms: int,
    tol: int,
) -> tuple[list[KeyDiff], int]:
    diffs: list[KeyDiff] = []
    for dbkey in sorted(set(expected_raw) | set(recovered)):
        m, r = expected_raw.get(dbkey), recovered.get(dbkey)
        if not _matches(m, r, t_ms, tol):
            shown = m if tol else _live(m, t_ms)
            diffs.append(KeyDiff(dbkey[0], dbkey[1], shown, r))
    return diffs[:_DIFF_LIMIT], len(diffs)


# ---------------------------------------------------------------- the checker


class Checker:
    """Many checks against one history: the model replay, the per-recovery-time hash tables and
    the frontier index are built once and extended as the history grows."""

    def __init__(
        self, history: History, *, expiry_tolerance_ms: int = 0, max_tables: int = 8
    ) -> None:
        if not isinstance(history, History):
            raise ValueError(f"history must be a History, got {type(history).__name__}")
        self.history = history
        self.expiry_tolerance_ms = _require_int(expiry_tolerance_ms, "expiry_tolerance_ms")
        self.max_tables = _require_int(max_tables, "max_tables", minimum=1)
        self._tl = _Timeline()
        self._aug: _Timeline | None = None
        self._tables: list[_HashTable] = []
        self._frontier_cache: dict[tuple[Any, ...], tuple[list[int], list[int]]] = {}
        self._frontier_key: int | None = None

    def __repr__(self) -> str:
        return f"Checker({self.history!r}, expiry_tolerance_ms={self.expiry_tolerance_ms})"

    # -- the model side

    def _timeline(self) -> _Timeline:
        if not self._tl.sync(self.history):
            self._tl = _Timeline()
            self._tables.clear()
            self._tl.sync(self.history)
        return self._tl

    def _augmented(self) -> _Timeline:
        if self._aug is None:
            self._aug = _Timeline(include_refused=True)
        self._aug.sync(self.history)
        return self._aug

    @property
    def executed_count(self) -> int:
        """n: the length of the executed sequence (k ranges over 0..n)."""
        return self._timeline().n

    def state_at(self, k: int, *, at_ms: int) -> Snapshot:
        """S(k) evaluated at `at_ms` (expired keys absent)."""
        tl = self._timeline()
        _require_int(k, "k")
        if k > tl.n:
            raise ValueError(f"k must be <= {tl.n} (executed entries), got {k}")
        return Snapshot._trusted(
            {dk: v for dk, v in tl.raw_state_at(k).items() if _live(v, at_ms) is not None}
        )

    def matching_prefixes(self, recovered: Snapshot, *, at_ms: int) -> list[int]:
        """Every k whose S(k)@at_ms equals `recovered` (within the expiry tolerance)."""
        tl = self._timeline()
        counts = tl.mismatch_counts(recovered.at(at_ms), at_ms, self.expiry_tolerance_ms)
        return [k for k, m in enumerate(counts) if m == 0]

    def _table(self, t_ms: int) -> _HashTable:
        tl = self._timeline()
        for i, table in enumerate(self._tables):
            if tl.expiries_between(table.t_ms, t_ms) == 0:
                if len(table.hashes) <= tl.n or table.t_ms != t_ms:
                    table.extend(tl, t_ms)
                self._tables.insert(0, self._tables.pop(i))  # most recently used first
                return table
        table = _HashTable(t_ms)
        table.extend(tl, t_ms)
        self._tables.insert(0, table)
        del self._tables[self.max_tables :]
        return table

    def _largest_match(self, recovered: Snapshot, t_ms: int) -> int | None:
        tl = self._timeline()
        if self.expiry_tolerance_ms:
            return None  # exact hashing cannot express a tolerance: check() makes the pass
        table = self._table(t_ms)
        size = len(recovered)
        items = recovered.items()
        key_ks, key_vals = tl.key_ks, tl.key_vals
        for k in reversed(table.by_hash.get(_snapshot_hash(recovered), ())):
            # Confirm the hash match exactly: same key count, and every recovered key equal
            # to its value after entry k (S(k) then has no other live key, by the count).
            if table.counts[k] != size:
                continue
            state = table.states.get(k)
            if state is not None:
                if state == recovered._data:  # package-internal: avoids copying the dict
                    return k
                continue
            for dbkey, kv in items:
                ks = key_ks.get(dbkey)
                if ks is None:
                    break
                i = bisect_right(ks, k) - 1
                if i < 0 or key_vals[dbkey][i] != kv:
                    break
            else:
                seen = table.confirmed[k] = table.confirmed.get(k, 0) + 1
                if seen >= 2:
                    if len(table.states) >= _STATE_CACHE:
                        del table.states[next(iter(table.states))]  # oldest first
                    table.states[k] = {
                        dk: v for dk, v in tl.raw_state_at(k).items() if _live(v, t_ms)
                    }
                return k
        return None

    # -- the frontier

    def frontier(
        self,
        *,
        policy: Policy | str,
        model: CrashModel | str,
        crash_ms: int,
        window_ms: int = 2000,
        stalls: Sequence[tuple[int, int]] = (),
        error_stalls: Sequence[tuple[int, int]] = (),
        no_appendfsync_on_rewrite: bool = False,
    ) -> int:
        """Same as the module-level ``frontier`` (which is the reference), in O(log n)."""
        pol, power, width = _frontier_window(policy, model, crash_ms, window_ms, stalls,
                                             error_stalls)
        if pol is Policy.NO and power:
            return 0
        skip_rewrite = no_appendfsync_on_rewrite and power
        acks, best = self._frontier_index(skip_rewrite)
        if not acks:
            return 0
        limit = crash_ms - width if pol is Policy.EVERYSEC else None
        i = len(acks) if limit is None else bisect_right(acks, limit)
        return best[i - 1] if i else 0

    def _frontier_index(self, skip_rewrite: bool) -> tuple[list[int], list[int]]:
        """OK entries sorted by ack time, with the running max of their executed position."""
        key = self.history.revision  # any resolve can move the frontier
        if self._frontier_key != key:
            self._frontier_cache.clear()
            self._frontier_key = key
        cached = self._frontier_cache.get((skip_rewrite,))
        if cached is not None:
            return cached
        rows: list[tuple[int, int]] = []
        position = 0
        for entry in self.history:
            if entry.outcome is Outcome.ERROR:
                continue
            position += 1
            if entry.outcome is Outcome.OK and not (skip_rewrite and entry.during_rewrite):
                assert entry.ack_ms is not None
                rows.append((entry.ack_ms, position))
        rows.sort()
        acks = [a for a, _ in rows]
        best: list[int] = []
        running = 0
        for _, pos in rows:
            running = max(running, pos)
            best.append(running)
        self._frontier_cache[(skip_rewrite,)] = (acks, best)
        return acks, best

    # -- the check

    def check(
        self,
        recovered: Snapshot | None,
        *,
        policy: Policy | str,
        model: CrashModel | str,
        crash_ms: int,
        recovery_ms: int,
        window_ms: int = 2000,
        stalls: Sequence[tuple[int, int]] = (),
        error_stalls: Sequence[tuple[int, int]] = (),
        no_appendfsync_on_rewrite: bool = False,
        unavailable_reason: str | None = None,
        allow_unavailable: bool = False,
        damaged_image: bool = False,
        damaged_synced: bool = False,
        crash: CrashInfo | None = None,
    ) -> Verdict:
        """Check one recovery against rules 1, 2 and 4 of the contract, or rule 5 alone.

        `damaged_image`: the crash image carries damage the user asked for (torn or reordered
        sectors), so refusing to start is the right answer (rule 4). `damaged_synced`: synced
        bytes of the image were damaged (a ``Damage`` fault) and the target declares itself
        checksummed: rule 5 instead of rules 1, 2 and 4."""
        _require_int(recovery_ms, "recovery_ms", minimum=None)
        _require_int(crash_ms, "crash_ms", minimum=None)
        if recovery_ms < crash_ms:
            raise ValueError(f"recovery_ms ({recovery_ms}) must be >= crash_ms ({crash_ms})")
        given: object = recovered  # validated at run time for callers without type checking
        if given is not None and not isinstance(given, Snapshot):
            got = type(given).__name__
            raise ValueError(f"recovered must be a Snapshot or None, got {got}")
        f = self.frontier(
            policy=policy,
            model=model,
            crash_ms=crash_ms,
            window_ms=window_ms,
            stalls=stalls,
            error_stalls=error_stalls,
            no_appendfsync_on_rewrite=no_appendfsync_on_rewrite,
        )
        tl = self._timeline()
        if recovered is None:
            if unavailable_reason is None:
                raise ValueError("recovered is None: give unavailable_reason (why it refused)")
            violations = []
            if not (allow_unavailable or damaged_image or damaged_synced):
                acked = sum(1 for e in self.history if e.outcome is Outcome.OK)
                what = (f"acknowledged {acked} write(s), then refused to start"
                        if acked else "refused to start")
                violations.append(
                    Violation(
                        Rule.AVAILABILITY,
                        f"server {what} after a legal crash: {unavailable_reason}",
                        crash=crash,
                        frontier=f,
                    )
                )
            return Verdict(
                ok=not violations,
                outcome="violation" if violations else "unavailable",
                k=None,
                frontier=f,
                violations=violations,
                executed=tl.n,
                crash=crash,
                unavailable_reason=unavailable_reason,
            )
        if unavailable_reason is not None:
            raise ValueError("unavailable_reason given but recovered is not None")
        rec = recovered.at(recovery_ms)
        k = self._largest_match(rec, recovery_ms)
        counts: list[int] | None = None
        if k is None:
            # Never trust a hash miss alone: the exact pass (needed for the report anyway)
            # decides, so a hash collision or miss can cost time but never a false alarm.
            counts = tl.mismatch_counts(rec, recovery_ms, self.expiry_tolerance_ms)
            zeros = [j for j, m in enumerate(counts) if m == 0]
            k = zeros[-1] if zeros else None
        if damaged_synced:
            if k is not None:  # a prefix: it refused the damaged record and what follows
                return Verdict(True, "consistent", k, f, [], tl.n, crash)
            assert counts is not None
            violation = self._damage_violation(rec, counts, f, recovery_ms, crash)
            return Verdict(False, "violation", k, f, [violation], tl.n, crash)
        if k is not None and k >= f:
            return Verdict(True, "consistent", k, f, [], tl.n, crash)
        if k is not None:
            violation = self._durability_violation(rec, k, f, recovery_ms, crash)
        else:
            assert counts is not None
            violation = self._prefix_violation(rec, counts, f, recovery_ms, crash)
        return Verdict(False, "violation", k, f, [violation], tl.n, crash)

    def _durability_violation(
        self, rec: Snapshot, k: int, f: int, t_ms: int, crash: CrashInfo | None
    ) -> Violation:
        tl = self._timeline()
        tol = self.expiry_tolerance_ms
        diff, count = _diff(tl.raw_state_at(f), rec, t_ms, tol)
        lost = [self.history[tl.exec_hidx[p]] for p in range(k, f)]
        lost_ok = [e for e in lost if e.outcome is Outcome.OK]
        return Violation(
            Rule.DURABILITY,
            f"recovered keyspace is S({k}) but the frontier is F={f}: "
            f"{len(lost_ok)} acknowledged entr{'y' if len(lost_ok) == 1 else 'ies'} lost",
            crash=crash,
            frontier=f,
            closest_k=k,
            diff_k=f,
            diff=tuple(diff),
            differing_keys=count,
            details={
                "lost_entries": [_describe_entry(e) for e in lost[:10]]
                + ([f"... and {len(lost) - 10} more"] if len(lost) > 10 else []),
            },
        )

    def _closest_prefix(
        self, rec: Snapshot, counts: list[int], t_ms: int,
    ) -> tuple[int, int, list[KeyDiff], int]:
        """The prefix S(k) with the fewest differing keys (the longest of those), that count,
        and the diff against it with its number of keys."""
        fewest = min(counts)
        closest = max(k for k, m in enumerate(counts) if m == fewest)
        diff, count = _diff(self._timeline().raw_state_at(closest), rec, t_ms,
                            self.expiry_tolerance_ms)
        return closest, fewest, diff, count

    def _prefix_violation(
        self, rec: Snapshot, counts: list[int], f: int, t_ms: int, crash: CrashInfo | None
    ) -> Violation:
        tl = self._timeline()
        closest, fewest, diff, count = self._closest_prefix(rec, counts, t_ms)
        phantoms = self._phantoms(diff, rec, t_ms)
        details: dict[str, Any] = {}
        if phantoms:
            details["refused_entries"] = [
                _describe_entry(self.history[i]) for i in sorted(set(phantoms.values()))
            ]
            details["phantom_keys"] = [f"db{db} {key!r}" for db, key in sorted(phantoms)]
            rule = Rule.PHANTOM
            message = (
                f"recovered keyspace shows the effect of {len(set(phantoms.values()))} write(s) "
                f"refused with an error (no prefix S(k), k=0..{tl.n}, matches)"
            )
        else:
            rule = Rule.PREFIX_CONSISTENCY
            message = (
                f"recovered keyspace equals no prefix S(k), k=0..{tl.n}; "
                f"closest is S({closest}) with {fewest} differing key(s)"
            )
            if closest < f:
                details["note"] = f"the closest prefix is also below the frontier F={f}"
        return Violation(
            rule,
            message,
            crash=crash,
            frontier=f,
            closest_k=closest,
            diff_k=closest,
            diff=tuple(diff),
            differing_keys=count,
            details=details,
        )

    def _damage_violation(
        self, rec: Snapshot, counts: list[int], f: int, t_ms: int, crash: CrashInfo | None
    ) -> Violation:
        tl = self._timeline()
        closest, fewest, diff, count = self._closest_prefix(rec, counts, t_ms)
        return Violation(
            Rule.DAMAGE,
            f"a checksummed target loaded damaged synced bytes as data: the recovered keyspace "
            f"equals no prefix S(k), k=0..{tl.n}; closest is S({closest}) with {fewest} "
            f"differing key(s)",
            crash=crash,
            frontier=f,
            closest_k=closest,
            diff_k=closest,
            diff=tuple(diff),
            differing_keys=count,
        )

    def _phantoms(
        self, diff: Sequence[KeyDiff], rec: Snapshot, t_ms: int
    ) -> dict[DbKey, int]:
        """Differing keys whose recovered value no executed prefix ever gives that key but the
        history with refused entries applied does: key -> the refused entry responsible."""
        if not any(e.outcome is Outcome.ERROR for e in self.history):
            return {}
        tl = self._timeline()
        aug = self._augmented()
        tol = self.expiry_tolerance_ms
        found: dict[DbKey, int] = {}
        for d in diff:
            dbkey = (d.db, d.key)
            r = rec.get(dbkey)
            if r is None:
                continue  # an absence is a lost write or a hole, not a phantom value
            if any(_matches(v, r, t_ms, tol) for v in tl.key_vals.get(dbkey, ())):
                continue  # the key held this value in some prefix: a mix of prefixes
            ks = aug.key_ks.get(dbkey, [])
            vals = aug.key_vals.get(dbkey, [])
            for i, value in enumerate(vals):
                if _matches(value, r, t_ms, tol):
                    refused = [
                        aug.exec_hidx[k - 1]
                        for k in ks[: i + 1]
                        if self.history[aug.exec_hidx[k - 1]].outcome is Outcome.ERROR
                    ]
                    if refused:
                        found[dbkey] = refused[-1]
                    break
        return found


def _describe_entry(entry: Entry) -> str:
    ack = "" if entry.ack_ms is None else f" ack@{entry.ack_ms}"
    return f"{entry.describe()} executed@{entry.executed_ms}{ack}"


_CHECKERS: weakref.WeakKeyDictionary[History, dict[int, Checker]] = weakref.WeakKeyDictionary()


def _checker_for(history: History, expiry_tolerance_ms: int) -> Checker:
    per_history = _CHECKERS.setdefault(history, {})
    checker = per_history.get(expiry_tolerance_ms)
    if checker is None:
        checker = Checker(history, expiry_tolerance_ms=expiry_tolerance_ms)
        per_history[expiry_tolerance_ms] = checker
    return checker


class RecoveryFacts(TypedDict):
    """The keywords of ``Checker.check`` (the one place they are defined and documented), as
    ``check_recovery`` passes them on."""

    policy: Policy | str
    model: CrashModel | str
    crash_ms: int
    recovery_ms: int
    window_ms: NotRequired[int]
    stalls: NotRequired[Sequence[tuple[int, int]]]
    error_stalls: NotRequired[Sequence[tuple[int, int]]]
    no_appendfsync_on_rewrite: NotRequired[bool]
    unavailable_reason: NotRequired[str | None]
    allow_unavailable: NotRequired[bool]
    damaged_image: NotRequired[bool]
    damaged_synced: NotRequired[bool]
    crash: NotRequired[CrashInfo | None]


def check_recovery(
    history: History,
    recovered: Snapshot | None,
    *,
    expiry_tolerance_ms: int = 0,
    **facts: Unpack[RecoveryFacts],
) -> Verdict:
    """Check one recovery (rules 1, 2, 4; rule 5 alone with `damaged_synced`):
    ``Checker(history).check(recovered, **facts)``
    (see ``Checker.check`` for the keywords), reusing a cached Checker per history object."""
    if not isinstance(history, History):
        raise ValueError(f"history must be a History, got {type(history).__name__}")
    _require_int(expiry_tolerance_ms, "expiry_tolerance_ms")
    return _checker_for(history, expiry_tolerance_ms).check(recovered, **facts)


def check_stability(
    first: Snapshot,
    second: Snapshot | None,
    *,
    at_ms: int | None = None,
    expiry_tolerance_ms: int = 0,
    unavailable_reason: str | None = None,
    crash: CrashInfo | None = None,
) -> Verdict:
    """Rule 3: recovering the recovered state again (no new writes) gives the same keyspace.

    `second` is None when the second recovery refused to start (give `unavailable_reason`);
    that is a stability violation, not mere unavailability: the first recovery accepted this
    state. With `at_ms`, both keyspaces are compared as seen at that time.
    """
    if not isinstance(first, Snapshot):
        raise ValueError(f"first must be a Snapshot, got {type(first).__name__}")
    tol = _require_int(expiry_tolerance_ms, "expiry_tolerance_ms")
    if second is None:
        if unavailable_reason is None:
            raise ValueError("second is None: give unavailable_reason (why it refused)")
        violation = Violation(
            Rule.STABILITY,
            f"the second recovery refused to start: {unavailable_reason}",
            crash=crash,
        )
        return Verdict(False, "violation", None, None, [violation], crash=crash,
                       unavailable_reason=unavailable_reason)
    if not isinstance(second, Snapshot):
        raise ValueError(f"second must be a Snapshot or None, got {type(second).__name__}")
    if at_ms is not None:
        _require_int(at_ms, "at_ms", minimum=None)
        first, second = first.at(at_ms), second.at(at_ms)
    t_ms = at_ms if at_ms is not None else -(2**63)
    diff, count = _diff(first, second, t_ms, tol)
    if count == 0:
        return Verdict(True, "consistent", None, None, [], crash=crash)
    violation = Violation(
        Rule.STABILITY,
        f"a second recovery with no new writes changed {count} key(s)",
        crash=crash,
        diff=tuple(diff),
        differing_keys=count,
        details={"diff_is": "expected = first recovery, recovered = second recovery"},
    )
    return Verdict(False, "violation", None, None, [violation], crash=crash)

