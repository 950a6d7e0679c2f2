"""The report without SUMO: signal colouring, loading run folders (and their errors), and the
HTML and figures drawn from a synthetic run's data."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from controller.cli import main
from controller.report import ReportError, write_reports
from controller.report.figures import movement_colour, movement_intervals, short_id, time_space_diagram
from controller.report.html import figure_evs, render_run
from controller.report.load import companions, load_run


def test_movement_colour_reads_only_the_evs_links() -> None:
    assert movement_colour("rrGG", [2, 3]) == "green"
    assert movement_colour("rrGg", [2, 3]) == "green"
    assert movement_colour("GGrG", [2, 3]) == "partial"
    assert movement_colour("GGyy", [2, 3]) == "yellow"
    assert movement_colour("GGry", [2, 3]) == "yellow"
    assert movement_colour("GGrr", [2, 3]) == "red"
    assert movement_colour("GGoO", [2, 3]) == "off"
    assert movement_colour("GG", [5]) == "red"  # not in the string: not green


def test_movement_intervals_merge_equal_colours_and_clip_to_the_window() -> None:
    changes = [(0.0, "Gr"), (10.0, "GG"), (20.0, "yr"), (23.0, "rr"), (25.0, "rG"), (40.0, "Gr")]
    assert movement_intervals(changes, [0], 5.0, 30.0) == [(5.0, 20.0, "green"), (20.0, 23.0, "yellow"),
                                                           (23.0, 30.0, "red")]
    assert movement_intervals(changes, [1], 0.0, 50.0) == [(0.0, 10.0, "red"), (10.0, 20.0, "green"),
                                                           (20.0, 25.0, "red"), (25.0, 40.0, "green"),
                                                           (40.0, 50.0, "red")]
    assert movement_intervals([], [0], 0.0, 10.0) == []


JUNCTIONS = [("J1", 100.0, [0]), ("J2", 300.0, [1]), ("J3", 500.0, [0, 1])]


def _leg(speed: float, depart: float) -> dict[str, Any]:
    t = [depart + k for k in range(int(600 / speed))]
    return {
        "from_s": depart, "route": ["a", "b", "c", "d"], "route_length_m": 600.0,
        "junctions": [{"index": i, "tls": tls, "junction": tls, "approach_edge": "x", "distance_m": d, "links": links}
                      for i, (tls, d, links) in enumerate(JUNCTIONS)],
        "t": t, "pos": [round((x - depart) * speed, 2) for x in t], "speed": [speed] * len(t),
        "queues": {"0": [[depart, 3], [depart + 5, 0]], "1": [[depart, 0]], "2": [[depart, 6], [depart + 30, 2]]},
    }  # fmt: skip


def write_run(folder: Path, controller: str, *, seed: int = 1, speed: float = 10.0,
              signals: dict[str, list[list[Any]]] | None = None, amb_depart: float = 100.0) -> Path:
    """A run folder as ``greenwave run`` leaves it, for two EVs on the same 3-signal route."""
    folder.mkdir(parents=True)
    evs = []
    for ev_id, depart in (("amb", amb_depart), ("fire", 200.0)):
        crossed = {f"{tls}#{i}": depart + d / speed for i, (tls, d, _) in enumerate(JUNCTIONS)}
        evs.append({"id": ev_id, "type": "ambulance" if ev_id == "amb" else "fire", "depart": depart,
                    "arrival": depart + 600 / speed, "travel_time": 600 / speed, "free_flow_time": 50.0,
                    "ratio_to_free_flow": 600 / speed / 50, "delay": 600 / speed - 50, "stops": 0,
                    "stops_at_signals": 0, "junctions": 3, "preempted": 3, "tls": [t for t, _, _ in JUNCTIONS],
                    "crossed_s": crossed})
    summary = {
        "scenario": "synthetic", "controller": controller, "seed": seed, "complete": True, "source": "test",
        "begin": 0, "simulated_until": 400, "evs": evs,
        "background": {"trips": 100, "mean_time_loss": {"none": 40.0, "greenwave": 41.0}.get(controller, 50.0),
                       "cross_streets": {"edges": 4, "vehicles": 30, "mean_time_loss": 12.0}},
        "eta": {"n": 3, "abs_error_p50": 0.5, "abs_error_p90": 1.0, "by_horizon": {}, "at_entry": {},
                "by_junction": {"amb#1": {"entry_error_s": 0.5, "error_60_s": None},
                                "amb#2": {"entry_error_s": None, "error_60_s": -2.0}}},
        "preemptions": [{"tls": "J2", "ev": "amb", "junction_index": 1, "armed": 110.0, "entry": 115.0,
                         "dwell": 120.0, "exit": 131.0, "restored": 140.0, "preempted_s": 25.0, "recovery_s": 9.0,
                         "exit_reason": "crossed"}],
        "safety": {"S1": 0, "S2": 0, "S3": 0, "S4": 0, "S5": 0, "collisions": 0, "violations": []},
    }  # fmt: skip
    trace = {
        "format": "greenwave-trace/1", "scenario": "synthetic", "controller": controller, "seed": seed,
        "evs": [{"id": "amb", "type": "ambulance", "legs": [_leg(speed, 100.0)]},
                {"id": "fire", "type": "fire", "legs": [_leg(speed, 200.0)]}],
        "signals": signals or {"J1": [[0, "GG"], [150, "yy"], [153, "rr"], [160, "GG"]],
                               "J2": [[0, "rr"], [115, "yr"], [118, "rG"], [131, "rr"]],
                               "J3": [[0, "GG"]]},
        "eta": [["amb", 1, 100.0, 131.0, 129.0, 133.0, ""], ["amb", 1, 110.0, 130.5, 129.0, 132.0, "entry"],
                ["amb", 2, 100.0, 151.0, 148.0, 154.0, ""]],
    }  # fmt: skip
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "trace.json").write_text(json.dumps(trace))
    return folder


def comparison_table(page: str) -> str:
    """The page's table of the controllers compared."""
    found = re.search(r'<table class="comparison">.*?</table>', page, flags=re.S)
    assert found is not None
    return found.group(0)


