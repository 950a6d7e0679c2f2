"""From the runs' summaries to one row of figures per (scenario, controller), the acceptance
verdicts and the baseline check. Pure: plain dicts in, plain dicts out; no SUMO, no files, no
clock. Every figure comes from the summaries (``summary.json``, see README "What the summary
means"); fields added after the first release (``stops_at_signals``, ``cross_streets``,
``recovery``, ``eta.errors``) are optional and reported as missing (None) when absent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# --- gap closed -------------------------------------------------------------------------------
GAP_JUDGED_MIN_SAVING = 0.10  # the oracle must save >= 10 % of none's EV time for the gap to be judged

# --- acceptance (controller "greenwave", per scenario; ETA over all runs) --------------------------
ACCEPT_CONTROLLER = "greenwave"
ACCEPT_GAP_MIN = 0.90
ACCEPT_DELAY_FACTOR_OF_LOCAL = 0.5  # delay over the oracle <= 0.5 x local's ...
ACCEPT_DELAY_MAX_S = 5.0  # ... or <= 5 s
ACCEPT_BG_CHANGE_MAX_PCT = 2.0  # background time loss vs none, and <= local's
ACCEPT_ETA_ENTRY_P90_S = 2.0
ACCEPT_ETA_60_P90_S = 6.0

# --- baseline check -------------------------------------------------------------------------
CHECK_CONTROLLERS = ("greenwave",)  # controllers whose performance figures are checked
CHECK_GAP_DROP = 0.05  # gap closed may drop by at most this much
CHECK_TRAVEL_REL = 0.05  # mean EV travel time may rise by at most 5 % ...
CHECK_TRAVEL_ABS_S = 2.0  # ... + 2 s
CHECK_BG_CHANGE_PP = 1.0  # background time loss change may rise by at most 1 percentage point
CHECK_STOPS_ABS = 0.5  # mean EV stops (at signals, and all) may differ by at most this much
CHECK_TICK_RATIO = 5.0  # the controller's tick / SUMO's step (p50s) may grow at most 5-fold ...
CHECK_TICK_RATIO_FLOOR = 0.05  # ... and is only judged above this (smaller ratios are timer noise)
# SUMO's collisions, teleports and emergency brakings may rise by at most this many, or this share
# of the baseline's where that is more (a change that perturbs the traffic moves them a little)
CHECK_INCIDENTS_ABS = 2
CHECK_INCIDENTS_REL = 0.25
CHECK_INCIDENTS = ("collisions", "collisions_after_end", "collisions_preempted", "emergency_braking", "teleports")
# the figures check_baseline compares (for CHECK_CONTROLLERS also CHECKED_FIGURES_VS_REFS)
CHECKED_FIGURES = ("evs_not_arrived", "collisions_ev", *CHECK_INCIDENTS, "ev_travel_mean_s", "ev_green_lost",
                   "ev_stops_mean", "ev_stops_at_signals_mean", "tick_to_step_p50")
CHECKED_FIGURES_VS_REFS = ("gap_closed", "bg_time_loss_change_pct")
BASELINE_REQUIRED = ("evs", "evs_not_arrived", "ev_travel_mean_s", "collisions", "collisions_ev")  # (and S1-S5)
_EPS = 1e-9  # figures are deterministic; this only absorbs float rounding at a limit

SAFETY_RULES = ("S1", "S2", "S3", "S4", "S5")
# (collisions: to the scenario's end, as the trips; collisions_after_end: a run going on for its EV;
# an older summary has none apart: 0)
SAFETY_KEYS = (*SAFETY_RULES, "collisions", "collisions_after_end", "collisions_ev", "collisions_preempted",
               "emergency_braking", "teleports")
UNRECORDED = ("collisions_preempted",)  # None in a summary: not recorded (the oracle keeps no preemptions)
BASELINE_FORMAT = "greenwave-bench-baseline"
BASELINE_FORMAT_VERSION = 1

# One row of bench.csv per (scenario, controller), in this order (units in the names).
CSV_COLUMNS = (
    "scenario", "controller", "demand_level", "runs", "failed", "seeds", "evs", "evs_not_arrived",
    "ev_travel_mean_s", "ev_travel_p95_s", "ev_ratio_mean", "gap_closed", "gap_judged",
    "ev_stops_at_signals_mean", "ev_stops_mean", "ev_green_lost", "delay_over_oracle_s", "delay_over_oracle_se_s",
    "bg_time_loss_mean_s", "bg_trips_mean", "bg_time_loss_change_pct", "bg_time_loss_change_se_pp",
    "cross_time_loss_mean_s", "cross_time_loss_change_pct",
    "runs_past_end", "recovery_mean_s", "in_step_mean_s", "eta_p90_s", "eta_p90_60_s", "eta_p90_entry_s", "eta_pooling",
    *SAFETY_KEYS, "wall_mean_s",
)  # fmt: skip


@dataclass(frozen=True)
class RunResult:
    """One job: its summary when it completed, else the error that stopped it."""

    scenario: str
    controller: str
    seed: int
    summary: Mapping[str, Any] | None
    error: str | None = None
    out_dir: str | None = None
    wall_s: float | None = None  # the job's wall time (setup + run), measured by the runner
    attempts: int = 1  # 2: its worker process died, and the job was run again

    @property
    def ok(self) -> bool:
        return self.summary is not None


# --- small helpers ----------------------------------------------------------------------------


def _get(d: Mapping[str, Any] | None, *path: str) -> Any:
    """``d[path[0]][path[1]]...``, or None as soon as a level is missing."""
    cur: Any = d
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return None
        cur = cur[key]
    return cur


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x) else None


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _p(values: Sequence[float], q: float) -> float | None:
    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else None


def _count(x: int | None) -> str:
    return "-" if x is None else str(x)


def _r(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


def past_end_s(summary: Mapping[str, Any]) -> float | None:
    """How far the run's EVs (arrivals) or preemptions (exits, returns to the program) went on,
    where that is past the scenario's end by more than a second; else None. (The other traffic
    is counted to the end: the run report and the bench note such runs.)"""
    end = _num(summary.get("end"))
    times = [t for ev in summary.get("evs", []) if (t := _num(ev.get("arrival"))) is not None]
    times += [t for p in summary.get("preemptions", []) for k in ("exit", "restored")
              if (t := _num(p.get(k))) is not None]
    return max(times) if end is not None and times and max(times) > end + 1.0 else None


def ev_travel_times(summary: Mapping[str, Any]) -> list[float]:
    """Travel times of the EVs of one run that arrived."""
    return [t for t in (_num(ev.get("travel_time")) for ev in summary.get("evs", [])) if t is not None]


def run_ev_mean(summary: Mapping[str, Any]) -> float | None:
    return _mean(ev_travel_times(summary))


def _stops_at_signals(ev: Mapping[str, Any]) -> float | None:
    return _num(ev.get("stops_at_signals", ev.get("stops")))


# --- ETA --------------------------------------------------------------------------------------

_ETA_ENTRY_TAGS = ("entry", "at_entry")
_ETA_RUN_P90 = {"all": ("eta", "abs_error_p90"), "60": ("eta", "by_horizon", "60", "abs_error_p90"),
                "entry": ("eta", "at_entry", "abs_error_p90")}
ETA_WHICH = ("all", "60", "entry")


def _tag_matches(tag: str, which: str) -> bool:
    return tag in _ETA_ENTRY_TAGS if which == "entry" else tag == which


def _eta_raw(summary: Mapping[str, Any], which: str) -> list[float] | None:
    """|errors| of one run for ``which`` (all | 60 | entry) from ``eta.errors``, or None when the
    run does not carry them. Two shapes are read: ``{"60": [err, ...], "entry": [...]}`` and
    ``[{"h": "60", "err": s}, ...]``. "all" needs an explicit "all" tag: the horizon samples are
    not every prediction the run's own ``abs_error_p90`` is computed from."""
    errors = _get(summary, "eta", "errors")
    pairs: list[tuple[str, Any]]
    if isinstance(errors, Mapping):
        pairs = [(str(tag), e) for tag, errs in errors.items() if isinstance(errs, list) for e in errs]
    elif isinstance(errors, list):
        pairs = [(str(e.get("h")), e.get("err")) for e in errors if isinstance(e, Mapping)]
    else:
        return None
    if which == "all" and not any(tag == "all" for tag, _ in pairs):
        return None
    return [abs(v) for tag, e in pairs if _tag_matches(tag, which) and (v := _num(e)) is not None]


