"""``power-posix-metadata`` (``PersistenceModel.POWER_POSIX_METADATA``): the POSIX minimum,
the most pessimistic metadata model. No filesystem measured here is this weak (ext4, xfs and
btrfs all keep more); a finding that appears only under it is labelled so.

Data as in every power model (``_inode``); metadata with only what POSIX promises: no journal,
no order between directories.

* Settling. A namespace operation is *settled* once every directory it changes has been
  fsynced (``fsync_dir`` or ``fsync`` of a directory fd) after it: the parent of the path for
  create, mkdir and unlink; for a rename both parents (one fsync if they are the same
  directory). A rename is atomic, all or nothing, so an fsync of only one of its two
  directories does not settle it. Settled operations are in every image. An fsync of a file
  settles nothing (not even the file's own create).
* Everything else pending may or may not survive, independently, except for one dependency: a
  rename survives only with the pending operation that put the object it moves into its source
  entry (the create, the mkdir or the previous rename of that object). Without it the image
  would name the object twice. That is the only order needed to be well-defined: each
  directory entry shows the last write, in program order, of the surviving operations that
  write it (a create of a name an unkept rename had freed simply takes the name; an unlink
  whose create is unkept leaves the name as it was before both). An fsync that settles a rename
  also settles what it depends on (so the object never has two names).
* Entries belong to directories, not paths: an entry is in the image when its directory is
  reachable from the root there. A file whose create ``fsync_dir(d)`` settled is still lost if
  ``d``'s own mkdir is not settled (fsync the parent too), and the contents of a renamed
  directory follow it (under its old name if the rename did not survive).

A choice names the surviving pending operations in ``CrashChoice.metadata_ops`` (positions among
the ``SimDisk.pending_posix_metadata`` operations, program order; None with ``metadata_kept =
k`` is the first k, the form enumeration and draws give every prefix). Enumeration takes the
prefixes first, then the other closed sets, at most ``ImageLimits.max_metadata_subsets``.

Not modelled: directories that surviving renames put inside each other are unreachable (an
image before fsck), nothing more; a half-done rename (a file under both names or neither).

Representation: by directory entry rather than by path (so a directory's contents follow the
directory, wherever an image puts it): every directory has an id (the root is 0, ``dir_ids``
maps visible paths to ids), ``base`` holds the settled entries per directory id, and
``pending`` the operations not settled yet, each a list of entry writes plus the directories
still to be fsynced (see ``_PosixOp``). An entry is (directory id, name); its value is what it
names: a file (inode number, > 0), a directory (minus its id, < 0), or 0 for "no entry". An
operation is a tuple of entry writes (dir id, name, value): create/mkdir/unlink write one entry,
a rename two (its source := 0, its target := the object), atomically.
"""

from __future__ import annotations

import itertools
import posixpath
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from faults._image import CrashChoice, FileChoice, ImageKind, PersistenceModel

__all__ = ["PosixMetadata", "closed_sets", "count_closed_sets", "is_prefix"]

_POSIX = PersistenceModel.POWER_POSIX_METADATA

_Write = tuple[int, str, int]


class _PosixOp:
    """A namespace operation not settled under power-posix-metadata.

    ``unsynced``: ids of its parent directories not fsynced since it was issued (it is settled
    when this empties). ``dep``: for a rename, ``seq`` of the pending operation that put the
    renamed object into its source entry (the rename is kept only with it), else -1.
    """

    __slots__ = ("dep", "seq", "unsynced", "writes")

    def __init__(self, seq: int, writes: tuple[_Write, ...], unsynced: set[int], dep: int) -> None:
        self.seq = seq
        self.writes = writes
        self.unsynced = unsynced
        self.dep = dep


def posix_namespace(
    base: Mapping[int, Mapping[str, int]], kept: Iterable[tuple[_Write, ...]]
) -> tuple[dict[str, int], set[str]]:
    """The namespace of settled entries `base` plus the writes of `kept` operations (in program
    order), as (file path -> inode, directory paths), resolved from the root: entries of a
    directory no entry reaches are not in the image."""
    over: dict[int, dict[str, int]] = {}
    for writes in kept:
        for did, name, value in writes:
            d = over.get(did)
            if d is None:
                d = over[did] = {}
            d[name] = value
    files: dict[str, int] = {}
    dirs: set[str] = {""}
    seen = {0}
    stack = [(0, "")]
    while stack:
        did, prefix = stack.pop()
        entries: Mapping[str, int] = base.get(did, {})
        changes = over.get(did)
        if changes:
            entries = {**entries, **changes}
        for name, value in entries.items():
            if value == 0:
                continue
            path = f"{prefix}/{name}" if prefix else name
            if value > 0:
                files[path] = value
            elif -value not in seen:  # defensive: a directory has at most one entry
                seen.add(-value)
                dirs.add(path)
                stack.append((-value, path))
    return files, dirs