def figures(page: str, cls: str) -> list[str]:
    return re.findall(rf'<figure class="{cls}"[^>]*>.*?</figure>', page, flags=re.S)


def drawn_evs(page: str) -> list[str]:
    """The EVs whose time-space diagrams the page draws, in order."""
    found = [re.search(r'data-ev="(\w+)"', f) for f in figures(page, "time-space-diagram")]
    return [m.group(1) if m else "(no data-ev)" for m in found]


def test_one_time_space_diagram_per_ev_showing_every_junction(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path / "greenwave-s1", "greenwave"))
    page = render_run(run, [run])
    diagrams = figures(page, "time-space-diagram")
    assert len(diagrams) == 2
    for diagram, ev in zip(diagrams, ("amb", "fire"), strict=True):
        assert f'data-ev="{ev}"' in diagram and "Time-space diagram" in diagram
        assert f'id="trajectory-{ev}"' in diagram
        for i, (tls, _, _) in enumerate(JUNCTIONS):
            assert f"{tls} (#{i})" in diagram  # the junction's label, as text in the SVG
            assert re.search(rf'id="j{i}-signal-(green|red|yellow|partial)"', diagram)
        assert "distance along the EV" in diagram and "simulation time (s)" in diagram
    # the preemption windows of amb at J2 (entry, dwell, exit) and nothing for fire
    for stage in ("entry", "dwell", "exit"):
        assert f'id="j1-preempt-{stage}"' in diagrams[0]
        assert f'id="j1-preempt-{stage}"' not in diagrams[1]
    assert 'id="j2-queue"' in diagrams[0]


def test_the_runs_notes_are_on_its_page(tmp_path: Path) -> None:
    folder = write_run(tmp_path / "greenwave-s1", "greenwave")
    assert 'id="notes"' not in render_run(load_run(folder), [])  # (none: no empty list)
    summary = json.loads((folder / "summary.json").read_text())
    summary["notes"] = ["EV 'amb' does not take the fastest route: traffic light 'B1' <no phase>"]
    (folder / "summary.json").write_text(json.dumps(summary))
    page = render_run(load_run(folder), [])
    assert ('<ul class="notes" id="notes"><li>EV &#x27;amb&#x27; does not take the fastest route: traffic light '
            "&#x27;B1&#x27; &lt;no phase&gt;</li></ul>") in page


def test_the_pictures_follow_the_data(tmp_path: Path) -> None:
    """Drawn from the trace, not fixed: a signal that stays red shows no green bar."""
    red = {"J1": [[0, "rr"]], "J2": [[0, "rr"]], "J3": [[0, "rr"]]}
    green = load_run(write_run(tmp_path / "a", "greenwave"))
    all_red = load_run(write_run(tmp_path / "b", "greenwave", signals=red))
    page_g, page_r = render_run(green, [green]), render_run(all_red, [all_red])
    assert 'id="j2-signal-green"' in page_g and 'id="j2-signal-green"' not in page_r
    assert 'id="j2-signal-red"' in page_r
    slow = load_run(write_run(tmp_path / "c", "greenwave", speed=5.0))
    assert figures(render_run(slow, [slow]), "time-space-diagram")[0] != figures(page_g, "time-space-diagram")[0]


def test_eta_table_and_per_junction_rows(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path / "greenwave-s1", "greenwave"))
    page = render_run(run, [run])
    assert len(figures(page, "eta-accuracy")) == 1  # fire has no predictions
    table = re.search(r'<table class="junctions">.*?</table>', page, flags=re.S)
    assert table is not None
    rows = re.findall(r"<tr><td>#\d+</td>.*?</tr>", table.group(0))
    assert len(rows) == 3
    # J2: crossed at 130, the entry prediction erred by +0.5 s (from summary.json's ETA section);
    # green for the EV from 120, held 11 s
    assert "<td>J2</td><td>300</td><td>130.0</td><td>0.5</td>" in rows[1]
    assert "<td>120.0</td><td>11.0</td><td>0</td><td>25.0</td><td>9.0</td><td>–</td><td>crossed</td>" in rows[1]
    assert "<td>J3</td><td>500</td><td>150.0</td><td>–</td><td>-2.0</td>" in rows[2]


def test_a_junction_preempted_twice_for_the_ev_has_a_row_for_each(tmp_path: Path) -> None:
    # a preemption ended at maximum presence and its re-entry: the table showed the re-entry
    # alone (the records were keyed by junction), and "max presence" nowhere
    folder = write_run(tmp_path / "greenwave-s1", "greenwave")
    summary = json.loads((folder / "summary.json").read_text())
    first = dict(summary["preemptions"][0], entry=60.0, dwell=65.0, exit=95.0, exit_reason="max presence",
                 preempted_s=38.0)
    summary["preemptions"].insert(0, first)
    (folder / "summary.json").write_text(json.dumps(summary))
    run = load_run(folder)
    table = re.search(r'<table class="junctions">.*?</table>', render_run(run, [run]), flags=re.S)
    assert table is not None
    rows = re.findall(r"<tr><td>#\d+</td>.*?</tr>", table.group(0))
    assert len(rows) == 4
    assert "<td>J2</td><td>300</td><td>130.0</td><td>0.5</td>" in rows[1] and "max presence" in rows[1]
    assert "<td>J2</td><td>300</td><td>–</td><td>–</td>" in rows[2] and "crossed" in rows[2]


