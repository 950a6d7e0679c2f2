"""The bench's aggregation, verdicts and baseline check, on hand-made summaries (no SUMO)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from controller.bench import aggregate as agg
from controller.bench.aggregate import RunResult, aggregate, check_baseline, make_baseline, verdicts
from controller.bench.report import write_csv
from controller.bench.suite import load_suite, parse_controllers, parse_seeds
from controller.errors import ScenarioError

REPO = Path(__file__).resolve().parents[2]


def summary(travel: float | list[float], *, ff: float = 100.0, bg: float | None = 50.0, s1: int = 0,
            collisions: int = 0, stops: int = 0, extra_ev: dict[str, Any] | None = None,
            **more: Any) -> dict[str, Any]:
    times = travel if isinstance(travel, list) else [travel]
    return {
        "evs": [{"id": f"ev{i}", "travel_time": t, "free_flow_time": ff, "stops": stops, **(extra_ev or {})}
                for i, t in enumerate(times)],
        "background": {"trips": 100, "mean_time_loss": bg},
        "eta": {"abs_error_p90": None, "by_horizon": {"60": {"abs_error_p90": None}},
                "at_entry": {"abs_error_p90": None}},
        "safety": {"S1": s1, "S2": 0, "S3": 0, "S4": 0, "S5": 0, "collisions": collisions, "collisions_ev": 0,
                   "emergency_braking": 0, "teleports": 0},
        "realtime": {"wall_s": 2.0},
        **more,
    }


def res(scenario: str, controller: str, seed: int, s: dict[str, Any] | None, error: str | None = None) -> RunResult:
    return RunResult(scenario, controller, seed, s, error=error)


def rows_by_ctrl(rows: list[dict[str, Any]], scenario: str = "a") -> dict[str, dict[str, Any]]:
    return {r["controller"]: r for r in rows if r["scenario"] == scenario}


def basic(gw_travel: tuple[float, float] = (115.0, 125.0), gw_bg: tuple[float, float] = (50.5, 60.6),
          local_travel: tuple[float, float] = (160.0, 170.0), local_bg: tuple[float, float] = (52.0, 62.0),
          gw_s1: int = 0) -> list[RunResult]:
    """Seeds 1, 2: none 200/220, oracle 100/120 (mean 210 vs 110: the oracle saves 100 s)."""
    out = []
    for i, seed in enumerate((1, 2)):
        out += [
            res("a", "none", seed, summary((200.0, 220.0)[i], bg=(50.0, 60.0)[i], collisions=2)),
            res("a", "local", seed, summary(local_travel[i], bg=local_bg[i])),
            res("a", "greenwave", seed, summary(gw_travel[i], bg=gw_bg[i], s1=gw_s1, collisions=1)),
            res("a", "oracle", seed, summary((100.0, 120.0)[i], bg=(49.0, 58.0)[i], s1=7)),
        ]
    return out


def test_gap_closed_delay_and_means() -> None:
    rows = rows_by_ctrl(aggregate(basic()))
    assert rows["none"]["gap_closed"] == 0.0
    assert rows["oracle"]["gap_closed"] == 1.0
    assert rows["greenwave"]["gap_closed"] == pytest.approx(0.9)  # (210 - 120) / (210 - 110)
    assert rows["local"]["gap_closed"] == pytest.approx(0.45)
    assert rows["greenwave"]["gap_judged"] is True
    assert rows["greenwave"]["delay_over_oracle_s"] == pytest.approx(10.0)
    assert rows["greenwave"]["ev_travel_mean_s"] == 120.0
    assert rows["greenwave"]["ev_ratio_mean"] == pytest.approx(1.2)
    assert rows["greenwave"]["runs"] == 2 and rows["greenwave"]["failed"] == 0
    assert rows["greenwave"]["seeds"] == [1, 2]
    assert rows["oracle"]["S1"] == 14
    assert rows["none"]["collisions"] == 4
    assert rows["none"]["wall_mean_s"] == 2.0


def test_gap_not_judged_when_the_oracle_saves_little() -> None:
    results = [res("a", "none", 1, summary(100.0)), res("a", "oracle", 1, summary(95.0)),
               res("a", "greenwave", 1, summary(99.0))]
    rows = rows_by_ctrl(aggregate(results))
    gw = rows["greenwave"]
    assert gw["gap_closed"] == pytest.approx(0.2)  # reported ...
    assert gw["gap_judged"] is False  # ... but not judged: 5 s < 10 % of 100 s
    verdict = agg.scenario_verdict(aggregate(results), "a")
    assert verdict is not None
    gap = next(c for c in verdict["criteria"] if c["name"].startswith("gap"))
    assert gap["ok"] is True and "not judged" in gap["detail"]


def test_gap_is_none_when_the_oracle_saves_nothing() -> None:
    results = [res("a", "none", 1, summary(100.0)), res("a", "oracle", 1, summary(100.0)),
               res("a", "greenwave", 1, summary(100.0))]
    gw = rows_by_ctrl(aggregate(results))["greenwave"]
    assert gw["gap_closed"] is None and gw["gap_judged"] is False


def test_gap_uses_the_seeds_all_three_completed() -> None:
    results = basic()
    results = [r for r in results if not (r.controller == "greenwave" and r.seed == 2)]
    results.append(res("a", "greenwave", 2, None, error="boom"))
    gw = rows_by_ctrl(aggregate(results))["greenwave"]
    assert gw["runs"] == 1 and gw["failed"] == 1 and gw["seeds"] == [1]
    assert gw["gap_closed"] == pytest.approx((200 - 115) / (200 - 100))


def test_paired_percent_change_is_the_mean_of_per_seed_changes() -> None:
    rows = rows_by_ctrl(aggregate(basic(gw_bg=(55.0, 60.0))))
    # seed 1: +10 %, seed 2: 0 % -> +5 %; the ratio of the means would be (57.5 - 55) / 55 = 4.5 %
    assert rows["greenwave"]["bg_time_loss_change_pct"] == pytest.approx(5.0)
    assert rows["none"]["bg_time_loss_change_pct"] == 0.0
    assert rows["greenwave"]["bg_time_loss_mean_s"] == pytest.approx(57.5)
    assert rows["greenwave"]["cross_time_loss_change_pct"] is None  # field absent -> missing
    # its seed-to-seed noise: the per-seed changes and the standard error of their mean
    assert rows["greenwave"]["bg_time_loss_change_by_seed"] == {"1": pytest.approx(10.0), "2": pytest.approx(0.0)}
    assert rows["greenwave"]["bg_time_loss_change_se_pp"] == pytest.approx(5.0)  # sd 7.07 / sqrt(2)
    assert rows["none"]["bg_time_loss_change_se_pp"] == 0.0


def test_delay_over_the_oracle_has_its_standard_error_over_the_seeds() -> None:
    rows = rows_by_ctrl(aggregate(basic(gw_travel=(110.0, 140.0))))  # per seed 10 and 20 s over the oracle
    assert rows["greenwave"]["delay_over_oracle_s"] == pytest.approx(15.0)
    assert rows["greenwave"]["delay_over_oracle_se_s"] == pytest.approx(5.0)
    assert rows["oracle"]["delay_over_oracle_se_s"] == 0.0
    assert "15.0 s, standard error 5.0 s" in _detail(_verdict(basic(gw_travel=(110.0, 140.0))), "delay")


def test_one_seed_has_no_standard_error() -> None:
    rows = rows_by_ctrl(aggregate([r for r in basic() if r.seed == 1]))
    assert rows["greenwave"]["bg_time_loss_change_pct"] == pytest.approx(1.0)
    assert rows["greenwave"]["bg_time_loss_change_se_pp"] is None
    assert rows["greenwave"]["delay_over_oracle_se_s"] is None


def test_cross_streets_and_recovery_when_present() -> None:
    def s(travel: float, cross: float, rec: float | None = None) -> dict[str, Any]:
        out = summary(travel)
        out["background"]["cross_streets"] = {"mean_time_loss": cross}
        if rec is not None:
            out["recovery"] = {"mean_s": rec, "in_step_mean_s": rec * 3}
        return out

    results = [res("a", "none", 1, s(200, 40.0)), res("a", "none", 2, s(200, 50.0)),
               res("a", "greenwave", 1, s(150, 44.0, 12.0)), res("a", "greenwave", 2, s(150, 45.0, 18.0))]
    gw = rows_by_ctrl(aggregate(results))["greenwave"]
    assert gw["cross_time_loss_change_pct"] == pytest.approx((10.0 - 10.0) / 2)
    assert gw["cross_time_loss_mean_s"] == pytest.approx(44.5)
    assert gw["recovery_mean_s"] == pytest.approx(15.0)
    assert gw["in_step_mean_s"] == pytest.approx(45.0)  # exit to back in step with the schedule
    assert rows_by_ctrl(aggregate(results))["none"]["recovery_mean_s"] is None
    assert rows_by_ctrl(aggregate(results))["none"]["in_step_mean_s"] is None


def test_p95_over_all_evs_of_all_seeds() -> None:
    times = [float(t) for t in range(100, 120)]  # 20 EVs over 2 seeds
    results = [res("a", "none", 1, summary(times[:10])), res("a", "none", 2, summary(times[10:]))]
    row = aggregate(results)[0]
    assert row["evs"] == 20
    assert row["ev_travel_mean_s"] == pytest.approx(109.5)
    assert row["ev_travel_p95_s"] == pytest.approx(118.05)  # numpy's linear percentile of 100..119


def test_evs_that_did_not_arrive_are_counted_not_averaged() -> None:
    s = summary([100.0, 120.0])
    s["evs"][1]["travel_time"] = None
    row = aggregate([res("a", "none", 1, s)])[0]
    assert row["evs"] == 2 and row["evs_not_arrived"] == 1 and row["ev_travel_mean_s"] == 100.0


def test_stops_at_signals_falls_back_to_stops() -> None:
    results = [res("a", "none", 1, summary(100.0, stops=3)),
               res("a", "none", 2, summary(100.0, stops=3, extra_ev={"stops_at_signals": 1}))]
    row = aggregate(results)[0]
    assert row["ev_stops_mean"] == 3.0
    assert row["ev_stops_at_signals_mean"] == 2.0  # (3 [fallback] + 1) / 2


def test_green_lost_summed_over_evs_and_seeds_and_checked_against_the_baseline() -> None:
    def runs(lost: tuple[int, int]) -> list[RunResult]:
        return [res("a", "none", 1, summary(200.0)),
                res("a", "greenwave", 1, summary([100.0, 110.0], extra_ev={"green_lost": lost[0]})),
                res("a", "greenwave", 2, summary(100.0, extra_ev={"green_lost": lost[1]}))]

    rows = rows_by_ctrl(aggregate(runs((0, 1))))
    assert rows["greenwave"]["ev_green_lost"] == 1  # 0 + 0 (seed 1, two EVs) + 1
    assert rows["none"]["ev_green_lost"] is None  # not recorded
    base = make_baseline({"name": "t", "version": 1}, aggregate(runs((0, 1))))
    assert check_baseline(aggregate(runs((0, 0))), base)["regressions"] == []
    regs = check_baseline(aggregate(runs((1, 1))), base)["regressions"]
    assert [(r["metric"], r["baseline"], r["current"]) for r in regs] == [("ev_green_lost", 1, 3)]

def _with_eta(errors: Any, p90: float) -> dict[str, Any]:
    s = summary(100.0)
    s["eta"] = {"abs_error_p90": p90, "by_horizon": {"60": {"abs_error_p90": p90}},
                "at_entry": {"abs_error_p90": p90 / 2}}
    if errors is not None:
        s["eta"]["errors"] = errors
    return s


def test_eta_pooled_from_raw_errors_or_mean_of_run_p90s() -> None:
    e1 = {"60": [-4.0], "entry": [1.0], "10": [0.5] * 8}  # the shape run.py writes
    e2 = [{"h": "60", "err": 2.0}, {"h": "entry", "err": -3.0}]  # a list of {"h", "err"} is read too
    row = aggregate([res("a", "greenwave", 1, _with_eta(e1, 3.0)), res("a", "greenwave", 2, _with_eta(e2, 5.0))])[0]
    assert row["eta_pooling"] == "all:mean_of_run_p90 60:pooled entry:pooled"  # no "all" tag: per-run p90s
    assert row["eta_p90_60_s"] == pytest.approx(3.8)  # p90 of |-4|, |2|
    assert row["eta_p90_entry_s"] == pytest.approx(2.8)  # p90 of |1|, |-3|
    assert row["eta_p90_s"] == 4.0  # mean of 3 and 5
    row = aggregate([res("a", "greenwave", 1, _with_eta({"all": [1.0, -2.0]}, 3.0)),
                     res("a", "greenwave", 2, _with_eta({"all": [4.0]}, 5.0))])[0]
    assert row["eta_p90_s"] == pytest.approx(3.6) and row["eta_pooling"].startswith("all:pooled")


def test_eta_mean_of_run_p90s_when_a_run_has_no_raw_errors() -> None:
    row = aggregate([res("a", "greenwave", 1, _with_eta({"60": [-4.0]}, 3.0)),
                     res("a", "greenwave", 2, _with_eta(None, 5.0))])[0]
    assert row["eta_pooling"] == "all:mean_of_run_p90 60:mean_of_run_p90 entry:mean_of_run_p90"
    assert row["eta_p90_s"] == 4.0 and row["eta_p90_60_s"] == 4.0 and row["eta_p90_entry_s"] == 2.0
    row = aggregate([res("a", "none", 1, summary(100.0))])[0]
    assert row["eta_p90_s"] is None and row["eta_pooling"] is None


def _verdict(results: list[RunResult]) -> dict[str, Any]:
    v = agg.scenario_verdict(aggregate(results), "a")
    assert v is not None
    return v


def _crit(v: dict[str, Any], prefix: str) -> Any:
    return next(c["ok"] for c in v["criteria"] if c["name"].startswith(prefix))


def test_verdict_pass() -> None:
    v = _verdict(basic())
    assert v["status"] == "pass", v


def test_verdict_failures() -> None:
    v = _verdict(basic(gw_travel=(130.0, 140.0), local_travel=(140.0, 150.0)))  # gap 0.75; delay 25 > 0.5 x 35
    assert v["status"] == "fail"
    assert _crit(v, "gap") is False and _crit(v, "delay") is False
    v = _verdict(basic(gw_travel=(130.0, 140.0), local_travel=(250.0, 270.0)))  # local's delay 150: 25 <= 75
    assert _crit(v, "delay") is True
    assert _crit(_verdict(basic(gw_bg=(52.0, 62.0))), "background") is False  # +3.7 % > 2 %
    assert _crit(_verdict(basic(gw_bg=(51.0, 61.0), local_bg=(50.0, 60.0))), "background") is False  # > local's
    assert _crit(_verdict(basic(gw_s1=1)), "zero S1") is False
    no_none = [r for r in basic() if r.controller != "none"]
    assert _verdict(no_none)["status"] == "incomplete"


def _detail(v: dict[str, Any], prefix: str) -> str:
    return str(next(c["detail"] for c in v["criteria"] if c["name"].startswith(prefix)))


def test_background_verdict_says_whether_the_difference_to_local_is_beyond_seed_noise() -> None:
    def five(gw: list[float], local: list[float]) -> list[RunResult]:
        out = []
        for seed in range(1, 6):
            out += [res("a", "none", seed, summary(200.0, bg=50.0)),
                    res("a", "local", seed, summary(160.0, bg=50.0 * (1 + local[seed - 1] / 100))),
                    res("a", "greenwave", seed, summary(115.0, bg=50.0 * (1 + gw[seed - 1] / 100))),
                    res("a", "oracle", seed, summary(100.0, bg=49.0))]
        return out

    # greenwave's change is 2 points above local's on every seed: a steady difference, the rule fails
    v = _verdict(five([1.0, 1.5, 1.0, 1.5, 1.0], [-1.0, -0.5, -1.0, -0.5, -1.0]))
    assert _crit(v, "background") is False
    assert "greenwave − local +2.0 ± 0.0 pp over 5 seeds, beyond seed noise" in _detail(v, "background")
    # above local's on average but below it on some seeds: the rule still fails (it is literal) and
    # the detail says the difference is within the noise
    v = _verdict(five([1.8, -1.0, 1.8, -1.0, 1.4], [0.0, 0.5, 0.0, 0.5, 0.0]))
    assert _crit(v, "background") is False
    assert "pp over 5 seeds, within seed noise" in _detail(v, "background")
    # two seeds: too few to tell (a steady +2 points over 2 seeds read "beyond seed noise")
    v = _verdict(basic(gw_bg=(51.0, 61.2), local_bg=(50.0, 60.0)))
    assert _crit(v, "background") is False
    assert "greenwave − local +2.0 ± 0.0 pp over 2 seeds, too few seeds to tell from seed noise" in \
        _detail(v, "background")


def test_verdict_without_local_cannot_pass_the_background_rule() -> None:
    # nor judge the delay rule beyond 5 s (half of local's): incomplete, not a failure
    v = _verdict([r for r in basic() if r.controller != "local"])
    assert _crit(v, "background") is None and _crit(v, "delay") is None
    assert v["status"] == "incomplete"
    # within 5 s of the oracle it passes without local
    near = _verdict([r for r in basic(gw_travel=(104.0, 124.0)) if r.controller != "local"])
    assert _crit(near, "delay") is True


def test_eta_verdict_over_all_runs() -> None:
    def gw(entry: float, h60: float) -> dict[str, Any]:
        s = summary(100.0)
        s["eta"]["errors"] = {"entry": [entry], "60": [h60]}
        return s

    ok = verdicts([res("a", "greenwave", 1, gw(1.0, -5.0)), res("b", "greenwave", 1, gw(-1.5, 4.0))], [])
    assert ok[-1]["scenario"] == "(all)" and ok[-1]["status"] == "pass"
    bad = verdicts([res("a", "greenwave", 1, gw(1.0, 5.0)), res("b", "greenwave", 1, gw(3.0, 9.0))], [])
    assert bad[-1]["status"] == "fail"
    assert verdicts([res("a", "none", 1, summary(100.0))], aggregate([res("a", "none", 1, summary(100.0))])) == []
    # a failed run: the pooled figures leave it out, so the verdict over the suite is not a pass
    failed = verdicts([res("a", "greenwave", 1, gw(1.0, -5.0)), res("b", "greenwave", 1, None, error="x")], [])
    assert failed[-1]["status"] == "fail" and failed[-1]["criteria"][-1]["detail"] == "1 failed of 2"


def test_a_scenario_whose_runs_all_failed_claims_no_safety() -> None:
    results = [res("a", "none", 1, None, error="to edge 'x' is not in network"),
               res("a", "greenwave", 1, None, error="to edge 'x' is not in network")]
    (v,) = [v for v in verdicts(results, aggregate(results)) if v["scenario"] == "a"]
    crit = {c["name"]: c for c in v["criteria"]}
    assert crit["zero S1-S5"]["ok"] is None and crit["collisions <= none's"]["ok"] is None
    assert crit["zero S1-S5"]["detail"] == "n/a (no run completed)" and v["status"] != "pass"
    # nor do its rows (bench.json, bench.csv): zeros there read as clean to a parser
    for row in aggregate(results):
        assert row["runs"] == 0 and row["failed"] == 1
        assert all(row[k] is None for k in ("S1", "S5", "collisions", "collisions_ev", "teleports", "evs",
                                            "evs_not_arrived", "runs_past_end")), row


def test_check_says_what_it_could_not_compare_without_none_and_the_oracle() -> None:
    # --controllers greenwave against a full baseline: gap and background cannot be computed;
    # that passed silently
    base = make_baseline({"name": "t", "version": 1}, aggregate(basic()))
    only = aggregate([r for r in basic() if r.controller == "greenwave"])
    check = check_baseline(only, base)
    assert check["regressions"] == []
    assert "a / greenwave: gap_closed and bg_time_loss_change_pct not checked" in " ".join(check["notes"])


def test_check_passes_against_itself_and_within_tolerances() -> None:
    rows = aggregate(basic())
    base = make_baseline({"name": "t", "version": 1}, rows)
    assert check_baseline(rows, base)["regressions"] == []
    # gap 0.90 -> 0.86 (>= 0.85), travel 120 -> 124 s (<= 128), background +1 % -> +2 % (<= +1 pp)
    worse = aggregate(basic(gw_travel=(119.0, 129.0), gw_bg=(51.0, 61.2)))
    assert check_baseline(worse, base)["regressions"] == []


def test_check_detects_regressions() -> None:
    base = make_baseline({"name": "t", "version": 1}, aggregate(basic()))
    regs = check_baseline(aggregate(basic(gw_s1=1)), base)["regressions"]
    assert [(r["controller"], r["metric"]) for r in regs] == [("greenwave", "S1")]
    regs = check_baseline(aggregate(basic(gw_travel=(122.0, 132.0))), base)["regressions"]
    assert [r["metric"] for r in regs] == ["gap_closed"]  # gap 0.83 < 0.85; 127 s <= 128 s
    regs = check_baseline(aggregate(basic(gw_travel=(125.0, 135.0))), base)["regressions"]
    assert {r["metric"] for r in regs} == {"gap_closed", "ev_travel_mean_s"}  # gap 0.80; 130 s > 128 s
    regs = check_baseline(aggregate(basic(gw_bg=(51.5, 61.8))), base)["regressions"]  # +2.0 % vs +1.0 %
    assert [r["metric"] for r in regs] == ["bg_time_loss_change_pct"]


def test_check_fails_on_evs_that_no_longer_arrive_and_on_more_collisions() -> None:
    rows = aggregate(basic())
    base = make_baseline({"name": "t", "version": 1}, rows)

    def with_gw(**changes: Any) -> list[dict[str, Any]]:
        return [{**r, **changes} if r["controller"] == "greenwave" else r for r in rows]

    def moved(**changes: Any) -> set[str]:
        return {r["metric"] for r in check_baseline(with_gw(**changes), base)["regressions"]}

    gw = next(r for r in rows if r["controller"] == "greenwave")
    n = gw["collisions"]
    assert moved(teleports=gw["teleports"] + 2, collisions=n + 2) == set()  # within +2
    assert moved(collisions=n + 3) == {"collisions"}
    assert moved(collisions_ev=gw["collisions_ev"] + 1) == {"collisions_ev"}
    assert moved(emergency_braking=gw["emergency_braking"] + 3) == {"emergency_braking"}
    assert moved(evs_not_arrived=1, ev_travel_mean_s=None) == {"evs_not_arrived", "ev_travel_mean_s"}


def test_check_fails_where_nothing_can_be_compared() -> None:
    rows = aggregate(basic())
    base = make_baseline({"name": "t", "version": 1}, rows)
    assert check_baseline(rows, base, {"name": "t", "version": 1})["regressions"] == []
    # another suite, or another version of it: its figures are not comparable
    for suite in ({"name": "t", "version": 2}, {"name": "other", "version": 1}):
        regs = check_baseline(rows, base, suite)["regressions"]
        assert [(r["metric"], r["baseline"]) for r in regs] == [("suite", "t v1")]
    # no scenario / controller in both (it used to say "no regression")
    renamed = make_baseline({"name": "t", "version": 1}, rows)
    for g in renamed["groups"]:
        g["scenario"] = "elsewhere"
    regs = check_baseline(rows, renamed)["regressions"]
    assert [r["metric"] for r in regs] == ["groups compared"]


def test_check_travel_tolerance_is_relative_plus_absolute() -> None:
    base_rows = aggregate(basic())
    base = make_baseline({}, base_rows)
    gw = next(g for g in base["groups"] if g["controller"] == "greenwave")
    gw["gap_closed"] = None  # isolate the travel-time rule
    limit = 120.0 * (1 + agg.CHECK_TRAVEL_REL) + agg.CHECK_TRAVEL_ABS_S  # 128 s
    rows = aggregate(basic(gw_travel=(limit - 5.0, limit + 5.0)))
    assert check_baseline(rows, base)["regressions"] == []
    rows = aggregate(basic(gw_travel=(limit - 4.9, limit + 5.0)))
    assert [r["metric"] for r in check_baseline(rows, base)["regressions"]] == ["ev_travel_mean_s"]
    low = 120.0 * (1 - agg.CHECK_TRAVEL_REL) - agg.CHECK_TRAVEL_ABS_S  # 112 s: either way
    assert check_baseline(aggregate(basic(gw_travel=(low - 5.0, low + 5.0))), base)["regressions"] == []
    rows = aggregate(basic(gw_travel=(low - 5.1, low + 5.0)))
    assert [r["metric"] for r in check_baseline(rows, base)["regressions"]] == ["ev_travel_mean_s"]


def test_check_tick_to_step_ratio_grows_only_within_a_generous_factor() -> None:
    base = make_baseline({}, aggregate(basic()))
    for g in base["groups"]:
        g["tick_to_step_p50"] = 0.02
    rows = aggregate(basic())
    for r in rows:
        r["tick_to_step_p50"] = 0.02 * agg.CHECK_TICK_RATIO  # 5-fold: still allowed
    assert check_baseline(rows, base)["regressions"] == []
    rows[2]["tick_to_step_p50"] = 0.02 * agg.CHECK_TICK_RATIO + 0.01
    regs = check_baseline(rows, base)["regressions"]
    assert [(r["controller"], r["metric"]) for r in regs] == [("greenwave", "tick_to_step_p50")]
    for g in base["groups"]:
        g["tick_to_step_p50"] = 0.001  # tiny ratios are timer noise: judged only above the floor
    for r in rows:
        r["tick_to_step_p50"] = agg.CHECK_TICK_RATIO_FLOOR
    assert check_baseline(rows, base)["regressions"] == []


def test_check_every_controller_on_deterministic_kpis_either_way_and_seeds_must_match() -> None:
    base = make_baseline({}, aggregate(basic()))
    regs = check_baseline(aggregate(basic(local_travel=(300.0, 300.0))), base)["regressions"]
    assert [(r["controller"], r["metric"]) for r in regs] == [("local", "ev_travel_mean_s")]
    # a deterministic figure that moved the good way beyond the tolerance also fails the gate
    regs = check_baseline(aggregate(basic(gw_travel=(100.0, 110.0))), base)["regressions"]
    assert [(r["controller"], r["metric"]) for r in regs] == [("greenwave", "ev_travel_mean_s")]
    assert regs[0]["limit"] == "120.00 ± 8.00"
    # local's background change is not judged (only greenwave's)
    assert check_baseline(aggregate(basic(local_bg=(60.0, 70.0))), base)["regressions"] == []
    one_seed = [r for r in basic() if r.seed == 1]
    check = check_baseline(aggregate(one_seed), base)
    assert {r["metric"] for r in check["regressions"]} == {"seeds"}
    subset = [r for r in basic() if r.controller in ("none", "oracle")]
    check = check_baseline(aggregate(subset), base)
    assert check["regressions"] == [] and any("not run" in n for n in check["notes"])


def test_csv_has_one_row_per_group_and_the_columns(tmp_path: Path) -> None:
    rows = aggregate(basic())
    write_csv(tmp_path / "bench.csv", rows)
    reader = csv.DictReader(io.StringIO((tmp_path / "bench.csv").read_text()))
    assert tuple(reader.fieldnames or ()) == agg.CSV_COLUMNS
    out = list(reader)
    assert [(r["scenario"], r["controller"]) for r in out] == [
        ("a", "none"), ("a", "local"), ("a", "greenwave"), ("a", "oracle")]
    gw = out[2]
    assert float(gw["gap_closed"]) == pytest.approx(0.9) and gw["gap_judged"] == "true"
    assert gw["seeds"] == "1 2" and gw["cross_time_loss_change_pct"] == ""


def test_the_default_suite_is_found_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from controller.bench.suite import DEFAULT_SUITE, default_suite

    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(tmp_path)  # a folder without benchmarks/: the checkout's suite
    assert default_suite() == repo / "benchmarks" / "suite.toml"
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "suite.toml").write_text("")  # one of its own: that one
    assert default_suite() == DEFAULT_SUITE


def test_parse_seeds_and_controllers() -> None:
    assert parse_seeds("1-3") == (1, 2, 3)
    assert parse_seeds("1,2, 5-6,2") == (1, 2, 5, 6)
    for bad in ("", "a", "3-1", "1,,2"):
        with pytest.raises(ScenarioError, match="--seeds"):
            parse_seeds(bad)
    # SUMO's largest seed, and no range that would take forever to list (or to run)
    assert parse_seeds("2147483647") == (2147483647,)
    with pytest.raises(ScenarioError, match="2147483648 is over 2147483647"):
        parse_seeds("2147483648")
    with pytest.raises(ScenarioError, match="has 20000 seeds"):
        parse_seeds("1-20000")
    with pytest.raises(ScenarioError, match="10002 seeds"):
        parse_seeds("1-10000,20001-20002")
    assert parse_controllers("none, oracle") == ("none", "oracle")
    with pytest.raises(ScenarioError, match="unknown controller 'fast'"):
        parse_controllers("none,fast")


def test_bundled_suite_is_valid() -> None:
    suite = load_suite(REPO / "benchmarks" / "suite.toml")
    assert suite.name == "greenwave-suite" and suite.version >= 1
    assert suite.seeds == tuple(range(1, 11))
    assert suite.controllers == ("none", "local", "greenwave", "oracle")
    assert [s.name for s in suite.scenarios] == ["grid5-moderate", "grid5-heavy", "arterial-moderate",
                                                 "arterial-heavy", "ingolstadt21", "bologna"]


def test_a_scenario_file_is_a_suite_of_that_scenario() -> None:
    suite = load_suite(REPO / "scenarios" / "bologna.toml")
    assert suite.name == "bologna" and [s.name for s in suite.scenarios] == ["bologna"]
    assert suite.seeds == tuple(range(1, 11)) and suite.controllers == ("none", "local", "greenwave", "oracle")
    assert suite.source == (REPO / "scenarios" / "bologna.toml").resolve()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('version = 1\nseeds = [1]\ncontrollers = ["none"]\nscenarios = ["x.toml"]', "field 'name'"),
        ('name = "s"\nversion = 0\nseeds = [1]\ncontrollers = ["none"]\nscenarios = ["x.toml"]', "field 'version'"),
        ('name = "s"\nversion = 1\nseeds = [1, 1]\ncontrollers = ["none"]\nscenarios = ["x.toml"]',
         "field 'seeds'.*duplicate"),
        ('name = "s"\nversion = 1\nseeds = [2147483648]\ncontrollers = ["none"]\nscenarios = ["x.toml"]',
         "field 'seeds'.*2147483647"),
        # (a quoted seed or version was taken as the number)
        ('name = "s"\nversion = 1\nseeds = ["3"]\ncontrollers = ["none"]\nscenarios = ["x.toml"]',
         r"field 'seeds\[0\]'.*valid integer"),
        ('name = "s"\nversion = "2"\nseeds = [1]\ncontrollers = ["none"]\nscenarios = ["x.toml"]',
         "field 'version'.*valid integer"),
        ('name = "s"\nversion = 1\nseeds = [1]\ncontrollers = ["fast"]\nscenarios = ["x.toml"]',
         "field 'controllers'.*unknown controller 'fast'"),
        ('name = "s"\nversion = 1\nseeds = [1]\ncontrollers = ["none"]\nscenarios = ["x.toml"]\nfoo = 1',
         "field 'foo'"),
        ('name = "s"\nversion = 1\nseeds = [1]\ncontrollers = ["none"]\nscenarios = ["x.toml"]',
         r"field 'scenarios\[0\]'.*does not exist"),
        ('name = "s"\nversion = 1\nseeds = [1]\ncontrollers = ["none"]\nscenarios = ["/tmp"]',
         r"field 'scenarios\[0\]': '/tmp' is a folder, not a scenario file"),
        ('name = "s"\nversion = 1\nseeds = [1]\ncontrollers = ["none"]\nscenarios = ["/dev/null"]',
         r"field 'scenarios\[0\]': '/dev/null' is not a file"),
        ("name = ", "not valid TOML"),
    ],
)
def test_suite_errors_name_file_and_field(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "suite.toml"
    path.write_text(body)
    with pytest.raises(ScenarioError, match=message) as e:
        load_suite(path)
    assert str(path) in str(e.value)


def test_suite_duplicate_scenario_names(tmp_path: Path) -> None:
    sc = REPO / "scenarios" / "ingolstadt7.toml"
    path = tmp_path / "suite.toml"
    path.write_text(f'name = "s"\nversion = 1\nseeds = [1]\ncontrollers = ["none"]\nscenarios = ["{sc}", "{sc}"]')
    with pytest.raises(ScenarioError, match=r"scenarios\[1\].*already used"):
        load_suite(path)


# --- cases from mutation testing of the figures and verdicts (stop 25) ------------------------


def _gw_row(results: list[RunResult]) -> dict[str, Any]:
    return rows_by_ctrl(aggregate(results))["greenwave"]


def test_figures_pair_seeds_by_seed_and_average_over_evs() -> None:
    # the change against none is paired by seed number, not by position in the list
    assert _gw_row([res("a", "none", 1, summary(200.0, bg=40.0)), res("a", "none", 2, summary(200.0, bg=50.0)),
                    res("a", "greenwave", 2, summary(150.0, bg=55.0))])["bg_time_loss_change_pct"] == \
        pytest.approx(10.0)
    # a seed none lacks is left out of the gap (and raises nothing)
    assert _gw_row([x for x in basic() if not (x.controller == "none" and x.seed == 2)])["gap_closed"] == \
        pytest.approx(0.85)
    # the gap's means are over every EV, not means of per-seed means: seed 1 has three EVs at 100 s,
    # seed 2 one at 160 s: mean 115 s, gap (200 - 115) / (200 - 100)
    r = [res("a", c, 1, summary([t] * 3)) for c, t in (("none", 200.0), ("oracle", 100.0), ("greenwave", 100.0))]
    r += [res("a", "none", 2, summary(200.0)), res("a", "oracle", 2, summary(100.0)),
          res("a", "greenwave", 2, summary(160.0))]
    assert _gw_row(r)["gap_closed"] == pytest.approx(0.85)
    # divided unrounded: (200.4 - 110) / (200.4 - 100.4)
    r = [res("a", c, 1, summary(t)) for c, t in (("none", 200.4), ("oracle", 100.4), ("greenwave", 110.0))]
    assert _gw_row(r)["gap_closed"] == pytest.approx(0.904)
    # judged where the oracle saves exactly 10 %
    r = [res("a", c, 1, summary(t)) for c, t in (("none", 100.0), ("oracle", 90.0), ("greenwave", 91.0))]
    assert _gw_row(r)["gap_judged"] is True


def test_figures_green_lost_entry_tag_and_cross_streets() -> None:
    r = [res("a", "greenwave", 1, summary([100.0, 100.0], extra_ev=None))]
    assert r[0].summary is not None
    r[0].summary["evs"][0]["green_lost"], r[0].summary["evs"][1]["green_lost"] = 2, None
    assert _gw_row(r)["ev_green_lost"] == 2
    s = summary(100.0)
    s["eta"]["errors"] = [{"h": "at_entry", "err": -3.0}]
    assert _gw_row([res("a", "greenwave", 1, s)])["eta_p90_entry_s"] == pytest.approx(3.0)
    none, gw = summary(100.0), summary(100.0)
    none["background"]["cross_streets"] = {"mean_time_loss": 40.0}
    gw["background"]["cross_streets"] = {"mean_time_loss": 44.0}
    row = _gw_row([res("a", "none", 1, none), res("a", "greenwave", 1, gw)])
    assert row["cross_time_loss_change_pct"] == pytest.approx(10.0) and row["bg_time_loss_change_pct"] == 0.0


def test_verdict_limits_are_inclusive_and_point_the_right_way(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(agg, "NOISE_MIN_SEEDS", 2)  # (the noise limits, on two seeds)
    assert _crit(_verdict(basic(gw_travel=(105.0, 125.0), local_travel=(101.0, 121.0))), "delay") is True  # 5 s
    assert _crit(_verdict(basic(gw_bg=(51.0, 61.2))), "background") is True  # +2.0 % exactly
    assert _crit(_verdict(basic(gw_bg=(50.5, 60.6), local_bg=(50.5, 60.6))), "background") is True  # = local's
    v = _verdict(basic(gw_bg=(51.5, 61.2), local_bg=(50.0, 60.6)))
    assert "+2.0 ± 1.0 pp over 2 seeds, within seed noise" in _detail(v, "background")  # 2 SE is noise
    v = _verdict(basic(gw_bg=(50.0, 60.0), local_bg=(51.0, 61.2)))
    assert "-2.0 ± 0.0 pp over 2 seeds, beyond seed noise" in _detail(v, "background")  # |mean|, not mean


def _with_collisions(gw: int, none: int = 2) -> list[RunResult]:
    out = []
    for r in basic():
        if r.controller in ("greenwave", "none") and r.summary is not None:
            r.summary["safety"]["collisions"] = gw if r.controller == "greenwave" else none
        out.append(r)
    return out


def test_collision_verdict_compares_all_collisions_with_none_on_the_same_seeds() -> None:
    assert _crit(_verdict(_with_collisions(2)), "collisions") is True  # equal: no more than none's
    v = _verdict(_with_collisions(3))
    assert _crit(v, "collisions") is False and _detail(v, "collisions").startswith("6 vs none 4")
    # none completed one seed only: compared on that seed, not 2 runs' sum against 1 run's
    results = [r for r in _with_collisions(2) if not (r.controller == "none" and r.seed == 2)]
    v = _verdict(results)
    assert _crit(v, "collisions") is True
    assert _detail(v, "collisions").startswith("2 vs none 2 on the 1 seeds both completed")
    results = [r for r in _with_collisions(3) if not (r.controller == "none" and r.seed == 2)]
    assert _crit(_verdict(results), "collisions") is False


def test_an_ev_that_does_not_arrive_fails_the_verdict() -> None:
    # the travel figures average the EVs that arrived: gap and delay alone would pass this
    results = []
    for r in basic():
        if r.controller == "greenwave" and r.summary is not None:
            r.summary["evs"].append({"id": "stuck", "travel_time": None, "free_flow_time": 100.0, "stops": 9})
        results.append(r)
    v = _verdict(results)
    assert _crit(v, "gap") is True and _crit(v, "every EV arrived") is False and v["status"] == "fail"
    assert _detail(v, "every EV arrived") == "2 of 4"
    assert _crit(_verdict(basic()), "every EV arrived") is True


def test_delay_over_the_oracle_needs_only_the_oracle() -> None:
    # none's seed 2 failed: the delay is still over both seeds (greenwave − oracle: 15 and 5 s)
    results = [r for r in basic(gw_travel=(115.0, 125.0)) if not (r.controller == "none" and r.seed == 2)]
    results.append(res("a", "none", 2, None, error="boom"))
    assert _gw_row(results)["delay_over_oracle_s"] == pytest.approx(10.0)
    # no none at all: the delay is still judged
    v = _verdict([r for r in basic() if r.controller != "none"])
    assert _detail(v, "delay").startswith("10.0 s")


def test_eta_verdict_judges_entry_against_2_s() -> None:
    s = summary(100.0)
    s["eta"]["errors"] = {"entry": [3.0], "60": [1.0]}
    v = verdicts([res("a", "greenwave", 1, s)], [])[-1]
    assert [c["ok"] for c in v["criteria"]] == [False, True]


def _moved(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    rows = aggregate(basic())

    def gw(change: dict[str, Any]) -> list[dict[str, Any]]:
        return [{**r, **change} if r["controller"] == "greenwave" else r for r in rows]

    return {r["metric"] for r in check_baseline(gw(after), make_baseline({}, gw(before)))["regressions"]}


def test_check_tolerances_per_figure() -> None:
    assert _moved({"bg_time_loss_change_pct": 3.0}, {"bg_time_loss_change_pct": 4.5}) == {"bg_time_loss_change_pct"}
    assert _moved({"ev_stops_mean": 1.0}, {"ev_stops_mean": 0.4}) == {"ev_stops_mean"}
    assert _moved({"ev_stops_at_signals_mean": 1.0}, {"ev_stops_at_signals_mean": 1.6}) == \
        {"ev_stops_at_signals_mean"}
    assert _moved({"teleports": 20}, {"teleports": 25}) == set()
    assert _moved({"teleports": 20}, {"teleports": 26}) == {"teleports"}
    assert _moved({"collisions_preempted": 0}, {"collisions_preempted": 3}) == {"collisions_preempted"}
    assert _moved({"ev_green_lost": 2}, {"ev_green_lost": 2}) == set()


def test_report_numbers_refuse_bools_and_a_zero_free_flow() -> None:
    from controller.report.load import number, ratio_to_free_flow

    assert number(True) is None and number(3) == 3.0
    assert ratio_to_free_flow({"travel_time": 10, "free_flow_time": 0}) is None


def _bench_with(results: list[RunResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *,
                base_results: list[RunResult] | None = None, update: bool = False) -> tuple[int, str, Path]:
    """``run_bench`` on a one-scenario suite, its runs replaced by ``results`` (no SUMO), checked
    against a baseline made from ``base_results``."""
    import json

    from rich.console import Console

    from controller.bench import command

    tmp_path.mkdir(parents=True, exist_ok=True)
    suite = tmp_path / "suite.toml"
    suite.write_text(f'name = "t"\nversion = 1\nseeds = [1, 2]\ncontrollers = ["none", "local", "greenwave", '
                     f'"oracle"]\nscenarios = ["{(REPO / "scenarios" / "ingolstadt7.toml").as_posix()}"]\n')

    def renamed(rs: list[RunResult]) -> list[RunResult]:
        return [RunResult("ingolstadt7", r.controller, r.seed, r.summary, error=r.error) for r in rs]

    baseline = tmp_path / "base.json"
    baseline.write_text(json.dumps(make_baseline({"name": "t", "version": 1, "file": str(suite)},
                                                 aggregate(renamed(base_results or basic())))))
    monkeypatch.setattr(command, "run_jobs", lambda plan, **k: renamed(results))
    monkeypatch.setattr(command, "write_bench_report", lambda out: out / "report.html")
    console = Console(record=True, width=200)
    code = command.run_bench(console, suite=suite, seeds=None, controllers=None, out_dir=tmp_path / "out",
                             jobs=1, baseline=baseline, write_baseline=baseline if update else None, update=update)
    return code, console.export_text(), tmp_path / "out" / "bench.json"


def test_bench_exit_code_and_baseline_update(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    code, text, _ = _bench_with(basic(), tmp_path / "same", monkeypatch)
    assert code == 0 and "no regression" in text
    # a regression against the baseline (not the other way round): exit 1
    code, text, _ = _bench_with(basic(gw_s1=1), tmp_path / "worse", monkeypatch)
    assert code == 1 and "regression" in text
    code, _, _ = _bench_with(basic(), tmp_path / "better", monkeypatch, base_results=basic(gw_s1=1))
    assert code == 0
    # a failed run stops --update-baseline: not written, not "updated", and exit 1
    failed = [r if not (r.controller == "oracle" and r.seed == 2) else res("a", "oracle", 2, None, error="boom")
              for r in basic(gw_s1=1)]
    code, text, bench = _bench_with(failed, tmp_path / "update", monkeypatch, update=True)
    assert code == 1 and "baseline NOT written" in text and "updated; what moved" not in text
    assert json.loads(bench.read_text())["check"]["updated"] is False
    # the baseline cannot be written after the runs (a read-only mount since): one line, exit 2,
    # the check still reported (a traceback and exit 1, the code of a regression)
    from controller.bench import command
    from controller.bench.report import write_json

    def refuse(path: Path, data: Mapping[str, Any]) -> None:
        if path.name == "base.json":
            raise PermissionError(13, "Permission denied")
        return write_json(path, data)

    monkeypatch.setattr(command, "write_json", refuse)
    code, text, bench = _bench_with(basic(), tmp_path / "unwritable", monkeypatch, update=True)
    assert code == 2 and "baseline NOT written" in text and "Permission denied" in text, text
    assert "no regression" in text and "updated" not in text  # (nothing rewritten: nothing listed as moved)
    assert json.loads(bench.read_text())["check"]["updated"] is False
    assert "changes" not in json.loads(bench.read_text())["check"]


def test_bench_table_marks_an_unjudged_gap_and_totals_s1_to_s5() -> None:
    from rich.console import Console

    from controller.bench.report import table

    results = [res("a", "none", 1, summary(100.0)), res("a", "oracle", 1, summary(95.0)),
               res("a", "greenwave", 1, summary(99.0))]
    assert results[2].summary is not None
    results[2].summary["safety"]["S5"] = 3
    console = Console(record=True, width=300)
    console.print(table(aggregate(results), "t"))
    text = console.export_text()
    line = next(ln for ln in text.splitlines() if "greenwave" in ln)
    cells = line.split()
    assert "0.99" in cells and "0.20*" in cells  # ratio to free flow; the gap, not judged
    assert cells[cells.index("0.20*") + 1] != "0.20*"
    headers = next(ln for ln in text.splitlines() if "S1-5" in ln)
    assert line[headers.index("S1-5"):headers.index("S1-5") + 4].strip() == "3"


def test_a_baseline_group_without_a_safety_count_is_refused(tmp_path: Path) -> None:
    import json

    from controller.bench.report import read_baseline

    base = make_baseline({"name": "t", "version": 1}, aggregate(basic()))
    del base["groups"][0]["S1"]
    path = tmp_path / "b.json"
    path.write_text(json.dumps(base))
    with pytest.raises(ScenarioError, match=r"groups\[0\]\.S1"):
        read_baseline(path)
    # nor one without the figures every baseline has that the check compares (stripped of them,
    # a baseline passed any change)
    for name in ("ev_travel_mean_s", "collisions", "evs_not_arrived", "collisions_ev"):
        base = make_baseline({"name": "t", "version": 1}, aggregate(basic()))
        del base["groups"][1][name]
        path.write_text(json.dumps(base))
        with pytest.raises(ScenarioError, match=rf"groups\[1\]\.{name}' is missing"):
            read_baseline(path)
    # a group that is no object is named as such (it was "groups[0].S1 is missing")
    base = make_baseline({"name": "t", "version": 1}, aggregate(basic()))
    base["groups"][0] = 5
    path.write_text(json.dumps(base))
    with pytest.raises(ScenarioError, match=r"field 'groups\[0\]' must be an object .*, not 5$"):
        read_baseline(path)
    base = make_baseline({"name": "t", "version": 1}, aggregate(basic()))
    base["groups"][0]["collisions_by_seed"] = [1]
    path.write_text(json.dumps(base))
    with pytest.raises(ScenarioError, match=r"collisions_by_seed' must be an object of per-seed figures"):
        read_baseline(path)


def test_a_figure_the_baseline_lacks_is_noted_not_passed_silently() -> None:
    rows = aggregate(basic())
    base = make_baseline({"name": "t", "version": 1}, rows)
    for g in base["groups"]:
        for name in ("gap_closed", "ev_stops_mean", "collisions_after_end"):
            g.pop(name, None)
    notes = check_baseline(rows, base)["notes"]
    assert ("a / greenwave: collisions_after_end, ev_stops_mean, gap_closed not in the baseline (or null there), "
            "not checked") in notes
    # null there: as a baseline made with greenwave alone has no gap closed (it switched the check
    # off without a word, a regression passing)
    base = make_baseline({"name": "t", "version": 1}, rows)
    for g in base["groups"]:
        g["gap_closed"] = g["ev_travel_mean_s"] = None
    notes = check_baseline(rows, base)["notes"]
    assert "a / greenwave: ev_travel_mean_s, gap_closed not in the baseline (or null there), not checked" in notes
    # hand-ordered seeds are the same seeds
    base = make_baseline({"name": "t", "version": 1}, rows)
    for g in base["groups"]:
        g["seeds"] = sorted(g["seeds"], reverse=True)
    assert check_baseline(rows, base)["regressions"] == []


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda b: b["groups"][0].update(ev_travel_mean_s="fast"),
         r"field 'groups\[0\]\.ev_travel_mean_s' must be a finite number or null, not 'fast'"),
        (lambda b: b["groups"][0].update(ev_travel_mean_s=float("nan")), r"ev_travel_mean_s' must be a finite number"),
        (lambda b: b["groups"][0].update(S2="zero"), r"groups\[0\]\.S2' must be a count"),
        (lambda b: b["groups"][0].update(S2=True), r"groups\[0\]\.S2' must be a count"),
        (lambda b: b["groups"][0].update(seeds=None), r"groups\[0\]\.seeds' must be a list of seeds"),
        # (a negative count compared as a fine one: collisions -5 let later runs have 4 more)
        (lambda b: b["groups"][0].update(collisions=-5), r"groups\[0\]\.collisions' must be a count .*not -5"),
        (lambda b: b["groups"][0].update(failed=0.5), r"groups\[0\]\.failed' must be a count"),
        (lambda b: b["groups"][0].update(collisions_preempted="0"), r"collisions_preempted' must be a count"),
        (lambda b: b["groups"][0].update(collisions_by_seed={"1": -1}), r"collisions_by_seed\.1' must be a count"),
        (lambda b: b["groups"][0].update(controller=7), r"groups\[0\]\.controller' must be a non-empty text"),
        (lambda b: b.update(suite=None), r"field 'suite' must be an object"),
        (lambda b: b.update(groups=None), r"field 'groups' must be a list of groups"),
        (lambda b: b["suite"].update(version="1"), r"field 'suite' must be an object"),
        (lambda b: b["groups"].append(dict(b["groups"][0])), r"groups\[\d+\] is a second group for scenario 'a'"),
        # (the suite's seeds and controllers choose what --check runs: a string seed failed some
        # runs, a seed twice ran every job twice into one folder, "none" read as n, o, n, e)
        (lambda b: b["suite"].update(seeds="1"), r"field 'suite.seeds' must be a list of distinct seeds"),
        (lambda b: b["suite"].update(seeds=[1, 1]), r"field 'suite.seeds' must be a list of distinct seeds"),
        (lambda b: b["suite"].update(seeds=[-3]), r"field 'suite.seeds' must be a list of distinct seeds"),
        (lambda b: b["suite"].update(controllers="none"), r"field 'suite.controllers' must be a list of distinct"),
        # (--check runs the suite's controllers: the other groups went unchecked, exit 0)
        (lambda b: b["suite"].update(controllers=["greenwave"]),
         r"groups\[0\] is for controller 'none', which field 'suite.controllers' \(greenwave\) does not list"),
        (lambda b: b["groups"][0].update(ev_green_lost=-1), r"groups\[0\]\.ev_green_lost' must be a count"),
        (lambda b: b["groups"][0].update(ev_green_lost=0.5), r"groups\[0\]\.ev_green_lost' must be a count"),
    ],
)
def test_a_baseline_with_figures_the_check_cannot_compare_is_refused(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], message: str
) -> None:
    # refused when read (before any run): a string figure crashed the check after every run, a
    # NaN passed every comparison, and a repeated group silently replaced the first
    import json

    from controller.bench.report import read_baseline

    base = make_baseline({"name": "t", "version": 1}, aggregate(basic()))
    path = tmp_path / "b.json"
    path.write_text(json.dumps(base))
    assert read_baseline(path)["groups"] == base["groups"]
    edit(base)
    path.write_text(json.dumps(base))
    with pytest.raises(ScenarioError, match=message):
        read_baseline(path)


def test_bench_table_shows_no_safety_figures_where_no_run_completed() -> None:
    from rich.console import Console

    from controller.bench.report import table

    results = [res("a", "none", 1, None, error="boom"), res("a", "greenwave", 1, summary(99.0))]
    console = Console(record=True, width=300)
    console.print(table(aggregate(results), "t"))
    line = next(ln for ln in console.export_text().splitlines() if " none " in f" {ln} ")
    assert "0 (1✗)" in line and set(line.split("(1✗)")[1].split()) == {"-"}


def test_a_write_baseline_name_the_file_system_refuses_is_a_one_line_error(tmp_path: Path) -> None:
    # a name too long for the file system raised OSError with a traceback (exit 1) before any run
    from controller.bench.command import _check_baseline_target
    from controller.errors import GreenwaveError

    with pytest.raises(GreenwaveError, match=r"--write-baseline .*: cannot be written \(File name too long\)"):
        _check_baseline_target(tmp_path / ("a" * 300 + ".json"), tmp_path / "out")


def test_a_group_that_finished_fewer_other_trips_than_none_is_noted() -> None:
    # the mean time loss counts finished trips only: a controller that jams (the oracle in
    # Bologna's rush hour finished 2,583 of none's 3,672) looked better than none
    from controller.bench.aggregate import fewer_trips

    def jammed(bg: float, trips: int) -> dict[str, Any]:
        s = summary(100.0, bg=bg)
        s["background"]["trips"] = trips
        return s

    rows = aggregate([res("a", "none", 1, jammed(50.0, 1000)), res("a", "oracle", 1, jammed(40.0, 700)),
                      res("a", "greenwave", 1, jammed(50.5, 990))])
    by = rows_by_ctrl(rows)
    assert (by["none"]["bg_trips_mean"], by["oracle"]["bg_trips_mean"]) == (1000.0, 700.0)
    assert by["oracle"]["bg_time_loss_change_pct"] == -20.0  # (flattered)
    assert fewer_trips(rows) == ["a / oracle: 700 other trips finished per run against none's 1,000 (-30.0 %): its "
                                 "time loss counts finished trips only, and looks better than it is where a jam kept "
                                 "trips from finishing"]


def test_a_moderate_scenario_fails_the_verdict_on_an_ev_stop_at_a_signal() -> None:
    def moderate(stops: int) -> list[RunResult]:
        out = []
        for r in basic():
            s = dict(r.summary or {}, demand_level="moderate")
            if r.controller == "greenwave":
                s["evs"] = [dict(ev, stops_at_signals=stops) for ev in s["evs"]]
            out.append(res(r.scenario, r.controller, r.seed, s))
        return out

    assert rows_by_ctrl(aggregate(moderate(0)))["greenwave"]["demand_level"] == "moderate"
    assert _crit(_verdict(moderate(0)), "no EV stop") is True
    v = _verdict(moderate(1))
    assert _crit(v, "no EV stop") is False and v["status"] == "fail"
    assert _detail(v, "no EV stop") == "1.00 per EV"
    # heavy demand (or none given): not judged
    assert not any(c["name"].startswith("no EV stop") for c in _verdict(basic())["criteria"])


def test_gap_and_delay_compare_the_evs_that_arrived_in_every_run() -> None:
    # none's stuck EV was left out of none's mean alone: none 100 s (its other EV) against
    # greenwave's mean of both, gap 0.76 in the bench where the run report said 0.92
    stuck = summary([700.0, 100.0])
    stuck["evs"][0]["travel_time"] = None
    rows = rows_by_ctrl(aggregate([res("a", "none", 1, stuck), res("a", "greenwave", 1, summary([80.0, 40.0])),
                                   res("a", "oracle", 1, summary([60.0, 35.0]))]))
    assert rows["greenwave"]["gap_closed"] == pytest.approx((100.0 - 40.0) / (100.0 - 35.0), abs=1e-4)
    # both EVs arrived under greenwave and the oracle: (80 + 40) / 2 - (60 + 35) / 2
    assert rows["greenwave"]["delay_over_oracle_s"] == pytest.approx(12.5)
    assert rows["greenwave"]["ev_travel_mean_s"] == 60.0  # its own mean is still over its own EVs
    assert rows["none"]["evs_not_arrived"] == 1


def test_collisions_after_the_scenarios_end_are_summed_apart() -> None:
    late = summary(100.0)
    late["safety"]["collisions_after_end"] = 2
    rows = rows_by_ctrl(aggregate([res("a", "greenwave", 1, late), res("a", "greenwave", 2, summary(100.0))]))
    assert rows["greenwave"]["collisions_after_end"] == 2  # (an older summary has none apart: 0)
    assert "collisions_after_end" in agg.CSV_COLUMNS and "collisions_after_end" in agg.CHECK_INCIDENTS


def test_runs_past_the_scenarios_end_are_noted() -> None:
    # the run report said so; the bench showed the other traffic's change as if complete
    late = summary(100.0, end=1500, preemptions=[{"exit": 1541.0, "restored": 1547.0}])
    on_time = summary(100.0, end=1500, preemptions=[{"exit": 1200.0, "restored": 1206.0}])
    rows = aggregate([res("a", "greenwave", 1, late), res("a", "greenwave", 2, on_time)])
    assert rows[0]["runs_past_end"] == 1
    assert agg.past_end(rows) == ["a / greenwave: in 1 of 2 run(s) the EVs' trips or preemptions went on past the "
                                  "scenario's end; the other traffic is counted to the end, so what they cost it "
                                  "after the end is not in these figures"]
    assert agg.past_end(aggregate([res("a", "greenwave", 1, on_time)])) == []


def test_the_gap_verdict_says_why_it_has_no_figure() -> None:
    # none and the oracle ran, but on no seed greenwave completed: it said "needs none and oracle"
    results = [res("a", "none", 1, summary(200.0)), res("a", "oracle", 1, summary(100.0)),
               res("a", "greenwave", 2, summary(120.0))]
    assert _detail(_verdict(results), "gap") == "n/a (no seed completed under greenwave, none and the oracle alike)"
    assert _detail(_verdict(results), "delay") == "n/a (no seed, or no arrived EV, common to greenwave and the oracle)"
    assert _detail(_verdict(results[2:]), "gap") == "n/a (needs none and oracle)"
    # one of them run: the other named alone (it said "needs none and oracle" with none run)
    assert _detail(_verdict([results[0], results[2]]), "gap") == "n/a (needs oracle)"
    assert _detail(_verdict(results[1:]), "gap") == "n/a (needs none)"


def test_a_baseline_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    # (as an editor on Windows may save it; refused as invalid JSON, while suite files took one)
    import json

    from controller.bench.report import read_baseline

    base = make_baseline({"name": "t", "version": 1}, aggregate(basic()))
    path = tmp_path / "b.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(base).encode("utf-8"))
    assert read_baseline(path)["groups"] == base["groups"]


def test_the_runs_notes_are_listed_once_per_scenario_with_the_runs_that_gave_them() -> None:
    from controller.bench.command import NOTES_SHOWN, run_notes
    from controller.runtime.setup import OPTIONS_NOT_USED

    detour = "EV 'ev' does not take the fastest route: traffic light 'B1' ..."
    results = [RunResult("g", ctrl, seed, {"notes": [detour]}) for ctrl in ("none", "greenwave") for seed in (1, 2, 3)]
    # (the scenario configuration's options greenwave does not use: not the comparison's concern)
    results += [RunResult("g", "local", 1, {"notes": [f"{OPTIONS_NOT_USED}: tripinfo-output"]}),
                RunResult("a", "local", 2, {"notes": [detour]}),
                RunResult("a", "local", 3, None, error="boom"), RunResult("a", "none", 1, {})]
    assert run_notes(results) == [f"note: g (6 runs): {detour}", f"note: a (local s2): {detour}"]
    assert agg.run_row(results[0])["notes"] == [detour]
    # many: the first ones, then where the rest are
    many = [RunResult("g", "none", 1, {"notes": [f"n{i}" for i in range(NOTES_SHOWN + 3)]})]
    lines = run_notes(many)
    assert len(lines) == NOTES_SHOWN + 1 and lines[0] == "note: g (none s1): n0"
    assert lines[-1].startswith("note: 3 more: each run's notes are in bench.json")


def test_a_baseline_of_another_sumo_is_noted() -> None:
    # no output said which SUMO made the figures: a check under another SUMO showed its changes
    # as plain regressions
    rows = aggregate(basic())
    suite = {"name": "t", "version": 1, "sumo_version": "SUMO 1.28.0"}
    base = make_baseline(suite, rows)
    assert check_baseline(rows, base, suite)["notes"] == []
    other = check_baseline(rows, base, {**suite, "sumo_version": "SUMO 1.29.0"})
    assert other["regressions"] == []
    assert other["notes"] == ["the baseline's figures were made with SUMO 1.28.0, this bench ran SUMO 1.29.0: "
                              "SUMO's own changes move them too"]
    unsaid = make_baseline({"name": "t", "version": 1}, rows)
    assert check_baseline(rows, unsaid, suite)["notes"] == [
        "the baseline does not say which SUMO made it (this bench ran SUMO 1.28.0)"]


def test_the_sumo_the_runs_ran_is_told() -> None:
    from controller.bench.aggregate import sumo_version_of

    assert sumo_version_of(basic()) is None  # (summaries that do not say)
    said = [res("a", "none", seed, {**summary(200.0), "sumo_version": version})
            for seed, version in ((1, "SUMO 1.28.0"), (2, "SUMO 1.28.0"))]
    assert sumo_version_of([*said, res("a", "none", 3, None, error="x")]) == "SUMO 1.28.0"
    other = res("a", "local", 1, {**summary(150.0), "sumo_version": "SUMO 1.29.0"})
    assert sumo_version_of([*said, other]) == "SUMO 1.28.0 / SUMO 1.29.0"


def test_update_baseline_lists_the_suite_fields_it_rewrites_too() -> None:
    # another SUMO's baseline, rewritten by --update-baseline, came back naming this one unsaid
    from controller.bench.command import baseline_changes

    rows = aggregate(basic())
    base = make_baseline({"name": "t", "version": 1, "sumo_version": "SUMO 1.27.1", "file": "ci.toml"}, rows)
    now = {"name": "t", "version": 1, "sumo_version": "SUMO 1.28.0", "file": "ci.toml"}
    assert baseline_changes(base, rows, now) == [
        {"scenario": "(suite)", "controller": "(all)", "metric": "sumo_version", "baseline": "SUMO 1.27.1",
         "current": "SUMO 1.28.0"}]
    assert baseline_changes(base, rows) == []  # (no suite given: the groups only)


def test_a_failing_figure_that_rounds_to_its_bound_is_shown_with_the_digits_that_tell_them_apart(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert agg._decimals_apart(2, 0.8999, 0.90) == 4 and agg._decimals_apart(2, 0.87, 0.90) == 2
    assert agg._decimals_apart(1, 2.04, 2.0, 1.96) == 2
    shown = float(_detail(_verdict(basic()), "gap"))
    monkeypatch.setattr(agg, "ACCEPT_GAP_MIN", shown + 0.004)  # fails, and rounds to the bound at 2 decimals
    v = _verdict(basic())
    assert _crit(v, "gap") is False and _detail(v, "gap") != f"{shown:.2f}", _detail(v, "gap")
    assert len(_detail(v, "gap").split(".")[1]) > 2


def test_the_gap_is_not_judged_against_an_oracle_that_showed_evs_crossing_movements_at_once() -> None:
    from dataclasses import replace

    results = [replace(r, summary={**r.summary, "oracle_conflicts": [{"tls": "C2", "from_s": 600.0}]})
               if r.controller == "oracle" and r.seed == 2 and r.summary is not None else r for r in basic()]
    rows = rows_by_ctrl(aggregate(results))
    assert rows["greenwave"]["gap_judged"] is False and rows["greenwave"]["oracle_conflicts_seeds"] == [2]
    v = _verdict(results)
    assert "not judged (the oracle showed EVs' crossing movements green at once)" in _detail(v, "gap")
    assert rows_by_ctrl(aggregate(basic()))["greenwave"]["gap_judged"] is True
