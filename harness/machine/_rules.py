"""The rules a campaign judges beyond the oracle's data rules, on the bundled reference only:
liveness (``LivenessViolation``) and check-aof's agreement with the loader
(``CheckAofDisagreement``, ``check_aof_agrees``). Both are ``ModelDivergence``s, so campaigns
report them.
"""

from __future__ import annotations

from harness.machine._driver import ModelDivergence

__all__ = [
    "LIVENESS_REWRITE",
    "LIVENESS_WRITES",
    "CheckAofDisagreement",
    "LivenessViolation",
    "check_aof_agrees",
]


# Which liveness rule a LivenessViolation's reproduction ends with (``expected["liveness"]``),
# so that replay judges the same rule at its end.
LIVENESS_WRITES = "writes-resume"
LIVENESS_REWRITE = "rewrite-takes-effect"


class LivenessViolation(ModelDivergence):
    """A liveness rule of the state machine broke (no data rule sees these): a rewrite that
    never ends or, with no fault armed, never replaces the AOF; writes still refused long after
    every fault was cleared. A ModelDivergence, so campaigns report it as a finding; its
    reproduction replays the steps, but replay judges only the data rules."""


class CheckAofDisagreement(ModelDivergence):
    """The reference's check-aof and its loader judge a crash image differently (whole,
    truncated at another offset, or refused by one only). Checked before each recovery of the
    safe reference, so the tool users run on such files is exercised by every campaign."""


def check_aof_agrees(data: bytes, *, now_ms: int) -> str | None:
    """None if ``reference.check_aof`` and the safe loader agree on the AOF `data`: both take
    it whole, or both cut it at the same offset (a torn tail, an unfinished MULTI, an all-zero
    tail) and count the same commands before it, or the loader refuses it and check-aof calls
    it broken; else what differs."""
    from reference import AofLoader, LoadError, check_aof

    loader = AofLoader(now_ms=now_ms, rollback_multi=True)
    try:
        loader.feed(data)
        valid: int | None = loader.finish().valid_offset_bytes
    except LoadError:
        valid = None
    check = check_aof(data)
    if valid is None:
        return None if not check.valid else "the loader refuses the file, check-aof calls it valid"
    if valid == len(data):
        if not check.valid:
            return f"the loader takes the whole file ({len(data)} bytes), check-aof: {check.reason}"
        if loader.commands_read != check.commands:
            return (f"the file holds {loader.commands_read} commands, check-aof counts "
                    f"{check.commands}")
        return None
    if check.valid:
        return f"the loader cuts the file at {valid} of {len(data)} bytes, check-aof: valid"
    if check.last_valid_offset_bytes != valid:
        return (f"the loader cuts the file at {valid} of {len(data)} bytes, check-aof at "
                f"{check.last_valid_offset_bytes} ({check.reason})")
    # The same prefix: the same number of commands in it (check-aof prints it).
    prefix = AofLoader(now_ms=now_ms, rollback_multi=True)
    prefix.feed(data[:valid])
    prefix.finish()
    if prefix.commands_read != check.commands:
        return (f"the valid prefix ({valid} bytes) holds {prefix.commands_read} commands, "
                f"check-aof counts {check.commands}")
    return None