def test_the_gap_is_starred_where_the_oracle_is_no_bound(tmp_path: Path) -> None:
    # in congestion the oracle (route green from dispatch) jammed the network and was the
    # slowest: "gap closed" read -0.68 for a controller that cut 400 s off the EV's trip, and
    # none's own "-0.00"
    gw = write_run(tmp_path / "greenwave-s1", "greenwave", speed=12.0)
    write_run(tmp_path / "none-s1", "none", speed=6.0)
    write_run(tmp_path / "oracle-s1", "oracle", speed=5.0)
    run = load_run(gw)
    page = render_run(run, companions(run, []))
    rows = comparison_table(page)
    assert "<td>none</td><td>2 of 2</td><td>100.0</td><td>0.00*</td>" in rows
    assert "<td>greenwave</td><td>2 of 2</td><td>50.0</td><td>-2.50*</td>" in rows
    assert "* The oracle (every signal of the route green from dispatch) took 120 s against 100 s under none: " \
           "it is slower" in page
    assert "Fewer other trips finished" not in page
    # the jammed oracle finished fewer of the other trips (2,583 against 3,672 in Bologna): its
    # mean time loss, over those alone, looked better than none's
    summary = json.loads((tmp_path / "oracle-s1" / "summary.json").read_text())
    summary["background"]["trips"] = 70
    (tmp_path / "oracle-s1" / "summary.json").write_text(json.dumps(summary))
    page = render_run(run, companions(run, []))
    assert "Fewer other trips finished than under <code>none</code> (100) in oracle (70, -30 %)" in page
    # a useful oracle: no star, no note
    faster = write_run(tmp_path / "b" / "oracle-s1", "oracle", speed=15.0)
    write_run(tmp_path / "b" / "none-s1", "none", speed=6.0)
    run = load_run(write_run(tmp_path / "b" / "greenwave-s1", "greenwave", speed=12.0))
    page = render_run(run, companions(run, [load_run(faster)]))
    assert "<td>greenwave</td><td>2 of 2</td><td>50.0</td><td>0.83</td>" in page and "no bound here" not in page


def test_the_comparison_averages_the_evs_that_arrived_in_every_run(tmp_path: Path) -> None:
    # an EV stuck under none was left out of none's mean alone: none's 770 s (the other EV)
    # stood against greenwave's mean of both, and nothing said an EV was missing
    gw = write_run(tmp_path / "greenwave-s1", "greenwave", speed=12.0)
    none = write_run(tmp_path / "none-s1", "none", speed=6.0)
    summary = json.loads((none / "summary.json").read_text())
    summary["evs"][0].update(travel_time=None, arrival=None, arrived=False)
    summary["evs"][1]["travel_time"] = 120.0
    (none / "summary.json").write_text(json.dumps(summary))
    run = load_run(gw)
    page = render_run(run, companions(run, []))
    rows = comparison_table(page)
    assert "<td>none</td><td>1 of 2</td><td>120.0</td>" in rows
    assert "<td>greenwave</td><td>2 of 2</td><td>50.0</td>" in rows
    assert "Not every EV arrived: amb under none. Each run's mean travel time is over its own EVs" in page
    # with the oracle: greenwave's gap and delay compare fire alone (arrived under all three), as the bench
    oracle = write_run(tmp_path / "oracle-s1", "oracle", speed=15.0)  # 40 s each
    page = render_run(run, companions(run, [load_run(oracle)]))
    rows = comparison_table(page)
    # fire: none 120, greenwave 50, oracle 40: gap (120 - 50) / (120 - 40) = 0.875, delay 10
    assert "<td>greenwave</td><td>2 of 2</td><td>50.0</td><td>0.88</td><td>10.0</td>" in rows


def test_companions_are_compared_and_other_traffic_is_against_none(tmp_path: Path) -> None:
    gw = write_run(tmp_path / "greenwave-s1", "greenwave")
    write_run(tmp_path / "none-s1", "none")
    write_run(tmp_path / "none-s2", "none", seed=2)  # another seed: not a companion
    # the same scenario name and seed with another EV (every `--sumocfg` run of a run.sumocfg is
    # named "run"): not a companion either
    other = write_run(tmp_path / "none-other-ev", "none", amb_depart=150.0)
    # the same EV asked to depart at 100, inserted by SUMO 2 s later under this controller: a companion
    late = write_run(tmp_path / "oracle-s1", "oracle")
    summary = json.loads((late / "summary.json").read_text())
    summary["evs"][0].update(dispatched=100.0, depart=102.0)
    (late / "summary.json").write_text(json.dumps(summary))
    # a run with the bluelight device (EVs may pass red): not a companion
    blue = write_run(tmp_path / "local-blue", "local")
    summary = json.loads((blue / "summary.json").read_text())
    summary["bluelight"] = True
    (blue / "summary.json").write_text(json.dumps(summary))
    # the scenario file edited between two runs (another demand rate, other programs): not a
    # companion (it was one: the report compared 2,000 veh/h with 5,400 veh/h)
    edited = write_run(tmp_path / "local-s1", "local")
    summary = json.loads((edited / "summary.json").read_text())
    summary["inputs_digest"] = "0123456789abcdef"
    (edited / "summary.json").write_text(json.dumps(summary))
    (tmp_path / "junk").mkdir()
    run = load_run(gw)
    comp = companions(run, [load_run(other), load_run(blue)])
    assert [r.controller for r in comp] == ["none", "greenwave", "oracle"] and all(r.seed == 1 for r in comp)
    assert all(r.path.name not in ("none-other-ev", "local-blue", "local-s1") for r in comp)
    comp = [r for r in comp if r.controller != "oracle"]
    page = render_run(run, comp)
    assert len(figures(page, "time-space-comparison")) == 2
    assert 'id="trajectory-none-amb"' in page and 'id="trajectory-greenwave-amb"' in page
    traffic = re.search(r'<table class="traffic">.*?</table>', page, flags=re.S)
    assert traffic is not None and "<td>greenwave</td><td>100</td><td>41.0</td><td>2.5</td>" in traffic.group(0)
    assert 'class="traffic-by-class"' not in page  # (one class, or none recorded: nothing apart)
    # bicycles among the other trips: a row per controller and class
    for folder, bike_loss in ((gw, 11.0), (tmp_path / "none-s1", 10.0)):
        summary = json.loads((folder / "summary.json").read_text())
        summary["background"]["by_class"] = {"passenger": {"trips": 90, "mean_time_loss": 40.0},
                                             "bicycle": {"trips": 10, "mean_time_loss": bike_loss}}
        (folder / "summary.json").write_text(json.dumps(summary))
    run = load_run(gw)
    page = render_run(run, [r for r in companions(run, []) if r.controller != "oracle"])
    by_class = re.search(r'<table class="traffic-by-class">.*?</table>', page, flags=re.S)
    assert by_class is not None
    assert "<td>greenwave</td><td>bicycle</td><td>10</td><td>11.0</td><td>10.0</td>" in by_class.group(0)
    assert "<td>none</td><td>passenger</td><td>90</td><td>40.0</td><td>0.0</td>" in by_class.group(0)


