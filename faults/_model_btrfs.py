"""``power-btrfs`` (``PersistenceModel.POWER_BTRFS``): the metadata of btrfs, whose fsync writes
a per-inode log (the log tree) instead of committing the whole filesystem.

Calibrated against the kernel's own btrfs (FACTS: "What real Linux filesystems keep after a
power loss"). The rules:

* Namespace operations are recorded in program order (``_journal``). A crash keeps every
  committed operation plus a prefix of the pending ones (the transaction commit every 30 s
  writes everything before it).
* ``fsync(fd)`` and ``fdatasync(fd)`` of a file commit that file's own names: its create and
  its renames (a rename over another file replaces it), and the mkdir of every new directory
  on its path. Nothing else: ``create A; fsync(P)`` leaves A pending (gone if the crash keeps
  no pending operation); so does a rename or an unlink of another file (``rename(C, E);
  fsync(P)`` may leave C; ``unlink(C); fsync(P)`` may leave C there).
* An inode once fsynced is *logged* (in the current transaction): a later rename of it is
  written to the log at once and becomes durable with the next log sync, that is the next fsync
  or fdatasync of a file or of a directory that has something to log. Measured: ``fsync(B);
  rename(B, C); fsync(P)`` with P unrelated leaves C as the new file (btrfs_log_new_name); with
  no fsync after the rename, the rename may be lost. An fsync of a file with nothing new (no
  dirty data, no pending name) does not log that file (``fdatasync(A); rename(A, G);
  fdatasync(B)`` with A and B clean may lose the rename, measured); if the file is already
  logged it returns without syncing the log; so, here, does
  an fsync of a directory with no pending change (not measured; leaving the log pending is the
  safe side).
* ``fsync_dir(d)`` commits every pending operation that changes ``d`` (an entry in it, its own
  mkdir or rename), with what each depends on (the create and earlier renames of the file it
  names) and the mkdir of every new directory on ``d``'s path. A file renamed into ``d`` from
  another directory gets its new name only: the removal of the old one stays pending (it is
  durable with an fsync of the source directory or the prefix), so an image may show the file
  under both names (measured: ``rename(A/old, B/f); fsync_dir(B)`` may keep ``A/old`` and
  ``B/f``). A file created in ``d`` whose
  data was never synced survives with its durable contents (empty for a new file).
* An fsync commits no other file's data (data is per inode, ``_inode``).

Not modelled: the transaction commit as a time. A logged inode stays logged for the rest of
the run (btrfs forgets it at the next transaction commit, after which a rename of it waits
for the commit; the model would make such a rename durable at the next fsync, so keep
workloads that depend on it under 30 s, as the calibration's are). Unlinks of a logged inode
and renames of directories are not logged early (they wait for their own fsync or for the
prefix), which allows more states, never fewer. A btrfs fsync that falls back to a full
transaction commit (after some directory renames) is modelled as the log sync it replaces.
"""

from __future__ import annotations

from faults._journal import (
    COMMITTED,
    CREATE,
    LOGGED,
    MKDIR,
    PENDING,
    RENAME,
    UNLINK,
    Journal,
    NsOp,
    changes_dir,
)
from faults._journal import parent as parent_of

__all__ = ["BtrfsLog"]


