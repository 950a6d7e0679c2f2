"""The report's pictures, drawn with matplotlib (no display needed) as inline SVG.

Text stays text in the SVG (junction ids, axis labels, legends can be searched and read by
tests and screen readers), and the drawn elements carry ids (``gid``) that say what they are:
``trajectory-<ev>``, ``j<index>-signal-<colour>``, ``j<index>-queue``, ``j<index>-preempt-<stage>``.
"""

from __future__ import annotations

import io
import itertools
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib import colormaps, rc_context
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, PathPatch, Rectangle
from matplotlib.path import Path
from matplotlib.transforms import offset_copy

from controller.report.load import Leg, RunData, number

JAM_SPACING_M = 7.5  # one halted vehicle's share of a queue (5 m car + 2.5 m gap): queue length drawn
SIGNAL_COLOURS = {"green": "#2ca02c", "partial": "#98df8a", "yellow": "#ffbf00", "red": "#d62728", "off": "#bbbbbb"}
SIGNAL_LABELS = {"green": "EV's movement green", "partial": "green on some of its lanes", "yellow": "yellow",
                 "red": "red", "off": "off / blinking"}
STAGE_COLOURS = {"entry": "#ff7f0e", "dwell": "#1f77b4", "held": "#8c8c8c", "exit": "#9467bd"}
STAGE_LABELS = {"entry": "preemption entry (running phase ends)", "dwell": "dwell (held green for the EV)",
                "held": "held for another EV (the EV's movement not green)",
                "exit": "exit (hand-back to the program)"}
CONTROLLER_COLOURS = {"none": "#7f7f7f", "local": "#d62728", "greenwave": "#2ca02c", "oracle": "#1f77b4"}


_RECT_CODES = [int(c) for c in (Path.MOVETO, Path.LINETO, Path.LINETO, Path.LINETO, Path.CLOSEPOLY)]
_PATH_DATA = re.compile(r' d="[^"]*"')
_DECIMALS = re.compile(r"(\d\.\d\d)\d+")


def safe_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def movement_colour(state: str, links: Sequence[int]) -> str:
    """How the EV's movement looks in a signal state string: all its links green, some green, any
    yellow, red (``red`` when the links are not in the string)."""
    chars = [state[i] for i in links if 0 <= i < len(state)]
    if not chars:
        return "red"
    greens = sum(1 for c in chars if c in "Gg")
    if greens == len(chars):
        return "green"
    if greens:
        return "partial"
    if any(c in "yY" for c in chars):
        return "yellow"
    if all(c in "oO" for c in chars):
        return "off"
    return "red"


def movement_intervals(
    changes: Sequence[tuple[float, str]], links: Sequence[int], t0: float, t1: float
) -> list[tuple[float, float, str]]:
    """``(start, end, colour)`` spans of the EV's movement between ``t0`` and ``t1``, from a
    signal's change points (each state holds until the next change; an empty state, from when
    the signal stopped being read, gives no span)."""
    spans: list[tuple[float, float, str]] = []
    for k, (t, state) in enumerate(changes):
        end = changes[k + 1][0] if k + 1 < len(changes) else t1
        start, end = max(t, t0), min(end, t1)
        if end <= start or not state:
            continue
        colour = movement_colour(state, links)
        if spans and spans[-1][2] == colour and abs(spans[-1][1] - start) < 1e-9:
            spans[-1] = (spans[-1][0], end, colour)
        else:
            spans.append((start, end, colour))
    return spans


def split_dwell(spans: Sequence[tuple[float, float, str]], start: float, end: float) -> list[tuple[str, float, float]]:
    """A dwell ``[start, end)`` as ``(stage, from, to)`` pieces: ``dwell`` where the EV's movement
    showed green (on all its lanes or some), ``held`` where it did not (the signal serving
    another EV first, the record's dwell going on: a police car's 108 s "dwell" at Bologna's 210
    was 83 s of red while it served an ambulance and a fire engine). Spans from
    :func:`movement_intervals` of the states as read (the records' clock: a dwell starts at the
    first tick its target is read, an exit's yellow is read a step after it); where they do not
    cover the dwell, it is dwell."""
    pieces: list[tuple[str, float, float]] = []
    for s, e, colour in spans:
        a, b = max(s, start), min(e, end)
        if b <= a:
            continue
        stage = "dwell" if colour in ("green", "partial") else "held"
        if pieces and pieces[-1][0] == stage and abs(pieces[-1][2] - a) < 1e-9:
            pieces[-1] = (stage, pieces[-1][1], b)
        else:
            pieces.append((stage, a, b))
    return pieces or [("dwell", start, end)]


