#!/usr/bin/env bash
# The main job: a fault campaign against the embedded reference server. Installs what it needs,
# runs `aofcrash fuzz` across every fsync policy and persistence model, and writes
# reports/<run-id>/report.json and report.html. Extra arguments go to `aofcrash fuzz`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/aofcrash fuzz --budget "${AOFCRASH_BUDGET:-120s}" "$@"