def eta_p90(summaries: Sequence[Mapping[str, Any]], which: str) -> tuple[float | None, str | None]:
    """p90 of |ETA error| over runs, for ``which`` in all | 60 | entry, and how it was obtained.

    "pooled" over the raw errors (``eta.errors``) when every run carries them; otherwise
    "mean_of_run_p90", the mean of the runs' own p90s (not a p90 of the pooled errors)."""
    if not summaries:
        return None, None
    raw = [_eta_raw(s, which) for s in summaries]
    if all(r is not None for r in raw):
        pooled = [e for r in raw if r is not None for e in r]
        if pooled:
            return _p(pooled, 90), "pooled"
    value = _mean(_num(_get(s, *_ETA_RUN_P90[which])) for s in summaries)
    return (value, "mean_of_run_p90") if value is not None else (None, None)


def pooling_text(methods: Mapping[str, str | None]) -> str | None:
    """``{"all": "mean_of_run_p90", "60": "pooled", ...}`` -> "all:mean_of_run_p90 60:pooled"."""
    text = " ".join(f"{k}:{m}" for k, m in methods.items() if m)
    return text or None


# --- per (scenario, controller) -----------------------------------------------------------------


def _by_seed(results: Iterable[RunResult]) -> dict[int, Mapping[str, Any]]:
    return {r.seed: r.summary for r in results if r.summary is not None}


def _changes_pct(x: Mapping[int, Mapping[str, Any]], base: Mapping[int, Mapping[str, Any]],
                 *path: str) -> dict[int, float]:
    """Per seed both ran: (X - none) / none, in %."""
    changes: dict[int, float] = {}
    for seed in sorted(set(x) & set(base)):
        xv, bv = _num(_get(x[seed], *path)), _num(_get(base[seed], *path))
        if xv is not None and bv is not None and bv > 0:
            changes[seed] = (xv - bv) / bv * 100.0
    return changes


def _paired_change_pct(x: Mapping[int, Mapping[str, Any]], base: Mapping[int, Mapping[str, Any]],
                       *path: str) -> float | None:
    """Mean over the seeds both ran of (X - none) / none, in %."""
    return _mean(_changes_pct(x, base, *path).values())