def held_s(spans: Sequence[tuple[float, float, str]], start: float, end: float) -> float:
    """How long of ``[start, end)`` the EV's movement did not show green (:func:`split_dwell`)."""
    return sum(b - a for stage, a, b in split_dwell(spans, start, end) if stage == "held")


def governing(changes: Sequence[tuple[float, str]], step_s: float) -> list[tuple[float, str]]:
    """A signal's change points as recorded (the state read after the step that ends at T) moved
    to when each state governed the vehicles: from T − step, the step the vehicles moved under
    it (SUMO switches a signal at the start of a step, and the positions read at T are where the
    vehicles ended it). Drawn so, a stop line crossed between T − step and T falls in the colour
    of the state read at T, the one it was crossed under."""
    return [(t - step_s, state) for t, state in changes]


def _bars_path(bars: Sequence[tuple[float, float]], y0: float, height: float) -> Path:
    """Rectangles ``(x, width)`` from ``y0`` to ``y0 + height`` as one compound path: a signal's
    bars of one colour become one SVG element instead of one each (a long run has hundreds)."""
    vertices: list[tuple[float, float]] = []
    codes: list[int] = []
    y1 = y0 + height
    for x, w in bars:
        vertices += [(x, y0), (x, y1), (x + w, y1), (x + w, y0), (x, y0)]
        codes += _RECT_CODES
    return Path(vertices, codes)


def to_svg(fig: Figure) -> str:
    """The figure as an ``<svg>`` element to put inline in HTML (deterministic ids, text as text)."""
    buf = io.StringIO()
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "greenwave"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight")
    text = buf.getvalue()
    # path data to 0.01 pt (matplotlib writes 6 decimals): a fifth smaller, the same picture
    text = _PATH_DATA.sub(lambda m: _DECIMALS.sub(r"\1", m.group(0)), text)
    return text[text.index("<svg"):]


def short_id(text: str, limit: int = 40) -> str:
    """An id for an axis label: whole up to ``limit`` characters, else its start and end around
    an ellipsis (a joined cluster's id runs to 190 characters and squeezed the diagram to 40 % of
    its width; the per-junction table keeps it whole)."""
    if len(text) <= limit:
        return text
    keep = max((limit - 1) // 2, 1)
    return f"{text[:keep]}…{text[-keep:]}"


def spread_labels(ys: Sequence[float], gap: float, low: float, high: float) -> list[float]:
    """Positions for labels wanted at ``ys`` (ascending), each at least ``gap`` from the next,
    as near their own as that allows, within ``low``..``high`` where there is room."""
    out: list[float] = []
    for y in ys:
        out.append(max(y, out[-1] + gap) if out else max(y, low))
    for k in range(len(out) - 1, -1, -1):  # pushed past the top: back down
        ceiling = high if k == len(out) - 1 else out[k + 1] - gap
        out[k] = min(out[k], ceiling)
    return out


def _junction_axis(ax: Axes, leg: Leg, fig: Figure) -> None:
    """Junction ids on a right-hand axis at their stop lines; where stop lines are closer than a
    label's height (a two-junction signal, a cluster of signals), the labels are spread apart,
    each joined to its stop line's tick by a thin line."""
    right = ax.twinx()
    low, high = ax.get_ylim()
    right.set_ylim(low, high)
    order = sorted(leg.junctions, key=lambda j: (j["distance_m"], j["index"]))
    ys = [float(j["distance_m"]) for j in order]
    # a label's height (8 pt text and some room) in data units of this axis
    height_pt = ax.get_position().height * fig.get_figheight() * 72.0
    gap = (high - low) * 11.0 / max(height_pt, 1.0)
    placed = spread_labels(ys, gap, low, high)
    right.yaxis.remove_overlapping_locs = False  # (a label at its own stop line sits on its tick)
    right.set_yticks(ys, [""] * len(ys))
    right.set_yticks(placed, [f"{short_id(j['tls'])} (#{j['index']})" for j in order], fontsize=8, minor=True)
    right.tick_params(axis="y", which="minor", length=0, pad=12)
    right.tick_params(axis="y", which="major", length=4)
    lead = offset_copy(right.get_yaxis_transform(), fig=fig, x=11, units="points")
    for y, at in zip(ys, placed, strict=True):
        if abs(at - y) > 1e-9:
            right.annotate("", xy=(1.0, y), xycoords=right.get_yaxis_transform(), xytext=(1.0, at), textcoords=lead,
                           arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "#888888", "shrinkA": 0, "shrinkB": 0},
                           annotation_clip=False)
    # (room between the axis title and the labels: the longest touched it)
    right.set_ylabel("signalized junction on the route (traffic light id, #order)", labelpad=10.0)


