"""greenwave's reading of signal programs against SUMO's own: the controller plans its clearances
from the programs it reads and the safety monitor judges them by the same ones, so a misreading
would go unseen by both. The suite's scenarios, and the additional-file cases the reader handles
(a program replaced, the last one loaded winning, an offset-only tlLogic, an actuated program
without maxDur). (The NDS city's 2,024 signals agree too, checked by hand: its net takes long
to load.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.core.network import program_differences
from controller.runtime.setup import prepare_scenario
from controller.scenario import load_scenario
from controller.sim.adapter import SumoAdapter
from controller.sim.netload import load_network

pytestmark = pytest.mark.sumo

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "corridor"


SCENARIOS = ("grid5-moderate", "arterial-moderate", "ingolstadt7", "ingolstadt21", "bologna")
FILES = {
    "line5 + ev": (DATA / "line5.net.xml", [DATA / "line5_ev.add.xml"]),
    "line5 + ev + ev2": (DATA / "line5.net.xml", [DATA / "line5_ev.add.xml", DATA / "line5_ev2.add.xml"]),
    "line5 + ev2 + ev": (DATA / "line5.net.xml", [DATA / "line5_ev2.add.xml", DATA / "line5_ev.add.xml"]),
    # minDur without maxDur (unlimited in SUMO), a duration below SUMO's millisecond
    "line5 + nomax": (DATA / "line5.net.xml", [DATA / "line5_nomax.add.xml"]),
}


@pytest.mark.parametrize("case", [*SCENARIOS, *FILES])
def test_the_programs_read_are_the_ones_sumo_runs(case: str, tmp_path: Path) -> None:
    if case in FILES:
        net, additional = FILES[case]
        network = load_network(net, additional)
    else:  # the files a run of the scenario gives SUMO
        setup = prepare_scenario(load_scenario(REPO / "scenarios" / f"{case}.toml"), seed=1, out_dir=tmp_path / "run")
        net, additional, network = setup.inputs.net_file, list(setup.inputs.additional_files), setup.network
    args = ["--net-file", str(net), "--no-step-log", "true", "--no-warnings", "true", "--begin", "0"]
    if additional:
        args += ["--additional-files", ",".join(str(a) for a in additional)]
    with SumoAdapter(args, error_log=tmp_path / "errors.log") as sim:
        running = sim.running_programs(network.programs)
    assert set(running) == set(network.programs) and network.programs
    wrong = {tls: d for tls, p in network.programs.items() if (d := program_differences(p, *running[tls]))}
    assert wrong == {}


@pytest.mark.parametrize("backend", ["libsumo", "traci"])
def test_a_signal_sumo_does_not_know_is_a_difference_not_a_traceback(backend: str, tmp_path: Path) -> None:
    # (over TraCI this was a traceback: importing libsumo rebinds traci.exceptions.TraCIException,
    # so the errors caught missed the TraCI client's own)
    net = DATA / "line5.net.xml"
    program = load_network(net).programs["B1"]
    args = ["--net-file", str(net), "--no-step-log", "true", "--no-warnings", "true"]
    with SumoAdapter(args, backend=backend, error_log=tmp_path / "errors.log") as sim:  # type: ignore[arg-type]
        running = sim.running_programs(["B1", "nosuch"])
        assert sim.vehicle_exists("nobody") is False  # the connection is still usable
    assert running["nosuch"] == ("", ())
    assert program_differences(program, *running["B1"]) == []
    assert program_differences(program, *running["nosuch"]) == ["SUMO has no such traffic light"]