class BtrfsLog(Journal):
    """btrfs's per-inode log (see the module docstring)."""

    __slots__ = ("logged",)

    def __init__(self) -> None:
        super().__init__()
        self.logged: set[int] = set()  # inodes fsynced in the current transaction

    def log(self, op: NsOp) -> None:
        super().log(op)
        if op[0] == RENAME and op[3] in self.logged:
            self.state[-1] = LOGGED

    def sync_file(
        self, ino: int, data_dirty: bool, *, datasync: bool, in_place_only: bool = False
    ) -> None:
        """An fsync (or fdatasync) of inode `ino`: its names, their directories' changes, their
        new directories, the log."""
        # btrfs logs the inode's names either way, and an overwrite is new extents (COW).
        del datasync, in_place_only
        chosen: set[int] = set()
        targets: list[str] = []
        renamed_into: set[str] = set()
        for i, (kind, p1, p2, op_ino) in enumerate(self.ops):
            if op_ino == ino and kind in (CREATE, RENAME) and self.state[i] != COMMITTED:
                chosen.add(i)
                targets.append(p2 if kind == RENAME else p1)
                if kind == RENAME:
                    renamed_into.add(parent_of(p2))
        # An inode already logged with nothing new: btrfs returns without syncing the log. An
        # inode with nothing new is not logged by its fsync (measured: ``fdatasync(A);
        # rename(A, G); fdatasync(B)`` with A and B clean may lose the rename).
        sync_log = bool(chosen) or data_dirty or ino not in self.logged
        if chosen or data_dirty:
            self.logged.add(ino)
        # A file renamed into `d` makes btrfs log `d`'s changes too (measured: ``create A/f;
        # rename(B/old, A/old); fsync(A/old)`` keeps A/f; ``unlink(A/old); rename(B/old, A/f);
        # fdatasync(A/f)`` never shows A/old again). A new file does not (``create A/f;
        # create A/g; fsync(A/g)`` may lose A/f).
        for d in sorted(renamed_into):
            chosen = self._split(chosen | self._dir_ops(d), d, keep=ino)
        self._commit_with(chosen, [parent_of(t) for t in targets], sync_log=sync_log)

    def sync_dir(self, path: str) -> None:
        """An fsync of directory `path`: its entries, what they name, its path, the log."""
        chosen = self._split(self._dir_ops(path), path, keep=0)
        # A directory with nothing to log is not known to sync the log: left pending (safe).
        self._commit_with(chosen, [path], sync_log=bool(chosen))

    def _dir_ops(self, path: str) -> set[int]:
        """The pending operations an fsync of directory `path` logs: those that change it, and
        every name operation (create, rename, unlink) of the files they name, before or after
        (btrfs logs such a file with its current names: ``rename(B/old, A/g); rename(A/g,
        A/f); fsync_dir(B)`` keeps A/f, measured)."""
        chosen: set[int] = set()
        names: set[int] = set()
        for i, op in enumerate(self.ops):
            if self.state[i] != COMMITTED and changes_dir(op, path):
                chosen.add(i)
                if op[3]:
                    names.add(op[3])
        for i, op in enumerate(self.ops):
            if self.state[i] != COMMITTED and op[3] in names and op[0] != MKDIR:
                chosen.add(i)
        return chosen

    def _split(self, chosen: set[int], path: str, *, keep: int) -> set[int]:
        """A file with a durable name renamed into `path` from another directory (not inode
        `keep`): the log has its new entry, not the removal of the old one (that waits for an
        fsync of the source directory), so an image may show the file under both names
        (measured: ``rename(A/old, B/f); fsync_dir(B)`` may keep A/old and B/f). The rename
        becomes a committed create of the new name and a pending unlink of the old one. Not
        when another logged operation changes the source directory (btrfs then logs it too:
        ``rename(A/old, B/f); rename(B/old, A/old); fsync_dir(A)`` never shows B/old)."""
        for i in sorted(chosen, reverse=True):
            kind, p1, p2, op_ino = self.ops[i]
            if (kind == RENAME and op_ino and op_ino != keep and self.state[i] == PENDING
                    and parent_of(p1) != path and parent_of(p2) == path
                    and not any(op[3] == op_ino for op in self.ops[:i])
                    and not any(j != i and changes_dir(self.ops[j], parent_of(p1))
                                for j in chosen)):
                self.ops[i] = (CREATE, p2, "", op_ino)
                self.ops.insert(i + 1, (UNLINK, p1, "", op_ino))
                self.state.insert(i + 1, PENDING)
                self.pending += 1
                chosen = {j + 1 if j > i else j for j in chosen}
        return chosen

    def _commit_with(self, chosen: set[int], dirs: list[str], *, sync_log: bool) -> None:
        """Commit `chosen`, the pending mkdirs of `dirs` and their ancestors, and (`sync_log`)
        every operation already written to the log."""
        ancestors: set[str] = set()
        for d in dirs:
            while d and d not in ancestors:
                ancestors.add(d)
                d = parent_of(d)
        for i, (kind, p1, _, _) in enumerate(self.ops):
            st = self.state[i]
            if (st == LOGGED and sync_log) or (
                st != COMMITTED and kind == MKDIR and p1 in ancestors
            ):
                chosen.add(i)
        if chosen:
            self.commit(chosen)
