"""``report.html`` for one run: self-contained (figures inline as SVG, no scripts, no links out),
readable offline."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from controller import __version__
from controller.bench.aggregate import GAP_JUDGED_MIN_SAVING, arrived_times, past_end_s
from controller.report.figures import (
    eta_accuracy,
    held_s,
    movement_intervals,
    other_traffic,
    safe_id,
    time_space_diagram,
    to_svg,
    trajectories_compared,
)
from controller.report.load import ReportError, RunData, by_controller, ratio_to_free_flow
from controller.report.load import number as _num

REPORT_FILE = "report.html"
# More EVs than this in a run: figures only for this many (two or three figures per EV make a
# 50-EV city run's page 10 MB and take a minute to draw); every EV keeps its table.
MAX_FIGURE_EVS = 12

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1180px;
color:#222;line-height:1.45;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.25rem;margin-top:2.2rem;border-bottom:1px solid #ddd}
h3{font-size:1.05rem;margin-top:1.6rem}.meta{color:#555;font-size:.9rem}
table{border-collapse:collapse;font-size:.85rem;margin:.6rem 0}
th,td{padding:.25rem .55rem;border-bottom:1px solid #e5e5e5;text-align:right}
th{background:#f5f5f5}td:first-child,th:first-child{text-align:left}
figure{margin:1rem 0}figure svg{max-width:100%;height:auto}figcaption{font-size:.85rem;color:#444}
.bad{color:#b00020;font-weight:600}.ok{color:#1b5e20}.note,ul.notes{font-size:.85rem;color:#555}
"""


def _e(x: object) -> str:
    return html.escape(str(x), quote=True)


def fmt(x: object, digits: int = 1) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def table(head: Sequence[str], rows: Iterable[Sequence[object]], *, cls: str = "") -> str:
    out = [f'<table class="{_e(cls)}">' if cls else "<table>", "<thead><tr>"]
    out += [f"<th>{_e(h)}</th>" for h in head]
    out.append("</tr></thead><tbody>")
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{_e(fmt(c))}</td>" for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def change_pct(x: float | None, ref: float | None) -> float | None:
    if x is None or ref is None or ref == 0:
        return None
    return (x - ref) / ref * 100.0


def _violations_total(safety: Mapping[str, Any]) -> int:
    return sum(int(safety.get(k, 0) or 0) for k in ("S1", "S2", "S3", "S4", "S5"))


def violations_by_tls(safety: Mapping[str, Any]) -> tuple[dict[str, int | str], int | str]:
    """S1–S5 violations per signal, and what a signal not named has: every one (``by_tls``),
    or, in a summary from before stop 29, counted from the first 200 listed, "≥ n" (and "?" for
    the others) where the list was cut."""
    by_tls = safety.get("by_tls")
    if isinstance(by_tls, Mapping):
        return {str(k): int(v) for k, v in by_tls.items()}, 0
    listed = safety.get("violations") or []
    counts: dict[str, int] = {}
    for v in listed:
        counts[str(v.get("tls"))] = counts.get(str(v.get("tls")), 0) + 1
    if _violations_total(safety) > len(listed):
        return {k: f"≥ {n}" for k, n in counts.items()}, "?"
    return dict(counts), 0


def junction_rows(run: RunData, ev_id: str) -> list[list[object]]:
    ev = run.evs.get(ev_id)
    leg = ev.leg if ev else None
    if leg is None:
        return []
    crossings = run.crossings(ev_id)
    eta_by_junction = run.summary.get("eta", {}).get("by_junction") or {}  # EtaLog.evaluate's, per junction
    violations, unnamed = violations_by_tls(run.summary.get("safety", {}))
    # (a junction may have had several preemptions for the EV: one ended at maximum presence and
    # its re-entry, say; one row each, the junction's own figures on the first)
    records: dict[tuple[Any, Any], list[Mapping[str, Any]]] = {}
    for r in run.summary.get("preemptions", []):
        if r.get("ev") == ev_id:
            records.setdefault((r.get("tls"), r.get("junction_index")), []).append(r)
    rows: list[list[object]] = []
    for j in leg.junctions:
        actual = crossings.get(j["index"])
        eta = eta_by_junction.get(f"{ev_id}#{j['index']}") or {}
        entry_err, err60 = _num(eta.get("entry_error_s")), _num(eta.get("error_60_s"))
        for k, r in enumerate(records.get((j["tls"], j["index"])) or [{}]):
            dwell, exit_ = _num(r.get("dwell")), _num(r.get("exit"))
            held = None
            if dwell is not None and exit_ is not None and exit_ > dwell and run.signals.get(j["tls"]):
                spans = movement_intervals(run.signals[j["tls"]], j["links"], dwell, exit_)  # (as read)
                held = round(held_s(spans, dwell, exit_), 1)
            first = k == 0
            rows.append([
                f"#{j['index']}", j.get("junction"), j["tls"], round(j["distance_m"]), actual if first else None,
                entry_err if first else None, err60 if first else None,
                _num(r.get("entry")), dwell,
                round(exit_ - dwell, 1) if dwell is not None and exit_ is not None else None, held,
                _num(r.get("preempted_s")), _num(r.get("recovery_s")), _num(r.get("schedule_offset_s")),
                r.get("exit_reason") or None,
                violations.get(j["tls"], unnamed) if first else None,
            ])  # fmt: skip
    return rows