def step_s_of(run: RunData) -> float:
    """The run's simulation step (1 s where summary.json does not say)."""
    step = number(run.summary.get("step_length"))
    return step if step is not None and step > 0 else 1.0


def time_space_diagram(run: RunData, ev_id: str) -> Figure | None:
    """Distance along the route against time: the EV's trajectory, each stop line's signal as
    the EV's movement saw it, the vehicles halted on each approach, and the preemption windows."""
    ev = run.evs.get(ev_id)
    leg = ev.leg if ev is not None else None
    if ev is None or leg is None or not leg.t:
        return None
    t0, t1 = leg.t[0] - 10.0, leg.t[-1] + 10.0
    length = max(leg.route_length_m, 1.0)
    # thinner where stop lines are close (Bologna's 221: two 21 m apart merged into one bar): a
    # junction draws from half a bar below its line to 1.8 bars above (the preemption band on
    # top), so a bar of its nearest neighbour's distance / 2.4 fits; not thinner than 0.15 % of
    # the route (lines closer than about 11 m on a 3 km route may still touch)
    lines = sorted({float(j["distance_m"]) for j in leg.junctions})
    nearest = {y: math.inf for y in lines}
    for a, b in itertools.pairwise(lines):
        nearest[a], nearest[b] = min(nearest[a], b - a), min(nearest[b], b - a)
    bars = {y: min(length * 0.012, max(gap / 2.4, length * 0.0015)) for y, gap in nearest.items()}
    crossings = run.crossings(ev_id)
    step = step_s_of(run)
    fig = Figure(figsize=(11.5, max(5.5, 0.42 * len(leg.junctions) + 3.5)))
    ax = fig.add_subplot()
    records = [r for r in run.summary.get("preemptions", []) if r.get("ev") == ev_id]
    # where the signal's hand-back began: the last exit of the records it ended (a record whose own
    # request ended earlier, the signal held on for a later junction or EV, shows no stage between)
    handback_from: dict[tuple[Any, Any], float] = {}
    for r in run.summary.get("preemptions", []):
        if isinstance(r.get("exit"), (int, float)) and r.get("restored") is not None:
            key = (r.get("tls"), r.get("restored"))
            handback_from[key] = max(handback_from.get(key, -math.inf), float(r["exit"]))
    used_colours: set[str] = set()
    used_stages: set[str] = set()
    for j in leg.junctions:
        y, idx = j["distance_m"], j["index"]
        bar = bars[float(y)]
        spans = movement_intervals(governing(run.signals.get(j["tls"], []), step), j["links"], t0, t1)
        read = movement_intervals(run.signals.get(j["tls"], []), j["links"], t0, t1)
        for colour in SIGNAL_COLOURS:
            runs = [(s, e - s) for s, e, c in spans if c == colour]
            if runs:
                used_colours.add(colour)
                ax.add_patch(PathPatch(_bars_path(runs, y - bar / 2, bar), facecolor=SIGNAL_COLOURS[colour], lw=0,
                                       gid=f"j{idx}-signal-{colour}", zorder=2))
        ax.axhline(y, color="#999999", lw=0.5, ls=":", zorder=1)
        queue = leg.queues.get(idx, [])
        if queue:
            qt = [t for t, _ in queue] + [crossings.get(idx, leg.t[-1])]
            qy = [y - n * JAM_SPACING_M for _, n in queue]
            qy.append(qy[-1])
            ax.fill_between(qt, qy, [y] * len(qt), step="post", color="#555555", alpha=0.35, lw=0,
                            gid=f"j{idx}-queue", zorder=1)
        for r in records:
            if r.get("junction_index") != idx or r.get("tls") != j["tls"]:
                continue
            stages = (("entry", r.get("entry"), r.get("dwell") or r.get("exit") or r.get("restored")),
                      ("dwell", r.get("dwell"), r.get("exit") or r.get("restored")),
                      ("exit", handback_from.get((r.get("tls"), r.get("restored")), r.get("exit")),
                       r.get("restored")))
            for stage, start, end in stages:
                if isinstance(start, (int, float)) and isinstance(end, (int, float)) and end > start:
                    # (split on the states as read, the clock of the records' times, not as drawn)
                    pieces = split_dwell(read, start, end) if stage == "dwell" else [(stage, start, end)]
                    for piece, a, b in pieces:
                        used_stages.add(piece)
                        ax.add_patch(Rectangle((a, y + bar / 2), b - a, bar * 1.3, lw=0, alpha=0.55,
                                               facecolor=STAGE_COLOURS[piece], gid=f"j{idx}-preempt-{piece}",
                                               zorder=2))
    ax.plot(leg.t, leg.pos, color="black", lw=1.6, gid=f"trajectory-{safe_id(ev_id)}", zorder=3)
    cross = [(crossings[j["index"]], j["distance_m"]) for j in leg.junctions if j["index"] in crossings]
    if cross:
        ax.plot([c[0] for c in cross], [c[1] for c in cross], ls="none", marker="o", ms=3.5, color="black",
                gid=f"crossings-{safe_id(ev_id)}", zorder=4)
    ax.set_xlim(t0, t1)
    ax.set_ylim(-length * 0.02, length * 1.04)
    ax.set_xlabel("simulation time (s)")
    ax.set_ylabel("distance along the EV's route (m)")
    ax.grid(True, axis="x", color="#eeeeee")
    fig.subplots_adjust(bottom=0.2)  # (before the labels are spread: their room depends on it)
    _junction_axis(ax, leg, fig)
    reroutes = (f", re-routed {len(ev.legs) - 1}×: the last route shown, from {leg.from_s:.0f} s"
                if len(ev.legs) > 1 else "")
    ax.set_title(f"Time-space diagram · {run.scenario} · controller {run.name} · seed {run.seed} · "
                 f"EV {ev_id} ({ev.ev_type}){reroutes}", fontsize=10, loc="left")
    handles: list[Any] = [Line2D([], [], color="black", lw=1.6, marker="o", ms=3.5,
                                 label="EV trajectory (dots: stop line crossed)")]
    handles += [Patch(facecolor=SIGNAL_COLOURS[c], label=SIGNAL_LABELS[c]) for c in SIGNAL_COLOURS if c in used_colours]
    # (the halted vehicles on the approach edge's fullest lane, wherever they stand: behind the EV
    # too, so the EV can be drawn inside a "queue" that is not ahead of it)
    handles.append(Patch(facecolor="#555555", alpha=0.35,
                         label=f"halted on the approach (its fullest lane, × {JAM_SPACING_M:g} m)"))
    handles += [Patch(facecolor=STAGE_COLOURS[s], alpha=0.55, label=STAGE_LABELS[s]) for s in STAGE_COLOURS
                if s in used_stages]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.01))
    return fig