def posix_deps(ops: Sequence[_PosixOp]) -> list[int]:
    """Per pending operation, the position of the pending operation it depends on, or -1."""
    where = {op.seq: i for i, op in enumerate(ops)}
    return [where.get(op.dep, -1) for op in ops]


def count_closed_sets(deps: Sequence[int]) -> int:
    """How many sets of positions are closed under `deps` (a forest: each position depends on
    at most one earlier one). Per position p: 1 (p left out, and with it everything depending on
    it) + the product of the counts of its dependants (p kept)."""
    under = [1] * len(deps)  # per position: the product over its dependants counted so far
    total = 1
    for p in range(len(deps) - 1, -1, -1):  # dependants come after what they depend on
        count = 1 + under[p]
        if deps[p] >= 0:
            under[deps[p]] *= count
        else:
            total *= count
    return total


def closed_sets(deps: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """Every set of positions closed under `deps`, each once, leaving later positions out
    first (depth-first; the empty set first)."""
    n = len(deps)
    keep = [False] * n
    tried: list[bool] = []  # per decided position: whether "keep" has been tried
    i = 0
    while True:
        if i < n:
            keep[i] = False
            tried.append(False)
            i += 1
            continue
        yield tuple(j for j in range(n) if keep[j])
        while tried:
            i -= 1
            if not tried[-1] and (deps[i] < 0 or keep[deps[i]]):
                tried[-1] = True
                keep[i] = True
                i += 1
                break
            tried.pop()
            keep[i] = False
        else:
            return


def is_prefix(kept: tuple[int, ...]) -> bool:
    return not kept or kept[-1] == len(kept) - 1


class PosixMetadata:
    """The ``power-posix-metadata`` record of one disk (see the module docstring)."""

    __slots__ = ("_last", "_next_did", "_seq", "base", "dir_ids", "pending")

    def __init__(self) -> None:
        self.dir_ids: dict[str, int] = {"": 0}
        self._next_did = 1
        self.base: dict[int, dict[str, int]] = {0: {}}
        self.pending: list[_PosixOp] = []
        self._seq = 0
        # Entry -> seq of the last pending operation that wrote it (to find a rename's dep).
        self._last: dict[tuple[int, str], int] = {}

    def _entry(self, path: str) -> tuple[int, str]:
        return self.dir_ids[posixpath.dirname(path)], posixpath.basename(path)

    def _new_dir(self, path: str) -> int:
        did = self._next_did
        self._next_did += 1
        self.dir_ids[path] = did
        return did

    # -- what the disk tells it

    def load_dir(self, path: str) -> None:
        pdid, name = self._entry(path)
        did = self._new_dir(path)
        self.base[pdid][name] = -did
        self.base[did] = {}

    def load_file(self, path: str, ino: int) -> None:
        pdid, name = self._entry(path)
        self.base[pdid][name] = ino

    def create(self, path: str, ino: int) -> None:
        pdid, name = self._entry(path)
        self._log(((pdid, name, ino),), {pdid})

    def unlink(self, path: str) -> None:
        pdid, name = self._entry(path)
        self._log(((pdid, name, 0),), {pdid})

    def mkdir(self, path: str) -> None:
        pdid, name = self._entry(path)
        self._log(((pdid, name, -self._new_dir(path)),), {pdid})

    def rename(self, src: str, dst: str, ino: int) -> None:
        """A rename of file `ino`, or of a directory (`ino` 0), already checked legal."""
        sdid, sname = self._entry(src)
        ddid, dname = self._entry(dst)
        if ino:
            obj = ino
        else:
            obj = -self.dir_ids[src]
            self.dir_ids.pop(dst, None)  # the replaced (empty) directory has no name any more
            cut = len(src)
            for d in [d for d in self.dir_ids if d == src or d.startswith(src + "/")]:
                self.dir_ids[dst + d[cut:]] = self.dir_ids.pop(d)
        self._log(((sdid, sname, 0), (ddid, dname, obj)), {sdid, ddid}, dep_entry=(sdid, sname))

    def dir_path(self, did: int) -> str | None:
        """The visible path of directory `did`, None if it has none any more."""
        for path, d in self.dir_ids.items():
            if d == did:
                return path
        return None

    def inodes(self) -> set[int]:
        live: set[int] = set()
        for entries in self.base.values():
            live.update(v for v in entries.values() if v > 0)
        for pop in self.pending:
            live.update(v for _, _, v in pop.writes if v > 0)
        return live

    def _log(
        self,
        writes: tuple[_Write, ...],
        dirs: set[int],
        *,
        dep_entry: tuple[int, str] | None = None,
    ) -> None:
        """Record a namespace operation for power-posix-metadata (see ``_PosixOp``)."""
        self._seq += 1
        dep = -1
        if dep_entry is not None:
            # The last pending write of the source entry is the one that put the object there.
            dep = self._last.get(dep_entry, -1)
        op = _PosixOp(self._seq, writes, dirs, dep)
        for did, name, _ in writes:
            self._last[(did, name)] = op.seq
        self.pending.append(op)

    def sync_dir(self, did: int) -> None:
        """fsync of directory `did` under power-posix-metadata: an operation whose parent
        directories have all been fsynced since it was issued is settled, and so is every
        operation a settled one depends on (a rename atomically moves what an earlier pending
        operation put in its source). Settled operations are folded into ``_pbase``; writes of
        pending operations a later settled one overwrote can no longer matter and are dropped
        (an operation left with none is dropped)."""
        pending = self.pending
        if not pending:
            return
        by_seq: dict[int, _PosixOp] | None = None
        settled: set[int] = set()
        for op in pending:
            if did not in op.unsynced:
                continue
            op.unsynced.discard(did)
            if op.unsynced:
                continue
            if by_seq is None:
                by_seq = {o.seq: o for o in pending}
            seq = op.seq
            while seq in by_seq and seq not in settled:
                settled.add(seq)
                seq = by_seq[seq].dep
        if not settled:
            return
        base = self.base
        folded_at: dict[tuple[int, str], int] = {}
        rest: list[_PosixOp] = []
        for op in pending:
            if op.seq not in settled:
                rest.append(op)
                continue
            for d, name, value in op.writes:
                entries = base.get(d)
                if entries is None:
                    entries = base[d] = {}
                if value:
                    entries[name] = value
                else:
                    entries.pop(name, None)
                folded_at[(d, name)] = op.seq
                if self._last.get((d, name)) == op.seq:
                    del self._last[(d, name)]
        for op in rest:
            if any(folded_at.get((d, name), -1) > op.seq for d, name, _ in op.writes):
                op.writes = tuple(
                    w for w in op.writes if folded_at.get((w[0], w[1]), -1) < op.seq
                )
        self.pending = [op for op in rest if op.writes]

    def problems(self, kept: int, ops: Sequence[int]) -> list[str]:
        n = len(self.pending)
        if (
            not all(isinstance(i, int) and not isinstance(i, bool) for i in ops)
            or any(a >= b for a, b in itertools.pairwise(ops))
            or (ops and (ops[0] < 0 or ops[-1] >= n))
        ):
            return [
                f"metadata_ops: must be strictly increasing positions in 0..{n - 1} "
                f"(of {n} pending operations), got {list(ops)!r}"
            ]
        if kept != len(ops):
            return [f"metadata_kept: must be len(metadata_ops) = {len(ops)}, got {kept}"]
        deps = posix_deps(self.pending)
        kept_set = set(ops)
        for i in ops:
            if deps[i] >= 0 and deps[i] not in kept_set:
                return [
                    f"metadata_ops: keeps pending operation {i} (a rename) without operation "
                    f"{deps[i]}, which put what it renames where it found it"
                ]
        return []

    def chooser(
        self, options: Mapping[int, tuple[FileChoice, ...]]
    ) -> Callable[[Callable[[int], int]], CrashChoice]:
        """A function building one legal choice from `pick(n)` in 0..n-1 (0: the least
        surviving), bound to the state now; `options` are the data images of the dirty inodes.
        """
        # A snapshot: writes tuples are replaced, never changed, when operations settle.
        base = {did: dict(entries) for did, entries in self.base.items()}
        writes = [op.writes for op in self.pending]
        deps = posix_deps(self.pending)

        def choose(pick: Callable[[int], int]) -> CrashChoice:
            keep: list[int] = []
            kept_set: set[int] = set()
            for i, d in enumerate(deps):
                # Each operation whose dependency is kept survives or not (0: not).
                if (d < 0 or d in kept_set) and pick(2):
                    keep.append(i)
                    kept_set.add(i)
            kept = tuple(keep)
            ns = posix_namespace(base, (writes[i] for i in kept))[0]
            files = []
            for ino in sorted(set(ns.values())):
                opts = options.get(ino)
                if opts:
                    fc = opts[pick(len(opts))]
                    if fc.kind is not ImageKind.DURABLE:
                        files.append(fc)
            return CrashChoice(_POSIX, len(kept), tuple(files), None if is_prefix(kept) else kept)

        return choose

    def outcomes(self, cap: int) -> tuple[list[tuple[int, tuple[int, ...] | None]], int]:
        """(kept, metadata_ops) of at most `cap` legal outcomes, prefixes first, and how many
        closed sets were left out."""
        n = len(self.pending)
        deps = posix_deps(self.pending)
        out: list[tuple[int, tuple[int, ...] | None]] = [(k, None) for k in range(min(n + 1, cap))]
        if len(out) < cap:
            for kept in closed_sets(deps):
                if is_prefix(kept):
                    continue
                out.append((len(kept), kept))
                if len(out) >= cap:
                    break
        return out, count_closed_sets(deps) - len(out)

    def namespace(
        self, kept: int, ops: tuple[int, ...] | None
    ) -> tuple[dict[str, int], set[str]]:
        """(file path -> inode, directory paths) of an image keeping these pending operations
        (already validated)."""
        chosen: Iterable[int] = range(kept) if ops is None else ops
        return posix_namespace(self.base, (self.pending[i].writes for i in chosen))