JUNCTION_HEAD = ("#", "junction", "traffic light", "stop line at (m)", "EV crossed (s)", "ETA error at entry (s)",
                 "ETA error 60 s ahead (s)", "entry starts (s)", "dwell from (s)", "dwell for (s)",
                 "of it, its movement not green (s)", "preempted for (s)", "recovery (s)", "off schedule after (s)",
                 "hand-back reason", "S1–S5 violations at this signal")


def _figure(fig: Any, cls: str, caption: str, attrs: Mapping[str, str]) -> str:
    if fig is None:
        return ""
    extra = "".join(f' data-{k}="{_e(v)}"' for k, v in attrs.items())
    return f'<figure class="{cls}"{extra}>{to_svg(fig)}<figcaption>{caption}</figcaption></figure>'


def figure_evs(summary: Mapping[str, Any], wanted: Sequence[str] = (), max_evs: int = MAX_FIGURE_EVS) -> list[str]:
    """The EVs whose figures a report draws: those ``wanted``; else all of them, or, when there
    are more than ``max_evs`` (0: no limit), the ``max_evs`` an engineer looks at first: those
    that never arrived, then those with the most delay over free flow. In the run's order."""
    listed = summary.get("evs")
    evs = [ev for ev in listed if isinstance(ev, Mapping)] if isinstance(listed, list) else []
    ids = [str(ev.get("id")) for ev in evs]
    if wanted:
        unknown = [w for w in wanted if w not in ids]
        if unknown:
            shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
            raise ReportError(f"no EV {', '.join(unknown)} in this run (its EVs: {shown or 'none'})")
        return [i for i in ids if i in set(wanted)]
    if max_evs <= 0 or len(ids) <= max_evs:
        return ids

    def urgency(ev: Mapping[str, Any]) -> tuple[int, float]:
        delay = _num(ev.get("delay"))
        return (0 if ev.get("arrived") else 1, delay if delay is not None else 0.0)

    chosen = {str(ev.get("id")) for ev in sorted(evs, key=urgency, reverse=True)[:max_evs]}
    return [i for i in ids if i in chosen]


