"""The history of writes submitted to a server, in execution order, with their outcomes."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, overload

from harness.oracle._snapshot import DB_COUNT, b2s, s2b

__all__ = ["Entry", "History", "Outcome"]

FORMAT = "aofcrash-history"
VERSION = 1

# Context and transaction framing are not entries: db= carries SELECT, a block carries MULTI/EXEC.
_NOT_ENTRY_COMMANDS = {b"select", b"multi", b"exec", b"discard"}


class Outcome(enum.Enum):
    """What the client learned about a submitted write."""

    OK = "ok"  # a reply was received (the write was acknowledged)
    ERROR = "error"  # refused (e.g. MISCONF, EXECABORT): it must have had no effect
    UNKNOWN = "unknown"  # no reply (yet, or ever: the server crashed first)


@dataclass(frozen=True, slots=True)
class Entry:
    """One submitted write: a single command or the commands of one MULTI/EXEC block."""

    index: int
    commands: tuple[tuple[bytes, ...], ...]
    db: int
    executed_ms: int
    client: int = 0
    during_rewrite: bool = False
    outcome: Outcome = Outcome.UNKNOWN
    ack_ms: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "commands": [[b2s(arg) for arg in argv] for argv in self.commands],
            "db": self.db,
            "executed_ms": self.executed_ms,
            "client": self.client,
            "during_rewrite": self.during_rewrite,
            "outcome": self.outcome.value,
            "ack_ms": self.ack_ms,
        }

    def describe(self) -> str:
        """A short human form: ``#3 db0 SET k v`` or ``#4 db0 MULTI[INCR a; INCR b]``."""
        def one(argv: tuple[bytes, ...]) -> str:
            text = " ".join(arg.decode("latin-1") for arg in argv)
            return text if len(text) <= 60 else text[:57] + "..."

        body = one(self.commands[0]) if len(self.commands) == 1 else (
            "MULTI[" + "; ".join(one(c) for c in self.commands) + "]"
        )
        return f"#{self.index} db{self.db} {body} ({self.outcome.value})"


def _require_int(value: object, name: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _normalise_commands(commands: object) -> tuple[tuple[bytes, ...], ...]:
    if isinstance(commands, bytes | str) or not isinstance(commands, Sequence):
        raise ValueError("commands must be a sequence of commands (each a sequence of bytes)")
    if not commands:
        raise ValueError("commands must contain at least one command")
    out: list[tuple[bytes, ...]] = []
    for i, argv in enumerate(commands):
        if isinstance(argv, bytes | str) or not isinstance(argv, Sequence) or not argv:
            raise ValueError(f"commands[{i}] must be a non-empty sequence of bytes, got {argv!r}")
        args: list[bytes] = []
        for j, arg in enumerate(argv):
            if not isinstance(arg, bytes | bytearray | memoryview):
                raise ValueError(f"commands[{i}][{j}] must be bytes, got {type(arg).__name__}")
            args.append(bytes(arg))
        if args[0].lower() in _NOT_ENTRY_COMMANDS:
            raise ValueError(
                f"commands[{i}]: {args[0].decode('latin-1').upper()} is not an entry "
                "(pass the selected db as db=, and the commands inside MULTI/EXEC as one entry)"
            )
        out.append(tuple(args))
    return tuple(out)


def _coerce_outcome(outcome: object) -> Outcome:
    if isinstance(outcome, Outcome):
        return outcome
    try:
        return Outcome(outcome)
    except ValueError:
        choices = ", ".join(repr(o.value) for o in Outcome)
        raise ValueError(f"outcome must be one of {choices}, got {outcome!r}") from None


class _EntriesView(Sequence[Entry]):
    __slots__ = ("_items",)

    def __init__(self, items: list[Entry]) -> None:
        self._items = items

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> Entry: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Entry]: ...

    def __getitem__(self, index: int | slice) -> Entry | Sequence[Entry]:
        if isinstance(index, slice):
            return tuple(self._items[index])
        return self._items[index]

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._items)

    def __repr__(self) -> str:
        return f"<{len(self._items)} history entries>"


