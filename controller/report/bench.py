"""``report.html`` for a bench: EV travel time per scenario and controller with its spread over
seeds, gap closed, other traffic's change, the acceptance verdicts. Made from bench.json."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from controller import __version__
from controller.bench.aggregate import fewer_trips, moved_text, not_arrived, past_end
from controller.report.figures import CONTROLLER_COLOURS, safe_id, to_svg
from controller.report.html import CSS, REPORT_FILE, _e, fmt, table
from controller.report.load import ReportError
from controller.report.load import number as _num

BENCH_FILE = "bench.json"


def _controllers(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    order = {"none": 0, "local": 1, "greenwave": 2, "oracle": 3}
    return sorted({str(r["controller"]) for r in rows}, key=lambda c: (order.get(c, 9), c))


def _scenarios(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(str(r["scenario"]) for r in rows))


def travel_time_figure(runs: Sequence[Mapping[str, Any]]) -> Figure | None:
    """Per scenario, each controller's mean EV travel time of every seed (dots) and their mean
    (bar): the spread across seeds."""
    ok = [r for r in runs if r.get("status") == "ok" and isinstance(r.get("ev_travel_mean_s"), (int, float))]
    if not ok:
        return None
    scenarios, controllers = _scenarios(ok), _controllers(ok)
    cols = min(3, len(scenarios))
    rows_n = math.ceil(len(scenarios) / cols)
    fig = Figure(figsize=(4.0 * cols, 3.3 * rows_n))
    for k, sc in enumerate(scenarios):
        ax = fig.add_subplot(rows_n, cols, k + 1)
        for x, ctrl in enumerate(controllers):
            values = [float(r["ev_travel_mean_s"]) for r in ok if r["scenario"] == sc and r["controller"] == ctrl]
            if not values:
                continue
            colour = CONTROLLER_COLOURS.get(ctrl, "#333333")
            ax.bar(x, sum(values) / len(values), 0.6, color=colour, alpha=0.35,
                   gid=f"travel-{safe_id(sc)}-{safe_id(ctrl)}")
            jitter = [x + (i - (len(values) - 1) / 2) * min(0.05, 0.5 / len(values)) for i in range(len(values))]
            ax.plot(jitter, values, ls="none", marker="o", ms=3, color=colour)
        ax.set_xticks(range(len(controllers)), controllers, fontsize=8)
        ax.set_title(sc, fontsize=9)
        ax.set_ylabel("EV travel time (s)", fontsize=8)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(True, axis="y", color="#eeeeee")
    fig.suptitle("EV travel time per scenario and controller: bars are the mean over seeds, dots one seed each",
                 fontsize=10)
    fig.tight_layout()
    return fig


def _bars(rows: Sequence[Mapping[str, Any]], key: str, scale: float, ylabel: str, title: str,
          target: float | None, target_label: str, controllers: Sequence[str],
          unjudged: str | None = None) -> Figure | None:
    """Bars per scenario and controller (``unjudged``: a row key that, where False, marks the bar
    hatched and starred: a figure not judged against the target)."""
    scenarios = _scenarios(rows)
    if not any(isinstance(r.get(key), (int, float)) for r in rows):
        return None
    fig = Figure(figsize=(max(6.0, 1.4 * len(scenarios) + 2.0), 3.6))
    ax = fig.add_subplot()
    width = 0.8 / max(len(controllers), 1)
    labelled: set[str] = set()
    for c, ctrl in enumerate(controllers):
        for s, sc in enumerate(scenarios):
            row = next((r for r in rows if r["scenario"] == sc and r["controller"] == ctrl), None)
            value = row.get(key) if row else None
            if isinstance(value, (int, float)):
                x = s - 0.4 + width * (c + 0.5)
                star = unjudged is not None and row is not None and row.get(unjudged) is False
                ax.bar(x, value * scale, width, color=CONTROLLER_COLOURS.get(ctrl, "#333333"),
                       label=None if ctrl in labelled else ctrl, hatch="//" if star else None,
                       alpha=0.5 if star else 1.0, gid=f"{key}-{safe_id(sc)}-{safe_id(ctrl)}")
                labelled.add(ctrl)
                ax.annotate((f"{value * scale:.0f}" if abs(value * scale) >= 10 else f"{value * scale:.1f}")
                            + ("*" if star else ""),
                            (x, value * scale), ha="center", va="bottom" if value >= 0 else "top", fontsize=7)
    if target is not None:
        ax.axhline(target, color="black", ls="--", lw=0.8, label=target_label)
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xticks(range(len(scenarios)), scenarios, fontsize=8, rotation=15)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10, loc="left")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(True, axis="y", color="#eeeeee")
    return fig


def render_bench(data: Mapping[str, Any], source: Path) -> str:
    rows: list[Mapping[str, Any]] = data.get("aggregate", [])
    runs: list[Mapping[str, Any]] = data.get("runs", [])
    suite = data.get("suite", {})
    controllers = [c for c in _controllers(rows) if c in ("local", "greenwave")] or _controllers(rows)
    title = f"greenwave bench report · {suite.get('name', '?')}"
    figs = [
        (travel_time_figure(runs), "bench-travel-time",
         "EV travel time per scenario and controller, with its spread across seeds."),
        (_bars(rows, "gap_closed", 100.0, "gap closed (%)", "Gap closed: (none − X) / (none − oracle) of EV "
               "travel time", 90.0, "90 % target", controllers, unjudged="gap_judged"), "bench-gap-closed",
         "How much of the none→oracle gap in mean EV travel time each controller closes (hatched and starred: "
         "not judged, the oracle saves less than 10 % of none's time)."),
        (_bars(rows, "bg_time_loss_change_pct", 1.0, "change vs none (%)", "Other traffic: mean time loss "
               "change against none, same seeds", 2.0, "+2 % limit", controllers), "bench-background",
         "Other trips' mean time loss, paired by seed against the none run."),
        (_bars(rows, "cross_time_loss_change_pct", 1.0, "change vs none (%)", "Cross streets of the EVs' signals: "
               "mean time loss change against none", None, "", controllers), "bench-cross-streets",
         "Time loss on the cross streets of the junctions on the EVs' routes."),
    ]
    head = ("scenario", "controller", "runs", "EVs arrived", "EV travel mean (s)", "p95 (s)", "ratio to free flow",
            "gap closed", "delay over oracle (s)", "±", "EV stops at signals (per EV)", "other traffic Δ (%)", "±",
            "cross streets Δ (%)", "recovery (s)", "in step (s)", "ETA p90 at entry (s)", "ETA p90 60 s (s)",
            "S1–S5", "collisions")
    # (as the console table: failed runs counted beside the completed, a gap not judged starred)
    table_rows = [[r.get("scenario"), r.get("controller"),
                   f"{r.get('runs')} ({r.get('failed')}✗)" if r.get("failed") else r.get("runs"),
                   f"{int(r['evs']) - int(r.get('evs_not_arrived') or 0)} of {r['evs']}"
                   if isinstance(r.get("evs"), int) else None,
                   r.get("ev_travel_mean_s"), r.get("ev_travel_p95_s"), fmt(_num(r.get("ev_ratio_mean")), 2),
                   # (two decimals: 0.98 closed is not the oracle's 1.00)
                   fmt(_num(r.get("gap_closed")), 2) + ("*" if r.get("gap_judged") is False
                                                         and r.get("gap_closed") is not None else ""),
                   r.get("delay_over_oracle_s"), r.get("delay_over_oracle_se_s"),
                   r.get("ev_stops_at_signals_mean"), r.get("bg_time_loss_change_pct"),
                   r.get("bg_time_loss_change_se_pp"), r.get("cross_time_loss_change_pct"), r.get("recovery_mean_s"),
                   r.get("in_step_mean_s"), r.get("eta_p90_entry_s"),
                   r.get("eta_p90_60_s"),
                   # (none measured where no run completed: not a clean 0)
                   sum(int(r.get(k, 0) or 0) for k in ("S1", "S2", "S3", "S4", "S5")) if r.get("runs") else None,
                   r.get("collisions") if r.get("runs") else None] for r in rows]
    verdicts = data.get("verdicts", [])
    verdict_rows = [[v.get("scenario"), v.get("status"),
                     "; ".join(f"{c.get('name')}: {'ok' if c.get('ok') else 'FAIL' if c.get('ok') is False else '–'}"
                               f" ({c.get('detail')})" for c in v.get("criteria", []))] for v in verdicts]
    failures = data.get("failures", [])
    body = [
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">suite {_e(suite.get("file", ""))} v{_e(suite.get("version", ""))} · seeds '
        f"{_e(', '.join(map(str, suite.get('seeds', []))))} · controllers {_e(', '.join(suite.get('controllers', [])))}"
        f" · run by greenwave {_e(data.get('greenwave_version', '?'))}, report by {_e(__version__)} · made from "
        f"{_e(source)}</p>",
    ]
    check = data.get("check")
    if isinstance(check, dict):
        updated = bool(check.get("updated"))
        # (rewritten on purpose: every figure that changed, as the console lists them)
        moved = (check.get("changes") if updated and "changes" in check else check.get("regressions")) or []
        base = _e(check.get("baseline", "?"))
        listed = "; ".join(_e(moved_text(g, updated=updated)) for g in moved)
        if moved and updated:
            body.append(f'<p class="meta">baseline {base} updated on purpose; what moved ({len(moved)}): {listed}</p>')
        elif moved:
            body.append(f'<p class="bad">check against {base}: {len(moved)} regression(s): {listed}</p>')
        else:
            body.append(f'<p class="meta">check against {base}: no regression</p>')
        # (what it could not check: groups on one side only, figures the baseline lacks)
        body += [f'<p class="note">check: {_e(n)}</p>' for n in check.get("notes") or []]
    if failures:
        body.append(f'<p class="bad">{len(failures)} run(s) failed: '
                    + "; ".join(_e(f"{f.get('scenario')} {f.get('controller')} s{f.get('seed')}: {f.get('error')}")
                                for f in failures) + "</p>")
    for fig, cls, caption in figs:
        if fig is not None:
            body.append(f'<figure class="{cls}">{to_svg(fig)}<figcaption>{_e(caption)}</figcaption></figure>')
    body += ["<h2>Comparison</h2>", table(head, table_rows, cls="aggregate")]
    if any(r.get("gap_judged") is False and r.get("gap_closed") is not None for r in rows):
        body.append('<p class="note">* gap not judged: the oracle saves less than 10 % of none\'s EV time, or '
                    'it showed several EVs\' crossing movements green at once (no bound a safe controller '
                    'could reach)</p>')
    if any(r.get("failed") for r in rows):
        body.append('<p class="note">n (k✗): n runs completed, k failed (their figures are left out)</p>')
    body.append('<p class="note">±: the standard error over the seeds (of the per-seed delay over the oracle; of '
                "the per-seed change against none, in points).</p>")
    # (the console's notes: an EV that did not arrive, a jam that kept other trips from finishing)
    body += [f'<p class="note">note: {_e(n)}</p>' for n in [*not_arrived(rows), *past_end(rows), *fewer_trips(rows)]]
    if verdict_rows:
        body += ["<h2>Acceptance verdicts</h2>", table(("scenario", "status", "criteria"), verdict_rows,
                                                       cls="verdicts")]
    notes = data.get("notes", {})
    if notes:
        body.append("<h2>Definitions</h2><ul>" + "".join(f"<li><b>{_e(k)}</b>: {_e(v)}</li>"
                                                       for k, v in notes.items()) + "</ul>")
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_bench_report(bench_dir: Path) -> Path:
    source = bench_dir / BENCH_FILE
    try:
        data = json.loads(source.read_text("utf-8"))
    except OSError as e:
        raise ReportError(f"{source}: cannot read the bench results: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReportError(f"{source}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("aggregate"), list):
        raise ReportError(f"{source}: not a greenwave bench result (no 'aggregate' list)")
    path = bench_dir / REPORT_FILE
    try:
        page = render_bench(data, source)
    except (AttributeError, KeyError, TypeError, ValueError) as e:
        raise ReportError(f"{source}: the bench results have an unexpected shape ({type(e).__name__}: {e})") from None
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page, "utf-8")
    tmp.replace(path)
    return path