def test_a_report_tells_local_variants_and_backends_apart(tmp_path: Path) -> None:
    run = write_run(tmp_path / "local-eta", "local")
    assert load_run(run).label == "local (seed 1)"
    summary = json.loads((run / "summary.json").read_text())
    summary.update(controller_settings={"detect_eta_s": 20.0, "upstream_share": 0.5}, backend="traci")
    (run / "summary.json").write_text(json.dumps(summary))
    assert load_run(run).label == "local ETA 20 s, traci (seed 1)"
    near = write_run(tmp_path / "local-80", "local")
    summary = json.loads((near / "summary.json").read_text())
    summary.update(controller_settings={"detect_range_m": 80.0})
    (near / "summary.json").write_text(json.dumps(summary))
    page = render_run(load_run(run), companions(load_run(run), []))
    assert "local ETA 20 s, traci" in page and "local range 80 m" in page  # (both read 'local' before)
    assert 'id="trajectory-local_ETA_20_s__traci-amb"' in page and 'id="trajectory-local_range_80_m-amb"' in page


def test_report_command_writes_a_self_contained_page(tmp_path: Path) -> None:
    folder = write_run(tmp_path / "run", "greenwave")
    result = CliRunner().invoke(main, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    page = (folder / "report.html").read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page
    assert not re.search(r'(src|href)="(https?:|file:|/)', page)  # nothing fetched from elsewhere


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "trace.json").unlink(), "no trace.json"),
        (lambda f: (f / "summary.json").unlink(), "no summary.json"),
        (lambda f: (f / "trace.json").write_text("{not json"), "trace.json: the run trace is not valid JSON"),
        (lambda f: (f / "trace.json").write_text('{"format": "other/9"}'), "format is 'other/9'"),
        (lambda f: (f / "trace.json").write_text(
            '{"format": "greenwave-trace/1", "evs": [{"id": "a", "legs": [{"t": [1]}]}]}'), "evs[0].legs[0]"),
        (lambda f: (f / "summary.json").write_text('{"complete": false}'), "not the summary of a completed run"),
        # an interrupted bench's folder (runs/, no bench.json): it said "not a completed greenwave run"
        (lambda f: ((f / "summary.json").unlink(), (f / "runs").mkdir()),
         "no bench.json: not a completed greenwave bench"),
    ],
)
def test_bad_run_folders_are_named_and_nothing_is_written(tmp_path: Path, damage: Any, message: str) -> None:
    good = write_run(tmp_path / "good", "greenwave")
    bad = write_run(tmp_path / "bad", "local")
    damage(bad)
    with pytest.raises(ReportError, match=re.escape(message)):
        write_reports([good, bad])
    assert not (good / "report.html").exists()  # every folder is checked before anything is written
    result = CliRunner().invoke(main, ["report", str(good), str(bad)])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_a_summary_of_an_unexpected_shape_is_named_not_a_traceback(tmp_path: Path) -> None:
    folder = write_run(tmp_path / "run", "greenwave")
    summary = json.loads((folder / "summary.json").read_text())
    summary["background"]["cross_streets"] = [1, 2]  # (null is a shape of its own: not measured, attached)
    (folder / "summary.json").write_text(json.dumps(summary))
    result = CliRunner().invoke(main, ["report", str(folder)])
    assert result.exit_code == 2 and "unexpected shape" in result.output and str(folder) in result.output
    assert not (folder / "report.html").exists()
    summary["background"]["cross_streets"] = None
    (folder / "summary.json").write_text(json.dumps(summary))
    assert CliRunner().invoke(main, ["report", str(folder)]).exit_code == 0


def test_a_malformed_run_beside_it_is_left_out_not_blamed_on_the_reported_run(tmp_path: Path) -> None:
    # the good run's report failed, 'good: summary.json ... has an unexpected shape', for a
    # sibling in its bench folder
    good = write_run(tmp_path / "greenwave-s1", "greenwave")
    bad = write_run(tmp_path / "none-s1", "none")
    summary = json.loads((bad / "summary.json").read_text())
    summary["background"] = [1]
    (bad / "summary.json").write_text(json.dumps(summary))
    result = CliRunner().invoke(main, ["report", str(good)])
    assert result.exit_code == 0, result.output
    assert "<td>none</td>" not in (good / "report.html").read_text()
    result = CliRunner().invoke(main, ["report", str(bad)])
    assert result.exit_code == 2 and f"{bad}: summary.json or trace.json has an unexpected shape" in result.output