def mean_and_se(values: Sequence[float]) -> tuple[float | None, float | None]:
    """The mean and its standard error (sample standard deviation / sqrt(n); None below 2 values)."""
    if not values:
        return None, None
    mean = float(np.mean(values))
    if len(values) < 2:
        return mean, None
    return mean, float(np.std(values, ddof=1) / np.sqrt(len(values)))


def arrived_times(summary: Mapping[str, Any]) -> dict[str, float]:
    """EV id -> travel time, of the EVs of one run that arrived."""
    return {str(ev.get("id")): t for ev in summary.get("evs", []) if (t := _num(ev.get("travel_time"))) is not None}


def _common_times(seed: int, groups: Sequence[Mapping[int, Mapping[str, Any]]]) -> list[list[float]]:
    """Per group, the travel times on ``seed`` of the EVs that arrived in every group's run of
    that seed (in one order): the comparisons compare the same trips (an EV stuck under none,
    left out of none's mean alone, made none look faster and the gap smaller)."""
    arrived = [arrived_times(g[seed]) for g in groups]
    ids = sorted(set.intersection(*(set(a) for a in arrived)))
    return [[a[i] for i in ids] for a in arrived]


def _means_on(seeds: Iterable[int], groups: Sequence[Mapping[int, Mapping[str, Any]]]) -> list[float | None]:
    """Each group's mean EV travel time over ``seeds``, on the EVs that arrived in all of them."""
    pooled: list[list[float]] = [[] for _ in groups]
    for s in seeds:
        for acc, times in zip(pooled, _common_times(s, groups), strict=True):
            acc.extend(times)
    return [_mean(acc) for acc in pooled]


def _paired_delay_se(seeds: Sequence[int], runs: Mapping[int, Mapping[str, Any]],
                     oracle: Mapping[int, Mapping[str, Any]]) -> float | None:
    """The standard error of the delay over the oracle, from its per-seed values (X − oracle, on
    the EVs that arrived in both)."""
    per_seed = [x - o for s in seeds for xs, os in [_common_times(s, (runs, oracle))]
                if (x := _mean(xs)) is not None and (o := _mean(os)) is not None]
    return mean_and_se(per_seed)[1]