def _ev_section(run: RunData, ev: Mapping[str, Any], companions: Sequence[RunData], *, draw: bool = True) -> str:
    ev_id = str(ev.get("id"))
    trace = run.evs.get(ev_id)
    leg = trace.leg if trace else None
    junction_ids = " ".join(f"{j['tls']}#{j['index']}" for j in leg.junctions) if leg else ""
    parts = [f'<section class="ev" id="ev-{_e(safe_id(ev_id))}" data-ev="{_e(ev_id)}">',
             f"<h2>EV {_e(ev_id)} ({_e(ev.get('type', ''))})</h2>"]
    if not draw:
        parts.append(f'<p class="note">Figures not drawn for this EV (see the note under the EV table); '
                     f"<code>greenwave report {_e(run.path)} --ev {_e(ev_id)}</code> redraws the page with "
                     "them (the EVs named, and only those, get figures).</p>")
        parts.append("<h3>Per junction</h3>")
        parts.append(table(JUNCTION_HEAD, junction_rows(run, ev_id), cls="junctions"))
        parts.append("</section>")
        return "".join(parts)
    tsd = _figure(
        time_space_diagram(run, ev_id), "time-space-diagram",
        f"The <b>time-space diagram</b> of EV {_e(ev_id)}: its distance along the route against time (black), "
        "and at each signalized junction's stop line the signal its movement saw (bars), the queue of halted "
        "vehicles ahead of that stop line (grey, drawn upstream from it) and the preemption windows above "
        "the bar (entry, dwell, exit). A trajectory that runs flat at a stop line is a stop there.",
        {"ev": ev_id, "junctions": junction_ids},
    )
    parts.append(tsd or f'<p class="bad">EV {_e(ev_id)} never drove: no time-space diagram.</p>')
    if len(companions) > 1:
        parts.append(_figure(
            trajectories_compared(companions, ev_id), "time-space-comparison",
            f"The <b>time-space diagram, controllers compared</b>: EV {_e(ev_id)}'s trajectories under "
            f"{', '.join(_e(r.name) for r in companions)} on the same scenario and seed; dashed lines "
            "are the stop lines.",
            {"ev": ev_id, "controllers": " ".join(r.controller for r in companions)},
        ))
    parts.append(_figure(
        eta_accuracy(run, ev_id), "eta-accuracy",
        "<b>ETA accuracy</b>: predicted minus actual arrival at each stop line, against the time that was left "
        "before the actual arrival; diamonds mark the prediction that started each junction's preemption entry.",
        {"ev": ev_id},
    ) or '<p class="note">No ETA predictions for this EV (the controller makes none, or it crossed nothing).</p>')
    parts.append("<h3>Per junction</h3>")
    parts.append(table(JUNCTION_HEAD, junction_rows(run, ev_id), cls="junctions"))
    parts.append('<p class="note">"EV crossed" is when its front passed the stop line, between two steps; '
                 "the stages are the steps they were read at (a state read at T governed the step before "
                 "it: an EV crossing at 714.6 s under a green read at 715 s crossed on green).</p>")
    parts.append("</section>")
    return "".join(parts)


def _comparison(run: RunData, companions: Sequence[RunData]) -> str:
    if len(companions) < 2:
        return ('<p class="note">Only this run was found for this scenario and seed: give the runs of the other '
                "controllers (same scenario and seed) to compare them here.</p>")
    none, oracle = by_controller(companions, "none"), by_controller(companions, "oracle")

    times = {id(r): arrived_times(r.summary) for r in companions}

    def mean_on(r: RunData | None, ids: set[str]) -> float | None:
        tt = [t for ev_id, t in times[id(r)].items() if ev_id in ids] if r is not None else []
        return sum(tt) / len(tt) if tt else None

    # As the bench: each run's mean over its own EVs that arrived; its gap and delay over the
    # EVs that arrived in it, under none and under the oracle alike (one stuck under none, left
    # out of none's mean alone, made none look faster and the gap smaller).
    refs = [x for x in (none, oracle) if x is not None]
    oracle_conflicts = [str(c.get("tls")) for c in (oracle.summary.get("oracle_conflicts") or [])] if oracle else []
    judged = True
    m_none = m_oracle = None
    rows = []
    for r in companions:
        ids = set(times[id(r)]).intersection(*(set(times[id(x)]) for x in refs))
        m, m_none, m_oracle = mean_on(r, set(times[id(r)])), mean_on(none, ids), mean_on(oracle, ids)
        m_c = mean_on(r, ids)
        # where the oracle saves under 10 % of none's time (or is slower: a route held green from
        # dispatch can jam the streets it crosses), the gap is shown, starred, not a bound
        row_judged = m_none is None or m_oracle is None or (
            m_none - m_oracle >= GAP_JUDGED_MIN_SAVING * m_none and not oracle_conflicts)
        judged = judged and row_judged
        gap = ((m_none - m_c) / (m_none - m_oracle) if m_c is not None and m_none is not None
               and m_oracle is not None and abs(m_none - m_oracle) > 1e-9 else None)
        if gap is not None and abs(gap) < 0.005:
            gap = 0.0  # (not "-0.00")
        shown = fmt(gap, 2) + ("" if row_judged or gap is None else "*")
        stops = sum(int(ev.get("stops_at_signals", 0) or 0) for ev in r.summary.get("evs", []))
        evs = r.summary.get("evs", [])
        rows.append([r.name, f"{len(times[id(r)])} of {len(evs)}", m, shown,
                     m_c - m_oracle if m_c is not None and m_oracle is not None else None, stops,
                     str(r.path.resolve())])
    out = table(("controller", "EVs arrived", "EV travel time, mean (s)", "gap closed", "delay over oracle (s)",
                 "EV stops at signals (all EVs)", "run folder"), rows, cls="comparison")
    both = set(times[id(none)]) & set(times[id(oracle)]) if none is not None and oracle is not None else set()
    m_none, m_oracle = mean_on(none, both), mean_on(oracle, both)  # (for the note below)
    missing = [(r.name, sorted(set(str(ev.get("id")) for ev in r.summary.get("evs", [])) - set(times[id(r)])))
               for r in companions]
    missing = [(name, ids) for name, ids in missing if ids]
    if missing:
        out += ('<p class="note">Not every EV arrived: ' + "; ".join(
            f"{_e(', '.join(ids))} under {_e(name)}" for name, ids in missing)
            + ". Each run's mean travel time is over its own EVs that arrived; its gap closed and delay over "
            "the oracle compare the EVs that arrived in it, under none and under the oracle, so that they compare "
            "the same trips (as the bench does).</p>")
    if not judged and oracle_conflicts:
        out += ('<p class="note">* The oracle (every signal of the route green from dispatch) showed several EVs\' '
                f"crossing movements green at once (at {_e(', '.join(oracle_conflicts))}): no controller that keeps "
                "them apart could reach it, so it is no bound here: gap closed and delay over the oracle say little; "
                "compare EV travel times with none's.</p>")
    elif not judged and m_none is not None and m_oracle is not None:
        out += (f'<p class="note">* The oracle (every signal of the route green from dispatch) took {m_oracle:.0f} s '
                f"against {m_none:.0f} s under none: it "
                + ("is slower, holding the route green having jammed the streets it crosses or the route itself"
                   if m_oracle > m_none else "saves less than 10 %")
                + ", so it is no bound here: gap closed and delay over the oracle say little; compare EV travel "
                "times with none's.</p>")
    return out


