"""harness.loaders: differential fuzzing of AOF loaders and check tools.

Hypothesis generates AOF files (``aof_cases``: valid workloads and every kind of damage); each
file is loaded by every *tool* (``tool_ids``): real redis-server 6.0, 6.2, 7.0, 8.2 and Valkey 9.1
with ``aof-load-truncated yes`` and ``no``, the reference (``reference.Server`` on a SimDisk,
each profile), each version's redis-check-aof / valkey-check-aof and ``aofcrash check-aof``.
Each run records a verdict (loaded / truncated at N / refused / crashed / hung), the keyspace,
what a restart then does, and a check tool's verdict and offset (``_run``). ``disagreements``
compares the outcomes on one file and classifies what differs (crash, check tool vs its own
loader, version vs version, reference vs real, restart); ``run_campaign`` collects distinct
disagreements over many files in a process pool and shrinks each one to the smallest file that
still shows it (``shrink_bytes``, delta debugging over lines then bytes). ``_report`` writes
the findings (Markdown + JSON) and regression cases. The CLI is ``aofcrash loaders``.

Real processes are started by absolute path with ``--port P --bind 127.0.0.1 --dir D
--appendonly yes --save '' --aof-use-rdb-preamble no --appendfsync no``, in their own session,
with a parent-death signal, and are killed by PID in a ``finally`` (``_procs``).

Layer: above ``harness.targets`` (``find_server``) and ``reference``/``faults``; used only by
the CLI.
"""

from __future__ import annotations

from harness.loaders._campaign import (
    CORPUS,
    CampaignResult,
    Finding,
    generate_cases,
    reproduces,
    run_campaign,
    run_matrix,
    settings_for,
)
from harness.loaders._diff import CLASSES, Disagreement, disagreements
from harness.loaders._gen import FAMILIES, AofCase, aof_cases, encode, family_cases
from harness.loaders._report import regression_case, report_json, write_regressions, write_report
from harness.loaders._run import (
    CHECKERS,
    LOADERS,
    REAL_SERVERS,
    CheckRun,
    LoadOutcome,
    LoadRun,
    RunSettings,
    Verdict,
    available_tools,
    run_tool,
    server_paths,
    tool_ids,
)
from harness.loaders._shrink import ddmin, shrink_bytes

__all__ = [
    "CHECKERS",
    "CLASSES",
    "CORPUS",
    "FAMILIES",
    "LOADERS",
    "REAL_SERVERS",
    "AofCase",
    "CampaignResult",
    "CheckRun",
    "Disagreement",
    "Finding",
    "LoadOutcome",
    "LoadRun",
    "RunSettings",
    "Verdict",
    "aof_cases",
    "available_tools",
    "ddmin",
    "disagreements",
    "encode",
    "family_cases",
    "generate_cases",
    "regression_case",
    "report_json",
    "reproduces",
    "run_campaign",
    "run_matrix",
    "run_tool",
    "server_paths",
    "settings_for",
    "shrink_bytes",
    "tool_ids",
    "write_regressions",
    "write_report",
]
