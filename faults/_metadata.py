"""Every metadata model of one disk, kept side by side: a SimDisk does not know which model a
crash will be asked under, so each namespace operation and each sync is told to all of them.

Which model stands for what (each model's rules are at the top of its module):

* ``power-ext4`` (``POWER``, default; alias ``power``): ``_model_ext4``.
* ``power-xfs``: ``_model_xfs``.
* ``power-btrfs``: ``_model_btrfs``.
* ``power-posix-metadata``: ``_model_posix`` (the POSIX minimum, most pessimistic).
* ``power-eager-metadata``: every operation durable at once (``_journal``; most optimistic).
* ``process``: the visible namespace.
"""

from __future__ import annotations

from faults._image import CrashChoice, ImageLimits, PersistenceModel
from faults._journal import CREATE, MKDIR, RENAME, UNLINK, Journal, NsOp
from faults._model_btrfs import BtrfsLog
from faults._model_ext4 import Ext4Journal
from faults._model_posix import PosixMetadata
from faults._model_xfs import XfsJournal

__all__ = ["Metadata"]

_M = PersistenceModel
_POSIX = _M.POWER_POSIX_METADATA

Outcome = tuple[int, tuple[int, ...] | None]


class Metadata:
    """The namespace records of every persistence model for one disk."""

    __slots__ = ("btrfs", "ext4", "posix", "xfs")

    def __init__(self) -> None:
        self.ext4 = Ext4Journal()
        self.xfs = XfsJournal()
        self.btrfs = BtrfsLog()
        self.posix = PosixMetadata()

    def _journals(self) -> tuple[Ext4Journal, XfsJournal, BtrfsLog]:
        return self.ext4, self.xfs, self.btrfs

    # -- what happened on the disk

    def load(self, files: dict[str, int], dirs: list[str]) -> None:
        """The durable state a disk boots with (`dirs` parents first)."""
        for d in dirs:
            self.posix.load_dir(d)
        for path, ino in sorted(files.items()):
            self.posix.load_file(path, ino)
        for j in self._journals():
            j.load(files.items(), dirs)

    def _log(self, op: NsOp) -> None:
        for j in self._journals():
            j.log(op)

    def create(self, path: str, ino: int) -> None:
        self._log((CREATE, path, "", ino))
        self.posix.create(path, ino)

    def rename(self, src: str, dst: str, ino: int) -> None:
        """A rename of file `ino` or of a directory (`ino` 0); call before the move."""
        self._log((RENAME, src, dst, ino))
        self.posix.rename(src, dst, ino)

    def unlink(self, path: str, ino: int) -> None:
        self._log((UNLINK, path, "", ino))
        self.posix.unlink(path)

    def mkdir(self, path: str) -> None:
        self._log((MKDIR, path, "", 0))
        self.posix.mkdir(path)

    def sync_file(
        self, ino: int, data_dirty: bool, *, datasync: bool, in_place_only: bool = False
    ) -> None:
        for j in self._journals():
            j.sync_file(ino, data_dirty, datasync=datasync, in_place_only=in_place_only)

    def sync_dir(self, did: int) -> None:
        path = self.posix.dir_path(did)
        if path is not None:
            for j in self._journals():
                j.sync_dir(path)
        self.posix.sync_dir(did)

    def commits(self) -> tuple[int, int]:
        """How many journal commits ext4's and xfs's records have made so far."""
        return self.ext4.commits, self.xfs.commits

    def dir_id(self, path: str) -> int:
        return self.posix.dir_ids[path]

    def inodes(self) -> set[int]:
        """Inodes some model's namespace (durable or pending) names."""
        live = self.posix.inodes()
        for j in self._journals():
            live |= j.inodes()
        return live

    # -- what a crash may keep

    def journal(self, model: PersistenceModel) -> Journal:
        """The record a model's choices count in (eager and process: ext4's, all kept)."""
        if model is _M.POWER_XFS:
            return self.xfs
        if model is _M.POWER_BTRFS:
            return self.btrfs
        return self.ext4

    def pending(self, model: PersistenceModel) -> int:
        if model is _POSIX:
            return len(self.posix.pending)
        return self.journal(model).pending

    def outcomes(self, model: PersistenceModel, limits: ImageLimits) -> tuple[list[Outcome], int]:
        """(kept, metadata_ops) of every metadata outcome looked at, and how many were cut."""
        if model is _POSIX:
            return self.posix.outcomes(limits.max_metadata_subsets)
        pending = self.journal(model).pending
        if model.varies_metadata:
            return [(k, None) for k in range(pending + 1)], 0
        return [(pending, None)], 0

    def namespace(
        self, model: PersistenceModel, kept: int, ops: tuple[int, ...] | None
    ) -> tuple[dict[str, int], set[str]]:
        """(file path -> inode, directory paths) of an image keeping these pending operations
        (validated; not for ``process``)."""
        if model is _POSIX:
            return self.posix.namespace(kept, ops)
        return self.journal(model).namespace(kept)

    def problems(self, model: PersistenceModel, choice: CrashChoice) -> list[str]:
        """What is wrong with the metadata part of `choice` for a crash under `model`."""
        errors: list[str] = []
        if choice.model is not model:
            errors.append(
                f"model: choice is for {choice.model.value!r}, crash asked for {model.value!r}"
            )
        kept, ops = choice.metadata_kept, choice.metadata_ops
        if ops is not None and model is not _POSIX:
            errors.append(
                "metadata_ops: only 'power-posix-metadata' keeps a set of pending operations "
                "that is not a prefix"
            )
        pending = self.pending(model)
        if model is _M.PROCESS:
            # The image is the visible state whatever the count: a reproduction recorded the
            # pending count of the metadata model of its day (before the calibration, 'power'
            # kept more operations pending), and it must still replay.
            if kept < 0:
                errors.append(f"metadata_kept: must be >= 0 under 'process', got {kept}")
        elif model is _M.POWER_EAGER_METADATA:
            if kept != pending:
                errors.append(
                    f"metadata_kept: must be {pending} (all pending operations) under "
                    f"'power-eager-metadata', got {kept}"
                )
        elif model is not _POSIX or ops is None:
            if not 0 <= kept <= pending:
                errors.append(f"metadata_kept: must be in 0..{pending}, got {kept}")
        else:
            errors.extend(self.posix.problems(kept, ops))
        return errors
