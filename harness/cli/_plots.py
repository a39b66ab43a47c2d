"""The report's pictures, drawn with matplotlib as inline SVG (text kept as text, no external
assets, so report.html stays one self-contained file that opens with no network).

* ``timeline_svg``: one violating run like a Jepsen timeline: per client the writes from
  submission to acknowledgement (green survived, red acknowledged and lost, amber allowed to
  be lost, grey refused), per file the AOF writes, fsyncs, renames and directory fsyncs,
  the injected faults, the crash, the frontier F and the everysec window W. The x axis is the
  order of events (many happen at one virtual millisecond); its labels are virtual times.
* ``heatmap_svg``: counts over two named axes (coverage of faults x configurations, states
  per image kind x model).
* ``series_svg``: a quantity over wall-clock time (examples or states explored).

Each function returns an ``<svg>`` element as a string; pure functions of their JSON input.
"""

from __future__ import annotations

import io
import itertools
import re
from collections.abc import Sequence
from typing import Any

__all__ = ["heatmap_svg", "series_svg", "timeline_figure", "timeline_svg"]

_COUNTER = itertools.count(1)

_STATUS_COLORS = {
    "survived": "#4c9a2a",
    "lost": "#d62728",
    "may be lost": "#f0ad4e",
    "refused": "#9e9e9e",
    "pending": "#f0ad4e",
}
_OP_STYLE: dict[str, tuple[str, str, str]] = {
    # op -> (marker, color, legend label)
    "write": ("|", "#1f77b4", "write"),
    "fsync": ("^", "#2ca02c", "fsync"),
    "fdatasync": ("^", "#2ca02c", "fsync"),
    "fsync_failed": ("X", "#d62728", "failed fsync"),
    "ftruncate": ("<", "#8c564b", "ftruncate"),
    "rename": ("s", "#9467bd", "rename"),
    "unlink": ("x", "#7f7f7f", "unlink"),
    "fsync_dir": ("D", "#17becf", "directory fsync"),
}
_MAX_EVENTS = 160  # events shown before the crash; a longer run shows its end


def _figure(width_in: float, height_in: float) -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=96)


def _svg(fig: Any, title: str) -> str:
    """The figure as an inline <svg> with text as text, a unique id prefix and no date."""
    import matplotlib

    buf = io.StringIO()
    salt = f"aofcrash-{next(_COUNTER)}"
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    start = text.find("<svg")
    svg = text[start:] if start >= 0 else text
    # Unique ids per figure: several figures share one HTML document.
    svg = re.sub(r'id="([^"]+)"', lambda m: f'id="{salt}-{m.group(1)}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{salt}-{m.group(1)})", svg)
    svg = re.sub(r'xlink:href="#([^"]+)"', lambda m: f'xlink:href="#{salt}-{m.group(1)}"', svg)
    label = _attr(_shown(title))
    svg = svg.replace("<svg ", f'<svg role="img" aria-label="{label}" class="plot" ', 1)
    return svg.strip()


def _shown(text: object) -> str:
    """`text` as drawn: control and other unprintable characters (a key's raw bytes) escaped
    as ``\\x03``; the fonts have no glyph for them and matplotlib warned for each, putting the
    raw byte into logs."""
    value = str(text)
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)


def _attr(text: str) -> str:
    return (text.replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;")
            .replace(">", "&gt;"))


def _window(events: Sequence[dict[str, Any]], crash_seqs: Sequence[int],
            focus: Sequence[int]) -> tuple[int, int]:
    """The span of events to draw: up to the last recovery, at most _MAX_EVENTS before the
    last crash, reaching back to the events in `focus` (lost writes, F) when it can."""
    if not events:
        return 0, 0
    end = events[-1]["seq"]
    last_crash = crash_seqs[-1] if crash_seqs else end
    start = max(0, last_crash - _MAX_EVENTS)
    # Reach back to the lost writes and F: they are the point of the picture. Past about a
    # thousand events the bars get too thin to see, so a longer run shows its end only.
    wanted = [s for s in focus if s >= last_crash - 6 * _MAX_EVENTS]
    if wanted:
        start = min(start, max(0, min(wanted) - 5))
    return start, end


def timeline_svg(study: dict[str, Any], *, title: str = "timeline") -> str:
    """The timeline of one replayed violation (``_report_replay.study``'s output)."""
    return _svg(timeline_figure(study, title=title), title)


def _printable(text: str) -> str:
    """Raw bytes (a latin-1 string) with everything outside printable ASCII as ``\\xNN``: a
    font has no glyph for a control byte, which would draw as an empty box."""
    return "".join(ch if 32 <= ord(ch) < 127 else f"\\x{ord(ch) & 0xff:02x}" for ch in text)