def _traffic_by_class(companions: Sequence[RunData]) -> str:
    """Other traffic per vehicle class, where there is more than one (bicycles, trams and buses
    count in the figures above)."""
    classes: dict[str, None] = {}
    for r in companions:
        by_class = r.summary.get("background", {}).get("by_class")
        for c in by_class if isinstance(by_class, dict) else {}:
            classes.setdefault(str(c), None)
    if len(classes) < 2:
        return ""
    none = by_controller(companions, "none")
    ref = none.summary.get("background", {}).get("by_class") or {} if none else {}
    rows = []
    for r in companions:
        by_class = r.summary.get("background", {}).get("by_class") or {}
        for c in classes:
            row = by_class.get(c) or {}
            loss = _num(row.get("mean_time_loss"))
            rows.append([r.name, c, row.get("trips"), loss, change_pct(loss, _num((ref.get(c) or {}).get(
                "mean_time_loss")))])
    return ("<p>By vehicle class:</p>"
            + table(("controller", "class", "trips", "mean time loss (s)", "change vs none (%)"), rows,
                    cls="traffic-by-class"))


TRIPS_SHORT_SHARE = 0.02  # fewer trips finished than none's by more than this: the mean time loss is flattered


def _after_end_note(companions: Sequence[RunData]) -> str:
    """Where a run went on past the scenario's end for its EVs (the other traffic is counted to
    the end, its trips and cross streets alike): a note of how far, so that no one reads the
    figures as the whole cost of preemptions that lasted longer."""
    late = [(r.name, float(r.summary["end"]), last) for r in companions
            if (last := past_end_s(r.summary)) is not None]
    if not late:
        return ""
    return ('<p class="note">The other traffic is counted to the scenario\'s end, as its trips are; '
            + "; ".join(f"under {_e(name)} the EVs' trips and preemptions went on to {last:.0f} s, past the end at "
                        f"{end:.0f} s" for name, end, last in late)
            + ": what they cost the other traffic after the end is not in these figures. A longer scenario "
            "(a later end) measures it.</p>")


