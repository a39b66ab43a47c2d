#!/usr/bin/env bash
# The whole test suite, slow and real-server tests included, plus lint and type checks.
# Installs what it needs first (scripts/bootstrap.sh). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"
.venv/bin/ruff check .
.venv/bin/mypy
# Every marker (slow, real) runs. Exit 5 (no tests) fails. Tests run on every core
# (pytest-xdist; AOFCRASH_TEST_WORKERS=1 for one process; a busy worker's queue is shared out
# as the other finishes), and the 20 slowest are listed at the end.
exec .venv/bin/pytest -m "slow or not slow" -p no:cacheprovider \
  -n "${AOFCRASH_TEST_WORKERS:-auto}" --dist worksteal --durations=20 "$@"
