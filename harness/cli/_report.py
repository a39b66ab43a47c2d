"""Reports: reports/<run-id>/report.json (the source of truth) and report.html (rendered from it).

Everything persistent is written to a temporary file and renamed into place, so an interrupted
run never leaves a half-written report or reproduction behind.
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path
from typing import Any

__all__ = ["ReportError", "load_report", "new_run_dir", "render_html", "write_atomic",
           "write_atomic_bytes", "write_report"]

REPORT_FORMAT = "aofcrash-report/1"


class ReportError(ValueError):
    """A report that cannot be read; the message says what is wrong."""


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` via a temp file in the same directory and an atomic rename."""
    write_atomic_bytes(path, text.encode("utf-8"))


def write_atomic_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def new_run_dir(base: Path, command: str, seed: int, stamp: str) -> Path:
    """A fresh reports/<run-id> directory; the id says what ran, when and with which seed."""
    run_id = f"{command}-{stamp}-seed{seed}"
    path = base / run_id
    n = 1
    while path.exists():
        n += 1
        path = base / f"{run_id}-{n}"
    path.mkdir(parents=True)
    return path


def write_report(run_dir: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    report = {"format": REPORT_FORMAT, **report}
    json_path = run_dir / "report.json"
    html_path = run_dir / "report.html"
    write_atomic(json_path, json.dumps(report, indent=1, sort_keys=True, default=str) + "\n")
    write_atomic(html_path, render_html(report))
    return json_path, html_path


def load_report(path: Path) -> dict[str, Any]:
    if path.is_dir():
        path = path / "report.json"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(data, dict) or data.get("format") != REPORT_FORMAT:
        raise ReportError(f"{path} is not an aofcrash report (format {REPORT_FORMAT!r} expected)")
    return data


_CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:70rem;color:#1b1b1b}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .6rem;
text-align:left;font-size:.9rem}th{background:#f3f3f3}
.verdict{display:inline-block;padding:.3rem .8rem;border-radius:.3rem;font-weight:600}
.pass{background:#d9f2dd;color:#13501f}.fail{background:#fadcdc;color:#7a1212}
pre{background:#f7f7f7;padding:.8rem;overflow-x:auto;font-size:.85rem;border:1px solid #e3e3e3}
.muted{color:#666;font-size:.85rem}
"""


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "<p class='muted'>none</p>"
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r.get(c, '')))}</td>" for c in columns) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _kv(d: dict[str, Any]) -> str:
    return _table([{"field": k, "value": v} for k, v in d.items()], ["field", "value"])


def render_html(report: dict[str, Any]) -> str:
    """A self-contained page (no scripts, no external assets)."""
    violations = report.get("violations", [])
    ok = not violations
    verdict = "no violation found" if ok else f"{len(violations)} violation(s) found"
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>aofcrash {html.escape(str(report.get('command', '')))} report</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>aofcrash {html.escape(str(report.get('command', '')))}"
        f" — {html.escape(str(report.get('run_id', '')))}</h1>",
        f"<p><span id='verdict' class='verdict {'pass' if ok else 'fail'}'>"
        f"{html.escape(verdict)}</span></p>",
        "<h2>Run</h2>",
        _kv({k: v for k, v in report.get("run", {}).items()}),
    ]
    if report.get("totals"):
        parts += ["<h2>Totals</h2>", _kv(report["totals"])]
    configs = report.get("configurations", [])
    if configs:
        columns = sorted({c for row in configs for c in row})
        parts += ["<h2>Configurations</h2>", _table(configs, columns)]
    if report.get("coverage"):
        parts += ["<h2>Coverage</h2>", _kv(report["coverage"])]
    if report.get("events"):
        rows = [{"event": k, "count": v} for k, v in sorted(report["events"].items())]
        parts += ["<h2>What ran (events)</h2>", _table(rows, ["event", "count"])]
    parts.append("<h2 id='violations'>Violations</h2>")
    if not violations:
        parts.append("<p class='muted'>none</p>")
    for i, v in enumerate(violations, 1):
        parts.append(f"<h3>#{i}: {html.escape(str(v.get('rule', '')))}</h3>")
        if v.get("reproduction"):
            name = html.escape(str(v["reproduction"]))
            parts.append(
                f"<p>Reproduction: <a href='{name}'>{name}</a> — "
                f"<code>aofcrash replay {name}</code></p>"
            )
        parts.append(f"<pre>{html.escape(str(v.get('text', '')))}</pre>")
    parts.append("</body></html>\n")
    return "".join(parts)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")[:60] or "x"