_LABEL_CHARS = 28
_LABEL_ROWS = 3  # rows of write labels above the lanes, staggered so that none overlap
_AXES_WIDTH_PT = 0.78 * 10.5 * 72  # the timeline's axes, about (for label widths)


def _place_labels(wanted: Sequence[tuple[float, str, bool]], x_min: float, x_max: float
                  ) -> list[tuple[float, int, str, bool]]:
    """(x, row, text, lost) for the write labels that fit: lost writes first, then the others
    in order; a label starts at its bar (moved left to end inside the axes) and goes in the
    first row where it overlaps no other (widths estimated from the font size), or is left
    out."""
    per_char = 7 * 0.62 * (x_max - x_min) / _AXES_WIDTH_PT  # data units per character, 7 pt
    ends: list[list[tuple[float, float]]] = [[] for _ in range(_LABEL_ROWS)]
    placed = []
    for x, text, lost in sorted(wanted, key=lambda w: (not w[2], w[0])):
        width = (len(text) + 1) * per_char
        x = max(x_min, min(x, x_max - width))
        for row in range(_LABEL_ROWS):
            if all(x + width <= a or x >= b for a, b in ends[row]):
                ends[row].append((x, x + width))
                placed.append((x, row, text, lost))
                break
    return placed


def timeline_figure(study: dict[str, Any], *, title: str = "timeline") -> Any:
    """The matplotlib figure of ``timeline_svg`` (tests measure where its labels are)."""
    events: list[dict[str, Any]] = list(study.get("events") or [])
    epochs: list[dict[str, Any]] = list(study.get("epochs") or [])
    status: dict[tuple[int, int], str] = {}
    for row in epochs:
        for e in row.get("entries", []):
            status[(row["epoch"], e["entry"])] = e["status"]
    crash_seqs = [e["seq"] for e in events if e["kind"] == "crash"]
    submits = {(e["epoch"], e["entry"]): e for e in events if e["kind"] == "submit"}
    acks = {(e["epoch"], e["entry"]): e for e in events if e["kind"] == "ack"}
    last = epochs[-1] if epochs else None
    frontier_seq = None
    focus: list[int] = []
    if last is not None:
        ep = last["epoch"]
        for e in last.get("entries", []):
            key = (ep, e["entry"])
            if e["status"] == "lost" and key in submits:
                focus.append(submits[key]["seq"])
            if (last.get("frontier") and e.get("position") == last["frontier"]
                    and key in acks):
                frontier_seq = acks[key]["seq"]
                focus.append(frontier_seq)
    lo, hi = _window(events, crash_seqs, focus)
    shown = [e for e in events if lo <= e["seq"] <= hi]

    clients = sorted({e.get("client", 0) for e in events if e["kind"] == "submit"}) or [0]
    paths = []
    for e in shown:
        if e["kind"] == "op" and e["path"] not in paths:
            paths.append(e["path"])
    lanes = [f"client {c}" for c in clients] + [p or "directory" for p in paths] + ["faults"]
    lane_y = {name: len(lanes) - 1 - i for i, name in enumerate(lanes)}
    fig = _figure(10.5, 1.3 + 0.42 * len(lanes) + (0.5 if submits else 0))
    ax = fig.add_subplot(1, 1, 1)
    x_end = hi + 1

    # Writes: a bar from submission to reply (or to the crash).
    crash_after = {}
    for e in events:
        if e["kind"] == "crash":
            crash_after[e["epoch"]] = e["seq"]
    n_writes = sum(1 for e in shown if e["kind"] == "submit")
    lost_keys = [k for k, st in status.items() if st == "lost" and k in submits]
    # Label every write of a short run; of a long one only the first and last lost writes.
    # Labels go in rows above the lanes, where they fit (``_place_labels``).
    label_keys = set(submits) if n_writes <= 60 else (
        set(lost_keys) if len(lost_keys) <= 6 else {lost_keys[0], lost_keys[-1]})
    wanted: list[tuple[float, str, bool]] = []
    bars: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for key, sub in submits.items():
        end_ev = acks.get(key)
        end = end_ev["seq"] if end_ev is not None else crash_after.get(key[0], x_end)
        if end < lo or sub["seq"] > hi:
            continue
        st = status.get(key)
        if st is None:
            st = "pending" if end_ev is None else (
                "refused" if end_ev.get("outcome") == "error" else "survived")
        if st == "survived" and end_ev is None:
            st = "may be lost"
        y = lane_y[f"client {sub.get('client', 0)}"]
        left = max(sub["seq"], lo - 0.5)
        width = max(end - left, 0.6)
        bars.setdefault((st, y), []).append((left, width))
        if key in label_keys:
            text = _printable(str(sub["text"]))
            text = text if len(text) <= _LABEL_CHARS else text[: _LABEL_CHARS - 1] + "…"
            wanted.append((left, text, st == "lost"))
    top = len(lanes) - 1
    band = top + 0.95  # above the top lane and the crash label
    for x, label_row, text, lost in _place_labels(wanted, lo - 1, hi + 1.5):
        ax.annotate(text, (x, band + 0.42 * label_row), fontsize=7,
                    color="#7a1212" if lost else "#333333",
                    fontweight="bold" if lost else "normal", ha="left", va="bottom")

    # One artist per colour, not per write: a long run has thousands of events.
    for (st, y), spans in bars.items():
        color = _STATUS_COLORS.get(st, "#bbbbbb")
        ax.broken_barh(spans, (y - 0.28, 0.56), facecolors=color,
                       edgecolors="#222222" if st == "lost" else color,
                       linewidth=1.4 if st == "lost" else 0.5,
                       hatch="//" if st == "refused" else None)

    # Filesystem operations: one lane per path, one artist per kind of mark.
    handles: dict[str, Any] = {}
    marks: dict[tuple[str, bool], tuple[list[float], list[float]]] = {}
    for e in shown:
        if e["kind"] != "op":
            continue
        failed = isinstance(e.get("result"), int) and e["result"] < 0
        xs, ys = marks.setdefault((e["op"], failed), ([], []))
        xs.append(e["seq"])
        ys.append(lane_y[e["path"] or "directory"])
    for (op, failed), (xs, ys) in marks.items():
        marker, color, label = _OP_STYLE.get(op, ("o", "#555555", op))
        h = ax.scatter(xs, ys, marker=marker, s=70 if marker == "|" else 40,
                       c="#d62728" if failed else color, zorder=3,
                       linewidths=1.6 if marker in "|x" else 0.5)
        handles.setdefault("failed " + label if failed else label, h)

    # Faults, crash, recovery.
    for e in shown:
        if e["kind"] == "fault":
            h = ax.scatter([e["seq"]], [lane_y["faults"]], marker="*", s=120, c="#d62728",
                           zorder=4)
            handles.setdefault("injected fault", h)
            ax.annotate(_shown(e.get("fault", "fault")), (e["seq"], lane_y["faults"] + 0.25),
                        fontsize=7, color="#7a1212", ha="center")
        elif e["kind"] == "crash":
            ax.axvline(e["seq"], color="#d62728", linewidth=2.2, zorder=5)
            ax.annotate(f"crash at {e['t']} ms ", (e["seq"], len(lanes) - 0.45), fontsize=8,
                        color="#d62728", ha="right", fontweight="bold",
                        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1})
        elif e["kind"] == "recover":
            ax.axvline(e["seq"], color="#333333", linewidth=1.2, linestyle="--", zorder=5)
            k = e.get("k")
            ax.annotate(f"recovered ({e.get('model')}): "
                        + ("no S(k)" if k is None else f"S({k})")
                        + ("" if e.get("frontier") is None else f", F={e['frontier']}"),
                        (e["seq"], -0.45), fontsize=8, ha="right", color="#333333")

    # F and W of the last epoch.
    if (last is not None and last.get("frontier") and frontier_seq is not None
            and lo <= frontier_seq <= hi):
        ax.axvline(frontier_seq, color="#e67e22", linewidth=1.6, linestyle=":", zorder=4)
        ax.annotate(f"F={last['frontier']}: writes up to here must survive ",
                    (frontier_seq, 0.45), fontsize=8, color="#b35900",
                    ha="right",
                    bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1})
    if last is not None and last.get("window_ms") is not None and crash_seqs:
        boundary_t = last["crash_ms"] - last["window_ms"]
        crash_seq = max(s for s in crash_seqs
                        if any(e["seq"] == s and e["epoch"] == last["epoch"] for e in events))
        inside = [e["seq"] for e in events if e["epoch"] == last["epoch"]
                  and e["t"] > boundary_t and e["seq"] <= crash_seq]
        start = max(min(inside) - 0.5, lo - 0.5) if inside else crash_seq - 0.5
        ax.axvspan(start, crash_seq, color="#1f77b4", alpha=0.10, zorder=0)
        ax.annotate(f" W={last['window_ms']} ms before the crash (everysec: may be lost)",
                    (start, -0.75), fontsize=8, color="#1f4e79", ha="left")

    # Axes: lanes, and virtual times as x labels where time moves on.
    ax.set_yticks([lane_y[n] for n in lanes])
    ax.set_yticklabels([_shown(n) for n in lanes], fontsize=8)
    rows_used = min(_LABEL_ROWS, len(wanted))
    ax.set_ylim(-1.0, (band + 0.42 * rows_used + 0.15) if rows_used else len(lanes) - 0.2)
    ax.set_xlim(lo - 1, hi + 1.5)
    ticks: list[int] = []
    labels: list[str] = []
    last_t = None
    gap = (hi + 2.5 - lo) / 16  # tick labels closer than this would run into each other
    for e in shown:
        if e["t"] != last_t:
            if ticks and e["seq"] - ticks[-1] < gap:
                continue  # keep last_t: the next time the clock moves is a new candidate
            ticks.append(e["seq"])
            labels.append(f"{e['t']}")
            last_t = e["t"]
    ax.set_xticks(ticks)
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_xlabel("events in the order they happened (labels: virtual time in ms)", fontsize=8)
    ax.grid(axis="x", color="#eeeeee")
    for spine in ("top", "right"):
        ax.spines[spine].set_visible(False)
    from matplotlib.patches import Patch

    legend = [Patch(facecolor=_STATUS_COLORS[s], label=label) for s, label in (
        ("survived", "write survived"), ("lost", "acknowledged, lost"),
        ("may be lost", "may be lost"), ("refused", "refused"))]
    legend += [h for h in handles.values()]
    labels_l = [p.get_label() for p in legend[:4]] + list(handles)
    ax.legend(legend, labels_l, loc="upper center", bbox_to_anchor=(0.5, -0.22),
              fontsize=7, frameon=False, ncol=min(6, len(legend)))
    if lo > 0:
        ax.annotate(f"({lo} earlier events not shown)", (lo - 1, len(lanes) - 0.45),
                    fontsize=7, color="#666666")
    ax.set_title(_printable(title), fontsize=10, loc="left", pad=8)
    return fig