class History:
    """Every write submitted, in execution order, each with its outcome.

    ``submit`` records an entry (outcome UNKNOWN until resolved); ``resolve`` sets its outcome.
    The executed sequence — the entries that count for ``S(k)`` — is every entry not refused with
    an ERROR, in order. Entries must be submitted in the order the server executed them, and
    ``executed_ms`` never goes backwards.

    JSON (``to_dict``/``from_dict``): bytes are latin-1 strings (one code point per byte).
    """

    def __init__(self) -> None:
        self._entries: list[Entry] = []
        # Bumped whenever an entry leaves the executed sequence (resolved as ERROR), so caches
        # built over the executed sequence know they are stale.
        self._retractions = 0
        self._revision = 0  # bumped on every change (submit or resolve)

    def __repr__(self) -> str:
        return f"History({len(self._entries)} entries)"

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries)

    def __getitem__(self, index: int) -> Entry:
        return self._entries[index]

    @property
    def entries(self) -> Sequence[Entry]:
        """A live read-only view of the entries (O(1); copy it with tuple() to freeze it)."""
        return _EntriesView(self._entries)

    @property
    def retractions(self) -> int:
        """How many entries were resolved as ERROR (left the executed sequence)."""
        return self._retractions

    @property
    def revision(self) -> int:
        """Changes with every submit and resolve: caches keyed on it are never stale."""
        return self._revision

    def submit(
        self,
        commands: Sequence[Sequence[bytes]],
        *,
        db: int,
        executed_ms: int,
        client: int = 0,
        during_rewrite: bool = False,
    ) -> int:
        """Record a write executed at `executed_ms` in `db`; returns its entry index."""
        normalised = _normalise_commands(commands)
        _require_int(db, "db")
        if db >= DB_COUNT:
            raise ValueError(f"db must be in 0..{DB_COUNT - 1}, got {db}")
        _require_int(executed_ms, "executed_ms")
        _require_int(client, "client")
        if not isinstance(during_rewrite, bool):
            raise ValueError(f"during_rewrite must be a bool, got {type(during_rewrite).__name__}")
        if self._entries and executed_ms < self._entries[-1].executed_ms:
            raise ValueError(
                f"executed_ms must not go backwards: {executed_ms} < "
                f"{self._entries[-1].executed_ms} of entry {len(self._entries) - 1}"
            )
        index = len(self._entries)
        self._revision += 1
        self._entries.append(
            Entry(index, normalised, db, executed_ms, client, during_rewrite)
        )
        self._submitted(index)
        return index

    def _submitted(self, index: int) -> None:
        """Hook: entry `index` was just submitted (a recording subclass notes where)."""

    def _resolved(self, index: int) -> None:
        """Hook: entry `index` was just resolved."""

    def executed_later(self, index: int, at_ms: int) -> None:
        """A pending write queued before the event loop ran: it executes at `at_ms` (the
        iteration that runs it), not when it was submitted. Expiry depends on it: an APPEND
        queued while its key is alive may run after the key expired."""
        _require_int(index, "index")
        _require_int(at_ms, "at_ms")
        if index >= len(self._entries):
            raise ValueError(f"index {index} is out of range (history has {len(self)} entries)")
        entry = self._entries[index]
        if entry.outcome is not Outcome.UNKNOWN:
            raise ValueError(f"entry {index} is already resolved as {entry.outcome.value}")
        after = self._entries[index + 1] if index + 1 < len(self._entries) else None
        if at_ms < entry.executed_ms or (after is not None and after.executed_ms < at_ms):
            # Entries stay in execution order: move the later ones first.
            raise ValueError(f"executed_ms of entry {index} must stay in order, got {at_ms}")
        if at_ms != entry.executed_ms:
            self._revision += 1
            self._entries[index] = replace(entry, executed_ms=at_ms)

    def resolve(self, index: int, outcome: Outcome | str, *, at_ms: int | None = None) -> None:
        """Set the outcome of a pending entry; `at_ms` is the ack time (required for OK)."""
        _require_int(index, "index")
        if index >= len(self._entries):
            raise ValueError(f"index {index} is out of range (history has {len(self)} entries)")
        result = _coerce_outcome(outcome)
        entry = self._entries[index]
        if entry.outcome is not Outcome.UNKNOWN:
            raise ValueError(f"entry {index} is already resolved as {entry.outcome.value}")
        if at_ms is not None:
            _require_int(at_ms, "at_ms")
            if at_ms < entry.executed_ms:
                raise ValueError(
                    f"at_ms {at_ms} is before the entry's executed_ms {entry.executed_ms}"
                )
        elif result is Outcome.OK:
            raise ValueError("at_ms (the ack time) is required for outcome ok")
        if result is Outcome.ERROR:
            self._retractions += 1
        self._revision += 1
        self._entries[index] = replace(entry, outcome=result, ack_ms=at_ms)
        self._resolved(index)

    def executed_indices(self) -> list[int]:
        """History indices of the executed sequence (every entry not refused), in order."""
        return [e.index for e in self._entries if e.outcome is not Outcome.ERROR]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "bytes_encoding": "latin-1",
            "entries": [e.to_dict() for e in self._entries],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> History:
        if data.get("format") != FORMAT:
            raise ValueError(f"format must be {FORMAT!r}, got {data.get('format')!r}")
        if data.get("version") != VERSION:
            raise ValueError(f"version must be {VERSION}, got {data.get('version')!r}")
        history = cls()
        rows = data.get("entries")
        if not isinstance(rows, list):
            raise ValueError("entries must be a list")
        for i, row in enumerate(rows):
            try:
                if row.get("index") != i:
                    raise ValueError(f"index must be {i}, got {row.get('index')!r}")
                commands = [[s2b(arg) for arg in argv] for argv in row["commands"]]
                history.submit(
                    commands,
                    db=row["db"],
                    executed_ms=row["executed_ms"],
                    client=row.get("client", 0),
                    during_rewrite=row.get("during_rewrite", False),
                )
                outcome = _coerce_outcome(row.get("outcome", "unknown"))
                if outcome is not Outcome.UNKNOWN or row.get("ack_ms") is not None:
                    history.resolve(i, outcome, at_ms=row.get("ack_ms"))
            except (KeyError, TypeError, AttributeError, ValueError) as exc:
                raise ValueError(f"entries[{i}]: {exc}") from exc
        return history

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str) -> History:
        return cls.from_dict(json.loads(text))
