"""``power-ext4`` (``PersistenceModel.POWER``, the default power model; ``power`` is an alias):
the metadata of ext4 in its default mode (data=ordered, delayed allocation; fast_commit measured
the same).

Calibrated against the kernel's own ext4 (FACTS: "What real Linux filesystems keep after a
power loss"). The rules:

* Namespace operations (create, rename, unlink, mkdir) go into one journal in program order.
  A *journal commit* makes every operation recorded so far durable, whichever file or directory
  they touch; a crash keeps every committed operation plus a prefix of the pending ones (the
  background commit every 5 s; see ``_journal``).
* ``fsync(fd)`` commits when the file has anything not committed: dirty data or size, or a
  pending namespace operation on its inode (its create, a rename of it, an unlink of it).
* ``fdatasync(fd)`` commits only when the file has dirty data or size, or its create is
  pending (a new inode is in the running transaction for fdatasync too). A rename is not data:
  ``fsync(B); rename(B, C); fdatasync(C)`` commits nothing, and the rename may be lost.
* ``fsync_dir(d)`` (or ``fsync`` of a directory fd) always commits the whole journal, even when
  nothing pending changes ``d``: ext4 journals a directory like data=journal, and its fsync is a
  forced commit (measured: ``mkdir A/d; fsync_dir(B)`` keeps ``A/d``; so do an unrelated
  rename or unlink).
* An fsync whose file was only overwritten inside its durable size (no new size, no
  truncate) may commit nothing, so the model does not commit for it: the kernel journals such
  a file only when its mtime changed, which it does not within one clock tick (measured, both
  ways: ``rename(A/old, A/g); unlink(A/g); overwrite B/old; fsync(B/old)`` kept A/old in one
  run; ``mkdir A/d; overwrite A/old; fsync(A/old)`` kept A/d in one run and not in another).
* An fsync or fdatasync with nothing to commit commits nothing (jbd2 waits for the
  transaction the inode last changed in, which is already on disk). So ``create A;
  fsync(P)`` with P clean leaves A pending (a crash may or may not keep it); with P written
  since its last sync, A is committed.
* A commit makes every file's last pending ftruncate durable (the size is metadata), not
  its data (``_inode``: the block holding the new end goes with it, an ordered write); a size
  that a write grew inside the last allocated block may be committed before its data (zeros).
* A commit makes no other file's data durable: data is per inode (``_inode``). A committed
  create of a file whose data was never synced survives with its durable contents (empty for
  a new file: delayed allocation had not written its blocks).

Not modelled: the 5 s commit timer as a time (any prefix may have been committed, at any
moment); a background commit that starts between the file's last change and a later namespace
operation (the fsync then waits only for that earlier transaction, and the later operation is
not durable; the model commits everything recorded, which is what the kernel does without that
race, as measured; the state with the race is one the model does not allow); data=journal and
data=writeback; ``auto_da_alloc`` (ext4 flushes the data of a file renamed over another or
truncated to 0 at the next commit; the model does not, which allows more states, never fewer);
fast_commit's ineligible operations (all of them commit fully here).
"""

from __future__ import annotations

from typing import ClassVar

from faults._journal import CREATE, Journal, changes_dir

__all__ = ["Ext4Journal"]


class Ext4Journal(Journal):
    """The ext4 journal (see the module docstring)."""

    __slots__ = ()

    # Whether fdatasync commits a pending rename or unlink of the file (xfs: yes).
    datasync_commits_names: ClassVar[bool] = False

    def sync_file(
        self, ino: int, data_dirty: bool, *, datasync: bool, in_place_only: bool = False
    ) -> None:
        """An fsync (or fdatasync) of inode `ino`, whose data was dirty before it
        (`in_place_only`: only overwritten inside its durable size)."""
        if (data_dirty and not in_place_only) or (
            self.pending and self._names_pending(ino, datasync)
        ):
            self.commit_all()

    # Whether an fsync of a directory commits the whole journal even when nothing pending
    # changes it (ext4: yes, a directory is journalled like data=journal; xfs: no).
    dir_sync_commits_all: ClassVar[bool] = True

    def sync_dir(self, path: str) -> None:
        """An fsync of directory `path`."""
        if self.dir_sync_commits_all or any(changes_dir(op, path) for op in self.ops):
            self.commit_all()

    def _names_pending(self, ino: int, datasync: bool) -> bool:
        only_create = datasync and not self.datasync_commits_names
        return any(i == ino and (kind == CREATE or not only_create)
                   for kind, _, _, i in self.ops)
