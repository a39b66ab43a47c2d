"""The crash-image half of SimDisk: what each persistence model lets a crash keep, as choices
(enumerated, drawn, or a Hypothesis strategy) and as images. A mixin, so SimDisk's namespace
verbs and its crash images live in files of their own; it reads SimDisk's state and changes
none of it.
"""

from __future__ import annotations

import errno
import itertools
import random
from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

from faults._choices import ChoiceEnumeration, Plan, expand, pick_choice
from faults._fs import check_relative_path, os_error
from faults._image import (
    CrashChoice,
    CrashChoiceError,
    DiskImage,
    FileChoice,
    ImageLimits,
    PersistenceModel,
)
from faults._inode import (
    Inode,
    InodeView,
    durable_image,
    file_choice_problem,
    file_options,
    materialise,
)
from faults._metadata import Metadata

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = ["CrashImages"]

_POSIX = PersistenceModel.POWER_POSIX_METADATA
_DEFAULT_LIMITS = ImageLimits()


def _check_model(model: PersistenceModel) -> PersistenceModel:
    if not isinstance(model, PersistenceModel):
        raise ValueError(f"model: expected PersistenceModel, got {model!r}")
    return model


class CrashImages:
    """Crash images and choices of a SimDisk (see the ``faults`` docstring)."""

    # SimDisk's state this half reads.
    sector_size_bytes: int
    _meta: Metadata
    _inodes: dict[int, Inode]
    _files: dict[str, Inode]
    _dirs: dict[str, set[str]]

    def _lookup_error(self, path: str) -> int:
        """errno for a path whose parent chain is broken (SimDisk's)."""
        raise NotImplementedError

    @property
    def pending_metadata(self) -> int:
        """How many namespace operations the default model (``power-ext4``) has not committed:
        ``CrashChoice.metadata_kept`` counts among these under it, ``process`` and
        ``power-eager-metadata`` keep all of them. ``pending_metadata_for`` gives any model's."""
        return self._meta.ext4.pending

    @property
    def pending_posix_metadata(self) -> int:
        """How many namespace operations are not settled under ``power-posix-metadata`` (the
        positions ``CrashChoice.metadata_ops`` names, in program order)."""
        return len(self._meta.posix.pending)

    def pending_metadata_for(self, model: PersistenceModel) -> int:
        """How many namespace operations `model` has not made durable: a crash under it keeps
        ``CrashChoice.metadata_kept`` of them (all of them under ``process`` and
        ``power-eager-metadata``)."""
        return self._meta.pending(_check_model(model))

    def namespace_after(self, metadata: int | CrashChoice) -> Mapping[str, int]:
        """The files of a crash image's namespace, as an immutable mapping path -> inode number.

        `metadata` is a ``CrashChoice`` (its model and kept metadata; its file choices are
        ignored; ``process`` gives the visible namespace) or an int: the image keeping the first
        that many of the ``pending_metadata`` operations (``power-ext4``). Directories are in
        ``crash(...).dirs``.
        """
        return MappingProxyType(self._metadata_namespace(metadata)[0])

    def dirty_inodes(self, metadata: int | CrashChoice) -> tuple[InodeView, ...]:
        """The dirty inodes the namespace of `metadata` (as in ``namespace_after``) names, most
        recently changed first: the order in which ``ImageLimits.max_dirty_files`` keeps them
        varying in ``crash_choices``."""
        ns = self._metadata_namespace(metadata)[0]
        return tuple(InodeView(node) for node in self._dirty(ns.values()))

    def file_options(
        self, inode: int | str, *, limits: ImageLimits | None = None
    ) -> tuple[FileChoice, ...]:
        """Every legal image of one inode's data under the power models (DURABLE first; just
        that for a clean inode), shaped by `limits` (torn, reorder, window, granularity).
        `inode` is an inode number (KeyError if unknown) or a visible file path (OSError if
        there is no file there)."""
        if isinstance(inode, str):
            path = check_relative_path(inode)
            node = self._files.get(path)
            if node is None:
                code = errno.EISDIR if path in self._dirs else self._lookup_error(path)
                raise os_error(code, path)
        else:
            node = self._inodes.get(inode)
            if node is None:
                raise KeyError(f"no inode {inode} on this disk")
        return file_options(node, limits or _DEFAULT_LIMITS, self.sector_size_bytes)

    def metadata_choices(
        self, model: PersistenceModel, *, limits: ImageLimits | None = None
    ) -> tuple[CrashChoice, ...]:
        """The legal metadata outcomes under `model` as choices without file choices, in the
        order ``crash_choices`` goes through them: ``power-ext4``, ``power-xfs`` and
        ``power-btrfs`` keep 0..``pending_metadata_for(model)`` operations;
        ``power-eager-metadata`` and ``process`` all of them; ``power-posix-metadata`` every
        set closed under its dependencies, the prefixes first, at most
        ``limits.max_metadata_subsets`` of them."""
        model = _check_model(model)
        outcomes, _ = self._meta.outcomes(model, limits or _DEFAULT_LIMITS)
        return tuple(CrashChoice(model, kept, (), ops) for kept, ops in outcomes)

    def _metadata_namespace(self, metadata: int | CrashChoice) -> tuple[dict[str, int], set[str]]:
        if isinstance(metadata, CrashChoice):
            errors = self._meta.problems(metadata.model, metadata)
            if errors:
                raise CrashChoiceError(errors)
            return self._outcome_namespace(
                metadata.model, metadata.metadata_kept, metadata.metadata_ops
            )
        pending = self._meta.ext4.pending
        if isinstance(metadata, bool) or not isinstance(metadata, int):
            raise TypeError(f"metadata: expected an int or a CrashChoice, got {metadata!r}")
        if not 0 <= metadata <= pending:
            raise ValueError(f"metadata: must be in 0..{pending}, got {metadata}")
        return self._meta.ext4.namespace(metadata)

    def _outcome_namespace(
        self, model: PersistenceModel, kept: int, ops: tuple[int, ...] | None
    ) -> tuple[dict[str, int], set[str]]:
        """(file path -> inode, directory paths) of an image keeping these pending operations
        (already validated)."""
        if model is PersistenceModel.PROCESS:
            return {path: node.ino for path, node in self._files.items()}, set(self._dirs)
        return self._meta.namespace(model, kept, ops)

    def _dirty(self, inos: Iterable[int]) -> list[Inode]:
        """The dirty inodes among `inos`, most recently changed first."""
        inodes = self._inodes
        dirty = [inodes[i] for i in set(inos) if inodes[i].dirty()]
        dirty.sort(key=lambda node: (-node.stamp, node.ino))
        return dirty

    def visible_image(self) -> DiskImage:
        """What a reader sees now (and what survives a process crash)."""
        files = {path: bytes(inode.data) for path, inode in self._files.items()}
        return DiskImage(files, self._dirs.keys())

    def durable_image(self) -> DiskImage:
        """What survives power loss under the default model (``power-ext4``) if nothing
        unsynced reaches the disk: ``crash(PersistenceModel.POWER)``."""
        return self.crash(PersistenceModel.POWER)

    # -- crash images --------------------------------------------------------------------------

    def crash(self, model: PersistenceModel, choice: CrashChoice | None = None) -> DiskImage:
        """The image after a crash under `model`; `choice` None means the default outcome
        (visible state for ``process``, durable-only for the power models)."""
        model = _check_model(model)
        if model is PersistenceModel.PROCESS:
            if choice is not None:
                self._check_choice(model, choice)
            return self.visible_image()
        if choice is None:
            kept = 0 if model.varies_metadata else self._meta.pending(model)
            choice = CrashChoice(model, kept, ())
        self._check_choice(model, choice)
        dfiles, ddirs = self._outcome_namespace(model, choice.metadata_kept, choice.metadata_ops)
        by_ino = {fc.inode: fc for fc in choice.files}
        files: dict[str, bytes] = {}
        sector = self.sector_size_bytes
        for path, ino in dfiles.items():
            inode = self._inodes[ino]
            fc = by_ino.get(ino)
            files[path] = (durable_image(inode, model.value) if fc is None
                           else materialise(inode, fc, sector, model.value))
        return DiskImage(files, ddirs)

    def _check_choice(self, model: PersistenceModel, choice: CrashChoice) -> None:
        if not isinstance(choice, CrashChoice):
            raise CrashChoiceError([f"choice: expected CrashChoice, got {type(choice).__name__}"])
        errors = self._meta.problems(model, choice)
        if model is PersistenceModel.PROCESS and choice.files:
            errors.append("files: the process model has no per-file choices")
        seen: set[int] = set()
        for i, fc in enumerate(choice.files):
            where = f"files[{i}]"
            inode = self._inodes.get(fc.inode)
            if inode is None:
                errors.append(f"{where}.inode: no inode {fc.inode} on this disk")
                continue
            if fc.inode in seen:
                errors.append(f"{where}.inode: inode {fc.inode} chosen twice")
            seen.add(fc.inode)
            problem = file_choice_problem(inode, fc, self.sector_size_bytes, model.value)
            if problem:
                errors.append(f"{where}: {problem}")
        if errors:
            raise CrashChoiceError(errors)

    def crash_choices(
        self, model: PersistenceModel, *, limits: ImageLimits | None = None
    ) -> ChoiceEnumeration:
        """Every legal crash choice here under `model`, lazily, bounded by `limits` (cut-offs
        are counted on the returned enumeration)."""
        model = _check_model(model)
        if limits is None:
            limits = _DEFAULT_LIMITS
        if model is PersistenceModel.PROCESS:
            choice = CrashChoice(model, self._meta.pending(model), ())
            return ChoiceEnumeration(iter((choice,)), 1, 0, 0)
        outcomes, cut_metadata = self._meta.outcomes(model, limits)
        options_cache: dict[int, tuple[FileChoice, ...]] = {}
        plans: list[Plan] = []
        total = allowed = 0
        sector = self.sector_size_bytes
        for kept, ops in outcomes:
            ns = self._meta.namespace(model, kept, ops)[0].values()
            per_file = []
            full = 1
            for k, node in enumerate(self._dirty(ns)):
                opts = options_cache.get(node.ino)
                if opts is None:
                    opts = options_cache[node.ino] = file_options(
                        node, limits, sector, model.value)
                full *= len(opts)
                if k < limits.max_dirty_files:
                    per_file.append(opts)
            varied = 1
            for opts in per_file:
                varied *= len(opts)
            total += full
            allowed += varied
            plans.append((kept, ops, per_file))
        cap = limits.max_choices_per_point
        emitted = min(allowed, cap)
        return ChoiceEnumeration(
            itertools.islice(expand(model, plans), cap),
            total,
            total - allowed,
            allowed - emitted,
            cut_metadata,
        )

    def draw_crash_choice(
        self, model: PersistenceModel, seed: int, *, limits: ImageLimits | None = None
    ) -> CrashChoice:
        """One legal crash choice drawn deterministically from `seed`."""
        rng = random.Random(seed)
        return self._chooser(model, limits)(lambda n: rng.randrange(n))

    def crash_choice_strategy(
        self, model: PersistenceModel, *, limits: ImageLimits | None = None
    ) -> SearchStrategy[CrashChoice]:
        """A Hypothesis strategy over the legal crash choices here (shrinks towards fewer kept
        metadata operations and durable contents). Bound to the disk state at call time."""
        from hypothesis import strategies as st

        choose = self._chooser(model, limits)

        @st.composite
        def choices(draw: st.DrawFn) -> CrashChoice:
            return choose(lambda n: draw(st.integers(0, n - 1)))

        return choices()

    def _chooser(
        self, model: PersistenceModel, limits: ImageLimits | None
    ) -> Callable[[Callable[[int], int]], CrashChoice]:
        """A function building one legal choice from a source of `pick(n)` in 0..n-1 (0 is the
        least surviving), bound to the disk state now. Not bounded by the enumeration limits."""
        model = _check_model(model)
        limits = limits or _DEFAULT_LIMITS
        sector = self.sector_size_bytes
        if model is _POSIX:
            options = {
                ino: file_options(node, limits, sector)
                for ino, node in self._inodes.items()
                if node.dirty()
            }
            return self._meta.posix.chooser(options)
        pending = self._meta.pending(model)
        table: list[Plan] = []
        if model is PersistenceModel.PROCESS:
            table.append((pending, None, []))
        else:
            for kept in range(pending + 1) if model.varies_metadata else (pending,):
                ns = self._meta.namespace(model, kept, None)[0].values()
                dirty = sorted((self._inodes[i] for i in set(ns) if self._inodes[i].dirty()),
                               key=lambda node: node.ino)
                table.append((kept, None, [file_options(node, limits, sector, model.value)
                                           for node in dirty]))
        return lambda pick: pick_choice(model, table, pick)