def test_a_bench_result_of_an_unexpected_shape_is_named_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "bench.json").write_text(json.dumps({"suite": None, "aggregate": ["x"]}))
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2 and "bench.json: the bench results have an unexpected shape" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "report.html").exists()


def test_ev_options_on_a_bench_folder_are_refused_not_ignored(tmp_path: Path) -> None:
    (tmp_path / "bench.json").write_text(json.dumps({"suite": None, "aggregate": []}))
    result = CliRunner().invoke(main, ["report", str(tmp_path), "--ev", "amb"])
    assert result.exit_code == 2 and "is a bench's folder: --ev and --max-evs choose the figures of a run's" \
        in " ".join(result.output.split()), result.output
    assert not (tmp_path / "report.html").exists()


def test_figures_for_the_evs_an_engineer_looks_at_first() -> None:
    evs = [{"id": "a", "arrived": True, "delay": 5.0}, {"id": "b", "arrived": True, "delay": 40.0},
           {"id": "c", "arrived": False, "delay": None}, {"id": "d", "arrived": True, "delay": 12.0}]
    summary = {"evs": evs}
    assert figure_evs(summary, max_evs=4) == ["a", "b", "c", "d"]  # within the limit: all
    assert figure_evs(summary, max_evs=2) == ["b", "c"]  # never arrived, then most delay; in run order
    assert figure_evs(summary, max_evs=3) == ["b", "c", "d"]
    assert figure_evs(summary, max_evs=0) == ["a", "b", "c", "d"]  # 0: no limit
    assert figure_evs(summary, ["d", "a"], max_evs=1) == ["a", "d"]  # named: those, whatever the limit
    with pytest.raises(ReportError, match=r"no EV x in this run \(its EVs: a, b, c, d\)"):
        figure_evs(summary, ["x"])


def test_a_run_with_more_evs_than_the_limit_draws_some_and_keeps_every_table(tmp_path: Path) -> None:
    folder = write_run(tmp_path / "run", "greenwave")  # amb and fire, the same delay: the first wins
    result = CliRunner().invoke(main, ["report", str(folder), "--max-evs", "1"])
    assert result.exit_code == 0, result.output
    page = (folder / "report.html").read_text()
    assert drawn_evs(page) == ["amb"]
    assert "Figures are drawn for 1 of the 2 EVs" in page and f"{folder} --ev fire" in page
    assert len(re.findall(r'<table class="junctions">', page)) == 2  # fire's table is still there

    result = CliRunner().invoke(main, ["report", str(folder), "--ev", "fire"])
    assert result.exit_code == 0, result.output
    page = (folder / "report.html").read_text()
    assert drawn_evs(page) == ["fire"]
    assert "those named on the command line" in page

    result = CliRunner().invoke(main, ["report", str(folder), "--ev", "nobody"])
    assert result.exit_code == 2 and "no EV nobody in this run" in result.output and "Traceback" not in result.output


def test_svg_path_data_is_written_to_a_hundredth_of_a_point(tmp_path: Path) -> None:
    page = render_run(load_run(write_run(tmp_path / "run", "greenwave")), [])
    data = " ".join(re.findall(r' d="([^"]*)"', page))
    assert data and not re.search(r"\d\.\d{3}", data)


def test_evs_of_an_unexpected_shape_are_named_not_a_traceback(tmp_path: Path) -> None:
    folder = write_run(tmp_path / "run", "greenwave")
    summary = json.loads((folder / "summary.json").read_text())
    summary["evs"] = None
    (folder / "summary.json").write_text(json.dumps(summary))
    result = CliRunner().invoke(main, ["report", str(folder)])
    assert result.exit_code == 2 and "unexpected shape" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(main, ["report", str(folder), "--ev", "amb"])
    assert result.exit_code == 2 and f"{folder}: no EV amb in this run (its EVs: none)" in result.output


def test_ratio_to_free_flow_keeps_two_decimals_and_the_window_is_the_scenarios(tmp_path: Path) -> None:
    folder = write_run(tmp_path / "greenwave-s1", "greenwave", speed=11.7)  # ratio 600 / 11.7 / 50 = 1.0256
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    summary["end"] = 399  # simulated_until is the end plus the step that applies the last hand-back
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    page = render_run(load_run(folder), [])
    assert "<td>1.03</td>" in page.replace(' class="num"', "")
    assert "simulated 0–399 s" in page


def test_the_ratio_is_rounded_once_from_the_two_times(tmp_path: Path) -> None:
    from controller.report.load import ratio_to_free_flow

    ev = {"travel_time": 116.0, "free_flow_time": 111.0, "ratio_to_free_flow": 1.045}  # 1.04505, stored
    assert f"{ev['ratio_to_free_flow']:.2f}" == "1.04"  # rounded twice
    assert f"{ratio_to_free_flow(ev):.2f}" == "1.05"
    assert ratio_to_free_flow({"travel_time": None, "free_flow_time": 111.0, "ratio_to_free_flow": 1.2}) == 1.2
    assert ratio_to_free_flow({"travel_time": None, "free_flow_time": None}) is None
    folder = write_run(tmp_path / "greenwave-s1", "greenwave")
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    summary["evs"][0].update(travel_time=116.0, free_flow_time=111.0, ratio_to_free_flow=1.045)
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    assert "<td>1.05</td>" in render_run(load_run(folder), []).replace(' class="num"', "")