def trajectories_compared(runs: Sequence[RunData], ev_id: str) -> Figure | None:
    """The EV's trajectories under several controllers (same scenario and seed) overlaid, time
    counted from its departure."""
    drawn = [(r, leg) for r in runs if (ev := r.evs.get(ev_id)) is not None and (leg := ev.leg) is not None and leg.t]
    if len(drawn) < 2:
        return None
    # from its departure: the first leg's first trace (a re-routed EV's last leg starts later)
    departs = {id(r): next((lg.t[0] for lg in r.evs[ev_id].legs if lg.t), leg.t[0]) for r, leg in drawn}
    ref = drawn[0][1]
    fig = Figure(figsize=(11.5, max(5.0, 0.42 * len(ref.junctions) + 3.0)))
    ax = fig.add_subplot()
    for j in ref.junctions:
        ax.axhline(j["distance_m"], color="#999999", lw=0.6, ls="--", zorder=1)
    seen: dict[str, int] = {}
    for r, leg in drawn:
        depart = departs[id(r)]
        travel = r.ev_summary(ev_id).get("travel_time")
        label = f"{r.name}" + (f": {travel:.0f} s" if isinstance(travel, (int, float)) else "")
        # (two runs of one controller, e.g. two backends or detection ranges: one colour, told
        # apart by the line's style)
        k = seen[r.controller] = seen.get(r.controller, -1) + 1
        ax.plot([t - depart for t in leg.t], leg.pos, lw=1.6, color=CONTROLLER_COLOURS.get(r.controller),
                ls=("-", "--", ":", "-.")[k % 4], label=label, gid=f"trajectory-{safe_id(r.name)}-{safe_id(ev_id)}")
    ax.set_xlabel("time since the EV's departure (s)")
    ax.set_ylabel("distance along the EV's route (m)")
    ax.set_ylim(-ref.route_length_m * 0.02, ref.route_length_m * 1.04)
    ax.grid(True, color="#eeeeee")
    _junction_axis(ax, ref, fig)
    ax.legend(title="controller: EV travel time", fontsize=8, loc="upper left")
    first = drawn[0][0]
    ax.set_title(f"Time-space diagram, controllers compared · {first.scenario} · seed {first.seed} · EV {ev_id}",
                 fontsize=10, loc="left")
    return fig