def _traffic(companions: Sequence[RunData]) -> str:
    none = by_controller(companions, "none")
    ref_bg = none.summary.get("background", {}) if none else {}
    ref_all = _num(ref_bg.get("mean_time_loss"))
    ref_cross = _num((ref_bg.get("cross_streets") or {}).get("mean_time_loss"))  # (null: not measured, attached)
    rows = []
    for r in companions:
        bg = r.summary.get("background", {})
        cross = bg.get("cross_streets") or {}
        loss, closs = _num(bg.get("mean_time_loss")), _num(cross.get("mean_time_loss"))
        rows.append([r.name, bg.get("trips"), loss, change_pct(loss, ref_all), cross.get("vehicles"), closs,
                     change_pct(closs, ref_cross)])
    note = ("" if none is not None else '<p class="note">No <code>none</code> run of this scenario and seed was '
            "given or found beside this one, so changes against it cannot be shown.</p>")
    # the mean is over the trips that finished: a run that jams finishes fewer, and those the jam
    # kept out of it, whose loss is the largest, are not in its mean
    ref_trips = _num(ref_bg.get("trips")) or 0.0
    fewer = [(r.name, n) for r in companions if (n := _num(r.summary.get("background", {}).get("trips")))
             is not None and n < ref_trips * (1.0 - TRIPS_SHORT_SHARE)]
    if fewer:
        note += ('<p class="note">Fewer other trips finished than under <code>none</code> '
                 f"({int(ref_trips)}) in " + ", ".join(f"{_e(name)} ({int(n)}, {100.0 * (n / ref_trips - 1):+.0f} %)"
                                                       for name, n in fewer)
                 + ": the mean time loss counts only the trips that finished, so a run that jams (those it held "
                 "up never arrived) can look better than it is. Compare the trip counts too.</p>")
    note += _after_end_note(companions)
    head = ("controller", "other trips", "mean time loss (s)", "change vs none (%)",
            "entries into the cross streets", "mean time loss per entry there (s)", "change vs none (%)")
    return (table(head, rows, cls="traffic") + note + _traffic_by_class(companions)
            + _figure(other_traffic(companions), "other-traffic",
                      "Mean time loss of the other trips: all of them (per trip), and on the cross streets of "
                      "the junctions on the EVs' routes, the streets a preemption holds red (per entry), each on "
                      "its own axis; the changes are against none on this one seed. The overall mean includes "
                      "the traffic on the preempted route itself, which a preemption can speed up: read the "
                      "cross streets' change beside it.", {}))


def _safety(run: RunData) -> str:
    s = run.summary.get("safety", {})
    columns = (("S1", "S1"), ("S2", "S2"), ("S3", "S3"), ("S4", "S4"), ("S5", "S5"),
               ("collisions", "collisions to the scenario's end"), ("collisions_after_end", "after the end"),
               ("collisions_ev", "with an EV (whole run)"),
               ("collisions_preempted", "at preempted signals (whole run)"),
               ("emergency_braking", "emergency brakings"), ("teleports", "teleports (collisions' too)"),
               ("teleports_traffic", "of them jam, yield, wrong lane"))
    keys = tuple(k for k, _ in columns)
    total = _violations_total(s)
    missing = [k for k in ("S1", "S2", "S3", "S4", "S5") if not isinstance(s.get(k), int)]
    if missing:  # (a summary without them: another version's, or edited; no count is no violation)
        verdict = (f'<p class="bad">This run\'s summary.json records no safety count for {", ".join(missing)}: '
                   "what the independent monitor saw is not known.</p>")
    elif total == 0:
        verdict = '<p class="ok">The independent monitor saw no violation of S1–S5.</p>'
    else:
        verdict = f'<p class="bad">The independent monitor counted {total} violation(s) of S1–S5.</p>'
    viol = s.get("violations", [])[:30]
    listing = table(("rule", "traffic light", "time (s)", "link", "detail"),
                    [[v.get("rule"), v.get("tls"), v.get("t"), v.get("link"), v.get("detail")] for v in viol]) if viol \
        else ""
    if viol and total > len(viol):
        listing = f"<p>The first {len(viol)} of the {total} violations:</p>" + listing
    return verdict + table([h for _, h in columns], [[s.get(k) for k in keys]], cls="safety") + listing


