"""What a crash image lacks or resurrects against the files the server had written: the
*mechanism* of a violation, so that violations are grouped by what explains them, not only by
the rule they break.

``image_effects(visible, image)`` compares the crash image (what a model kept) with the visible
state at the crash (what the server had written and the kernel showed it) file by file:

* ``lacks F``: F was visible, the image has no such name (its create or rename was not durable);
* ``resurrects F``: the image has a name the server had removed or renamed over (an unlink or
  rename was not durable);
* ``has an older F``: both have F, and the image's contents are not a prefix of the visible
  ones (the name points at an older file: a rename over it was lost);
* ``has F empty``: the image keeps F with no data (its data was never synced);
* ``has F cut short``: the image holds a strict prefix of F (unsynced appends were lost);
* ``has F zero-filled at its end``: the image holds a prefix of F, then zeros up to a
  longer size (the size was durable, the appended data not: a zero-tail image);
* ``has zeros in F``: where the server wrote data the image reads zeros, data after them
  (a failed fsync's range: see docs/contract.md, "EIO zero-fill"). ``zero_holes`` gives
  where: under Linux's page writeback each such hole ends at a page boundary, which a trial
  counts among its events.

File names are normalised (every run of digits becomes ``N``), so the multi-part
``appendonly.aof.2.incr.aof`` of two runs reads the same. Temp files (a name starting with
``temp``: the rewrite's ``temp-rewriteaof-*``, 7.x's ``temp-appendonly.aof.manifest``) are
left out: no server loads them, so what an image does to them explains nothing. An image equal
to the visible state (temp files aside) has no effects: the server wrote what it lost (or
refused) itself.

``same_mechanism_part(variant, trial)`` is how attribution decides that a variant broke the
rule *the same way*: its effects (and refusal) are a part of the trial's, so a variant that
loses the same writes another way (the old file instead of no file) is not the same violation,
while two independent causes each showing one of the trial's effects both are.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

# The comparison lives with the in-process explorer (which groups its states by it too);
# harness.verify builds on harness.explore, never the other way round.
from harness.explore._effects import _DIGITS, PAGE_BYTES, image_effects, normalise_name, zero_holes

__all__ = [
    "PAGE_BYTES",
    "cause_text",
    "describe_effects",
    "image_effects",
    "normalise_name",
    "same_mechanism_part",
    "server_reason_kind",
    "zero_holes",
]

def describe_effects(effects: Sequence[str]) -> str:
    """One line for a report: the effects, or that the image is what the server wrote."""
    if not effects:
        return "the image holds exactly what the server had written (its own doing)"
    return "the image " + "; ".join(effects)


_EMPTY: Final = re.compile(r"has (\S+) empty")
_ZERO_TAIL: Final = re.compile(r"has (\S+) zero-filled at its end")


def cause_text(mechanism: str) -> str:
    """A mechanism as a report's cause: a file left empty is a file cut short (to nothing):
    one missing fsync loses the unsynced appends whether or not any were synced before, so
    both are one cause. So is a file zero-filled at its end when the server loaded it (no
    availability rule broken, no refusal): it read up to the zeros as it reads up to the end
    of a file cut short, and lost the same appends. When the server refused the zeros, they
    are what explains it: a cause of their own."""
    text = _EMPTY.sub(r"has \1 cut short", mechanism)
    rules = text.split(":", 1)[0].split("/")
    if "availability" in rules or "; the server: " in text:
        return text
    return _ZERO_TAIL.sub(r"has \1 cut short", text)


_LOG_PREFIX: Final = re.compile(r"^\d+:[A-Z] \d+ \w+ \d+ [\d:.]+ [#*.-] ")


def server_reason_kind(line: str) -> str:
    """A server's refusal as a kind: its log line without the pid/role/time prefix, digits
    normalised ("Bad file format reading the append only file ...")."""
    return _DIGITS.sub("N", _LOG_PREFIX.sub("", line.strip()))


def same_mechanism_part(variant: tuple[Sequence[str], str], trial: tuple[Sequence[str], str]
                        ) -> bool:
    """Whether a variant's (effects, refusal kind) are a part of the trial's: every effect of
    the variant is one of the trial's, its refusal (if any) the trial's, and it has some effect
    or refusal unless the trial has none."""
    v_parts = set(variant[0]) | ({"refusal: " + variant[1]} if variant[1] else set())
    t_parts = set(trial[0]) | ({"refusal: " + trial[1]} if trial[1] else set())
    return v_parts <= t_parts and (bool(v_parts) or not t_parts)
