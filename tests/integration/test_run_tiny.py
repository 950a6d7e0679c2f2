"""End-to-end runs on a tiny generated grid: fast checks of the run command, its summary, the
bounds, both backends, hand-back on failure, and that a user's config folder stays untouched."""

from __future__ import annotations

import json
import os
import shutil
import signal
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Literal

import pytest
from click.testing import CliRunner

from controller.cli import main
from controller.core.snapshot import SignalCommand
from controller.errors import GreenwaveError, SimulationError
from controller.runtime.folder_lock import hold_folder
from controller.sim.adapter import SumoAdapter
from tests.helpers import interrupt_mid_run, no_left_at_b1, run_ok, write_scenario

pytestmark = pytest.mark.sumo

REPO = Path(__file__).resolve().parents[2]

DESIGN_FIELDS = {
    "top": {"scenario", "controller", "seed", "evs", "background", "eta", "safety", "realtime"},
    "ev": {"id", "depart", "arrival", "travel_time", "free_flow_time", "stops", "time_stopped", "junctions",
           "preempted"},
    "background": {"trips", "mean_time_loss"},
    "eta": {"abs_error_p50", "abs_error_p90", "by_horizon"},
    "safety": {"S1", "S2", "S3", "S4", "S5", "collisions", "emergency_braking", "teleports"},
    "realtime": {"ticks", "tick_ms_p50", "tick_ms_p99", "tick_ms_max", "budget_ms", "over_budget",
                 "sumo_step_ms_p50"},
}


def assert_design_fields(summary: dict[str, Any]) -> None:
    assert DESIGN_FIELDS["top"] <= summary.keys()
    for ev in summary["evs"]:
        assert DESIGN_FIELDS["ev"] <= ev.keys()
    for section in ("background", "eta", "safety", "realtime"):
        assert DESIGN_FIELDS[section] <= summary[section].keys(), section
    assert set(summary["eta"]["by_horizon"]) == {"10", "30", "60"}



@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, tiny_net: Path) -> Path:
    tmp = tmp_path_factory.mktemp("scn")
    demand = '[demand]\nlevel = "light"\ngenerator = "random_trips"\nvehicles_per_hour = 400\n'
    return write_scenario(tmp / "tiny.toml", tiny_net, demand=demand, end_s=300)


def test_none_and_oracle_bound_the_trip(scenario: Path, tmp_path: Path) -> None:
    none = run_ok(["run", str(scenario), "--controller", "none", "--seed", "2", "--out", str(tmp_path / "none")])
    oracle = run_ok(["run", str(scenario), "--controller", "oracle", "--seed", "2", "--out", str(tmp_path / "or")])
    for s in (none, oracle):
        assert_design_fields(s)
        ev = s["evs"][0]
        assert ev["arrival"] is not None
        assert ev["travel_time"] >= ev["free_flow_time"] > 0
        assert ev["junctions"] == 3
        assert s["background"]["trips"] > 0
    assert none["evs"][0]["free_flow_time"] == oracle["evs"][0]["free_flow_time"]
    assert oracle["evs"][0]["travel_time"] <= none["evs"][0]["travel_time"] + 2
    # one scenario and seed: the same inputs, whatever the controller and folder; the scenario
    # edited (another demand rate, the same name and level), other inputs
    assert none["inputs_digest"] == oracle["inputs_digest"] and len(none["inputs_digest"]) == 16
    bg = none["background"]
    assert bg["by_class"] == {"passenger": {"trips": bg["trips"], "mean_time_loss": bg["mean_time_loss"]}}
    edited = tmp_path / "edited.toml"
    edited.write_text(scenario.read_text().replace("vehicles_per_hour = 400", "vehicles_per_hour = 500"))
    other = run_ok(["run", str(edited), "--controller", "none", "--seed", "2", "--out", str(tmp_path / "ed")])
    assert other["scenario"] == none["scenario"] and other["inputs_digest"] != none["inputs_digest"]
    assert none["evs"][0]["preempted"] == 0 and oracle["evs"][0]["preempted"] == 3
    # the monitor does not cry wolf on the programs themselves
    assert all(none["safety"][r] == 0 for r in ("S1", "S2", "S3", "S4", "S5"))
    assert all(v == 0 for v in oracle["safety"]["by_touch"]["untouched"].values())
    # the oracle hands every signal back once the EV has crossed it
    assert oracle["safety"]["S5"] == 0
    assert oracle["safety"]["preempted_signals"] == ["A1", "B1", "C1"]
    # nothing preempted: no collision can be at a preempted signal; the oracle keeps no record
    assert none["safety"]["collisions_preempted"] == 0 and oracle["safety"]["collisions_preempted"] is None