def _group(results: Sequence[RunResult], none: dict[int, Mapping[str, Any]] | None,
           oracle: dict[int, Mapping[str, Any]] | None) -> dict[str, Any]:
    first = results[0]
    runs = _by_seed(results)
    summaries = [runs[s] for s in sorted(runs)]
    evs = [ev for s in summaries for ev in s.get("evs", [])]
    travel = [t for s in summaries for t in ev_travel_times(s)]
    levels = list(dict.fromkeys(s.get("demand_level") for s in summaries))
    ratios = [
        t / ff
        for ev in evs
        if (t := _num(ev.get("travel_time"))) is not None and (ff := _num(ev.get("free_flow_time"))) and ff > 0
    ]
    row: dict[str, Any] = {
        "scenario": first.scenario,
        "controller": first.controller,
        # the scenario's demand level where every run gives the same ("moderate" is judged for
        # stops at signals in the verdict)
        "demand_level": levels[0] if len(levels) == 1 else None,
        "runs": len(runs),
        "failed": sum(1 for r in results if r.summary is None),
        "seeds": sorted(runs),
        # (None where no run completed: nothing was counted, which a 0 would pass off as clean)
        "evs": len(evs) if summaries else None,
        "evs_not_arrived": len(evs) - len(travel) if summaries else None,
        "ev_travel_mean_s": _r(_mean(travel), 2),
        "ev_travel_p95_s": _r(_p(travel, 95), 2),
        "ev_ratio_mean": _r(_mean(ratios), 4),
    }

    # Gap closed on the seeds X, none and oracle all completed; the delay over the oracle on
    # those X and the oracle completed (it does not need none).
    gap = delay = delay_se = None
    judged: bool | None = None
    if none is not None and oracle is not None:
        common = sorted(set(runs) & set(none) & set(oracle))
        m_x, m_none, m_oracle = _means_on(common, (runs, none, oracle))
        if m_x is not None and m_none is not None and m_oracle is not None:
            saving = m_none - m_oracle
            judged = m_none > 0 and saving >= GAP_JUDGED_MIN_SAVING * m_none
            gap = (m_none - m_x) / saving if abs(saving) > _EPS else None
            conflicted = [s for s in common if oracle[s].get("oracle_conflicts")]
            if conflicted:  # (several EVs' crossing movements green at once: no bound)
                judged = False
                row["oracle_conflicts_seeds"] = conflicted
    if oracle is not None:
        common = sorted(set(runs) & set(oracle))
        m_x, m_oracle = _means_on(common, (runs, oracle))
        delay = m_x - m_oracle if m_x is not None and m_oracle is not None else None
        delay_se = _paired_delay_se(common, runs, oracle)
    row.update(gap_closed=_r(gap, 4), gap_judged=judged, delay_over_oracle_s=_r(delay, 2),
               delay_over_oracle_se_s=_r(delay_se, 2))

    row["ev_stops_at_signals_mean"] = _r(_mean(_stops_at_signals(ev) for ev in evs), 3)
    # times an EV's movement lost green at a junction preempted for it before it crossed (None:
    # not recorded, as for none and the oracle, which keep no preemptions)
    lost = [_num(ev.get("green_lost")) for ev in evs]
    row["ev_green_lost"] = None if all(v is None for v in lost) else int(sum(v or 0 for v in lost))
    row["ev_stops_mean"] = _r(_mean(_num(ev.get("stops")) for ev in evs), 3)

    bg, cross = ("background", "mean_time_loss"), ("background", "cross_streets", "mean_time_loss")
    row["bg_time_loss_mean_s"] = _r(_mean(_num(_get(s, *bg)) for s in summaries), 3)
    # (the mean time loss is over the trips that finished: where a run finishes fewer than none,
    # those a jam kept out, with the largest losses, are not in it; see ``fewer_trips``)
    row["bg_trips_mean"] = _r(_mean(_num(_get(s, "background", "trips")) for s in summaries), 1)
    bg_changes = _changes_pct(runs, none, *bg) if none is not None else {}
    bg_mean, bg_se = mean_and_se(list(bg_changes.values()))
    row["bg_time_loss_change_pct"] = _r(bg_mean, 3) if none is not None else None
    # seed-to-seed noise: the standard error of that mean, and the per-seed changes (for pairing
    # two controllers on the same seeds in the verdicts)
    row["bg_time_loss_change_se_pp"] = _r(bg_se, 3)
    row["bg_time_loss_change_by_seed"] = {str(k): round(v, 3) for k, v in bg_changes.items()} if none is not None \
        else None
    row["cross_time_loss_mean_s"] = _r(_mean(_num(_get(s, *cross)) for s in summaries), 3)
    row["cross_time_loss_change_pct"] = _r(_paired_change_pct(runs, none, *cross), 3) if none is not None else None
    # (a group with no completed run counts nothing: null, as its other counts, not 0)
    row["runs_past_end"] = sum(1 for s in summaries if past_end_s(s) is not None) if summaries else None
    row["recovery_mean_s"] = _r(_mean(_num(_get(s, "recovery", "mean_s")) for s in summaries), 2)
    # (to the schedule: a fixed-time signal back in step with its neighbours, coordination restored)
    row["in_step_mean_s"] = _r(_mean(_num(_get(s, "recovery", "in_step_mean_s")) for s in summaries), 2)
    row["tick_ms_p99_mean"] = _r(_mean(_num(_get(s, "realtime", "tick_ms_p99")) for s in summaries), 4)
    row["sumo_step_ms_p50_mean"] = _r(_mean(_num(_get(s, "realtime", "sumo_step_ms_p50")) for s in summaries), 4)
    row["tick_to_step_p50"] = _r(_mean(_num(_get(s, "realtime", "tick_to_step_p50")) for s in summaries), 4)

    methods: dict[str, str | None] = {}
    for key, which in zip(("eta_p90_s", "eta_p90_60_s", "eta_p90_entry_s"), ETA_WHICH, strict=True):
        value, methods[which] = eta_p90(summaries, which)
        row[key] = _r(value, 3)
    row["eta_pooling"] = pooling_text(methods)

    for key in SAFETY_KEYS:
        values = [_num(_get(s, "safety", key)) for s in summaries]
        row[key] = None if not summaries or (key in UNRECORDED and all(v is None for v in values)) else int(
            sum(v or 0 for v in values))
    # per seed, to compare with none's on the same seeds in the verdict
    row["collisions_by_seed"] = {str(seed): int(_num(_get(runs[seed], "safety", "collisions")) or 0)
                                 for seed in sorted(runs)}
    row["wall_mean_s"] = _r(
        _mean(_num(_get(runs[s], "realtime", "wall_s")) for s in sorted(runs)) if runs else None, 2
    )
    return row


def aggregate(results: Sequence[RunResult]) -> list[dict[str, Any]]:
    """One row per (scenario, controller), in the order they first appear in ``results``."""
    groups: dict[tuple[str, str], list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.scenario, r.controller), []).append(r)
    rows = []
    for (scenario, _controller), members in groups.items():
        none = _by_seed(groups[(scenario, "none")]) if (scenario, "none") in groups else None
        oracle = _by_seed(groups[(scenario, "oracle")]) if (scenario, "oracle") in groups else None
        rows.append(_group(members, none, oracle))
    return rows


def run_row(r: RunResult) -> dict[str, Any]:
    """The per-run figures kept in bench.json (the full summary stays in the run's folder)."""
    s = r.summary
    row: dict[str, Any] = {"scenario": r.scenario, "controller": r.controller, "seed": r.seed,
                           "status": "ok" if s is not None else "failed", "error": r.error,
                           "out_dir": r.out_dir, "job_wall_s": _r(r.wall_s, 2), "attempts": r.attempts}
    if s is None:
        return row
    evs = s.get("evs", [])
    row.update(
        ev_travel_times_s=ev_travel_times(s),
        ev_travel_mean_s=_r(run_ev_mean(s), 2),
        ev_stops=[ev.get("stops") for ev in evs],
        ev_green_lost=[ev.get("green_lost") for ev in evs],
        bg_time_loss_s=_num(_get(s, "background", "mean_time_loss")),
        eta_p90_s=_num(_get(s, "eta", "abs_error_p90")),
        **{key: _get(s, "safety", key) for key in SAFETY_KEYS},
        wall_s=_num(_get(s, "realtime", "wall_s")),
        notes=list(s.get("notes") or []),
    )
    return row