def test_the_bench_page_shows_the_check_against_the_baseline() -> None:
    from controller.report.bench import render_bench

    moved = {"scenario": "a", "controller": "greenwave", "metric": "collisions", "baseline": 3, "current": 7,
             "limit": "<= 5"}
    page = render_bench({"aggregate": [], "suite": {}, "check": {"baseline": "b.json", "regressions": [moved],
                                                                  "notes": []}}, Path("x/bench.json"))
    assert "check against b.json: 1 regression(s): a / greenwave: collisions 3 -&gt; 7 (allowed &lt;= 5)" in page
    unchecked = ["a / local: not in the baseline, not checked"]
    page = render_bench({"aggregate": [], "suite": {}, "check": {"baseline": "b.json", "regressions": [],
                                                                  "notes": unchecked}}, Path("x/bench.json"))
    assert "check against b.json: no regression" in page
    assert "check: a / local: not in the baseline, not checked" in page  # (the console's notes, on the page too)
    assert "check against" not in render_bench({"aggregate": [], "suite": {}, "check": None}, Path("x/bench.json"))
    page = render_bench({"aggregate": [], "suite": {}, "check": {"baseline": "b.json", "regressions": [moved],
                                                                  "updated": True}}, Path("x/bench.json"))
    assert "baseline b.json updated on purpose; what moved (1): a / greenwave: collisions 3 -&gt; 7" in page
    assert "regression" not in page


def test_the_bench_page_marks_failed_runs_and_an_unjudged_gap_as_the_console_table_does() -> None:
    from controller.report.bench import render_bench

    rows = [{"scenario": "a", "controller": "greenwave", "runs": 1, "failed": 1, "gap_closed": 1.5,
             "gap_judged": False},
            {"scenario": "a", "controller": "local", "runs": 2, "failed": 0, "gap_closed": 0.5, "gap_judged": True}]
    page = render_bench({"aggregate": rows, "suite": {}}, Path("x/bench.json"))
    table = re.search(r'<table class="aggregate">.*?</table>', page, flags=re.S)
    assert table is not None
    cells = re.sub(r' class="[^"]*"', "", table.group(0))
    assert "<td>greenwave</td><td>1 (1✗)</td>" in cells and "<td>1.50*</td>" in cells
    assert "<td>local</td><td>2</td>" in cells and "<td>0.50</td>" in cells
    assert "* gap not judged" in page and "k failed" in page


def test_long_junction_ids_are_shortened_on_the_axis_only() -> None:
    long_id = "cluster_306484187_cluster_1200363791_1200363826_1200363834_1200363898"
    assert short_id("gneJ143") == "gneJ143"
    shown = short_id(long_id)
    assert len(shown) == 39 and shown.startswith("cluster_306484187_") and shown.endswith("1200363898")


@pytest.mark.parametrize("step", [1.0, 0.5])
def test_the_diagram_draws_each_state_from_the_step_it_governed(tmp_path: Path, step: float) -> None:
    # J2 showed the EV's link green ('rG') as read from 118 to 131: drawn from 118 − step to 131 − step
    folder = write_run(tmp_path / "greenwave-s1", "greenwave")
    summary = json.loads((folder / "summary.json").read_text())
    summary["step_length"] = step
    (folder / "summary.json").write_text(json.dumps(summary))
    fig = time_space_diagram(load_run(folder), "amb")
    assert fig is not None
    green = next(p for p in fig.axes[0].patches if p.get_gid() == "j1-signal-green")
    vertices: Any = green.get_path().vertices
    xs = sorted({float(x) for x, _ in vertices})
    assert (xs[0], xs[-1]) == (118.0 - step, 131.0 - step)
    assert short_id("x" * 50, limit=2) == "x…x" and short_id("abc", limit=2) == "a…c"


def test_labels_of_close_stop_lines_are_spread_apart() -> None:
    from controller.report.figures import spread_labels

    # Bologna's 221 #1 and #2, 21 m apart on a 2.5 km axis where a label takes 30 m: spread
    assert spread_labels([522.0, 543.0, 1000.0], 30.0, 0.0, 2600.0) == [522.0, 552.0, 1000.0]
    # pushed past the top: back down, every pair still a gap apart
    placed = spread_labels([2580.0, 2590.0, 2595.0], 30.0, 0.0, 2600.0)
    assert placed == [2540.0, 2570.0, 2600.0]
    assert spread_labels([10.0, 500.0], 30.0, 0.0, 2600.0) == [10.0, 500.0]  # far apart: where they are


def test_violations_per_signal_count_every_one_not_the_first_200_listed() -> None:
    from controller.report.html import violations_by_tls

    listed = [{"rule": "S4", "tls": "E1"}] * 150 + [{"rule": "S4", "tls": "A0"}] * 50
    # (an oracle run: 1,200 violations, 200 listed, most of the first on E1)
    assert violations_by_tls({"S4": 1200, "by_tls": {"A0": 600, "E1": 600}, "violations": listed}) == (
        {"A0": 600, "E1": 600}, 0)
    # a summary from before by_tls: counted from the list, marked as a lower bound where it was
    # cut, and not known for a signal it does not name
    assert violations_by_tls({"S4": 1200, "violations": listed}) == ({"E1": "≥ 150", "A0": "≥ 50"}, "?")
    assert violations_by_tls({"S4": 200, "violations": listed}) == ({"E1": 150, "A0": 50}, 0)


