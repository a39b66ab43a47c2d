#!/usr/bin/env bash
# The whole test suite, slow and real-server tests included, plus lint and type checks.
# Installs what it needs first (scripts/bootstrap.sh). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"
.venv/bin/ruff check .
.venv/bin/mypy
# -m "" overrides nothing but states it: every marker (slow, real) runs. Exit 5 (no tests) fails.
exec .venv/bin/pytest -m "slow or not slow" -p no:cacheprovider "$@"
