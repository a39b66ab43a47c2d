"""Crash-choice enumeration and draws, the same for every model: a model gives its metadata
outcomes (how many pending namespace operations an image keeps, or which), the data images of
the dirty files it names vary within ``ImageLimits``, and every cut-off is counted.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

from faults._image import CrashChoice, FileChoice, ImageKind, PersistenceModel

__all__ = ["ChoiceEnumeration", "Plan", "expand", "pick_choice"]


class ChoiceEnumeration(Iterator[CrashChoice]):
    """The legal crash choices at one crash point, lazily, with the cut-offs reported.

    ``total`` counts every legal choice under the limits' shape settings (torn, reorder, window,
    granularity); ``cut_by_dirty_files`` and ``cut_by_max_choices`` say how many of them the
    limits left out (``cut_off`` is their sum); ``emitted`` counts what the iterator has
    produced so far.

    Under ``power-posix-metadata`` the sets of kept pending namespace operations past
    ``ImageLimits.max_metadata_subsets`` are not looked at: ``cut_by_metadata`` counts those
    sets (not choices; each has at least one), and ``total`` covers the sets looked at.
    """

    def __init__(
        self,
        choices: Iterator[CrashChoice],
        total: int,
        cut_dirty: int,
        cut_max: int,
        cut_metadata: int = 0,
    ) -> None:
        self._it = choices
        self.total = total
        self.cut_by_dirty_files = cut_dirty
        self.cut_by_max_choices = cut_max
        self.cut_by_metadata = cut_metadata
        self.emitted = 0

    @property
    def cut_off(self) -> int:
        return self.cut_by_dirty_files + self.cut_by_max_choices

    def __next__(self) -> CrashChoice:
        choice = next(self._it)
        self.emitted += 1
        return choice

    def __iter__(self) -> ChoiceEnumeration:
        return self



# One metadata outcome of a crash point and the options of its varied dirty files:
# (metadata_kept, metadata_ops, per-file options).
Plan = tuple[int, tuple[int, ...] | None, list[tuple[FileChoice, ...]]]


def expand(model: PersistenceModel, plans: list[Plan]) -> Iterator[CrashChoice]:
    """Every choice of `plans`, in order."""
    # Canonical choices leave DURABLE files out; per-file one-element tuples are built once per
    # crash point so the common single-dirty-file case allocates only the CrashChoice.
    for kept, ops, per_file in plans:
        parts = [
            tuple(() if fc.kind is ImageKind.DURABLE else (fc,) for fc in opts)
            for opts in per_file
        ]
        if not parts:
            yield CrashChoice(model, kept, (), ops)
        elif len(parts) == 1:
            for files in parts[0]:
                yield CrashChoice(model, kept, files, ops)
        else:
            for combo in itertools.product(*parts):
                yield CrashChoice(model, kept, tuple(itertools.chain.from_iterable(combo)), ops)


def pick_choice(
    model: PersistenceModel, table: list[Plan], pick: Callable[[int], int]
) -> CrashChoice:
    """One choice from `table` (a metadata outcome, then each file's option) by `pick`."""
    kept, ops, per_file = table[pick(len(table))]
    files = tuple(opts[pick(len(opts))] for opts in per_file)
    # DURABLE entries are the default; leaving them out keeps choices canonical and small.
    return CrashChoice(
        model, kept, tuple(fc for fc in files if fc.kind is not ImageKind.DURABLE), ops
    )