def test_runs_of_one_controller_with_other_settings_are_told_apart(tmp_path: Path) -> None:
    # two "greenwave" rows and lines, one with progression = false: told apart by the folder path alone
    plain = write_run(tmp_path / "greenwave-s1", "greenwave", speed=12.0)
    other = write_run(tmp_path / "greenwave-noprog-s1", "greenwave", speed=10.0)
    summary = json.loads((other / "summary.json").read_text())
    summary["controller_settings"] = {"progression": False, "margin_s": 3.0}
    (other / "summary.json").write_text(json.dumps(summary))
    summary = json.loads((plain / "summary.json").read_text())
    summary["controller_settings"] = {"margin_s": 3.0}
    (plain / "summary.json").write_text(json.dumps(summary))
    write_run(tmp_path / "none-s1", "none", speed=6.0)
    run = load_run(plain)
    runs = companions(run, [])
    assert [r.name for r in runs] == ["none", "greenwave progression = false", "greenwave progression default"]
    page = render_run(run, runs)
    assert "<td>greenwave progression = false</td>" in page and "greenwave progression default · seed 1" in page
    # alone, or beside other controllers only, a run keeps its plain name
    assert next(r.name for r in companions(load_run(tmp_path / "none-s1"), [])) == "none"


def test_a_note_says_when_the_evs_went_on_past_the_scenarios_end(tmp_path: Path) -> None:
    # signals preempted from 600 to 945 s, the other traffic counted to 680 s, and nothing said so
    gw = write_run(tmp_path / "greenwave-s1", "greenwave")
    run = load_run(gw)
    assert "past the end" not in render_run(run, [run])
    summary = json.loads((gw / "summary.json").read_text())
    summary["end"] = 140
    (gw / "summary.json").write_text(json.dumps(summary))
    run = load_run(gw)
    page = render_run(run, [run])
    assert "under greenwave the EVs' trips and preemptions went on to 260 s, past the end at 140 s" in page


def test_the_bench_page_keeps_the_consoles_caveats() -> None:
    # an EV that did not arrive, a jam that kept other trips from finishing, a gap not judged:
    # the console said so, the page did not (and drew the unjudged gap as a plain bar)
    from controller.bench.aggregate import RunResult, aggregate
    from controller.report.bench import render_bench
    from tests.unit.test_bench import summary

    stuck = summary([700.0, 300.0])
    stuck["evs"][0]["travel_time"] = None
    jam = summary(95.0)
    jam["background"]["trips"] = 60
    rows = aggregate([RunResult("a", "none", 1, stuck), RunResult("a", "oracle", 1, jam),
                      RunResult("a", "greenwave", 1, summary(98.0))])
    page = render_bench({"aggregate": rows, "suite": {}}, Path("x/bench.json"))
    assert "note: a / none: 1 of 2 EVs did not arrive" in page
    assert "note: a / oracle: 60 other trips finished per run against none&#x27;s 100" in page
    assert "<td>1 of 2</td>" in page and "<td>1 of 1</td>" in page
    # scenario b: the oracle saves 5 % of none's time, greenwave's gap 0.4 is not judged
    rows += aggregate([RunResult("b", "none", 1, summary(100.0)), RunResult("b", "oracle", 1, summary(95.0)),
                       RunResult("b", "greenwave", 1, summary(98.0))])
    page = render_bench({"aggregate": rows, "suite": {}}, Path("x/bench.json"))
    gap = re.search(r'<figure class="bench-gap-closed">.*?</figure>', page, flags=re.S)
    assert gap is not None and "hatched and starred: not judged" in gap.group(0)
    assert ">40*<" in gap.group(0)  # (the axis has its own "40")


def test_a_rerouted_evs_comparison_counts_time_from_its_departure(tmp_path: Path) -> None:
    # the comparison drew a re-routed EV's last route from the re-route, its axis reading "time
    # since the EV's departure": its line ended 20 s before its travel time
    from controller.report.figures import trajectories_compared

    gw = write_run(tmp_path / "greenwave-s1", "greenwave", speed=12.0)
    trace = json.loads((gw / "trace.json").read_text())
    first = trace["evs"][0]["legs"][0]
    later = _leg(12.0, 120.0)  # re-routed at 120 s (departed at 100 s)
    trace["evs"][0]["legs"] = [{**first, "t": first["t"][:20], "pos": first["pos"][:20],
                                "speed": first["speed"][:20]}, later]
    (gw / "trace.json").write_text(json.dumps(trace))
    write_run(tmp_path / "none-s1", "none", speed=6.0)
    run = load_run(gw)
    fig = trajectories_compared(companions(run, []), "amb")
    assert fig is not None
    lines = {line.get_gid(): np.asarray(line.get_xdata(), dtype=float).tolist()
             for line in fig.axes[0].get_lines() if line.get_gid()}
    assert lines["trajectory-greenwave-amb"][0] == pytest.approx(20.0)  # from the departure, not the re-route
    assert lines["trajectory-none-amb"][0] == pytest.approx(0.0)


def test_the_bars_of_close_stop_lines_do_not_overlap(tmp_path: Path) -> None:
    # two stop lines 21 m apart on a long route (Bologna's 221) merged into one bar
    folder = write_run(tmp_path / "greenwave-s1", "greenwave")
    trace = json.loads((folder / "trace.json").read_text())
    for leg in (trace["evs"][0]["legs"][0],):
        leg["route_length_m"] = 3000.0
        leg["junctions"][1]["distance_m"] = 121.0  # J2 21 m after J1 (at 100 m)
    (folder / "trace.json").write_text(json.dumps(trace))
    fig = time_space_diagram(load_run(folder), "amb")
    assert fig is not None
    extents: dict[str, tuple[float, float]] = {}
    for patch in fig.axes[0].patches:
        gid = patch.get_gid() or ""
        if gid.startswith(("j0-", "j1-")):
            box = patch.get_path().get_extents(patch.get_patch_transform())
            lo, hi = extents.get(gid[:2], (math.inf, -math.inf))
            extents[gid[:2]] = (min(lo, box.y0), max(hi, box.y1))
    assert set(extents) == {"j0", "j1"}
    assert extents["j0"][1] <= extents["j1"][0], extents  # J1's bar and band end below J2's bar