def test_a_run_no_other_vehicle_finished_a_trip_in_says_so(tmp_path: Path, tiny_net: Path) -> None:
    # a begin after the route files' last departure ran silently: "background: 0 trips"
    routes = tmp_path / "r.rou.xml"
    routes.write_text("<routes>" + "".join(f'<trip id="v{k}" depart="{k * 5}" from="left1A1" to="C1right1"/>'
                                           for k in range(10)) + "</routes>")
    cfg = tmp_path / "c.sumocfg"
    for begin, noted in ((200, True), (0, False)):
        cfg.write_text(f'<configuration><input><net-file value="{tiny_net}"/><route-files value="{routes.name}"/>'
                       f'</input><time><begin value="{begin}"/></time></configuration>')
        result = CliRunner().invoke(main, ["run", "--sumocfg", str(cfg), "--ev", f"left1A1,C1right1,{begin + 10}",
                                           "--out", str(tmp_path / "o")])
        assert result.exit_code == 0, result.output
        said = "note: no other vehicle finished a trip between" in result.output
        assert said == noted and ("background: 0 trips" in result.output) == noted, result.output
        notes = json.loads((tmp_path / "o" / "summary.json").read_text())["notes"]  # (it was printed alone)
        assert any(n.startswith(f"no other vehicle finished a trip between {begin} and ") for n in notes) == noted
    # most of the vehicles inserted still on the road at the end: the figures leave them out, said
    busy = tmp_path / "busy.rou.xml"
    busy.write_text("<routes>" + "".join(f'<trip id="w{k}" depart="{k}" from="left1A1" to="C1right1"/>'
                                         for k in range(30)) + "</routes>")
    cfg.write_text(f'<configuration><input><net-file value="{tiny_net}"/><route-files value="{busy.name}"/>'
                   '</input><time><begin value="0"/></time></configuration>')
    result = CliRunner().invoke(main, ["run", "--sumocfg", str(cfg), "--ev", "left1A1,C1right1,10", "--end", "80",
                                       "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    bg = s["background"]
    assert 0 < bg["trips"] < bg["unfinished"] and bg["trips"] + bg["unfinished"] <= 30, bg
    note = (f"other traffic is measured on the {bg['trips']} trips finished by the end (80 s); {bg['unfinished']} "
            "other vehicles inserted had not arrived by then and are left out")
    assert any(n.startswith(note) for n in s["notes"]) and note in " ".join(result.output.split()), s["notes"]


def test_the_inputs_digest_does_not_depend_on_the_run_folders_name(tmp_path: Path, tiny_net: Path) -> None:
    # an additional file's output is redirected into the run folder, whose path is cut out of it
    # before hashing; written as XML, 'R&D' is 'R&amp;D' there and the two runs differed
    extra = tmp_path / "mine.add.xml"
    extra.write_text('<additional><edgeData id="mine" file="mine.xml" period="100"/></additional>')
    scenario = write_scenario(tmp_path / "s.toml", tiny_net, additional=f'["{extra}"]', end_s=120)
    digests = {run_ok(["run", str(scenario), "--controller", c, "--out", str(tmp_path / f"R&D <{c}>")])[
        "inputs_digest"] for c in ("none", "oracle")}
    assert len(digests) == 1


def test_a_run_into_an_old_runs_folder_leaves_nothing_of_the_old_run(scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    run_ok(["run", str(scenario), "--controller", "none", "--out", str(out)])
    assert CliRunner().invoke(main, ["report", str(out)]).exit_code == 0
    old_report = (out / "report.html").read_text()
    # what an earlier run of another configuration left: a detector's output, an additional file
    (out / "outputs").mkdir(exist_ok=True)
    (out / "outputs" / "e1_output.xml").write_text("<detector/>")
    (out / "inputs" / "detectors.add.xml").write_text("<additional/>")
    run_ok(["run", str(scenario), "--controller", "oracle", "--out", str(out)])
    assert not (out / "report.html").exists()  # it described the old run (and stayed, before)
    assert not (out / "outputs" / "e1_output.xml").exists() and not (out / "inputs" / "detectors.add.xml").exists()
    assert (out / "inputs" / "greenwave_vtypes.add.xml").is_file()
    assert CliRunner().invoke(main, ["report", str(out)]).exit_code == 0
    assert (out / "report.html").read_text() != old_report


def test_a_rerun_that_fails_before_it_simulates_keeps_the_previous_run(tmp_path: Path, tiny_net: Path) -> None:
    # the new run's inputs were prepared into the folder first: a re-run SUMO refused had
    # already deleted the earlier run
    cfg = tmp_path / "run.sumocfg"
    cfg.write_text(f'<configuration><input><net-file value="{tiny_net}"/></input>'
                   '<time><begin value="0"/><end value="150"/></time></configuration>')
    out = tmp_path / "runs" / "o"
    run_ok(["run", "--sumocfg", str(cfg), "--ev", "left1A1,C1right1,10", "--out", str(out)])
    (out / "notes.txt").write_text("mine")  # the user's own note in it: kept too
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def assert_kept(result: Any) -> None:
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        assert f"the previous run in '{out}' is kept as it was" in result.output
        assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
        assert sorted(p.name for p in out.parent.iterdir()) == ["o"]  # nothing set aside is left

    routes = tmp_path / "bad.rou.xml"  # SUMO refuses it when it starts
    routes.write_text('<routes><vehicle id="v" type="noSuchType" depart="0"><route edges="left1A1"/></vehicle>'
                      "</routes>")
    bad = tmp_path / "bad.sumocfg"
    bad.write_text(f'<configuration><input><net-file value="{tiny_net}"/><route-files value="{routes}"/></input>'
                   "</configuration>")
    refused = CliRunner().invoke(main, ["run", "--sumocfg", str(bad), "--ev", "left1A1,C1right1,10", "--out", str(out)])
    assert "noSuchType" in refused.output
    assert_kept(refused)
    # a route that cannot be planned (refused while preparing)
    unknown = CliRunner().invoke(main, ["run", "--sumocfg", str(cfg), "--ev", "left1A1,NOPE,10", "--out", str(out)])
    assert "NOPE" in unknown.output
    assert_kept(unknown)
    # a run that simulates replaces it, and leaves nothing set aside
    again = CliRunner().invoke(main, ["run", "--sumocfg", str(cfg), "--ev", "left1A1,C1right1,20", "--out", str(out)])
    assert again.exit_code == 0 and "holds a run of" not in again.output, again.output
    s = json.loads((out / "summary.json").read_text())
    assert s["evs"][0]["depart"] == 20 and (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.parent.iterdir()) == ["o"]
    # a run of another scenario or configuration into it says whose run it replaces (a scenario
    # file and a --sumocfg named alike share their default folder)
    other = write_scenario(tmp_path / "run.toml", tiny_net)
    replaced = CliRunner().invoke(main, ["run", str(other), "--out", str(out)])
    assert replaced.exit_code == 0, replaced.output
    assert (f"greenwave: note: '{out}' holds a run of {cfg}: this run of {other} replaces it once it simulates"
            in " ".join(replaced.output.split()))


def test_a_run_into_a_folder_another_run_is_writing_into_is_refused(scenario: Path, tmp_path: Path) -> None:
    # two runs into one --out spoiled both (one's summary named the other's EV), and the second
    # set the first's folder aside under it
    out = tmp_path / "o"
    run_ok(["run", str(scenario), "--controller", "none", "--out", str(out)])
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with hold_folder(out):  # as a run (another process) writing into it holds it
        busy = CliRunner().invoke(main, ["run", str(scenario), "--controller", "oracle", "--out", str(out)])
        assert busy.exit_code == 2 and "Traceback" not in busy.output, busy.output
        assert f"--out '{out}': another greenwave run (process {os.getpid()}) is writing into this folder" \
            in busy.output
        # (the same folder by another name, and a bench into it)
        other = CliRunner().invoke(main, ["run", str(scenario), "--out", str(tmp_path / "." / "o")])
        assert other.exit_code == 2 and "another greenwave run" in other.output, other.output
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    suite = tmp_path / "suite.toml"
    suite.write_text(f'name = "t"\nversion = 1\nseeds = [1]\ncontrollers = ["none"]\nscenarios = ["{scenario}"]\n')
    with hold_folder(tmp_path / "b", what="bench"):  # a bench is writing into b
        bench = CliRunner().invoke(main, ["bench", str(suite), "--out", str(tmp_path / "b"), "--jobs", "1"])
        assert bench.exit_code == 2 and "another greenwave bench (process" in bench.output, bench.output
        assert not (tmp_path / "b").exists()
        # nor into one of its run folders (a run there and the bench's run spoiled each other)
        inside = tmp_path / "b" / "runs" / "tiny" / "none-s1"
        busy = CliRunner().invoke(main, ["run", str(scenario), "--out", str(inside)])
        assert busy.exit_code == 2 and f"--out '{inside}' is inside '{tmp_path / 'b'}', which another greenwave " \
            f"bench (process {os.getpid()}) is writing into" in busy.output, busy.output
        # nor a bench into a folder holding a run going on
        with hold_folder(tmp_path / "c" / "runs" / "x"):
            bench = CliRunner().invoke(main, ["bench", str(suite), "--out", str(tmp_path / "c"), "--jobs", "1"])
            assert bench.exit_code == 2 and f"--out '{(tmp_path / 'c').resolve()}' holds " \
                f"'{(tmp_path / 'c' / 'runs' / 'x').resolve()}', which another greenwave run" in bench.output, \
                bench.output
        # (a serve's audit log in its own --out: the same process)
        with hold_folder(tmp_path / "b" / "audit.sqlite", "--audit-db", "serve", noun="audit log", inside_own=True):
            pass
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    run_ok(["run", str(scenario), "--controller", "oracle", "--out", str(out)])  # once it has ended


def test_a_rerun_keeps_the_users_files_and_what_it_cannot_set_aside_it_says(
    tmp_path: Path, tiny_net: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import signal
    import threading

    import controller.cli as cli

    cfg = tmp_path / "run.sumocfg"
    cfg.write_text(f'<configuration><input><net-file value="{tiny_net}"/></input>'
                   '<time><begin value="0"/><end value="150"/></time></configuration>')
    out = tmp_path / "runs" / "o"
    args = ["run", "--sumocfg", str(cfg), "--ev", "left1A1,C1right1,10", "--out", str(out)]
    run_ok(args)
    # a folder of the user's own that the new run writes into too: both recordings stay (the
    # set-aside folder was deleted whole where the new run had a name of its own)
    (out / "recs").mkdir()
    (out / "recs" / "yesterday.jsonl").write_text("mine")
    run_ok([*args, "--record", str(out / "recs" / "today.jsonl")])
    assert sorted(p.name for p in (out / "recs").iterdir()) == ["today.jsonl", "yesterday.jsonl"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["o"]
    # SIGTERM while preparing (the handler was set only once the simulation started: the
    # process died with the previous run still set aside)
    assert threading.current_thread() is threading.main_thread()  # (where the handler can be set)
    before = (out / "summary.json").read_bytes()
    import controller.runtime.setup as setup_module  # (run() imports prepare_sumocfg from it when called)

    def terminated(*a: object, **k: object) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        threading.Event().wait(5.0)  # (the handler raises here)
        raise AssertionError("SIGTERM did not interrupt the preparation")

    monkeypatch.setattr(setup_module, "prepare_sumocfg", terminated)
    result = CliRunner().invoke(main, args)
    monkeypatch.undo()
    assert result.exit_code == 143 and f"the previous run in '{out}' is kept as it was" in result.output, result.output
    assert (out / "summary.json").read_bytes() == before and sorted(p.name for p in out.parent.iterdir()) == ["o"]
    # interrupted while the previous run's files are being moved back: nothing is put back over
    # the new run, and the files still aside stay there (they were deleted with the new run)
    def interrupted(*a: object, **k: object) -> list[str]:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_move_back", interrupted)
    result = CliRunner().invoke(main, args)
    monkeypatch.undo()
    assert result.exit_code == 130 and "kept as it was" not in result.output, result.output
    aside = [p for p in out.parent.iterdir() if p.name != "o"]
    assert len(aside) == 1 and (aside[0] / "recs" / "yesterday.jsonl").read_text() == "mine"
    assert (out / "INCOMPLETE.txt").is_file()
    # what a run killed while preparing left aside (SIGKILL: nothing could put it back) is named;
    # not what a run under way has set aside
    for left in aside:
        shutil.rmtree(left)
    (out.parent / ".o.previous-999999999").mkdir()
    (out.parent / f".o.previous-{os.getpid()}").mkdir()
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert f"'{out.parent / '.o.previous-999999999'}' holds an earlier run of '{out}'" in result.output
    assert f".o.previous-{os.getpid()}' holds" not in result.output
    # a configuration whose network lies in the folder: replaced in place (as before), and said
    net = out / "mynet.net.xml"
    net.write_bytes(tiny_net.read_bytes())
    inside = tmp_path / "inside.sumocfg"
    inside.write_text(f'<configuration><input><net-file value="{net}"/></input>'
                      '<time><begin value="0"/><end value="150"/></time></configuration>')
    result = CliRunner().invoke(main, ["run", "--sumocfg", str(inside), "--ev", "left1A1,C1right1,10",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"the previous run in '{out}' is replaced in place (it holds the run's input files)" in result.output


@pytest.mark.parametrize(("sig", "code", "said", "to_group"), [
    (signal.SIGINT, 130, "greenwave: interrupted", False), (signal.SIGTERM, 143, "greenwave: terminated", False),
    (signal.SIGHUP, 129, "greenwave: terminated (SIGHUP)", False),
    # a terminal's Ctrl-C or hang-up reaches its whole process group: SUMO, greenwave's child,
    # ended at once on it, the hand-back lost (its own session now)
    (signal.SIGINT, 130, "greenwave: interrupted", True), (signal.SIGHUP, 129, "greenwave: terminated (SIGHUP)", True)])
def test_ctrl_c_over_traci_waits_for_the_step_then_hands_back(tmp_path: Path, tiny_net: Path, sig: int, code: int,
                                                             said: str, to_group: bool) -> None:
    # over TraCI the signal nearly always came while greenwave waited for a step's answer: the
    # hand-back then read the rest of that answer as its own (struct.error, a traceback, exit 1),
    # or both sides waited for ever
    demand = '[demand]\nlevel = "heavy"\ngenerator = "random_trips"\nvehicles_per_hour = 1500\n'
    scenario = write_scenario(tmp_path / "long.toml", tiny_net, demand=demand, end_s=3600)
    exit_code, output = interrupt_mid_run(["run", str(scenario), "--backend", "traci", "--out", str(tmp_path / "o")],
                                          sig, REPO, to_group=to_group)
    assert exit_code == code and "Traceback" not in output, output
    assert f"{said}; signals handed back, SUMO closed, no summary written" in output
    assert not (tmp_path / "o" / "summary.json").exists()
    # (SIGHUP, a terminal or an SSH session closing, killed the run: no hand-back, and SUMO's
    # outputs cut off under their final names, with no INCOMPLETE.txt)
    assert (tmp_path / "o" / "INCOMPLETE.txt").is_file() and (tmp_path / "o" / "tripinfo.partial.xml").is_file()
    assert not (tmp_path / "o" / "tripinfo.xml").exists()
    # SUMO was closed by greenwave, not killed by the signal: its outputs of the part that ran are whole
    ET.parse(tmp_path / "o" / "tripinfo.partial.xml")
    ET.parse(tmp_path / "o" / "statistics.partial.xml")


def test_a_run_killed_mid_way_leaves_its_folder_marked(tmp_path: Path, tiny_net: Path) -> None:
    # SIGKILL (the OOM killer) mid-run: nothing can be done then, and SUMO's outputs were left cut
    # off under their own names with nothing to say so; the folder is marked from the start
    demand = '[demand]\nlevel = "heavy"\ngenerator = "random_trips"\nvehicles_per_hour = 1500\n'
    scenario = write_scenario(tmp_path / "long.toml", tiny_net, demand=demand, end_s=3600)
    out = tmp_path / "o"
    exit_code, output = interrupt_mid_run(["run", str(scenario), "--out", str(out)], signal.SIGKILL, REPO)
    assert exit_code == -signal.SIGKILL, output
    note = (out / "INCOMPLETE.txt").read_text()
    assert "This run is in progress" in note and "if it is here and that process is gone, the run was killed" in note
    assert not (out / "summary.json").exists()


def test_an_interrupted_run_leaves_no_output_that_looks_complete(scenario: Path, tmp_path: Path) -> None:
    # a complete run first, then one interrupted into the same folder: its SUMO outputs (a
    # tripinfo closed properly, statistics) cover part of the time only
    from controller.runtime.run import run
    from controller.runtime.setup import prepare_scenario
    from controller.scenario import load_scenario

    out = tmp_path / "o"
    run_ok(["run", str(scenario), "--controller", "none", "--out", str(out)])
    assert (out / "tripinfo.xml").is_file() and not (out / "INCOMPLETE.txt").exists()

    def stop_at_100_s(t_s: float, done: int) -> None:
        if t_s >= 100:
            raise KeyboardInterrupt

    setup = prepare_scenario(load_scenario(scenario), seed=1, out_dir=out)
    with pytest.raises(KeyboardInterrupt):
        run(setup, "greenwave", on_progress=stop_at_100_s)
    assert not (out / "summary.json").exists() and not (out / "tripinfo.xml").exists()
    assert not (out / "statistics.xml").exists()
    assert (out / "tripinfo.partial.xml").is_file() and (out / "statistics.partial.xml").is_file()
    assert "did not complete (interrupted (Ctrl-C, SIGTERM or SIGHUP))" in (out / "INCOMPLETE.txt").read_text()
    # the next complete run into the folder clears both
    run_ok(["run", str(scenario), "--controller", "none", "--out", str(out)])
    assert not (out / "INCOMPLETE.txt").exists() and not (out / "tripinfo.partial.xml").exists()
    assert (out / "tripinfo.xml").is_file() and (out / "summary.json").is_file()
    # a run that fails before SUMO starts does not pass the earlier run's outputs off as its own part
    with pytest.raises(GreenwaveError, match="unknown controller"):
        run(setup, "bogus")
    assert not (out / "tripinfo.xml").exists() and not (out / "tripinfo.partial.xml").exists()
    assert "SUMO wrote no outputs here" in (out / "INCOMPLETE.txt").read_text()


def test_a_free_flow_run_that_fails_costs_the_ratio_not_the_run(
    scenario: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import controller.runtime.run as run_module
    from controller.errors import SimulationError

    def failing(*args: object, **kwargs: object) -> dict[str, float]:
        raise SimulationError("free-flow run: 'ev' did not arrive on an empty network")

    monkeypatch.setattr(run_module, "free_flow_times", failing)
    out = tmp_path / "f"
    result = CliRunner().invoke(main, ["run", str(scenario), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "free-flow times not measured" in result.output
    s = json.loads((out / "summary.json").read_text())
    assert s["free_flow_error"].startswith("free-flow run:") and s["evs"][0]["travel_time"] is not None
    assert s["evs"][0]["free_flow_time"] is None and s["evs"][0]["ratio_to_free_flow"] is None
    assert not (out / "INCOMPLETE.txt").exists()


def test_a_signal_the_drain_limit_leaves_switched_is_listed_unrestored_and_counted_s5(
    tiny_net: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the run ends with the EV mid-route (no time to wait for it) and no time to finish the
    # hand-backs: the monitor counted S5, but summary.json had no record of the signal
    import controller.runtime.run as run_module

    monkeypatch.setattr(run_module, "MAX_EXTENSION_S", 0.0)
    monkeypatch.setattr(run_module, "DRAIN_LIMIT_S", 0.0)
    path = write_scenario(tmp_path / "s.toml", tiny_net, end_s=30)
    out = tmp_path / "o"
    result = CliRunner().invoke(main, ["run", str(path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    s = json.loads((out / "summary.json").read_text())
    open_ = [r for r in s["preemptions"] if r["restored"] is None]
    assert open_ and all(r["preempted_s"] is None and r["entry"] is not None for r in open_)
    assert s["safety"]["S5"] >= len({r["tls"] for r in open_})


def test_a_bluelight_run_says_so(scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    result = CliRunner().invoke(main, ["run", str(scenario), "--bluelight", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "bluelight device (may pass red)" in " ".join(result.output.split())
    assert json.loads((out / "summary.json").read_text())["bluelight"] is True
    plain = CliRunner().invoke(main, ["run", str(scenario), "--out", str(tmp_path / "p")])
    assert plain.exit_code == 0 and "bluelight device" not in plain.output


def test_same_seed_same_result_on_both_backends(scenario: Path, tmp_path: Path) -> None:
    a = run_ok(["run", str(scenario), "--seed", "4", "--out", str(tmp_path / "a")])
    b = run_ok(["run", str(scenario), "--seed", "4", "--backend", "traci", "--out", str(tmp_path / "b")])
    assert a["evs"][0]["travel_time"] == b["evs"][0]["travel_time"]
    assert a["background"] == b["background"]
    assert b["backend"] == "traci"


def test_signals_handed_back_when_the_run_fails(tiny_net: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    restored: list[str] = []
    original = SumoAdapter.restore_all

    def spy(self: SumoAdapter) -> list[str]:
        got = original(self)
        restored.extend(got)
        return got

    monkeypatch.setattr(SumoAdapter, "restore_all", spy)
    with pytest.raises(RuntimeError, match="controller failed"), SumoAdapter(["--net-file", str(tiny_net)]) as sim:
        sim.watch_signals(["B1"])
        sim.step()
        n = len(sim.step().signals["B1"].state)
        sim.apply([SignalCommand("B1", "set_state", state="r" * n)])
        assert sim.step().signals["B1"].program_id == "online"
        assert sim.preempted == ("B1",)
        raise RuntimeError("controller failed")
    assert restored == ["B1"]


@pytest.mark.parametrize("backend", ["libsumo", "traci"])
def test_a_switched_signal_reports_the_links_with_a_vehicle_on_the_crossing(tiny_net: Path, backend: str) -> None:
    # What the planner's all-red extension waits on, read only while the signal is switched: an
    # 18 m vehicle turning left at B1 (link 11, A1B1 -> B1B2, over two internal lanes) is
    # reported on its link from its first internal lane to the moment its rear has left the
    # junction, with the links SUMO says cross its path: the opposing through (link 4, C1B1 ->
    # B1A1) among them, the right turn from B2 (link 0) not.
    with SumoAdapter(["--net-file", str(tiny_net)], backend="traci" if backend == "traci" else "libsumo") as sim:
        sim.watch_signals(["B1"])
        api = sim._api
        api.vehicletype.copy("DEFAULT_VEHTYPE", "long")
        api.vehicletype.setLength("long", 18.0)
        sim.add_vehicle("v", ["A1B1", "B1B2"], "long")
        sim.watch_vehicle("v")
        links = [i for i, ls in enumerate(api.trafficlight.getControlledLinks("B1"))
                 if any(link[0] == "A1B1_0" and link[1] == "B1B2_0" for link in ls)]
        assert links == [11]
        ew_green = next(p.state for p in api.trafficlight.getAllProgramLogics("B1")[0].phases if p.state[11] in "Gg")
        seen: set[str] = set()
        for _ in range(200):
            snap = sim.step()
            v = snap.vehicles.get("v")
            sig = snap.signals["B1"]
            if sig.program_id != "online":
                assert sig.occupied == ()  # running its program: not read
                if v is not None and v.road_id == "A1B1" and v.lane_pos_m > 80.0:
                    sim.apply([SignalCommand("B1", "set_state", state=ew_green)])  # switched: its crossings read
                continue
            if v is not None and (v.on_junction or v.lane_pos_m < 18.0 - 0.5):
                assert [link for link, _ in sig.occupied] == [11], (v, sig.occupied)
                foes = dict(sig.occupied)[11]
                assert 4 in foes and 0 not in foes and 11 not in foes
                seen.add(v.lane_id if v.on_junction else "rear inside")
            elif seen:
                assert sig.occupied == ()  # it has left the crossing
                break
        assert seen == {":B1_11_0", ":B1_15_0", "rear inside"}


def test_an_escorted_vehicle_is_predicted_at_its_own_speed_factor(tmp_path: Path, tiny_net: Path) -> None:
    # the vehicle's own speed factor (1.6) is not its type's (1): predicted at the type's, it was
    # 15.9 s late on average on the 5x5 grid, its greens shown as it crossed (the online
    # correction learns only delays). Here: bias 4.9 s, p90 10.7 s, 14 % of arrivals within the
    # band; at the factor SUMO drew, 1.3 s, 2.2 s, 83 %
    routes = tmp_path / "fast.rou.xml"
    routes.write_text(
        '<routes><vType id="amb" vClass="emergency" speedFactor="1" speedDev="0" maxSpeed="50"/>'
        '<vehicle id="fast" type="amb" depart="10" speedFactor="1.6" departSpeed="max">'
        '<route edges="left1A1 A1B1 B1C1 C1right1"/></vehicle></routes>')
    cfg = tmp_path / "fast.sumocfg"
    cfg.write_text(f'<configuration><input><net-file value="{tiny_net}"/><route-files value="{routes}"/></input>'
                   '<time><begin value="0"/><end value="200"/></time></configuration>')
    summary = run_ok(["run", "--sumocfg", str(cfg), "--escort", "fast", "--out", str(tmp_path / "out")])
    [ev] = summary["evs"]
    assert ev["arrived"] and ev["preempted"] == 3 and ev["stops_at_signals"] == 0
    eta = summary["eta"]
    assert abs(eta["bias_s"]) < 2.5 and eta["abs_error_p90"] < 4.0 and eta["band_coverage"] > 0.6, eta


def test_vehicles_of_the_route_files_are_escorted_along_their_own_routes(tmp_path: Path, tiny_net: Path) -> None:
    # a traffic engineer's configuration with its own emergency vehicles: --escort follows them as
    # SUMO inserts them (not a second copy), with their own type (the free flow too) and insertion
    routes = tmp_path / "city.rou.xml"
    routes.write_text(
        '<routes><vType id="slowamb" vClass="emergency" maxSpeed="6" speedFactor="1" speedDev="0"/>'
        '<route id="r1" edges="left1A1 A1B1 B1C1 C1right1"/>'
        '<flow id="bg" begin="0" end="300" period="4" from="left1A1" to="C1right1"/>'
        '<flow id="cross" begin="0" end="300" period="5" from="bottom1B0" to="B2top1"/>'
        '<vehicle id="amb7" type="slowamb" depart="60" route="r1" departSpeed="max"/>'
        '<vehicle id="lost" depart="50" route="r1"/>'  # (out of departure order: SUMO ignores it)
        '<trip id="t1" depart="65" from="left1A1" to="C1right1"/>'
        '<vehicle id="s1" depart="80" route="r1"><stop edge="B1C1" duration="5"/></vehicle>'
        '<vehicle id="half" depart="90" speedFactor="0.5"><route edges="left0A0 A0B0 B0C0 C0right0"/></vehicle>'
        "</routes>")
    cfg = tmp_path / "city.sumocfg"
    cfg.write_text(f'<configuration><input><net-file value="{tiny_net}"/><route-files value="{routes}"/></input>'
                   '<time><begin value="0"/><end value="400"/></time></configuration>')
    runs = {}
    for controller in ("greenwave", "none"):
        out = tmp_path / controller
        runs[controller] = run_ok(["run", "--sumocfg", str(cfg), "--escort", "amb7", "--escort", "t1,police",
                                   "--escort", "half", "--escort", "lost", "--controller", controller,
                                   "--out", str(out)])
        infos = list(ET.parse(out / "tripinfo.xml").getroot().iter("tripinfo"))
        trips = [t.get("id") for t in infos]
        assert trips.count("amb7") == 1 and trips.count("t1") == 1  # SUMO's own, not another added
        # (the other traffic: every trip to the end but those escorted)
        assert runs[controller]["background"]["trips"] == sum(
            1 for t in infos if t.get("id") not in ("amb7", "t1", "half") and float(t.get("arrival", 0)) <= 400)
        # one SUMO did not load: said, its escort ended at its departure (not held to the end + 1800 s)
        lost = runs[controller]["evs"][3]
        assert (lost["id"], lost["depart"], lost["vanished"]) == ("lost", None, 51.0)
        assert any("EV 'lost' (--escort) was not inserted" in n for n in runs[controller]["notes"])
        # (switched for before its departure, as planned, and handed back at it: not served after)
        assert all(r["exit"] <= 52 and r["exit_reason"] == "not inserted by SUMO"
                   for r in runs[controller].get("preemptions", []) if r["ev"] == "lost")
        assert runs[controller]["simulated_until"] <= 410
    gw, none = ({e["id"]: e for e in runs[c]["evs"]} for c in ("greenwave", "none"))
    amb, trip = gw["amb7"], gw["t1"]
    assert (amb["type"], amb["vehicle_type"], amb["from_route_files"], amb["dispatched"]) == (
        "ambulance", "slowamb", True, 60.0)
    assert (trip["type"], trip["vehicle_type"], trip["dispatched"]) == ("police", "DEFAULT_VEHTYPE", 65.0)
    # its own type, in the run and in the free-flow run: 600 m at 6 m/s (SUMO's default type: 46 s)
    assert amb["free_flow_time"] >= 100 and amb["travel_time"] >= amb["free_flow_time"]
    assert trip["free_flow_time"] < 60
    # the free flow as SUMO inserts it (at its default speed, not TraCI's 0) and with the speed
    # factor it drew (0.5, the vehicle's own): a few seconds short of it gave negative delays
    half = gw["half"]
    assert half["free_flow_time"] > 80 and half["delay"] >= 0 and trip["delay"] >= 0
    for ev in (amb, trip):
        assert ev["arrived"] and ev["tls"] == ["A1", "B1", "C1"] and ev["preempted"] == 3
        assert none[ev["id"]]["preempted"] == 0 and none[ev["id"]]["travel_time"] >= ev["travel_time"]
    assert gw["t1"]["stops_at_signals"] == 0 and none["t1"]["stops_at_signals"] >= 1
    assert sum(runs["greenwave"]["safety"][k] for k in ("S1", "S2", "S3", "S4", "S5")) == 0
    # an emergency vehicle of the route files not escorted is named: it runs as other traffic
    assert not any("emergency vehicle type" in n for n in runs["greenwave"]["notes"])
    added = run_ok(["run", "--sumocfg", str(cfg), "--ev", "left1A1,C1right1,20", "--out", str(tmp_path / "added")])
    assert any(n.startswith("1 vehicle(s), trip(s) or flow(s) of the route files have an emergency vehicle type "
                            "('amb7'): they run as other traffic unless escorted (--escort VEHICLE")
               for n in added["notes"])
    # what cannot be escorted is refused before anything runs, naming the file and why
    for vehicle, why in (("s1", "its vehicle has stops"), ("bg", "its flow is not a <vehicle> or <trip>"),
                         ("nope", "no vehicle of that id")):
        out = tmp_path / f"refused-{vehicle}"
        result = CliRunner().invoke(main, ["run", "--sumocfg", str(cfg), "--escort", vehicle, "--out", str(out)])
        assert result.exit_code == 2 and why in result.output and "Traceback" not in result.output, result.output
        assert not (out / "summary.json").exists()
    twice = CliRunner().invoke(main, ["run", "--sumocfg", str(cfg), "--escort", "amb7",
                                      "--ev", "left1A1,C1right1,20,fire,amb7", "--out", str(tmp_path / "twice")])
    assert twice.exit_code == 2 and "EV id 'amb7' is given twice: --escort 'amb7'" in twice.output
    twice = CliRunner().invoke(main, ["run", "--sumocfg", str(cfg), "--escort", "amb7", "--escort", "amb7,fire",
                                      "--out", str(tmp_path / "twice")])
    assert twice.exit_code == 2 and "--escort 'amb7' is given twice" in twice.output
    # a scenario file's [[escort]]: the same run as --escort
    scenario = tmp_path / "city.toml"
    scenario.write_text(f'name = "city"\n[network]\nnet = "{tiny_net}"\n[demand]\nroutes = ["{routes}"]\n'
                        '[simulation]\nbegin_s = 0\nend_s = 400\n'
                        '[[escort]]\nvehicle = "amb7"\n[[escort]]\nvehicle = "t1"\ntype = "police"\n'
                        '[[escort]]\nvehicle = "half"\n[[escort]]\nvehicle = "lost"\n')
    from_file = run_ok(["run", str(scenario), "--out", str(tmp_path / "from-file")])
    assert from_file["evs"] == runs["greenwave"]["evs"]
    scenario.write_text(scenario.read_text().replace('vehicle = "t1"', 'vehicle = "s1"'))
    refused = CliRunner().invoke(main, ["run", str(scenario), "--out", str(tmp_path / "refused-file")])
    assert refused.exit_code == 2 and "city.toml: field 'escort[1]': vehicle 's1': " in refused.output
    assert "its vehicle has stops" in refused.output


def test_user_config_folder_is_left_untouched(tmp_path: Path, tiny_net: Path) -> None:
    user = tmp_path / "user"
    user.mkdir()
    (user / "net.net.xml").write_bytes(tiny_net.read_bytes())
    (user / "det.add.xml").write_text(
        '<additional><e1Detector id="d" lane="A1B1_0" pos="50" freq="60" file="det_out.xml"/></additional>'
    )
    (user / "run.sumocfg").write_text(
        '<configuration><input><net-file value="net.net.xml"/><additional-files value="det.add.xml"/></input>'
        '<output><tripinfo-output value="trips.xml"/><summary-output value="sum.xml"/></output>'
        '<report><log value="log.txt"/></report><time><begin value="0"/><end value="200"/></time>'
        # (a TraCI server for other clients: SUMO waited for a second client for ever)
        '<traci_server><remote-port value="8813"/><num-clients value="2"/></traci_server>'
        # (relative to this folder, as SUMO reads it: "File 'view.xml' is not accessible")
        '<gui_only><gui-settings-file value="view.xml"/></gui_only>'
        "</configuration>"
    )
    (user / "view.xml").write_text('<viewsettings><delay value="0"/></viewsettings>')
    before = sorted(p.name for p in user.iterdir())
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", "--sumocfg", str(user / "run.sumocfg"), "--ev", "left1A1,C1right1,20",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    # said, not silently dropped (the log option is one too)
    assert "output, console report and TraCI server options are not used" in result.output
    assert "summary-output" in result.output and "num-clients" in result.output
    s = json.loads((out / "summary.json").read_text())
    assert sorted(p.name for p in user.iterdir()) == before
    assert (out / "outputs" / "det_out.xml").is_file()
    assert s["evs"][0]["arrival"] is not None
    assert s["end"] == 200
    # an emergency departing at or after the configuration's end: named, not a silently longer run
    late = CliRunner().invoke(main, ["run", "--sumocfg", str(user / "run.sumocfg"), "--ev", "left1A1,C1right1,250",
                                     "--out", str(tmp_path / "late")])
    assert late.exit_code == 2 and "departs at 250 s, not before the configuration's end (200 s)" in late.output
    assert "--end" in late.output and not (tmp_path / "late" / "summary.json").exists()
    # SUMO's end -1 is no end: the run ends 1800 s after the last emergency departs
    from controller.runtime.setup import prepare_sumocfg
    from controller.scenario import EvSpec

    (user / "noend.sumocfg").write_text(
        '<configuration><input><net-file value="net.net.xml"/></input><time><end value="-1"/></time></configuration>'
    )
    spec = EvSpec.model_validate({"id": "e1", "from": "left1A1", "to": "C1right1", "depart_s": 250.0})
    setup = prepare_sumocfg(user / "noend.sumocfg", [spec], seed=1, out_dir=tmp_path / "noend")
    assert setup.end_s == 250.0 + 1800.0
    # which EV, and which of its edges, is wrong; every EV's departure is checked, not only the last
    cfg = str(user / "run.sumocfg")
    bad = CliRunner().invoke(main, ["run", "--sumocfg", cfg, "--ev", "left1A1,C1right1,20", "--ev", "left1A1,NOPE,30",
                                    "--out", str(tmp_path / "bad")])
    assert bad.exit_code == 2
    assert "EV 'ev2' (from left1A1 to NOPE, departing at 30 s): to edge 'NOPE' is not in network" in bad.output
    early = CliRunner().invoke(main, ["run", "--sumocfg", str(user / "noend.sumocfg"), "--end", "100",
                                      "--ev", "left1A1,C1right1,30", "--ev", "left1A1,C1right1,120",
                                      "--out", str(tmp_path / "early")])
    assert early.exit_code == 2 and "EV 'ev2' departs at 120 s, outside the simulation [0, 100) s" in early.output
    negative = CliRunner().invoke(main, ["run", "--sumocfg", cfg, "--ev", "left1A1,C1right1,-5"])
    assert negative.exit_code == 2 and "DEPART '-5' must be a finite number of seconds, 0 or more" in negative.output
    # an EV id that a vehicle of the route files has: named before the run; --ev's ID avoids it
    (user / "cars.rou.xml").write_text('<routes><trip id="ev1" depart="5" from="left1A1" to="C1right1"/></routes>')
    (user / "cars.sumocfg").write_text(
        '<configuration><input><net-file value="net.net.xml"/><route-files value="cars.rou.xml"/></input>'
        '<time><begin value="0"/><end value="150"/></time></configuration>')
    clash = CliRunner().invoke(main, ["run", "--sumocfg", str(user / "cars.sumocfg"), "--ev", "left1A1,C1right1,20",
                                      "--out", str(tmp_path / "clash")])
    assert clash.exit_code == 2 and "cars.rou.xml: a trip 'ev1' is there already" in clash.output, clash.output
    s = run_ok(["run", "--sumocfg", str(user / "cars.sumocfg"), "--ev", "left1A1,C1right1,20,fire,amb-7",
                "--out", str(tmp_path / "named")])
    assert [(e["id"], e["type"]) for e in s["evs"]] == [("amb-7", "fire")] and s["evs"][0]["arrival"] is not None
    # in a scenario file: its [[ev]] entry is named (it was told of --ev's syntax)
    scenario = user / "cars.toml"
    scenario.write_text('name = "cars"\n[network]\nsumocfg = "cars.sumocfg"\n[simulation]\nend_s = 150\n'
                        '[[ev]]\nid = "amb"\nfrom = "left1A1"\nto = "C1right1"\ndepart_s = 20\n'
                        '[[ev]]\nid = "ev1"\nfrom = "left1A1"\nto = "C1right1"\ndepart_s = 30\n')
    clash = CliRunner().invoke(main, ["run", str(scenario), "--out", str(tmp_path / "clash")])
    said = " ".join(clash.output.split())
    assert clash.exit_code == 2 and f"{scenario}: field 'ev[1].id': a trip 'ev1' of " in said, said
    assert "cars.rou.xml has it already: give the EV another id" in said and "--ev" not in said
    # a window outside the configuration's (an empty city, "background: 0 trips", reported as clean)
    (user / "later.sumocfg").write_text((user / "cars.sumocfg").read_text().replace(
        '<begin value="0"/><end value="150"/>', '<begin value="1000"/><end value="1150"/>'))
    scenario.write_text('name = "later"\n[network]\nsumocfg = "later.sumocfg"\n[simulation]\nend_s = 150\n'
                        '[[ev]]\nid = "amb"\nfrom = "left1A1"\nto = "C1right1"\ndepart_s = 20\n')
    outside = CliRunner().invoke(main, ["run", str(scenario), "--out", str(tmp_path / "outside")])
    said = " ".join(outside.output.split())
    assert outside.exit_code == 2 and f"{scenario}: field 'simulation': the window [0, 150) s lies outside its " \
        "configuration's [1000, 1150) s (later.sumocfg)" in said, said


def test_paced_run_follows_the_wall_clock_and_reports_jitter(scenario: Path, tmp_path: Path) -> None:
    s = run_ok(["run", str(scenario), "--speed", "100", "--budget-ms", "50", "--out", str(tmp_path / "a")])
    rt = s["realtime"]
    span = s["simulated_until"] - s["begin"]
    assert rt["paced_speed"] == 100.0 and rt["jitter_ms_p50"] is not None and rt["jitter_ms_max"] >= 0
    assert rt["wall_s"] >= 0.9 * span / 100.0  # it did wait for the clock
    assert 0 < rt["achieved_speed"] <= 100.0 * 1.01  # (never faster than asked)
    # a run that could not keep pace says so (it printed only the ticks' "jitter")
    from rich.console import Console

    from controller.cli import print_summary

    console = Console(record=True, width=200)
    print_summary({**s, "realtime": {**rt, "achieved_speed": 80.0, "jitter_ms_max": 3031.4}}, tmp_path, console)
    assert "note: the run could not keep pace x100: it went at x80, its ticks starting up to 3.0 s late" \
        in console.export_text()
    console = Console(record=True, width=200)
    print_summary({**s, "realtime": {**rt, "achieved_speed": 99.9, "jitter_ms_max": 12.0}}, tmp_path, console)
    assert "could not keep pace" not in console.export_text()
    assert rt["budget_ms"] == 50.0 and rt["over_budget"] == 0
    fast = run_ok(["run", str(scenario), "--speed", "200", "--out", str(tmp_path / "c")])["realtime"]
    assert fast["budget_ms"] == 5.0  # no --budget-ms: the wall time a tick has at 200 x (serve counts it so)
    assert rt["read_ms_p50"] is not None and rt["read_ms_p50"] <= rt["tick_ms_p50"]
    assert rt["watched_max"]["signals"] >= 1
    result = CliRunner().invoke(main, ["run", str(scenario), "--realtime", "--speed", "2",
                                       "--out", str(tmp_path / "b")])
    assert result.exit_code == 2 and "--realtime or --speed" in result.output


def test_gui_without_a_display_and_a_run_without_a_scenario_are_named(
    scenario: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    result = CliRunner().invoke(main, ["run", str(scenario), "--gui", "--out", str(tmp_path / "g")])
    assert result.exit_code == 2 and "--gui needs a display" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "g").exists()  # (checked before the run)
    result = CliRunner().invoke(main, ["run"])
    assert result.exit_code == 2 and "give a SCENARIO file, or --sumocfg FILE" in result.output
    assert "not both" not in result.output


def test_over_traci_sumo_warnings_are_shown_as_they_come(tiny_net: Path, capfd: pytest.CaptureFixture[str]) -> None:
    # SUMO runs as its own process over TraCI, its stderr kept in a file: what it warns of while
    # running reaches greenwave's stderr by the next step, as it does in-process with libsumo
    # (it used to be shown only once SUMO had closed).
    with SumoAdapter(["--net-file", str(tiny_net), "--no-step-log", "true"], backend="traci") as sim:
        sim.add_vehicle("v", ["A1B1", "B1B2"], "DEFAULT_VEHTYPE")
        sim.watch_vehicle("v")
        for _ in range(20):
            v = sim.step().vehicles.get("v")
            if v is not None and v.speed_mps > 8.0:
                break
        assert v is not None and v.speed_mps > 8.0
        assert "emergency braking" not in capfd.readouterr().err
        sim._api.vehicle.setSpeedMode("v", 0)
        sim._api.vehicle.setSpeed("v", 0.0)  # from over 8 m/s to 0 in one step
        sim.step()
        sim.step()
        assert "Vehicle 'v' performs emergency braking" in capfd.readouterr().err


@pytest.mark.parametrize("backend", ["libsumo", "traci"])
def test_a_vehicle_sumo_refused_can_be_added_again_under_its_id(tiny_net: Path,
                                                                backend: Literal["libsumo", "traci"]) -> None:
    # SUMO keeps the route it was given for a vehicle it then refuses (TraCI cannot remove a
    # route): the next try with that vehicle id (the API's next default escort id) was refused
    # for the route id alone
    with SumoAdapter(["--net-file", str(tiny_net), "--no-step-log", "true"], backend=backend) as sim:
        with pytest.raises(SimulationError, match=r"SUMO refused vehicle 'v'"):
            sim.add_vehicle("v", ["A1B1", "B1B2"], "no_such_type")
        sim.add_vehicle("v", ["A1B1", "B1B2"], "DEFAULT_VEHTYPE")
        sim.watch_vehicle("v")
        assert any("v" in sim.step().vehicles for _ in range(5))


@pytest.mark.parametrize("backend", ["libsumo", "traci"])
def test_a_vehicle_added_and_not_yet_on_the_road_can_be_taken_out(tiny_net: Path,
                                                                  backend: Literal["libsumo", "traci"]) -> None:
    # (a service's cancel right after its dispatch: SUMO's pending list does not show a vehicle
    # added since the last step, and the vehicle was left to depart, unescorted)
    with SumoAdapter(["--net-file", str(tiny_net), "--no-step-log", "true"], backend=backend) as sim:
        sim.add_vehicle("gone", ["A1B1", "B1B2"], "DEFAULT_VEHTYPE")
        sim.add_vehicle("stays", ["B1B2"], "DEFAULT_VEHTYPE")
        sim.watch_vehicle("gone")
        sim.watch_vehicle("stays")
        assert sim.remove_pending_vehicle("gone")
        assert any("stays" in sim.step().vehicles for _ in range(3))
        assert not sim.remove_pending_vehicle("stays")  # on the road: it drives on
        assert not any("gone" in sim.step().vehicles for _ in range(10))
        assert not sim.remove_pending_vehicle("never-added")


def test_a_run_going_on_for_its_ev_measures_the_cross_streets_to_the_scenarios_end(
    tiny_net: Path, tmp_path: Path
) -> None:
    # the EV (departing at 10 s) cannot arrive by 30 s: the run goes on for it, but the cross
    # streets' edge data, like the other trips, covers the scenario's time only
    path = write_scenario(tmp_path / "s.toml", tiny_net, end_s=30)
    s = run_ok(["run", str(path), "--out", str(tmp_path / "o")])
    assert s["simulated_until"] > 40 and s["evs"][0]["arrived"]
    intervals = [(float(i.get("begin", "nan")), float(i.get("end", "nan")))
                 for i in ET.parse(tmp_path / "o" / "cross_streets.xml").getroot().iter("interval")]
    assert intervals == [(0.0, 30.0)]
    assert s["safety"]["collisions_after_end"] == 0
    # the console says which collisions are counted to the end and which over the whole run
    from rich.console import Console

    from controller.cli import print_summary

    s["safety"].update(collisions=1, collisions_after_end=2)
    console = Console(record=True, width=200)
    print_summary(s, tmp_path / "o", console)
    assert "collisions 1 to the end (+2 after it); in the whole run with an EV 0" in console.export_text()
    # on a narrow terminal the EV table's id and figures are whole (they were cut to "amb…", "538…")
    ev = s["evs"][0]
    narrow = Console(record=True, width=40)
    print_summary(s, tmp_path / "o", narrow)
    row = next(line.split() for line in narrow.export_text().splitlines() if line.startswith(ev["id"]))
    assert row[:3] == [ev["id"], f"{ev['depart']:.0f}", f"{ev['travel_time']:.1f}"], row


def test_an_ev_goes_round_a_movement_no_phase_serves_and_is_told_so(tmp_path: Path, tiny_net: Path) -> None:
    # its fastest way (left at B1) is one greenwave cannot give green to: the run was refused
    net = no_left_at_b1(tiny_net, tmp_path / "no-left.net.xml")
    scenario = write_scenario(tmp_path / "s.toml", net, ev='from = "left1A1"\nto = "B2top1"')
    result = CliRunner().invoke(main, ["run", str(scenario), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert ("EV 'amb' does not take the fastest route: traffic light 'B1'" in said
            and "from edge 'A1B1' to 'B1B2'" in said and "the route taken avoids it (" in said), said
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    ev = summary["evs"][0]
    assert ev["arrived"] and summary["safety"]["S1"] == 0
    assert summary["sumo_version"].startswith("SUMO 1.")  # (the figures are that SUMO's)
    # summary.json keeps the note (a bench, which prints no run's console, routed round silently)
    (note,) = [n for n in summary["notes"] if "does not take the fastest route" in n]
    assert note.startswith("EV 'amb' does not take the fastest route: traffic light 'B1'") and note in said
    # the detour as route_length_m counts routes (the crossings too: it counted the edges alone)
    from controller.core.corridor import build_corridor
    from controller.sim.netload import load_network

    fastest = build_corridor(load_network(net), ("left1A1", "A1B1", "B1B2", "B2top1"), unservable=[])
    detour, later = note.split("the route taken avoids it (")[1].split(" s at the speed limits)")[0].split(" m, ")
    assert float(detour) == round(ev["route_length_m"] - fastest.length_m)
    assert float(later) > 0  # (shorter, the turn it takes is slower: the fastest way is the one passed over)
    # a route given edge by edge is the user's: still refused, naming the scenario's field, the
    # EV and the movement
    given = write_scenario(tmp_path / "g.toml", net, ev='route = ["left1A1", "A1B1", "B1B2", "B2top1"]')
    refused = CliRunner().invoke(main, ["run", str(given), "--out", str(tmp_path / "g")])
    said = " ".join(refused.output.split())
    assert refused.exit_code == 2 and "g.toml: field 'ev[0]': EV 'amb'" in said and "'A1B1' to 'B1B2'" in said, said


def test_an_ev_sumo_re_routes_through_a_movement_no_phase_serves_goes_on_with_a_note(
        tmp_path: Path, tiny_net: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # SUMO's rerouter sends the EV, routed round B1's red left turn, back through it: the run
    # stopped with that error (exit 2, every EV's results lost); now the signal is left to its
    # program and the run goes on
    net = no_left_at_b1(tiny_net, tmp_path / "no-left.net.xml")
    rerouter = tmp_path / "rerouter.add.xml"
    rerouter.write_text('<additional><route id="viaLeft" edges="left1A1 A1B1 B1B2 B2top1"/>'
                        '<rerouter id="rr" edges="left1A1" probability="1"><interval begin="0" end="10000">'
                        '<routeProbReroute id="viaLeft" probability="1"/></interval></rerouter>'
                        # past B1, to another destination: B1, behind it, is not named again
                        '<rerouter id="rr2" edges="B1B2" probability="1"><interval begin="0" end="10000">'
                        '<destProbReroute id="C2right2" probability="1"/></interval></rerouter></additional>')
    scenario = write_scenario(tmp_path / "s.toml", net, ev='from = "left1A1"\nto = "B2top1"',
                              additional=f'["{rerouter}"]')
    from controller.core.safety import SafetyMonitor

    judged: set[str] = set()  # the signals the independent monitor judged, read by a spy
    observe = SafetyMonitor.observe

    def spy(self: SafetyMonitor, t_s: float, states: Any) -> None:
        judged.update(tls for tls in states if tls in self.watches)
        observe(self, t_s, states)

    monkeypatch.setattr(SafetyMonitor, "observe", spy)
    result = CliRunner().invoke(main, ["run", str(scenario), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "EV 'amb' was re-routed by SUMO at" in said and "left to its program: traffic light 'B1'" in said, said
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    ev = summary["evs"][0]
    assert ev["arrived"] and ev["reroutes"] == 2 and "B1" not in ev["tls"] and "C2" in ev["tls"]
    assert all(summary["safety"][rule] == 0 for rule in ("S1", "S2", "S3", "S4", "S5"))
    # the monitor judged the signals of the ways SUMO gave it too (it judged the planned route's
    # alone: a violation at C2 went unseen), every signal read
    assert "C2" in judged and len(judged) == summary["safety"]["watched_signals"], judged
    # summary.json keeps both notes, the setup's (routed round B1) and the run's, in that order
    heads = ("EV 'amb' does not take the fastest route: ", "EV 'amb' was re-routed by SUMO at ")
    # (and, the scenario having no demand, that no other vehicle finished a trip)
    notes = summary["notes"]
    assert len(notes) == 3 and all(map(str.startswith, notes, heads)), notes
    assert notes[2].startswith("no other vehicle finished a trip"), notes
