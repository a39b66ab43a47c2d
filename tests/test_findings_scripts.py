"""The findings scripts' merge modes (kernel columns, re-run cells) and POSIX-only labels."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from _real import needs_server

from harness.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _script(name: str) -> ModuleType:
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_script_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


findings = _script("findings")
findings_explore = _script("findings_explore")


def _cell(server: str, policy: str, model: str, fault: str, verdict: str = "holds",
          rules: list[str] | None = None) -> dict[str, Any]:
    return {"cell": f"{server}-{policy}-{model}-{fault}", "server": server, "policy": policy,
            "model": model, "fault": fault, "verdict": verdict, "rules": rules or [],
            "trials": 8, "violations": 1 if rules else 0, "consistent": 8, "unavailable": 0,
            "mechanisms": [], "fault_fired_trials": None}


def test_a_posix_only_violation_says_so_and_what_the_kernel_filesystems_gave() -> None:
    posix = _cell("6.2", "always", "power-posix-metadata", "none", "violation", ["durability"])
    cells = [posix, _cell("6.2", "always", "power-ext4", "none"),
             _cell("6.2", "always", "ext4", "none"), _cell("6.2", "always", "xfs", "none")]
    note = findings._posix_note(posix, cells)
    assert note.startswith("**Seen only under the POSIX minimum**")
    assert "the kernel's ext4 holds (8 trials), xfs holds (8 trials)" in note
    faulty = _cell("6.2", "always", "power-posix-metadata", "no-space", "violation",
                   ["durability"])
    assert "observed on no real filesystem here" in findings._posix_note(faulty, [faulty])


def test_a_posix_violation_also_seen_under_a_calibrated_model_links_that_cell() -> None:
    posix = _cell("7.0", "everysec", "power-posix-metadata", "fsync-error", "violation",
                  ["durability"])
    ext4 = _cell("7.0", "everysec", "power-ext4", "fsync-error", "violation", ["durability"])
    note = findings._posix_note(posix, [posix, ext4])
    assert note.startswith("Also under [`7.0-everysec-power-ext4-fsync-error`]")


def test_merging_cells_replaces_those_of_the_same_key_and_keeps_the_others() -> None:
    old = {"cells": [_cell("6.2", "always", "power-ext4", "none", "violation", ["durability"]),
                     _cell("6.0", "always", "process", "none")],
           "servers": {"6.2": {"name": "redis", "version": "6.2.14"}}, "summary": {}}

    class Fake:
        name = "6.2-always-power-ext4-none"

        def summary(self) -> dict[str, Any]:
            return _cell("6.2", "always", "power-ext4", "none")

    class Kernel(Fake):
        name = "6.2-always-ext4-none"

        def summary(self) -> dict[str, Any]:
            return _cell("6.2", "always", "ext4", "none")

    run = {"command": "findings.py --merge", "generated": "now"}
    data = findings._merge(old, [Fake(), Kernel()], {}, run)
    assert [c["cell"] for c in data["cells"]] == [
        "6.0-always-process-none", "6.2-always-power-ext4-none", "6.2-always-ext4-none"]
    assert data["summary"] == {"6.0": {"holds": 1}, "6.2": {"holds": 2}}
    assert [m["command"] for m in data["merged"]] == ["findings.py --merge"]
    assert [c["cell"] for c in data["merged"][0]["changed"]] == ["6.2-always-power-ext4-none"]
    again = findings._merge(data, [], {}, run)["merged"]
    assert [m["command"] for m in again] == ["findings.py --merge"]  # the same run once


def test_a_merged_run_lists_the_cells_whose_verdict_or_mechanisms_changed_and_why() -> None:
    before = _cell("7.0", "everysec", "power-ext4", "fsync-error", "unavailable",
                   ["acknowledged, then unavailable"])
    before["mechanisms"] = [{"mechanism": "acknowledged, then unavailable: the image has zeros "
                                          "in appendonlydir/appendonly.aof.N.incr.aof"}]
    same = _cell("7.0", "everysec", "process", "fsync-error")
    old = {"cells": [before, same], "servers": {}, "summary": {}}

    class Rerun:
        def __init__(self, cell: dict[str, Any]) -> None:
            self.cell = cell
            self.name = cell["cell"]

        def summary(self) -> dict[str, Any]:
            return self.cell

    after = {**before, "mechanisms": [{"mechanism": "acknowledged, then unavailable: the "
                                                    "image has appendonlydir/appendonly.aof."
                                                    "N.incr.aof zero-filled at its end"}]}
    run = {"command": "findings.py --merge --cells X", "generated": "now", "cells": 2,
           "trials_per_cell": 8, "why": "Linux re-dirties the page"}
    data = findings._merge(old, [Rerun(after), Rerun(dict(same))], {}, run)
    changed = data["merged"][0]["changed"]
    assert [c["cell"] for c in changed] == ["7.0-everysec-power-ext4-fsync-error"]
    assert changed[0]["before"]["verdict"] == changed[0]["now"]["verdict"] == "unavailable"
    table = "\n".join(findings._merge_changes(data["merged"][0]))
    assert "1 of 2 cells changed their verdict or mechanisms" in table
    assert "Why they were re-run: Linux re-dirties the page" in table
    assert "has zeros in appendonlydir" in table and "zero-filled at its end" in table
    assert "no zero hole any more" in table and "ends in the dropped pages' zeros" in table


def test_a_change_of_verdict_without_a_zero_hole_reads_as_timing() -> None:
    before = {"verdict": "holds", "trials": 2, "violations": 0, "mechanisms": []}
    now = {"verdict": "unavailable", "trials": 2, "violations": 1,
           "mechanisms": ["acknowledged, then unavailable: the image has f zero-filled at its "
                          "end"]}
    why = findings._change_why(before, now)
    assert "0 -> 1 violating trials of 2" in why and "timing" in why


def test_a_regenerated_row_keeps_the_kernel_columns_of_the_row_it_replaces() -> None:
    kernel_mechanism = {"model": "ext4", "rules": ["availability"], "mechanism": "m"}
    old_row = {"key": "7.0-always-burst", "cells": {"power-ext4": {"verdict": "holds"},
                                                    "ext4": {"verdict": "violated"}},
               "mechanisms": [kernel_mechanism, {"model": "power-ext4", "rules": []}]}
    doc: dict[str, Any] = {"rows": [old_row]}
    new_row: dict[str, Any] = {"key": "7.0-always-burst",
                               "cells": {"power-ext4": {"verdict": "new"}},
                               "mechanisms": []}
    findings_explore._merge_row(doc, new_row, {"command": "c", "generated": "g",
                                               "elapsed_s": 1.0})
    assert doc["rows"] == [new_row]
    assert new_row["cells"] == {"power-ext4": {"verdict": "new"},
                                "ext4": {"verdict": "violated"}}
    assert new_row["mechanisms"] == [kernel_mechanism]
    assert doc["merged"][0]["rows"] == ["7.0-always-burst"]


def test_kernel_mode_without_an_existing_json_is_refused(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    with pytest.raises(SystemExit) as exc:
        findings_explore.main(["--kernel", "--out", str(tmp_path)])
    assert exc.value.code == 2
    assert "findings-explore.json: not found" in capsys.readouterr().err


@pytest.mark.real
def test_the_committed_ext4_zero_tail_reproduction_of_7_0_still_refuses_to_start(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The kernel column's finding: 7.0.15 refuses the incr file the kernel's ext4 left at its
    # new size over zeros; `aofcrash replay` re-runs the committed image.
    needs_server("7.0")
    repro = ROOT / "reports/findings/explore-7.0-always-burst-ext4/00-availability/repro.json"
    assert main(["replay", str(repro)]) == 1
    out = capsys.readouterr().out
    assert "VIOLATION [availability]" in out and "Bad file format" in out