def heatmap_svg(rows: Sequence[str], columns: Sequence[str],
                values: Sequence[Sequence[float]], *, title: str,
                xlabel: str = "", ylabel: str = "") -> str:
    """Counts over two axes, each cell annotated; zero cells stand out as gaps."""
    fig = _figure(max(4.5, 1.2 + 1.1 * len(columns) + 0.05 * max(map(len, rows or [""]))),
                  1.2 + 0.3 * max(1, len(rows)))
    ax = fig.add_subplot(1, 1, 1)
    import numpy as np

    data = np.array(values, dtype=float) if rows and columns else np.zeros((1, 1))
    shown = np.log10(data + 1.0)
    top = shown.max() if shown.size else 0
    image = ax.imshow(shown, cmap="Blues", aspect="auto", vmin=0, vmax=max(top, 1.0))
    # The legend: the colour scale in counts (it is logarithmic), and what a red 0 means.
    ticks = [0.0]
    n = 1
    while np.log10(n + 1.0) <= max(top, 1.0) + 1e-9:
        ticks.append(float(np.log10(n + 1.0)))
        n *= 10
    bar = fig.colorbar(image, ax=ax, ticks=ticks, fraction=0.05, pad=0.02)
    bar.ax.set_yticklabels([f"{round(10 ** t - 1):,}" for t in ticks], fontsize=7)
    bar.set_label("count (log scale)", fontsize=7)
    ax.annotate("number in a cell: the count; a red 0 is a gap (never exercised)", (0, 1),
                xycoords="axes fraction", xytext=(0, 4), textcoords="offset points",
                fontsize=7, color="#b30000", va="bottom")
    for i in range(len(rows)):
        for j in range(len(columns)):
            v = data[i, j]
            ax.text(j, i, f"{int(v)}" if v == int(v) else f"{v:.2g}", ha="center",
                    va="center", fontsize=7,
                    color="#b30000" if v == 0 else ("white" if shown[i, j] > 0.6 * top
                                                    else "#111111"))
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels([_shown(c) for c in columns], fontsize=7, rotation=20, ha="right")
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([_shown(r) for r in rows], fontsize=7)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(_shown(title), fontsize=10, loc="left", pad=16)
    return _svg(fig, title)


def series_svg(points: Sequence[Sequence[float]], *, title: str, xlabel: str, ylabel: str,
               marks: Sequence[tuple[float, str]] = ()) -> str:
    """A quantity over time, with optional labelled marks (e.g. when a violation was found)."""
    fig = _figure(6.0, 2.6)
    ax = fig.add_subplot(1, 1, 1)
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    ax.plot(xs, ys, color="#1f77b4", linewidth=1.6, marker="o" if len(xs) < 30 else None,
            markersize=3)
    for x, label in marks:
        ax.axvline(x, color="#d62728", linestyle="--", linewidth=1)
        ax.annotate(_shown(label), (x, max(ys) if ys else 0), fontsize=7, color="#d62728",
                    ha="right", va="top", rotation=90)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_ylim(bottom=0)
    for spine in ("top", "right"):
        ax.spines[spine].set_visible(False)
    ax.set_title(_shown(title), fontsize=10, loc="left")
    return _svg(fig, title)