def test_a_record_ended_before_the_signals_hand_back_draws_its_exit_from_the_hand_back(tmp_path: Path) -> None:
    # J3 (#2) is the same signal as J2 (#1) here: the EV crossed #1 at 131 while the signal
    # was held on for #2 until 150, then handed back (restored 158). #1's "exit (hand-back)"
    # bar spanned 131..158, 19 s of which the signal was still held for #2.
    folder = write_run(tmp_path / "greenwave-s1", "greenwave")
    summary = json.loads((folder / "summary.json").read_text())
    first = dict(summary["preemptions"][0], restored=158.0, recovery_s=27.0, preempted_s=43.0)
    second = dict(first, junction_index=2, tls="J2", dwell=121.0, exit=150.0, recovery_s=8.0)
    summary["preemptions"] = [first, second]
    (folder / "summary.json").write_text(json.dumps(summary))
    trace = json.loads((folder / "trace.json").read_text())
    trace["evs"][0]["legs"][0]["junctions"][2]["tls"] = "J2"
    trace["signals"]["J2"] = [[0, "rr"], [115, "yr"], [118, "rG"], [150, "rr"]]  # held green for #2
    (folder / "trace.json").write_text(json.dumps(trace))
    fig = time_space_diagram(load_run(folder), "amb")
    assert fig is not None
    spans = {}
    for patch in fig.axes[0].patches:
        gid = patch.get_gid() or ""
        if "-preempt-" in gid:
            box = patch.get_path().get_extents(patch.get_patch_transform())
            spans[gid] = (round(box.x0, 6), round(box.x1, 6))
    assert spans["j1-preempt-dwell"] == (120.0, 131.0)
    assert spans["j1-preempt-exit"] == (150.0, 158.0) == spans["j2-preempt-exit"]
    assert spans["j2-preempt-dwell"] == (121.0, 150.0)


def test_the_eta_figure_marks_an_entry_started_more_than_120_s_ahead(tmp_path: Path) -> None:
    # entries that started further ahead than the figure's 120 s had no diamond, though they
    # carry the largest errors (the heavy arterial's J5 and J6: -22.6 and -22.9 s)
    from controller.report.figures import eta_accuracy

    folder = write_run(tmp_path / "greenwave-s1", "greenwave")
    trace = json.loads((folder / "trace.json").read_text())
    trace["eta"] = [["amb", 1, -30.0, 110.0, 100.0, 120.0, "entry"], ["amb", 1, 60.0, 128.0, 126.0, 130.0, ""],
                    ["amb", 1, 100.0, 129.0, 128.0, 131.0, ""]]  # J2 crossed at 130 s: the entry 160 s ahead
    (folder / "trace.json").write_text(json.dumps(trace))
    fig = eta_accuracy(load_run(folder), "amb")
    assert fig is not None
    entry = next(line for line in fig.axes[0].get_lines() if line.get_gid() == "eta-j1-entry")
    assert np.asarray(entry.get_xdata(), dtype=float).tolist() == [160.0]
    assert np.asarray(entry.get_ydata(), dtype=float).tolist() == [-20.0]


def test_a_dwell_while_the_signal_serves_another_ev_is_drawn_and_counted_as_held(tmp_path: Path) -> None:
    # Bologna's 210: the police record dwelled 591..699 while the signal served an ambulance and
    # a fire engine from 615 to 698, its movement red; drawn as 108 s of "dwell (held green)"
    folder = write_run(tmp_path / "greenwave-s1", "greenwave",
                       signals={"J1": [[0, "GG"]], "J2": [[0, "rr"], [118, "rG"], [124, "ry"], [127, "rr"],
                                                         [140, "rG"], [150, "rr"]], "J3": [[0, "GG"]]})
    summary = json.loads((folder / "summary.json").read_text())
    summary["preemptions"][0].update(dwell=120.0, exit=145.0)  # J2's record: its link (1) red 127..140
    (folder / "summary.json").write_text(json.dumps(summary))
    run = load_run(folder)
    fig = time_space_diagram(run, "amb")
    assert fig is not None
    spans = []
    for patch in fig.axes[0].patches:
        if (patch.get_gid() or "").startswith("j1-preempt-"):
            box = patch.get_path().get_extents(patch.get_patch_transform())
            spans.append((patch.get_gid(), round(box.x0, 6), round(box.x1, 6)))
    spans.sort()
    assert [s for s in spans if s[0] != "j1-preempt-entry"] == [
        ("j1-preempt-dwell", 120.0, 124.0), ("j1-preempt-dwell", 140.0, 145.0), ("j1-preempt-held", 124.0, 140.0)]
    table = re.search(r'<table class="junctions">.*?</table>', render_run(run, [run]), flags=re.S)
    assert table is not None
    rows = re.findall(r"<tr><td>#\d+</td>.*?</tr>", table.group(0))
    assert "<td>120.0</td><td>25.0</td><td>16.0</td>" in rows[1], rows[1]


def test_a_summary_without_safety_counts_is_not_reported_as_free_of_violations(tmp_path: Path) -> None:
    # a run of another version, or an edited summary, without "safety": the page said "the
    # independent monitor saw no violation of S1-S5" over a table of dashes
    folder = write_run(tmp_path / "greenwave-s1", "greenwave")
    summary = json.loads((folder / "summary.json").read_text())
    assert "no violation of S1–S5" in render_run(load_run(folder), [load_run(folder)])
    del summary["safety"]
    (folder / "summary.json").write_text(json.dumps(summary))
    run = load_run(folder)
    page = render_run(run, [run])
    assert "no violation" not in page and "records no safety count for S1, S2, S3, S4, S5" in page
