"""``power-xfs`` (``PersistenceModel.POWER_XFS``): the metadata of xfs (its metadata log,
delayed logging).

Calibrated against the kernel's own xfs (FACTS: "What real Linux filesystems keep after a power
loss"). The rules are ext4's (``_model_ext4``: one journal in program order, a commit makes
every recorded namespace operation durable, a crash keeps the committed ones plus a prefix of
the pending ones, data is per inode) except for fdatasync and directory fsyncs:

* ``fsync(fd)`` and ``fdatasync(fd)`` both commit when the file has dirty data or size, or a
  pending namespace operation on its inode. A rename logs the inode's core, which fdatasync
  forces too: ``fsync(B); rename(B, C); fdatasync(C)`` makes the rename durable (on ext4 it
  may be lost).
* ``fsync_dir(d)`` commits only when a pending operation changes ``d`` (on ext4 it always
  commits).
* An fsync with nothing to commit commits nothing.
* A commit makes every file's last pending ftruncate durable: a shrinking one over the durable
  data, a growing one over the visible data (xfs flushes a file before growing it).

Not modelled: the 30 s log timer as a time (any prefix may have been committed); xfs's
"flush on close after truncate" heuristics (more states allowed, never fewer).
"""

from __future__ import annotations

from typing import ClassVar

from faults._model_ext4 import Ext4Journal

__all__ = ["XfsJournal"]


class XfsJournal(Ext4Journal):
    """The xfs log (see the module docstring)."""

    __slots__ = ()

    datasync_commits_names: ClassVar[bool] = True
    dir_sync_commits_all: ClassVar[bool] = False
