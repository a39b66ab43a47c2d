"""Reports: reports/<run-id>/report.json (the source of truth) and report.html (rendered from it
by ``_report_html``, with pictures from ``_plots``; violations are prepared by
``_report_violations`` and ``_report_replay``).

Everything persistent is written to a temporary file and renamed into place, so an interrupted
run never leaves a half-written report or reproduction behind.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from harness.cli._fileio import (
    UnreadableFile,
    read_text,
    slug,
    write_atomic,
    write_atomic_bytes,
)

__all__ = ["PartialReports", "ReportError", "load_report", "new_run_dir", "render_html", "slug",
           "write_atomic", "write_atomic_bytes", "write_report"]

REPORT_FORMAT = "aofcrash-report/1"


class ReportError(ValueError):
    """A report that cannot be read; the message says what is wrong."""


def new_run_dir(base: Path, command: str, seed: int, stamp: str | None = None) -> Path:
    """A fresh reports/<run-id> directory; the id says what ran, when (`stamp`, default now)
    and with which seed. An unusable base (a file, /proc, no permission) is a UsageError
    naming why."""
    from harness.cli._common import UsageError, reports_base
    from harness.cli._common import stamp as now_stamp

    base = reports_base(base)
    run_id = f"{command}-{stamp or now_stamp()}-seed{seed}"
    path = base / run_id
    n = 1
    while path.exists():
        n += 1
        path = base / f"{run_id}-{n}"
    try:
        path.mkdir(parents=True)
    except OSError as exc:
        raise UsageError(f"--reports {base}: cannot create a run directory in it: "
                         f"{exc.strerror}") from None
    return path


def write_report(run_dir: Path, report: dict[str, Any], *, html: bool = True,
                 pictures: bool = True) -> tuple[Path, Path]:
    """report.json, then report.html rendered from it (unless not `html`: a partial report
    written often renders its page less often; without `pictures` the page leaves out the
    plots and timelines, which take longer to draw than a partial report may); a full or
    read-only disk is a UsageError (one line), not a traceback."""
    from harness.cli._common import UsageError

    report = {"format": REPORT_FORMAT, **report}
    json_path = run_dir / "report.json"
    html_path = run_dir / "report.html"
    text = json.dumps(report, indent=1, sort_keys=True, default=str) + "\n"
    try:
        write_atomic(json_path, text)
        if html:
            shown = json.loads(text)
            if not pictures:
                shown = _without_pictures(shown)
            write_atomic(html_path, render_html(shown))
    except OSError as exc:
        raise UsageError(f"cannot write the report in {run_dir}: {exc.strerror}") from None
    return json_path, html_path


class PartialReports:
    """Writes a running command's report as it goes, so that a run killed (SIGKILL, a
    power cut) leaves what had finished: report.json every time, report.html at most every
    `html_every_s` seconds of wall clock (rendering draws the pictures), both temp + rename.
    The final report replaces them."""

    def __init__(self, run_dir: Path, *, html_every_s: float = 2.0) -> None:
        self.run_dir = run_dir
        self.html_every_s = html_every_s
        self._html_at: float | None = None
        self._reproductions: set[str] = set()  # written by partial reports (run_dir-relative)

    def write(self, report: dict[str, Any]) -> None:
        import time

        now = time.monotonic()
        html = self._html_at is None or now - self._html_at >= self.html_every_s
        write_report(self.run_dir, report, html=html, pictures=False)
        self._reproductions |= _reproductions(report)
        if html:
            self._html_at = now

    def final(self, report: dict[str, Any]) -> tuple[Path, Path]:
        """Write the finished report; reproductions a partial one named that this one does
        not (a cause renumbered since) are removed, so every file left is the report's."""
        paths = write_report(self.run_dir, report)
        for name in self._reproductions - _reproductions(report):
            with contextlib.suppress(OSError):
                (self.run_dir / name).unlink()
        return paths


def _reproductions(report: dict[str, Any]) -> set[str]:
    return {str(v["reproduction"]) for v in report.get("violations") or []
            if isinstance(v, dict) and v.get("reproduction")}


def _without_pictures(report: dict[str, Any]) -> dict[str, Any]:
    """`report` with nothing to draw (coverage, progress, timelines) and a note saying so."""
    out = {k: v for k, v in report.items() if k not in ("coverage_matrix", "progress_series")}
    out["violations"] = [
        {k: x for k, x in v.items() if k not in ("events", "history")} if isinstance(v, dict)
        else v for v in report.get("violations") or []]
    out["summary"] = (str(report.get("summary", "")) + " (Pictures are drawn when the run "
                      "ends; report.json has everything so far.)").strip()
    return out


#: report.json fields and the JSON type each must have (anything else is not a report).
_FIELD_TYPES: dict[str, type] = {"run": dict, "totals": dict, "configurations": list,
                                 "events": dict, "violations": list, "groups": list}


def load_report(path: Path) -> dict[str, Any]:
    """A report.json (or a run directory holding one); ReportError with one line naming
    what is wrong for anything else (unreadable, not UTF-8, not JSON, not a report)."""
    if path.is_dir():
        path = path / "report.json"
    try:
        text = read_text(path, "an aofcrash report")
    except UnreadableFile as exc:
        raise ReportError(str(exc)) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    except RecursionError:
        raise ReportError(f"{path} is not an aofcrash report: JSON nested too deeply") from None
    if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT:
        raise ReportError(f"{path} is not an aofcrash report (format {REPORT_FORMAT!r} expected)")
    for name, kind in _FIELD_TYPES.items():
        if name in data and not isinstance(data[name], kind):
            raise ReportError(f"{path}: field {name!r} must be a JSON "
                              f"{'object' if kind is dict else 'array'}")
    for i, v in enumerate(data.get("violations", [])):
        if not isinstance(v, dict):
            raise ReportError(f"{path}: violations[{i}] must be a JSON object")
    return data


def render_html(report: dict[str, Any]) -> str:
    """A self-contained page (inline CSS and SVG, no script, no external asset): verdict and
    violations first, then what ran, then the configuration (see ``_report_html``)."""
    from harness.cli._report_html import render_page

    return render_page(report)

