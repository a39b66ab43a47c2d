"""What a crash image lacks or resurrects against the files the server had written (see
``harness.verify._mechanism`` for the effects and how reports and attribution use them); here
so that the in-process explorer groups its violating states by it too."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

__all__ = ["PAGE_BYTES", "image_effects", "normalise_name", "zero_holes"]

_DIGITS: Final = re.compile(r"\d+")
_ZEROS: Final = re.compile(rb"\0+")
# Linux writes back pages: a failed fsync's dropped range under later data ends on one.
PAGE_BYTES: Final = 4096


def normalise_name(path: str) -> str:
    """`path` with every run of digits replaced by ``N`` (sequence numbers, pids)."""
    return _DIGITS.sub("N", path)


def _data_effect(name: str, seen: bytes, kept: bytes) -> str | None:
    if kept == seen:
        return None
    if len(kept) <= len(seen):
        if seen.startswith(kept):
            return f"has {name} empty" if not kept else f"has {name} cut short"
        # A prefix of what was written, then zeros to the end: the size was durable, the
        # data after the prefix not (power-ext4/xfs's size-before-data, the kernel's ext4).
        if seen.startswith(kept.rstrip(b"\0")):
            return f"has {name} zero-filled at its end"
        # Zeros where data was written, the rest equal: a dropped (failed-fsync) range.
        if all(k == s or k == 0 for k, s in zip(kept, seen, strict=False)):
            return f"has zeros in {name}"
    return f"has an older {name}"


def image_effects(visible: Mapping[str, bytes], image: Mapping[str, bytes]) -> tuple[str, ...]:
    """The effects (sorted, names normalised) that make `image` differ from `visible`."""
    effects: set[str] = set()
    for path in visible.keys() | image.keys():
        if path.rsplit("/", 1)[-1].startswith("temp"):
            continue
        name = normalise_name(path)
        if path not in image:
            effects.add(f"lacks {name}")
        elif path not in visible:
            effects.add(f"resurrects {name}")
        else:
            found = _data_effect(name, visible[path], image[path])
            if found is not None:
                effects.add(found)
    return tuple(sorted(effects))


def zero_holes(seen: bytes, kept: bytes) -> list[tuple[int, int]]:
    """The runs of zeros in `kept` (a crash image of a file) over data the server wrote
    (`seen`) with data after them, as [start, end) byte offsets: a failed fsync's dropped range
    as the image has it. A zero tail is no hole (nothing after it)."""
    data_end = len(kept.rstrip(b"\0"))
    holes = []
    for run in _ZEROS.finditer(kept, 0, min(data_end, len(seen))):
        start, end = run.span()
        if seen[start:end] != kept[start:end]:
            holes.append((start, end))
    return holes

