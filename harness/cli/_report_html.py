"""report.html, rendered from report.json alone: verdict and violations first, then what ran,
then the configuration. Self-contained: inline CSS and inline SVG pictures, no script, no
external asset, so it opens anywhere with no network and renders the same in any browser.

Every value read here may come from a hand-edited or damaged report.json: the page renders
whatever it gets (a field of the wrong type shows as text), it never raises on data.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["render_page"]

_CSS = """
:root{--fail:#7a1212;--failbg:#fbe3e3;--ok:#13501f;--okbg:#dcf3e0;--muted:#5f6368;--line:#dadce0}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;color:#1b1b1b;
background:#fafafa;line-height:1.45}
main{max-width:78rem;margin:0 auto;padding:1.2rem 1.6rem 3rem}
h1{font-size:1.35rem;margin:.2rem 0 .6rem}
h2{font-size:1.15rem;margin:2.2rem 0 .6rem;border-bottom:2px solid var(--line);padding-bottom:.2rem}
h3{font-size:1.05rem;margin:0 0 .4rem}
h4{font-size:.92rem;margin:1rem 0 .3rem;color:#333}
.verdict{display:block;padding:.7rem 1rem;border-radius:.4rem;font-weight:650;font-size:1.1rem}
.pass{background:var(--okbg);color:var(--ok);border:1px solid #a8d5b0}
.fail{background:var(--failbg);color:var(--fail);border:1px solid #f0b4b4}
.partial{background:#fff4e5;color:#7a4b00;border:1px solid #f5c98b}
.summary{color:var(--muted);margin:.4rem 0 0}
.card{background:#fff;border:1px solid var(--line);border-left:6px solid #c62828;
border-radius:.4rem;padding:.9rem 1.1rem;margin:1rem 0;box-shadow:0 1px 2px #0000000d}
.rule{font-size:.95rem;margin:.2rem 0 .6rem}
.badge{display:inline-block;background:#c62828;color:#fff;border-radius:1rem;padding:0 .6rem;
font-size:.8rem;margin-right:.4rem;vertical-align:middle}
.badge.grey{background:#5f6368}
table{border-collapse:collapse;margin:.4rem 0;font-size:.86rem;background:#fff;max-width:100%}
td,th{border:1px solid var(--line);padding:.22rem .55rem;text-align:left;vertical-align:top}
td{overflow-wrap:anywhere}
table.diff{table-layout:fixed;width:100%}
table.diff col.key{width:22%}
table.diff code{white-space:pre-wrap;word-break:break-all}
tr.total td{font-weight:600;background:#f1f3f4}
th{background:#f1f3f4;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.lost td{background:#fde7e7}
code,pre,.mono{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace;font-size:.84rem}
pre{background:#f6f8fa;padding:.7rem;overflow-x:auto;border:1px solid #e3e3e3;border-radius:.3rem;
margin:.3rem 0}
pre.cmd{background:#202124;color:#e8eaed;border:0;user-select:all}
mark{background:#ffd54f;padding:0 1px}
.eq{color:var(--muted);font-style:italic}
ol.program{margin:.3rem 0;padding-left:2.6rem;font-size:.86rem}
ol.program li{margin:.05rem 0}
ol.program .res{color:var(--muted)}
ol.program .bad{color:var(--fail);font-weight:600}
.facts{display:grid;grid-template-columns:max-content 1fr max-content 1fr;gap:.05rem 1rem;
font-size:.86rem;margin:.4rem 0}
.facts dt{color:var(--muted)}
.facts dd{margin:0}
.plot{max-width:100%;height:auto;background:#fff}
.muted{color:var(--muted);font-size:.86rem}
details{margin:.4rem 0}
summary{cursor:pointer;color:#1a4f8b}
figure{margin:.5rem 0}
.grid{display:flex;flex-wrap:wrap;gap:1rem;align-items:flex-start}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _bytes_text(value: str) -> str:
    """A latin-1 JSON string (one code point per byte) shown like bytes: printable ASCII as
    is, everything else as an escape."""
    out = []
    for ch in value:
        o = ord(ch)
        if ch == "\\":
            out.append("\\\\")
        elif 32 <= o < 127:
            out.append(ch)
        elif ch in "\r\n\t":
            out.append({"\r": "\\r", "\n": "\\n", "\t": "\\t"}[ch])
        else:
            out.append(f"\\x{o:02x}" if o < 256 else f"\\u{o:04x}")
    return "".join(out)


def _shown(value: Any) -> str:
    """Text that may carry raw bytes (a latin-1 JSON string), every byte outside printable
    ASCII escaped as ``\\xNN`` (newlines kept): a control byte renders as an empty box."""
    text = str(value)
    return "".join(ch if ch == "\n" or 32 <= ord(ch) < 127
                   else (f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
                   for ch in text)


#: The longest value or key shown whole; a longer one keeps its start and end and says how
#: many bytes it leaves out (README, "How to read a report").
_SHOWN_CHARS = 60


def _elided(value: str) -> str:
    """HTML of a long byte string: its start and end, the middle as ``[N bytes]``."""
    if len(value) <= _SHOWN_CHARS:
        return _e(_bytes_text(value))
    head, tail = value[: _SHOWN_CHARS - 20], value[-12:]
    left_out = len(value) - len(head) - len(tail)
    return (f"{_e(_bytes_text(head))}<span class='eq'>… [{left_out} bytes] …</span>"
            f"{_e(_bytes_text(tail))} <span class='eq'>({len(value)} bytes)</span>")


def _string_diff(a: str, b: str) -> tuple[str, str]:
    """HTML of two strings that differ: the common prefix elided (a few bytes of context
    kept), the differing bytes marked, long tails cut."""
    same = 0
    while same < min(len(a), len(b)) and a[same] == b[same]:
        same += 1
    end_same = 0
    while (end_same < min(len(a), len(b)) - same
           and a[len(a) - 1 - end_same] == b[len(b) - 1 - end_same]):
        end_same += 1

    def one(s: str) -> str:
        keep = max(0, same - 6)
        head = (f"<span class='eq'>[{keep} equal bytes]</span>" if keep > 0 else "")
        ctx = _e(_bytes_text(s[keep:same]))
        mid = s[same:len(s) - end_same]
        tail = s[len(s) - end_same:]
        marked = (f"<mark>{_elided(mid)}</mark>" if len(mid) > _SHOWN_CHARS
                  else f"<mark>{_e(_bytes_text(mid))}</mark>" if mid else "<mark>∅</mark>")
        shown_tail = tail if len(tail) <= 24 else tail[:21]
        tail_html = _e(_bytes_text(shown_tail)) + (
            f"<span class='eq'>… [{len(tail) - 21} equal bytes]</span>" if len(tail) > 24
            else "")
        return f"{head}{ctx}{marked}{tail_html} <span class='eq'>({len(s)} bytes)</span>"

    return one(a), one(b)


def _kv_html(kv: Any) -> str:
    if kv is None:
        return "<span class='eq'>(absent)</span>"
    d = _dict(kv)
    kind = d.get("type", "?")
    value = d.get("value")
    expiry = d.get("expire_at_ms")
    exp = "" if expiry is None else f" <span class='eq'>(expires at {_e(expiry)} ms)</span>"
    if isinstance(value, str):
        return f"{_e(kind)} <code>{_elided(value)}</code>{exp}"
    items = _list(value)
    body = ", ".join(_elided(json.dumps(x, ensure_ascii=False) if not isinstance(x, str)
                             else x) for x in items[:8])
    more = f", … ({len(items)} items)" if len(items) > 8 else ""
    return f"{_e(kind)} [{len(items)}] <code>{body}{more}</code>{exp}"


def _diff_rows(diff: list[Any]) -> str:
    rows = []
    for d in diff:
        d = _dict(d)
        exp, rec = d.get("expected"), d.get("recovered")
        e_html, r_html = _kv_html(exp), _kv_html(rec)
        ed, rd = _dict(exp), _dict(rec)
        if (ed.get("type") == rd.get("type") == "string" and isinstance(ed.get("value"), str)
                and isinstance(rd.get("value"), str) and ed["value"] != rd["value"]):
            a, b = _string_diff(ed["value"], rd["value"])
            e_html = f"string <code>{a}</code>"
            r_html = f"string <code>{b}</code>"
        elif (ed.get("type") == rd.get("type") and isinstance(ed.get("value"), list)
              and isinstance(rd.get("value"), list)):
            ea = [json.dumps(x, ensure_ascii=False) for x in ed["value"]]
            ra = [json.dumps(x, ensure_ascii=False) for x in rd["value"]]
            only_e = [x for x in ea if x not in ra]
            only_r = [x for x in ra if x not in ea]
            if only_e or only_r:
                e_html += ("<br><span class='eq'>only here:</span> <mark>"
                           + _elided(", ".join(only_e[:8])) + "</mark>") if only_e else ""
                r_html += ("<br><span class='eq'>only here:</span> <mark>"
                           + _elided(", ".join(only_r[:8])) + "</mark>") if only_r else ""
        rows.append(f"<tr><td class='mono'>db{_e(d.get('db'))} "
                    f"{_elided(str(d.get('key', '')))}</td>"
                    f"<td>{e_html}</td><td>{r_html}</td></tr>")
    return ("<table class='diff'><colgroup><col class='key'><col><col></colgroup>"
            "<thead><tr><th>key</th><th>expected</th><th>recovered</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


def _words(key: str) -> str:
    """A JSON key as a header: words, the unit last in brackets (``elapsed_s``: elapsed (s))."""
    if key.endswith("_per_s"):
        return key[: -len("_per_s")].replace("_", " ") + " per second"
    for suffix, unit in (("_ms", "ms"), ("_s", "s")):
        if key.endswith(suffix):
            return key[: -len(suffix)].replace("_", " ") + f" ({unit})"
    return key.replace("_", " ")


def _table(rows: Sequence[Any], columns: Sequence[str], *,
           numeric: Sequence[str] = ()) -> str:
    if not rows:
        return "<p class='muted'>none</p>"
    head = "".join(f"<th>{_e(_words(c))}</th>" for c in columns)
    body = []
    for r in rows:
        r = _dict(r)
        cells = "".join(
            f"<td class='{'num' if c in numeric else ''}'>{_value(r.get(c, ''))}</td>"
            for c in columns)
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _value(v: Any, depth: int = 0) -> str:
    """A value as HTML: nested objects as nested tables, lists as comma lists."""
    if isinstance(v, dict) and depth < 3:
        if not v:
            return "<span class='muted'>—</span>"
        rows = "".join(f"<tr><th>{_e(_words(str(k)))}</th><td>{_value(x, depth + 1)}</td></tr>"
                       for k, x in v.items())
        return f"<table>{rows}</table>"
    if isinstance(v, list) and depth < 3:
        if all(not isinstance(x, dict | list) for x in v):
            return _e(", ".join(str(x) for x in v)) or "<span class='muted'>—</span>"
        return "<br>".join(_value(x, depth + 1) for x in v)
    if v is None:
        return "<span class='muted'>—</span>"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return _e(v)


def _kv(d: dict[str, Any]) -> str:
    if not d:
        return "<p class='muted'>none</p>"
    rows = "".join(f"<tr><th>{_e(_words(str(k)))}</th><td>{_value(v)}</td></tr>"
                   for k, v in d.items())
    return f"<table><tbody>{rows}</tbody></table>"


# -- violations ----------------------------------------------------------------------------


def _first_violation(v: dict[str, Any]) -> dict[str, Any]:
    verdict = _dict(v.get("verdict"))
    if _list(verdict.get("violations")):
        return _dict(_list(verdict["violations"])[0])
    return _dict(v.get("violation"))  # verify reports carry the one violation as is


def _history_timeline(v: dict[str, Any]) -> dict[str, Any] | None:
    """A timeline from a recorded history (a real server: no filesystem trace): writes
    submitted and acknowledged in time order, the injected faults, the crash."""
    rows = [_dict(e) for e in _list(_dict(v.get("history")).get("entries"))]
    first = _first_violation(v)
    crash_ms = _dict(first.get("crash")).get("crash_ms")
    if not rows or not isinstance(crash_ms, int):
        return None
    raw: list[tuple[int, int, dict[str, Any]]] = []
    for e in rows:
        text = _shown("; ".join(" ".join(map(str, c)) for c in _list(e.get("commands"))))[:60]
        executed = e.get("executed_ms")
        t = executed if isinstance(executed, int) else 0
        raw.append((t, 0, {"kind": "submit", "entry": e.get("index"), "text": text,
                           "client": e.get("client", 0)}))
        if isinstance(e.get("ack_ms"), int) and e.get("outcome") in ("ok", "error"):
            raw.append((e["ack_ms"], 1, {"kind": "ack", "entry": e.get("index"),
                                         "outcome": e.get("outcome")}))
    raw.append((crash_ms, 2, {"kind": "crash"}))
    raw.sort(key=lambda r: (r[0], r[1]))
    events = [{"seq": i, "epoch": 1, "t": t, **ev} for i, (t, _, ev) in enumerate(raw)]
    f = first.get("frontier")
    k = first.get("closest_k")
    position = 0
    entries = []
    for e in rows:
        pos = None
        if e.get("outcome") != "error":
            position += 1
            pos = position
        status = ("refused" if pos is None else "survived" if k is not None and pos <= k
                  else "lost" if isinstance(f, int) and pos <= f and e.get("outcome") == "ok"
                  else "may be lost")
        entries.append({"entry": e.get("index"), "position": pos, "status": status})
    return {"events": events, "epochs": [{"epoch": 1, "crash_ms": crash_ms, "frontier": f,
                                          "k": k, "window_ms": None, "entries": entries}]}


def _lost_or_phantom(v: dict[str, Any]) -> str:
    parts = []
    epochs = _list(v.get("epochs"))
    last = _dict(epochs[-1]) if epochs else {}
    lost = [e for e in _list(last.get("entries")) if _dict(e).get("status") == "lost"]
    details = _dict(_first_violation(v).get("details"))
    if lost:
        rows = [{"#": _dict(e).get("entry"), "write": _shown(_dict(e).get("text")),
                 "executed at (ms)": _dict(e).get("executed_ms"),
                 "acknowledged at (ms)": _dict(e).get("ack_ms"),
                 "position": _dict(e).get("position")} for e in lost]
        columns = ["#", "write", "position", "executed at (ms)", "acknowledged at (ms)"]
        parts.append(f"<h4>Acknowledged writes lost ({len(lost)})</h4>")
        parts.append(_table(rows[:8], columns, numeric=["#", "position"]))
        if len(rows) > 8:
            parts.append(f"<details><summary>the other {len(rows) - 8} lost writes</summary>"
                         + _table(rows[8:], columns, numeric=["#", "position"])
                         + "</details>")
    elif _list(details.get("lost_entries")):
        parts.append("<h4>Writes lost</h4><ul>" + "".join(
            f"<li><code>{_e(_shown(x))}</code></li>" for x in _list(details["lost_entries"]))
            + "</ul>")
    if _list(details.get("refused_entries")):
        parts.append("<h4>The phantom: refused writes whose effect came back</h4><ul>" + "".join(
            f"<li><code>{_e(_shown(x))}</code></li>" for x in _list(details["refused_entries"]))
            + "</ul>")
        if _list(details.get("phantom_keys")):
            parts.append("<p class='muted'>keys: "
                         + _e(_shown(", ".join(map(str, _list(details["phantom_keys"])))))
                         + "</p>")
    for key, value in details.items():
        if key not in ("lost_entries", "refused_entries", "phantom_keys"):
            parts.append(f"<p class='muted'>{_e(key)}: {_value(value)}</p>")
    return "".join(parts)


def _facts(v: dict[str, Any]) -> str:
    first = _first_violation(v)
    crash = _dict(first.get("crash"))
    epochs = _list(v.get("epochs"))
    last = _dict(epochs[-1]) if epochs else {}
    facts: list[tuple[str, str]] = []
    if v.get("configuration"):
        facts.append(("configuration", _e(v["configuration"])))
    model = crash.get("model") or v.get("model")
    when = crash.get("crash_ms", last.get("crash_ms"))
    crash_words = f"model {_e(model)}" + ("" if when is None else f", at {_e(when)} ms")
    if crash.get("trace_index") is not None:
        crash_words += f", after filesystem operation {_e(crash['trace_index'])}"
    facts.append(("crash", crash_words))
    if v.get("fault"):
        facts.append(("fault", _e(v["fault"])))
    if v.get("mechanism"):
        facts.append(("what explains it", _e(_shown(v["mechanism"]))))
    image = last.get("image")
    if image is None and crash.get("choice") is not None:
        from harness.cli._report_replay import describe_choice

        image = describe_choice(crash.get("choice"))
    if image:
        facts.append(("crash image", _e(image)))
    f = first.get("frontier", last.get("frontier"))
    if f is not None:
        facts.append(("frontier F", f"{_e(f)} (the first {_e(f)} executed writes had to survive)"))
    k = _dict(v.get("verdict")).get("k")
    closest = first.get("closest_k")
    if k is not None:
        facts.append(("recovered", f"S({_e(k)}): the first {_e(k)} writes, nothing after"))
    elif closest is not None:
        facts.append(("closest prefix", f"S({_e(closest)}) (no S(k) matches exactly)"))
    if last.get("window_ms") is not None:
        facts.append(("everysec window W", f"{_e(last['window_ms'])} ms before the crash"))
    if v.get("confirmed_by_replay") is not None:
        facts.append(("confirmed by replay", "yes" if v["confirmed_by_replay"] else "no"))
    rows = "".join(f"<dt>{k_}</dt><dd>{val}</dd>" for k_, val in facts)
    return f"<dl class='facts'>{rows}</dl>"


def _program(v: dict[str, Any]) -> str:
    from harness.cli._report_replay import collapse

    program = _list(v.get("program"))
    if not program:
        return ""
    items = []
    for row in collapse(program):
        res = str(row.get("result") or "")
        bad = "LOST" in res or "VIOLATION" in res
        res_html = (f" <span class='{'bad' if bad else 'res'}'>→ {_e(res)}</span>"
                    if res else "")
        times = row.get("times", 1)
        times_html = f" <span class='res'>(&times; {_e(times)})</span>" if times > 1 else ""
        items.append(f"<li value='{_e(row.get('n', ''))}'><code>{_e(row.get('text', ''))}"
                     f"</code>{times_html}{res_html}</li>")
    if len(items) > 40:
        head, tail = items[:8], items[-24:]
        middle = items[8:-24]
        body = ("".join(head) + f"<li class='muted' style='list-style:none'><details><summary>"
                f"{len(middle)} more steps</summary><ol class='program'>{''.join(middle)}"
                "</ol></details></li>" + "".join(tail))
    else:
        body = "".join(items)
    note = v.get("program_note")
    return (f"<h4>The program, as steps ({len(program)})</h4>"
            + (f"<p class='muted'>{_e(note)}</p>" if note else "")
            + f"<ol class='program'>{body}</ol>")


def _epochs(v: dict[str, Any]) -> str:
    epochs = _list(v.get("epochs"))
    if not epochs:
        return ""
    from harness.cli._report_violations import epoch_line

    rows = "".join(f"<li>{_e(epoch_line(_dict(e)))}</li>" for e in epochs)
    return f"<h4>Every crash epoch ({len(epochs)})</h4><ol class='program'>{rows}</ol>"


def _timeline(v: dict[str, Any], plot: Callable[..., str]) -> str:
    data: dict[str, Any] | None = {"events": v.get("events"), "epochs": v.get("epochs")}
    if not _list(v.get("events")):
        data = _history_timeline(v)
        if data is None:
            return ""
    try:
        svg = plot(data, title=f"Timeline of the violating run ({v.get('rule')})")
    except Exception as exc:  # a damaged report.json: say so, render the rest
        return f"<p class='muted'>timeline not drawn: {_e(exc)}</p>"
    return f"<figure class='timeline'>{svg}</figure>"


def _violation_card(v: dict[str, Any], group: dict[str, Any], plots: Any) -> str:
    from harness.cli._report_replay import RULE_WORDS

    count = group.get("count", 1)
    rule = v.get("rule", "?")
    headline = v.get("headline") or _first_violation(v).get("message", "")
    explanation = v.get("explanation") or RULE_WORDS.get(str(rule), "")
    parts = [f"<section class='card violation' id='{_e(v.get('id', ''))}'>",
             f"<h3><span class='badge'>{_e(rule)}</span>{_e(headline)}</h3>",
             f"<p class='rule'>{_e(explanation)}</p>"]
    if count and count != 1:
        where = ""
        if _list(group.get("seen")):  # fuzz: where the findings of this cause were seen
            where = (f" Seen under {_e(group.get('configuration') or '-')}; model(s) "
                     f"{_e(group.get('model') or '-')}.")
        parts.append(f"<p class='muted'>{_e(count)} {_e(_unit([group]))}s share this cause; "
                     f"the smallest reproduction is shown.{where}</p>")
    parts.append(_facts(v))
    # The picture first: it is what shows the bug at a glance (and fits the first screen).
    parts.append(_timeline(v, plots.timeline_svg))
    parts.append(_lost_or_phantom(v))
    first = _first_violation(v)
    diff = _list(first.get("diff"))
    if diff:
        n = first.get("differing_keys", len(diff))
        against = first.get("diff_k")
        parts.append(f"<h4>Where the data differs: {_e(n)} key(s)"
                     + ("" if against is None else f", expected = S({_e(against)})")
                     + "</h4>")
        parts.append(_diff_rows(diff[:10]))
        if len(diff) > 10:
            parts.append(f"<details><summary>{len(diff) - 10} more differing key(s)</summary>"
                         + _diff_rows(diff[10:]) + "</details>")
        if isinstance(n, int) and n > len(diff):
            parts.append(f"<p class='muted'>… and {n - len(diff)} more key(s)</p>")
    parts.append(_program(v))
    parts.append(_epochs(v))
    if v.get("replay") or v.get("reproduction"):
        command = v.get("replay") or f"aofcrash replay {v.get('reproduction')}"
        parts.append("<h4>Replay it</h4>"
                     f"<pre class='cmd'>{_e(command)}</pre>")
        parts.append(f"<p class='muted'>reproduction: <a href='{_e(v.get('reproduction'))}'>"
                     f"{_e(v.get('reproduction'))}</a> — once the bug is fixed, the same "
                     "command with <code>--expect fixed</code> turns it into a regression "
                     "test for pytest.</p>")
    elif v.get("reproduce"):
        parts.append(f"<h4>Re-run it</h4><pre class='cmd'>{_e(v['reproduce'])}</pre>")
        if v.get("cause"):  # verify: the ingredients it needs, from re-runs without each
            parts.append(f"<h4>What it needs</h4><p>{_e(v['cause'])}</p>")
    if v.get("study_error"):
        parts.append(f"<p class='muted'>replay for the report failed: {_e(v['study_error'])}</p>")
    parts.append("<details><summary>the oracle's full text</summary>"
                 f"<pre>{_e(_shown(v.get('text', '')))}</pre></details>")
    members = [m for m in _list(group.get("members")) if m != v.get("id")]
    seen = [_dict(row) for row in _list(group.get("seen")) if _dict(row).get("id") in members]
    if seen:  # fuzz: one cause, seen under other configurations, models or faults
        rows = "".join(f"<li><span class='mono'>{_e(row.get('id'))}</span>: "
                       f"{_e(row.get('configuration'))}, model {_e(row.get('model') or '-')}, "
                       f"{_e(row.get('fault'))}</li>" for row in seen)
        parts.append(f"<details><summary>the other {len(members)} violation(s) of this cause, "
                     f"and where each was seen</summary><ul>{rows}</ul></details>")
    elif members:
        parts.append(f"<details><summary>the other {len(members)} violation(s) of this cause"
                     "</summary><p class='mono'>" + _e(", ".join(map(str, members)))
                     + "</p></details>")
    parts.append("</section>")
    return "".join(parts)


def _groups(report: dict[str, Any], violations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups = [_dict(g) for g in _list(report.get("groups"))]
    ids = {v.get("id") for v in violations}
    if groups and all(g.get("representative") in ids for g in groups):
        return groups
    # An older report (no groups): every violation is its own group.
    return [{"group": i, "count": 1, "representative": v.get("id"), "members": [v.get("id")]}
            for i, v in enumerate(violations, 1)]


# -- what ran ------------------------------------------------------------------------------


def _coverage_plots(report: dict[str, Any], plots: Any) -> list[str]:
    out: list[str] = []
    cov = _dict(report.get("coverage_matrix"))
    rows, cols, values = _list(cov.get("rows")), _list(cov.get("columns")), _list(cov.get("values"))
    if rows and cols and len(values) == len(rows):
        try:
            out.append(plots.heatmap_svg([str(r) for r in rows], [str(c) for c in cols],
                                         values, title=str(cov.get("title", "coverage")),
                                         xlabel=str(cov.get("xlabel", "")),
                                         ylabel=str(cov.get("ylabel", ""))))
        except Exception as exc:
            out.append(f"<p class='muted'>coverage not drawn: {_e(exc)}</p>")
    series = _dict(report.get("progress_series"))
    points = _list(series.get("points"))
    if len(points) >= 2:
        try:
            out.append(plots.series_svg(points, title=str(series.get("title", "progress")),
                                        xlabel=str(series.get("xlabel", "")),
                                        ylabel=str(series.get("ylabel", "")),
                                        marks=[tuple(m) for m in _list(series.get("marks"))]))
        except Exception as exc:
            out.append(f"<p class='muted'>progress not drawn: {_e(exc)}</p>")
    return out


def _unit(groups: Sequence[dict[str, Any]]) -> str:
    """What a group counts: violating states (explore), trials (verify), violations (fuzz)."""
    unit = next((str(g["unit"]) for g in groups if g.get("unit")), "")
    return {"state": "violating state", "trial": "violating trial"}.get(unit, "violation")


def _faults_seen(group: dict[str, Any], rep: dict[str, Any]) -> Any:
    """The representative's faults, and how many other fault sets its cause was seen with."""
    faults = {str(_dict(row).get("fault")) for row in _list(group.get("seen"))}
    faults.discard(str(rep.get("fault")))
    if not faults:
        return rep.get("fault")
    return f"{rep.get('fault')} (and {len(faults)} other fault set(s))"


def _cause_rows(groups: Sequence[dict[str, Any]], by_id: dict[Any, dict[str, Any]],
                totals: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per cause; when the totals count more than the groups hold (an older report),
    a "not grouped" row holds the rest, so the rows always add up to the verdict's count."""
    rows: list[dict[str, Any]] = []
    for g in groups:
        rep = by_id.get(g.get("representative"), {})
        count = g.get("count", 1)
        rows.append({"cause": f"#{g.get('group')}", "rule": rep.get("rule"),
                     "what explains it": _shown(g.get("mechanism") or rep.get("mechanism")
                                                or "—"),
                     "configuration": g.get("configuration") or rep.get("configuration"),
                     "model": g.get("model") or rep.get("model"),
                     "fault": _faults_seen(g, rep),
                     "violations": count if isinstance(count, int) else 1})
    grouped = sum(r["violations"] for r in rows)
    counted = totals.get("violating_states", totals.get("violations"))
    if rows and isinstance(counted, int) and counted > grouped:
        rows.append({"cause": "not grouped", "rule": "", "what explains it":
                     "counted by the run, not kept in detail", "configuration": "",
                     "model": "", "fault": "", "violations": counted - grouped})
    return rows


#: "What ran": report.json's totals in words (units last), in this order (what ran, what it
#: found, how long it took); a key not listed reads as itself, after these.
_TOTAL_LABELS = {
    "runs": "workload runs",
    "trials": "trials",
    "examples": "examples run",
    "slices": "slices (a configuration's turn)",
    "states": "crash states checked",
    "crash_points": "crash points explored / all",
    "distinct_aof_contents": "distinct AOF contents recovered",
    "full_recoveries": "full recoveries",
    "real_recoveries": "recoveries by the real binary",
    "consistent": "consistent trials",
    "not_exercised": "trials not exercised (nothing had to survive)",
    "unavailable": "trials where the server refused to start (allowed)",
    "acknowledged_then_unavailable": "trials acknowledged, then unavailable",
    "fault_asked_trials": "trials with a fault asked for",
    "fault_fired_trials": "trials in which the fault fired",
    "acked_entries": "writes acknowledged",
    "unknown_entries": "writes with no reply before the crash",
    "error_entries": "writes refused with an error",
    "violations": "violations",
    "violating_states": "violating crash states",
    "runs_with_violations": "runs with a violation",
    "runs_not_run": "runs not run",
    "causes": "causes (mechanisms)",
    "attributed_trials": "trials attributed",
    "first_failure_s": "first violation found after (s, wall clock)",
    "stopped_by": "stopped by",
    "elapsed_s": "elapsed (s, wall clock, the whole run)",
    "time_s": "time in workers (s)",
    "attribution_s": "of which attributing causes (s, wall clock)",
    "states_per_s": "crash states checked per second (wall clock)",
    "recoveries_per_s": "recoveries per second (wall clock)",
    "trials_per_s": "trials per second (wall clock, attribution aside)",
}
_TOTAL_ORDER = {key: i for i, key in enumerate(_TOTAL_LABELS)}


def _total_label(key: str) -> str:
    return _TOTAL_LABELS.get(key) or _words(key)


def _totals(totals: dict[str, Any], report: dict[str, Any]) -> str:
    """The totals with labels in words; the two kinds of time said apart: elapsed is the wall
    clock of the whole run, the time in workers is summed over every worker process (so it
    can exceed the elapsed time)."""
    rows = []
    ordered = sorted(totals.items(), key=lambda kv: _TOTAL_ORDER.get(kv[0], len(_TOTAL_ORDER)))
    for key, value in ordered:
        if key == "time_s" and isinstance(value, dict):
            workers = value.get("workers")
            parts = [f"{_e(k)} {_e(v)} s" for k, v in value.items() if k != "workers"]
            over = (f"summed over {_e(workers)} worker process(es), so it can exceed the "
                    "elapsed time" if workers is not None else "summed over the workers")
            rows.append((_TOTAL_LABELS["time_s"],
                         ", ".join(parts) + f" <span class='muted'>({over})</span>"))
        else:
            rows.append((_e(_total_label(key)), _value(value)))
    if not rows:
        return "<p class='muted'>none</p>"
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table><tbody>{body}</tbody></table>"


def render_page(report: dict[str, Any]) -> str:
    from harness.cli import _plots as plots

    violations = [_dict(v) for v in _list(report.get("violations"))]
    for i, v in enumerate(violations, 1):
        v.setdefault("id", f"v{i}")
    groups = _groups(report, violations)
    by_id = {v.get("id"): v for v in violations}
    command = str(report.get("command", ""))
    totals = _dict(report.get("totals"))
    rows = _cause_rows(groups, by_id, totals)
    total = sum(int(r["violations"]) for r in rows)
    unit = _unit(groups)
    ok = not violations
    if ok:
        verdict = "PASS: no violation found"
    else:
        causes = sum(1 for r in rows if r["cause"] != "not grouped")
        verdict = (f"FAIL: {total} {unit}(s) from {causes} cause(s)"
                   if causes != total else f"FAIL: {total} {unit}(s)")
    interrupted = report.get("interrupted")
    if interrupted:
        verdict = ("INTERRUPTED: no violation in what finished" if ok
                   else verdict + " in what finished (run interrupted)")
    css = "partial" if interrupted and ok else "pass" if ok else "fail"
    summary = str(report.get("summary", ""))
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width,initial-scale=1'>",
        f"<title>aofcrash {_e(command)} — {'pass' if ok else 'FAIL'}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>aofcrash {_e(command)} <span class='muted'>{_e(report.get('run_id', ''))}"
        "</span></h1>",
        f"<div id='verdict' class='verdict {css}'>{_e(verdict)}</div>",
    ]
    if interrupted:
        parts.append(f"<p class='summary' id='interrupted'><b>Partial report</b>: "
                     f"{_e(_shown(interrupted))}. Everything below is what had finished.</p>")
    if summary:
        parts.append(f"<p class='summary'>{_e(summary)}</p>")
    parts.append("<h2 id='violations'>Violations</h2>")
    if ok:
        parts.append("<p class='muted'>none: every recovery kept the contract.</p>")
    else:
        if len(rows) > 1:
            columns = ["cause", "rule", "what explains it", "configuration", "model", "fault",
                       "violations"]
            shown = [{**r, "violations": r["violations"]} for r in rows]
            table = _table(shown, columns, numeric=["violations"])
            # The sum row: the table adds up to the verdict's count.
            total_row = ("<tr class='total'><td>total</td>" + "<td></td>" * (len(columns) - 2)
                         + f"<td class='num'>{total}</td></tr></tbody>")
            parts.append(table.replace("</tbody>", total_row, 1))
        if report.get("violations_note"):
            parts.append(f"<p class='muted'>{_e(report['violations_note'])}</p>")
        for g in groups:
            found = by_id.get(g.get("representative"))
            if found is not None:
                parts.append(_violation_card(found, g, plots))
    parts.append("<h2 id='what-ran'>What ran</h2>")
    parts.append(_totals(totals, report))
    pictures = _coverage_plots(report, plots)
    if pictures:
        parts.append("<div class='grid'>" + "".join(f"<figure>{p}</figure>" for p in pictures)
                     + "</div>")
    configs = [_dict(c) for c in _list(report.get("configurations"))]
    if configs:
        columns = list(dict.fromkeys(k for row in configs for k in row))
        parts += ["<h4>Per configuration</h4>", _table(configs, columns)]
    events = _dict(report.get("events"))
    if events:
        rows = [{"event": k, "count": n} for k, n in sorted(events.items())]
        parts.append(f"<details><summary>every event counted ({len(rows)})</summary>"
                     + _table(rows, ["event", "count"], numeric=["count"]) + "</details>")
    parts.append("<h2 id='configuration'>Configuration</h2>")
    parts.append(_kv(_dict(report.get("run"))))
    parts.append("<p class='muted'>How to read this report: README.md, section "
                 "“How to read a report”.</p>")
    parts.append("</main></body></html>\n")
    return "".join(parts)