def render_run(
    run: RunData, companions: Sequence[RunData], drawn: Sequence[str] | None = None, *, named: bool = False
) -> str:
    """The page; figures for the EVs in ``drawn`` (None: every EV; ``named``: the user chose them)."""
    s = run.summary
    title = f"greenwave report · {run.scenario} · {run.name} · seed {run.seed}"
    ev_rows = [[ev.get("id"), ev.get("type"), _num(ev.get("depart")), _num(ev.get("arrival")),
                _num(ev.get("travel_time")), _num(ev.get("free_flow_time")), fmt(ratio_to_free_flow(ev), 2),
                _num(ev.get("delay")), ev.get("stops"), ev.get("stops_at_signals"), ev.get("junctions"),
                ev.get("preempted"), ev.get("green_lost")] for ev in s.get("evs", [])]
    eta = s.get("eta", {})
    by_h = eta.get("by_horizon", {})
    eta_rows = [[name, st.get("n"), _num(st.get("abs_error_p50")), _num(st.get("abs_error_p90"))]
                for name, st in (("all (0–120 s ahead)", eta), ("10 s ahead", by_h.get("10", {})),
                                 ("30 s ahead", by_h.get("30", {})), ("60 s ahead", by_h.get("60", {})),
                                 ("at entry", eta.get("at_entry", {})))]
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">scenario <b>{_e(run.scenario)}</b> ({_e(s.get("source", ""))}) · controller '
        f"<b>{_e(run.name)}</b> · seed {_e(run.seed)} · simulated {_e(fmt(_num(s.get('begin')), 0))}–"
        f"{_e(fmt(_num(s.get('end', s.get('simulated_until'))), 0))} s · "
        f"run by greenwave {_e(s.get('greenwave_version', '?'))}, "
        f"report by {_e(__version__)} · made from {_e(run.path)}/summary.json and trace.json</p>",
        # (what the run printed as notes: a route not the fastest, a signal left to its program, ...)
        *([f'<ul class="notes" id="notes">{"".join(f"<li>{_e(n)}</li>" for n in s["notes"])}</ul>']
          if isinstance(s.get("notes"), list) and s["notes"] else []),
        "<h2>Emergency vehicles</h2>",
        table(("EV", "type", "depart (s)", "arrival (s)", "travel time (s)", "free flow (s)", "ratio", "delay (s)",
               "stops", "stops at signals", "signalized junctions on route", "preempted", "green lost"),
              ev_rows, cls="evs"),
        "<h3>Controllers compared (same scenario and seed)</h3>",
        _comparison(run, companions),
        "<h3>ETA accuracy, all EVs</h3>",
        table(("horizon", "predictions scored", "|error| p50 (s)", "|error| p90 (s)"), eta_rows, cls="eta"),
    ]
    all_ids = [str(ev.get("id")) for ev in s.get("evs", [])]
    draw = set(all_ids if drawn is None else drawn)
    if len(draw) < len(all_ids):
        why = "named on the command line" if named else "that never arrived, then with the most delay"
        body.append(f'<p class="note" id="figures-drawn">Figures are drawn for {len(draw)} of the {len(all_ids)} '
                    f"EVs, those {why} ({_e(', '.join(i for i in all_ids if i in draw))}). "
                    f"<code>greenwave report {_e(run.path)} "
                    "--ev ID</code> (repeatable) draws only the EVs named, <code>--max-evs 0</code> all of them. "
                    "Every EV's "
                    "per-junction table is below.</p>")
    body += [_ev_section(run, ev, companions, draw=str(ev.get("id")) in draw) for ev in s.get("evs", [])]
    body += ['<section id="traffic"><h2>Other traffic</h2>', _traffic(companions), "</section>",
             '<section id="safety"><h2>Safety</h2>', _safety(run), "</section>"]
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_run_report(
    run: RunData, companions: Sequence[RunData], drawn: Sequence[str] | None = None, *, named: bool = False
) -> Path:
    """``report.html`` in the run's folder, with figures for the EVs in ``drawn`` (None: every
    EV; ``named``: the user chose them); see :func:`figure_evs`."""
    path = run.path / REPORT_FILE
    shapes = (AttributeError, KeyError, TypeError, ValueError)
    try:
        page = render_run(run, companions, drawn, named=named)
    except shapes as e:
        # a malformed run beside it (greenwave bench's folder) is left out of the comparison,
        # not blamed on this run
        def fits(other: RunData) -> bool:
            try:
                render_run(run, [c for c in companions if c is run or c is other], drawn, named=named)
            except shapes:
                return False
            return True

        kept = [c for c in companions if c is run or fits(c)]
        try:
            if len(kept) == len(companions):
                raise
            page = render_run(run, kept, drawn, named=named)
        except shapes:
            raise ReportError(f"{run.path}: summary.json or trace.json has an unexpected shape "
                              f"({type(e).__name__}: {e})") from None
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page, "utf-8")
    tmp.replace(path)
    return path