def eta_accuracy(run: RunData, ev_id: str, horizon_s: float = 120.0) -> Figure | None:
    """Predicted minus actual arrival at each stop line, against the time left before the
    actual arrival; the predictions used to start a junction's entry are marked."""
    ev = run.evs.get(ev_id)
    leg = ev.leg if ev is not None else None
    crossings = run.crossings(ev_id)
    if leg is None or not crossings:
        return None
    series: dict[int, list[tuple[float, float, str]]] = {}
    for e, j, t, eta, _low, _high, tag in run.eta:
        actual = crossings.get(j)
        # (the prediction that started an entry is drawn however far ahead: entries start up
        # to max_lead_s, more where an ETA slipped, and those are the largest errors)
        if e != ev_id or actual is None or actual <= t or (actual - t > horizon_s and tag != "entry"):
            continue
        series.setdefault(j, []).append((actual - t, eta - actual, tag))
    if not series:
        return None
    fig = Figure(figsize=(11.5, 5.0))
    ax = fig.add_subplot()
    names = {j["index"]: f"{short_id(j['tls'])} (#{j['index']})" for j in leg.junctions}
    cmap = colormaps["viridis"]
    n = max(len(leg.junctions) - 1, 1)
    for j in sorted(series):
        pts = sorted(series[j])
        colour = cmap(j / n)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1.2, color=colour, label=names.get(j, f"#{j}"),
                gid=f"eta-j{j}")
        entry = [p for p in pts if p[2] == "entry"]
        if entry:
            ax.plot([p[0] for p in entry], [p[1] for p in entry], ls="none", marker="D", ms=6, color=colour,
                    markeredgecolor="black", gid=f"eta-j{j}-entry")
    ax.axhspan(-2, 2, color="#2ca02c", alpha=0.08, lw=0)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xlim(horizon_s, 0)
    ax.set_xlabel("time before the EV actually reached the stop line (s)")
    ax.set_ylabel("predicted − actual arrival (s)")
    ax.grid(True, color="#eeeeee")
    handles, labels = ax.get_legend_handles_labels()
    handles += [Line2D([], [], ls="none", marker="D", ms=6, color="white", markeredgecolor="black"),
                Patch(facecolor="#2ca02c", alpha=0.15)]
    labels += ["prediction that started the entry", "±2 s"]
    ax.legend(handles, labels, fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"ETA accuracy · {run.scenario} · controller {run.name} · seed {run.seed} · EV {ev_id}",
                 fontsize=10, loc="left")
    return fig


def other_traffic(runs: Sequence[RunData]) -> Figure | None:
    """Mean time loss of the other trips per controller, in two panels with axes of their own:
    over all trips (per trip) and on the cross streets of the EVs' signals (per entry), each bar
    with its change against ``none`` where that run is there. (On one axis, a cross-street cost
    of +24 % on 20 s per entry looked negligible beside 160 s per trip.)"""
    rows = []
    for r in runs:
        bg = r.summary.get("background", {})
        cross = (bg.get("cross_streets") or {}) if isinstance(bg, Mapping) else {}  # (null: not measured, attached)
        rows.append((r, bg.get("mean_time_loss"), cross.get("mean_time_loss")))
    if not any(isinstance(v, (int, float)) for _, a, b in rows for v in (a, b)):
        return None
    none = next((r for r, _, _ in rows if r.controller == "none"), None)
    fig = Figure(figsize=(9.0, 3.6))
    axes = fig.subplots(1, 2)
    panels = (("all other trips", "mean time loss per trip (s)", 1),
              ("on the cross streets of the EVs' signals", "mean time loss per entry (s)", 2))
    for ax, (title, ylabel, col) in zip(axes, panels, strict=True):
        ref = next((row[col] for row in rows if row[0] is none), None)
        for k, row in enumerate(rows):
            r, value = row[0], row[col]
            if not isinstance(value, (int, float)):
                continue
            ax.bar(k, value, 0.6, color=CONTROLLER_COLOURS.get(r.controller, "#333333"), edgecolor="white",
                   gid=f"traffic-{safe_id(r.name)}-{'cross' if col == 2 else 'all'}")
            text = f"{value:.1f}"
            if isinstance(ref, (int, float)) and ref > 0 and r is not none:
                text += f"\n{100.0 * (value / ref - 1.0):+.1f} %"
            ax.annotate(text, (k, value), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(rows)), [r.name for r, _, _ in rows], rotation=20, ha="right", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_title(title, fontsize=9, loc="left")
        ax.margins(y=0.25)
    fig.suptitle("Other traffic (change against none: one seed, read with its noise)", fontsize=10, x=0.01,
                 ha="left")
    fig.tight_layout()
    return fig
