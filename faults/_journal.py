"""The ordered namespace record the ext4, xfs and btrfs models share (and eager metadata reads).

Rules common to the journal models (each model's own rules are at the top of its module:
``_model_ext4``, ``_model_xfs``, ``_model_btrfs``; ``power-posix-metadata`` keeps its own record
in ``_model_posix``):

* Every namespace operation (create, rename, unlink, mkdir) is recorded in program order. An
  operation is *committed* (durable) or *pending*. A model's sync rules commit operations; the
  committed ones are in every crash image.
* A crash image keeps every committed operation plus a *prefix* of the pending ones, in program
  order (``CrashChoice.metadata_kept`` of them, 0 to all): the kernel may commit in the
  background at any moment (ext4 every 5 s, xfs and btrfs every 30 s), and what a commit writes
  is everything before it. Keeping fewer is always legal, so a model that commits less than the
  kernel only allows more states; one that commits more would miss states the kernel produces.
* The image applies its operations in program order to the durable namespace; an operation
  whose source is not there (its create was not kept) or whose target directory is not there is
  skipped. So a rename kept without the create of what it moves changes nothing, and a create
  in a directory whose mkdir was not kept is lost with it.
* ext4 and xfs commit everything pending at once (a journal commit), so their committed
  operations are always a prefix and are folded into the durable namespace at once. btrfs
  commits one inode's operations out of order (its per-inode log); a committed operation waits
  in the record behind earlier pending ones until they are committed too.

``power-eager-metadata`` (LazyFS's model, the most optimistic): every namespace operation is
durable when it returns; its image is the ext4 record with every pending operation kept.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable

__all__ = ["CREATE", "MKDIR", "RENAME", "UNLINK", "Journal", "NsOp", "apply_op", "parent"]

CREATE, RENAME, UNLINK, MKDIR = "create", "rename", "unlink", "mkdir"

# A namespace operation: (kind, path, rename target or "", inode number; 0 for a directory).
NsOp = tuple[str, str, str, int]

# Per-operation states in ``Journal.state``.
PENDING, COMMITTED, LOGGED = 0, 1, 2


def parent(path: str) -> str:
    return posixpath.dirname(path)


def changes_dir(op: NsOp, d: str) -> bool:
    """Whether `op` changes directory `d`'s entries or `d` itself (its creation or rename)."""
    kind, p1, p2, _ = op
    if parent(p1) == d or p1 == d:
        return True
    return kind == RENAME and (parent(p2) == d or p2 == d)


def apply_op(op: NsOp, files: dict[str, int], dirs: set[str]) -> None:
    """Apply one namespace operation to a namespace; skipped if its source (or the target's
    parent) is not there."""
    kind, p1, p2, ino = op
    if kind == CREATE:
        if parent(p1) in dirs:
            files[p1] = ino
    elif kind == UNLINK:
        if files.get(p1) == ino:
            del files[p1]
    elif kind == MKDIR:
        if parent(p1) in dirs:
            dirs.add(p1)
    elif parent(p2) in dirs:
        if ino:
            if files.get(p1) == ino:
                files[p2] = files.pop(p1)
        elif p1 in dirs and p2 not in files:
            prefix = p1 + "/"
            cut = len(p1)
            for d in [d for d in dirs if d == p1 or d.startswith(prefix)]:
                dirs.discard(d)
                dirs.add(p2 + d[cut:])
            for p in [p for p in files if p.startswith(prefix)]:
                files[p2 + p[cut:]] = files.pop(p)


class Journal:
    """Namespace operations in program order over a durable namespace (see the module
    docstring). ``ops[i]`` is in state ``state[i]``; the leading committed operations are
    folded into ``files``/``dirs`` as soon as they are committed."""

    __slots__ = ("commits", "dirs", "files", "ops", "pending", "state")

    def __init__(self) -> None:
        self.files: dict[str, int] = {}
        self.dirs: set[str] = {""}
        self.ops: list[NsOp] = []
        self.state: list[int] = []
        self.pending = 0  # operations not committed (the ones a choice keeps a prefix of)
        # Journal commits so far (also of no namespace operation: a commit writes every
        # inode's new size too, which SimDisk reads off this count).
        self.commits = 0

    def load(self, files: Iterable[tuple[str, int]], dirs: Iterable[str]) -> None:
        """Durable state a disk boots with."""
        self.dirs.update(dirs)
        self.files.update(files)

    def log(self, op: NsOp) -> None:
        self.ops.append(op)
        self.state.append(PENDING)
        self.pending += 1

    def commit_all(self) -> None:
        """A journal commit: everything recorded is durable."""
        self.commits += 1
        for op in self.ops:
            apply_op(op, self.files, self.dirs)
        self.ops.clear()
        self.state.clear()
        self.pending = 0

    def commit(self, positions: Iterable[int]) -> None:
        """Commit these operations (out of order), then fold the committed prefix."""
        state = self.state
        for i in positions:
            if state[i] != COMMITTED:
                state[i] = COMMITTED
                self.pending -= 1
        done = 0
        while done < len(state) and state[done] == COMMITTED:
            apply_op(self.ops[done], self.files, self.dirs)
            done += 1
        if done:
            del self.ops[:done]
            del state[:done]

    def namespace(self, kept: int) -> tuple[dict[str, int], set[str]]:
        """(file path -> inode, directory paths) of an image keeping the committed operations
        and the first `kept` pending ones."""
        files = dict(self.files)
        dirs = set(self.dirs)
        left = kept
        for op, st in zip(self.ops, self.state, strict=True):
            if st == COMMITTED:
                apply_op(op, files, dirs)
            elif left > 0:
                left -= 1
                apply_op(op, files, dirs)
            elif self.pending == len(self.ops):
                break  # nothing committed further on
        return files, dirs

    def inodes(self) -> set[int]:
        """Inodes the durable namespace or a recorded operation names."""
        live = set(self.files.values())
        live.update(op[3] for op in self.ops)
        return live