def csv_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The aggregate rows flattened for bench.csv: columns CSV_COLUMNS, None as empty."""
    out = []
    for row in rows:
        flat = {}
        for col in CSV_COLUMNS:
            v = row.get(col)
            if isinstance(v, list):
                v = " ".join(str(s) for s in v)
            elif isinstance(v, bool):
                v = str(v).lower()
            flat[col] = "" if v is None else v
        out.append(flat)
    return out


# --- acceptance verdicts ----------------------------------------------------------------------


NOISE_MIN_SEEDS = 5  # a paired difference is called within or beyond seed noise from this many seeds
FEWER_TRIPS_SHARE = 0.02  # fewer other trips finished than none's by more than this: the time loss is flattered


def fewer_trips(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """A note for each group that finished fewer other trips per run than ``none`` did on its
    scenario by more than FEWER_TRIPS_SHARE: its mean time loss counts only the trips that
    finished, so a jam (the oracle's, holding a route green) makes it look better than it is."""
    none = {r["scenario"]: _num(r.get("bg_trips_mean")) for r in rows if r["controller"] == "none"}
    out = []
    for r in rows:
        ref, n = none.get(r["scenario"]), _num(r.get("bg_trips_mean"))
        if ref and n is not None and r["controller"] != "none" and n < ref * (1.0 - FEWER_TRIPS_SHARE):
            out.append(f"{r['scenario']} / {r['controller']}: {n:,.0f} other trips finished per run against none's "
                       f"{ref:,.0f} ({100.0 * (n / ref - 1.0):+.1f} %): its time loss counts finished trips only, "
                       "and looks better than it is where a jam kept trips from finishing")
    return out


def not_arrived(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """A note for each group where an EV did not arrive: its EV figures average the EVs that did,
    so they do not compare the same trips as a group where every EV arrived."""
    return [f"{r['scenario']} / {r['controller']}: {r['evs_not_arrived']} of {r['evs']} EVs did not arrive; its EV "
            "travel times average the EVs that did, and every gap closed and delay over the oracle on its seeds "
            "compares only the EVs that arrived under none, the oracle and the controller alike"
            for r in rows if r.get("evs_not_arrived")]


def past_end(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """A note for each group with runs whose EVs or preemptions went on past the scenario's end:
    the other traffic is counted to the end, so what they cost it after the end is not in the
    group's figures."""
    return [f"{r['scenario']} / {r['controller']}: in {r['runs_past_end']} of {r['runs']} run(s) the EVs' trips or "
            "preemptions went on past the scenario's end; the other traffic is counted to the end, so what they "
            "cost it after the end is not in these figures"
            for r in rows if r.get("runs_past_end")]


def _criterion(name: str, ok: bool | None, detail: str) -> dict[str, Any]:
    return {"name": name, "ok": ok, "detail": detail}


def _status(criteria: Sequence[Mapping[str, Any]]) -> str:
    oks = [c["ok"] for c in criteria]
    return "fail" if False in oks else ("pass" if all(o is True for o in oks) else "incomplete")


def _f(x: float | None, unit: str = "", digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}{unit}"


def scenario_verdict(rows: Sequence[Mapping[str, Any]], scenario: str) -> dict[str, Any] | None:
    """The acceptance verdict of ACCEPT_CONTROLLER on one scenario (None when it was not run)."""
    by_ctrl = {r["controller"]: r for r in rows if r["scenario"] == scenario}
    gw = by_ctrl.get(ACCEPT_CONTROLLER)
    if gw is None:
        return None
    local, none, oracle_row = by_ctrl.get("local"), by_ctrl.get("none"), by_ctrl.get("oracle")
    crit = [_criterion("all runs completed", gw["failed"] == 0 and gw["runs"] > 0,
                       f"{gw['runs']} ok, {gw['failed']} failed")]
    if gw["runs"]:
        # the travel-time figures average the EVs that arrived: one that did not must fail here
        crit.append(_criterion("every EV arrived", gw["evs_not_arrived"] == 0,
                               f"{gw['evs'] - gw['evs_not_arrived']} of {gw['evs']}"))

    if gw.get("demand_level") == "moderate" and gw["runs"]:
        stops = gw["ev_stops_at_signals_mean"]
        crit.append(_criterion("no EV stop at a signal (moderate demand)", None if stops is None else stops <= _EPS,
                               "n/a (no EV)" if stops is None else f"{stops:.2f} per EV"))

    gap = gw["gap_closed"]
    if gap is None:
        if none is None or oracle_row is None:
            why = "needs " + " and ".join(n for n, row in (("none", none), ("oracle", oracle_row)) if row is None)
        elif not set(gw["seeds"]) & set(none["seeds"]) & set(oracle_row["seeds"]):
            why = "no seed completed under greenwave, none and the oracle alike"
        else:
            why = "no EV arrived under all three on a seed all three completed"
        crit.append(_criterion("gap closed >= 0.90", None, f"n/a ({why})"))
    elif gw["gap_judged"] is False:
        why = ("the oracle showed EVs' crossing movements green at once" if gw.get("oracle_conflicts_seeds")
               else "oracle saves < 10 %")
        crit.append(_criterion("gap closed >= 0.90", True, f"{gap:.2f}, not judged ({why})"))
    else:
        ok_gap = gap >= ACCEPT_GAP_MIN - _EPS
        k = 2 if ok_gap else _decimals_apart(2, gap, ACCEPT_GAP_MIN)
        crit.append(_criterion("gap closed >= 0.90", ok_gap, f"{gap:.{k}f}"))

    d = gw["delay_over_oracle_s"]
    d_local = local["delay_over_oracle_s"] if local else None
    if d is None:
        crit.append(_criterion("delay over oracle", None, "n/a (needs oracle)" if oracle_row is None else
                               "n/a (no seed, or no arrived EV, common to greenwave and the oracle)"))
    else:
        ok: bool | None = d <= ACCEPT_DELAY_MAX_S + _EPS or (
            d_local is not None and d <= ACCEPT_DELAY_FACTOR_OF_LOCAL * d_local + _EPS
        )
        if not ok and d_local is None:
            ok = None  # (more than 5 s: half of local's cannot be judged without local)
        bounds = [ACCEPT_DELAY_MAX_S] + ([ACCEPT_DELAY_FACTOR_OF_LOCAL * d_local] if d_local is not None else [])
        k = 1 if ok is not False else _decimals_apart(1, d, *bounds)
        local_txt = (f"local {d_local:.{k}f} s" if d_local is not None else "local not run" if not local else
                     "local: no completed run" if not local.get("runs") else "local: no delay figure")
        se = gw.get("delay_over_oracle_se_s")
        se_txt = "" if se is None else f", standard error {se:.1f} s"
        crit.append(_criterion("delay over oracle <= 0.5 x local's or <= 5 s", ok,
                               f"{d:.{k}f} s{se_txt} ({local_txt})"))

    c = gw["bg_time_loss_change_pct"]
    c_local = local["bg_time_loss_change_pct"] if local else None
    if c is None:
        crit.append(_criterion("background time loss", None, "n/a (needs none)"))
    else:
        within = c <= ACCEPT_BG_CHANGE_MAX_PCT + _EPS
        if c_local is None or local is None:
            ok_bg: bool | None = False if not within else None
            k = 1 if within else _decimals_apart(1, c, ACCEPT_BG_CHANGE_MAX_PCT)
            local_txt = "local not run"
        else:
            ok_bg = within and c <= c_local + _EPS
            k = 1 if ok_bg else _decimals_apart(1, c, ACCEPT_BG_CHANGE_MAX_PCT, c_local)
            local_txt = f"local {c_local:+.{k}f} %" + _paired_text(gw, local)
        crit.append(_criterion("background time loss change <= +2 % and <= local's", ok_bg,
                               f"{c:+.{k}f} % ({local_txt})"))

    if not gw["runs"]:  # no run completed: nothing was measured
        crit.append(_criterion("zero S1-S5", None, "n/a (no run completed)"))
    else:
        s15 = sum(gw[k] for k in SAFETY_RULES)
        crit.append(_criterion("zero S1-S5", s15 == 0, " ".join(f"{k} {gw[k]}" for k in SAFETY_RULES)))
    if not gw["runs"] or none is None or not none["runs"]:
        crit.append(_criterion("collisions <= none's", None,
                               "n/a (no run completed)" if not gw["runs"] or none is not None else "n/a (needs none)"))
    else:
        mine, theirs, seeds = _collisions_on_common_seeds(gw, none)
        on = "" if seeds == gw["runs"] == none["runs"] else f" on the {seeds} seeds both completed"
        crit.append(_criterion("collisions <= none's", None if seeds == 0 else mine <= theirs,
                               f"{mine} vs none {theirs}{on} (with the EV {gw['collisions_ev']}, at "
                               f"preempted signals {_count(gw['collisions_preempted'])})"))
    return {"scenario": scenario, "controller": ACCEPT_CONTROLLER, "status": _status(crit), "criteria": crit}


def _decimals_apart(decimals: int, value: float, *bounds: float) -> int:
    """How many decimals (``decimals`` to 3 more) show ``value`` apart from every bound it was
    judged against: a failing figure rounded to its bound read "gap closed >= 0.90: 0.90 ✗"
    (0.8999)."""
    for k in range(decimals, decimals + 4):
        if all(f"{value:.{k}f}" != f"{b:.{k}f}" for b in bounds):
            return k
    return decimals + 3


def _collisions_on_common_seeds(x: Mapping[str, Any], none: Mapping[str, Any]) -> tuple[int, int, int]:
    """X's and none's SUMO collisions summed over the seeds both completed, and how many those are
    (rows without per-seed counts, as in an older bench.json: their totals over all runs)."""
    a, b = x.get("collisions_by_seed"), none.get("collisions_by_seed")
    if a is None or b is None:
        return int(x["collisions"]), int(none["collisions"]), min(int(x["runs"]), int(none["runs"]))
    seeds = sorted(set(a) & set(b))
    return sum(int(a[s]) for s in seeds), sum(int(b[s]) for s in seeds), len(seeds)


def _paired_text(x: Mapping[str, Any], y: Mapping[str, Any]) -> str:
    """X − Y background change, paired by seed: mean ± standard error, and whether the difference
    stands out from seed-to-seed noise (beyond two standard errors)."""
    a, b = x.get("bg_time_loss_change_by_seed"), y.get("bg_time_loss_change_by_seed")
    if not a or not b:
        return ""
    diffs = [a[s] - b[s] for s in sorted(set(a) & set(b))]
    mean, se = mean_and_se(diffs)
    if mean is None or se is None:
        return ""
    if len(diffs) < NOISE_MIN_SEEDS:  # (two standard errors of 2 or 3 seeds say little: 14 ± 0.0 read "beyond")
        noise = "too few seeds to tell from seed noise"
    else:
        noise = "within seed noise" if abs(mean) <= 2 * se else "beyond seed noise"
    return f"; {x['controller']} − {y['controller']} {mean:+.1f} ± {se:.1f} pp over {len(diffs)} seeds, {noise}"


def eta_verdict(results: Sequence[RunResult]) -> dict[str, Any] | None:
    """ETA p90 at entry and at 60 s over all runs of ACCEPT_CONTROLLER (None when it was not run)."""
    summaries = [r.summary for r in results if r.controller == ACCEPT_CONTROLLER and r.summary is not None]
    if not summaries:
        return None
    failed = sum(1 for r in results if r.controller == ACCEPT_CONTROLLER and r.summary is None)
    entry, m1 = eta_p90(summaries, "entry")
    h60, m2 = eta_p90(summaries, "60")
    crit = [
        _criterion("ETA p90 at entry <= 2 s", None if entry is None else entry <= ACCEPT_ETA_ENTRY_P90_S + _EPS,
                   _f(entry, " s")),
        _criterion("ETA p90 at 60 s <= 6 s", None if h60 is None else h60 <= ACCEPT_ETA_60_P90_S + _EPS,
                   _f(h60, " s")),
    ]
    if failed:  # (the pooled figures leave the failed runs out: not a verdict over the suite)
        crit.append(_criterion(f"every {ACCEPT_CONTROLLER} run completed", False,
                               f"{failed} failed of {failed + len(summaries)}"))
    return {"scenario": "(all)", "controller": ACCEPT_CONTROLLER, "status": _status(crit), "criteria": crit,
            "eta_pooling": pooling_text({"entry": m1, "60": m2}), "runs": len(summaries)}


def verdicts(results: Sequence[RunResult], rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    out = [v for s in scenarios if (v := scenario_verdict(rows, s)) is not None]
    eta = eta_verdict(results)
    if eta is not None:
        out.append(eta)
    return out


# --- baseline ---------------------------------------------------------------------------------


def sumo_version_of(results: Sequence[RunResult]) -> str | None:
    """The SUMO the completed runs ran (their summaries' ``sumo_version``), several joined with
    " / " should they differ; None where none says."""
    versions = sorted({str(v) for r in results if r.summary is not None
                       and (v := r.summary.get("sumo_version")) is not None})
    return " / ".join(versions) if versions else None


def moved_text(g: Mapping[str, Any], *, updated: bool) -> str:
    """One entry of a check's ``regressions``, as the bench prints it and its report shows it
    (with its allowed range unless the baseline was rewritten on purpose)."""
    text = f"{g.get('scenario')} / {g.get('controller')}: {g.get('metric')} {g.get('baseline')} -> {g.get('current')}"
    return text if updated else f"{text} (allowed {g.get('limit')})"


def make_baseline(suite: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"format": BASELINE_FORMAT, "format_version": BASELINE_FORMAT_VERSION, "suite": dict(suite),
            "groups": [dict(r) for r in rows]}


def check_baseline(
    rows: Sequence[Mapping[str, Any]], baseline: Mapping[str, Any], suite: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Compare the current rows with a baseline: ``{"regressions": [...], "notes": [...]}``.

    A regression, for every controller: any S1-S5 count above the baseline's; mean EV travel time
    off the baseline's by more than CHECK_TRAVEL_REL × it + CHECK_TRAVEL_ABS_S (either way: the
    figures are deterministic for a fixed seed), mean EV stops off by more than CHECK_STOPS_ABS,
    more times an EV's movement lost green at a signal preempted for it (``ev_green_lost``), more
    EVs that did not arrive (or no travel time where the baseline has one), any more collisions
    involving an EV, SUMO's collisions, teleports or emergency brakings up by more than
    CHECK_INCIDENTS_ABS or CHECK_INCIDENTS_REL × the baseline's;
    the controller's tick / SUMO's step grown beyond CHECK_TICK_RATIO times the baseline's (when
    above CHECK_TICK_RATIO_FLOOR). For CHECK_CONTROLLERS also gap closed down by more than
    CHECK_GAP_DROP, background time loss change up by more than CHECK_BG_CHANGE_PP points. A group
    whose completed seeds differ from the baseline's is a regression (its figures cannot be
    compared); groups on only one side are noted, not failed. So is a bench that compares no group
    at all, or (with ``suite``, the bench's) one of another suite name or version than the
    baseline's: nothing in it can be compared."""
    base = {(g["scenario"], g["controller"]): g for g in baseline.get("groups", [])}
    cur = {(r["scenario"], r["controller"]): r for r in rows}
    regressions: list[dict[str, Any]] = []
    notes: list[str] = []

    def regress(key: tuple[str, str], metric: str, b: Any, c: Any, limit: str) -> None:
        regressions.append({"scenario": key[0], "controller": key[1], "metric": metric, "baseline": b,
                            "current": c, "limit": limit})

    if suite is not None:
        made = baseline.get("suite", {})
        was, now = f"{made.get('name')} v{made.get('version')}", f"{suite.get('name')} v{suite.get('version')}"
        if was != now:
            regress(("(all)", "(all)"), "suite", was, now, "the baseline's suite and version")
            return {"regressions": regressions, "notes": notes}
        sumo_was, sumo_now = made.get("sumo_version"), suite.get("sumo_version")
        if sumo_was is not None and sumo_now is not None and sumo_was != sumo_now:
            notes.append(f"the baseline's figures were made with {sumo_was}, this bench ran {sumo_now}: "
                         "SUMO's own changes move them too")
        elif sumo_was is None and sumo_now is not None:
            notes.append(f"the baseline does not say which SUMO made it (this bench ran {sumo_now})")
    compared = 0
    for key, r in cur.items():
        b = base.get(key)
        if b is None:
            notes.append(f"{key[0]} / {key[1]}: not in the baseline, not checked")
            continue
        compared += 1
        if sorted(r["seeds"]) != sorted(b["seeds"]):
            regress(key, "seeds", b["seeds"], r["seeds"], "the same completed seeds as the baseline")
            continue
        # a figure the check compares that the baseline's group lacks is not checked: said, not
        # passed silently (a baseline stripped of its figures passed every change)
        checked = (*CHECKED_FIGURES, *(CHECKED_FIGURES_VS_REFS if key[1] in CHECK_CONTROLLERS else ()))
        # (null in the baseline too: one made with some controllers only has no gap closed)
        absent = [m for m in checked if b.get(m) is None and r.get(m) is not None]
        if absent:
            notes.append(f"{key[0]} / {key[1]}: {', '.join(absent)} not in the baseline (or null there), "
                         "not checked")
        for rule in SAFETY_RULES:
            if r[rule] > b[rule]:
                regress(key, rule, b[rule], r[rule], f"<= {b[rule]}")
        # deterministic for a fixed seed: any change beyond the tolerance, either way, means the
        # behaviour changed; a change meant to happen is committed with --update-baseline
        late, late_b = r.get("evs_not_arrived"), b.get("evs_not_arrived")
        if late is not None and late_b is not None and late > late_b:
            regress(key, "evs_not_arrived", late_b, late, f"<= {late_b}")
        if r.get("collisions_ev") is not None and b.get("collisions_ev") is not None \
                and r["collisions_ev"] > b["collisions_ev"]:
            regress(key, "collisions_ev", b["collisions_ev"], r["collisions_ev"], f"<= {b['collisions_ev']}")
        for incident in CHECK_INCIDENTS:
            n, nb = r.get(incident), b.get(incident)
            if n is not None and nb is not None:
                limit = nb + max(CHECK_INCIDENTS_ABS, CHECK_INCIDENTS_REL * nb)
                if n > limit + _EPS:
                    regress(key, incident, nb, n, f"<= {limit:g}")
        t, tb = r.get("ev_travel_mean_s"), b.get("ev_travel_mean_s")
        if t is None and tb is not None:
            regress(key, "ev_travel_mean_s", tb, None, "a mean travel time (every EV arrives)")
        if t is not None and tb is not None:
            tol = tb * CHECK_TRAVEL_REL + CHECK_TRAVEL_ABS_S
            if abs(t - tb) > tol + _EPS:
                regress(key, "ev_travel_mean_s", tb, t, f"{tb:.2f} ± {tol:.2f}")
        lost, lost_b = r.get("ev_green_lost"), b.get("ev_green_lost")
        if lost is not None and lost_b is not None and lost > lost_b:
            regress(key, "ev_green_lost", lost_b, lost, f"<= {lost_b}")
        for stops in ("ev_stops_mean", "ev_stops_at_signals_mean"):
            n, nb = r.get(stops), b.get(stops)
            if n is not None and nb is not None and abs(n - nb) > CHECK_STOPS_ABS + _EPS:
                regress(key, stops, nb, n, f"{nb} ± {CHECK_STOPS_ABS}")
        q, qb = r.get("tick_to_step_p50"), b.get("tick_to_step_p50")
        if q is not None and qb is not None and q > max(qb * CHECK_TICK_RATIO, CHECK_TICK_RATIO_FLOOR) + _EPS:
            regress(key, "tick_to_step_p50", qb, q,
                    f"<= {max(qb * CHECK_TICK_RATIO, CHECK_TICK_RATIO_FLOOR):.4f} (controller tick / SUMO step)")
        if key[1] not in CHECK_CONTROLLERS:
            continue
        g, gb = r.get("gap_closed"), b.get("gap_closed")
        if g is not None and gb is not None and g < gb - CHECK_GAP_DROP - _EPS:
            regress(key, "gap_closed", gb, g, f">= {gb - CHECK_GAP_DROP:.4f}")
        c, cb = r.get("bg_time_loss_change_pct"), b.get("bg_time_loss_change_pct")
        if c is not None and cb is not None and c > cb + CHECK_BG_CHANGE_PP + _EPS:
            regress(key, "bg_time_loss_change_pct", cb, c, f"<= {cb + CHECK_BG_CHANGE_PP:.3f}")
        # (these need none and the oracle run too: say so rather than pass them silently)
        unchecked = [m for m, now, was in (("gap_closed", g, gb), ("bg_time_loss_change_pct", c, cb))
                     if now is None and was is not None]
        if unchecked:
            notes.append(f"{key[0]} / {key[1]}: {' and '.join(unchecked)} not checked (they need the none and "
                         "oracle runs of these seeds: run every controller)")
    for key in base:
        if key not in cur:
            notes.append(f"{key[0]} / {key[1]}: in the baseline but not run, not checked")
    if not compared and cur:
        regress(("(all)", "(all)"), "groups compared", len(base), 0, "at least one scenario / controller in both")
    return {"regressions": regressions, "notes": notes}
