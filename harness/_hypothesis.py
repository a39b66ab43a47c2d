"""Module-level knobs of Hypothesis's engine (they are not settings), set around one run of a
campaign's own generation so that a seed means the same thing wherever it runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from hypothesis.internal.conjecture import engine, providers
from hypothesis.internal.constants_ast import Constants

__all__ = ["hypothesis_engine"]

_EMPTY_CONSTANTS = Constants()


def _no_local_constants() -> Constants:
    return _EMPTY_CONSTANTS


@contextmanager
def hypothesis_engine(*, shrink_budget_s: float | None = None) -> Iterator[None]:
    """Run Hypothesis inside with no local constants and, given, a shrinking time limit.

    * Local constants: Hypothesis also draws literals mined from every non-installed module
      imported so far, which here means aofcrash's own source. The same seed then drew
      different programs from the CLI, the library and pytest (more modules imported), and
      after an edit of any literal anywhere in the project; one campaign of the test suite
      shrank for 90 s instead of 8, to a different result. Our generation draws none of them.
    * Shrinking: Hypothesis shrinks for up to 5 minutes; a campaign wants its finding sooner.
    """
    old_budget = engine.MAX_SHRINKING_SECONDS
    old_constants = providers._get_local_constants
    if shrink_budget_s is not None:
        engine.MAX_SHRINKING_SECONDS = shrink_budget_s  # type: ignore[assignment]
    providers._get_local_constants = _no_local_constants
    try:
        yield
    finally:
        engine.MAX_SHRINKING_SECONDS = old_budget
        providers._get_local_constants = old_constants
