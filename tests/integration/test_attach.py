"""``greenwave run --sumocfg CFG --attach PORT``: driving a SUMO the user started with
``--remote-port``, over TraCI, instead of one greenwave starts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sumolib.miscutils import getFreeSocketPort

import controller.sim.adapter as adapter_module
from controller.cli import main
from controller.runtime.setup import SIMULATION_OPTIONS
from controller.sim.sumo_paths import binary
from tests.helpers import interrupt_mid_run, run_ok, write_scenario

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.sumo

EV = "left1A1,C1right1,60"
NOT_HOST = "is not a host name or an IPv4 address"


def user_config(folder: Path, net: Path, name: str, flows: str, end_s: int) -> Path:
    """A user's configuration ``folder/NAME.sumocfg``: ``net`` and a route file of ``flows``."""
    routes = folder / f"{name}.rou.xml"
    routes.write_text(f"<routes>{flows}</routes>")
    cfg = folder / f"{name}.sumocfg"
    cfg.write_text(f'<configuration><input><net-file value="{net}"/><route-files value="{routes}"/></input>'
                   f'<time><begin value="0"/><end value="{end_s}"/></time></configuration>')
    return cfg


@pytest.fixture
def config(tmp_path: Path, tiny_net: Path) -> Path:
    """The tiny grid with two flows crossing the EV's route."""
    return user_config(tmp_path, tiny_net, "user", '<flow id="f1" begin="0" end="300" vehsPerHour="400" '
                       'from="left1A1" to="C1right1"/><flow id="f2" begin="0" end="300" vehsPerHour="300" '
                       'from="top1B2" to="B0bottom1"/>', 300)


class UserSumo:
    """SUMO as a user starts it: their configuration, a port, outputs of their own."""

    def __init__(self, cfg: Path, *more: str, as_greenwave: bool = True) -> None:
        """``as_greenwave``: with the options greenwave's own SUMO has that change the simulation."""
        self.port = getFreeSocketPort()
        self.trips = cfg.parent / "my-trips.xml"
        same = [f"--{k}={v}" for k, v in SIMULATION_OPTIONS.items()] if as_greenwave else []
        self.proc = subprocess.Popen(
            [str(binary("sumo")), "-c", str(cfg), "--remote-port", str(self.port), "--seed", "1",
             "--tripinfo-output", str(self.trips), "--no-step-log", *same, *more],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=30)
        finally:
            if self.proc.stderr is not None:
                self.proc.stderr.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.wait()


@pytest.fixture
def user_sumo(config: Path) -> Iterator[UserSumo]:
    sumo = UserSumo(config)
    yield sumo
    sumo.stop()


def test_an_attached_sumo_is_driven_as_greenwave_drives_its_own(config: Path, user_sumo: UserSumo,
                                                                 tmp_path: Path) -> None:
    attached = run_ok(["run", "--sumocfg", str(config), "--ev", EV, "--attach", str(user_sumo.port),
                       "--out", str(tmp_path / "attached")])
    assert user_sumo.wait() == 0  # greenwave done: SUMO ended its simulation, as with its last client gone
    own = run_ok(["run", "--sumocfg", str(config), "--ev", EV, "--seed", "1", "--out", str(tmp_path / "own")])

    assert attached["attached"] == f"127.0.0.1:{user_sumo.port}" and attached["backend"] == "traci"
    assert attached["attached_notes"] == []
    assert attached["seed"] == 1  # the SUMO's own (greenwave's --seed was left at its default)
    # the same seed, the same simulation: the EV, the preemptions and the predictions as greenwave's own SUMO had them
    assert attached["evs"] == own["evs"] and attached["preemptions"] == own["preemptions"]
    assert attached["eta"] == own["eta"]
    assert json.loads((tmp_path / "attached" / "trace.json").read_text()) == \
        json.loads((tmp_path / "own" / "trace.json").read_text())
    ev = attached["evs"][0]
    assert ev["arrived"] and ev["preempted"] == 3 and ev["free_flow_time"] is not None
    assert all(attached["safety"][rule] == 0 for rule in ("S1", "S2", "S3", "S4", "S5"))
    assert attached["safety"]["collisions"] == own["safety"]["collisions"]
    # what only the user's SUMO outputs know is not passed off as measured
    assert attached["background"]["trips"] is None and attached["background"]["mean_time_loss"] is None
    assert attached["safety"]["teleports"] is None and own["background"]["trips"] > 0
    # the EV was in the user's own simulation, with the type greenwave gives it
    mine = {t.get("id"): t for t in ET.parse(user_sumo.trips).getroot().iter("tripinfo")}
    assert mine["ev1"].get("vType") == "greenwave_ambulance"
    assert float(mine["ev1"].get("duration", "nan")) == ev["travel_time"]
    assert float(mine["ev1"].get("depart", "nan")) == ev["depart"]
    assert not (tmp_path / "attached" / "tripinfo.xml").exists()
    # its report, the figures not measured shown as such (it failed on the null cross streets)
    report = CliRunner().invoke(main, ["report", str(tmp_path / "attached")])
    assert report.exit_code == 0, report.output


def test_an_attached_sumo_that_simulates_otherwise_gets_a_note(config: Path, tmp_path: Path) -> None:
    # without --collision.check-junctions (greenwave's own SUMO has it) the simulation differs
    sumo = UserSumo(config, as_greenwave=False)
    try:
        result = CliRunner().invoke(main, ["run", "--sumocfg", str(config), "--ev", EV, "--attach", str(sumo.port),
                                           "--out", str(tmp_path / "o")])
        assert result.exit_code == 0, result.output
        note = f"the SUMO at 127.0.0.1:{sumo.port} runs with collision.check-junctions false"
        assert note in " ".join(result.output.split())
        assert json.loads((tmp_path / "o" / "summary.json").read_text())["attached_notes"][0].startswith(note)
        assert sumo.wait() == 0
    finally:
        sumo.stop()
    # other demand than the configuration's: a note too
    other = tmp_path / "other.rou.xml"
    other.write_text('<routes><flow id="g" begin="0" end="300" vehsPerHour="100" from="left1A1" to="C1right1"/>'
                     "</routes>")
    sumo = UserSumo(config, "--route-files", str(other))
    try:
        result = CliRunner().invoke(main, ["run", "--sumocfg", str(config), "--ev", EV, "--attach", str(sumo.port),
                                           "--out", str(tmp_path / "o")])
        assert result.exit_code == 0, result.output
        assert "runs route files other.rou.xml, " in " ".join(result.output.split())
        assert "names user.rou.xml: its demand is its own" in " ".join(result.output.split())
        assert sumo.wait() == 0
    finally:
        sumo.stop()


def test_an_attached_sumo_writes_its_additional_files_outputs_where_they_say(tmp_path: Path, tiny_net: Path) -> None:
    # greenwave's own SUMO gets copies of such files with their outputs moved into --out/outputs;
    # the SUMO the user started loads their own: the copies and an empty outputs/ said otherwise
    edges = tmp_path / "my-edges.add.xml"
    edges.write_text('<additional><edgeData id="e" file="my-edge-data.xml" period="100"/></additional>')
    cfg = user_config(tmp_path, tiny_net, "with-adds", '<flow id="f1" begin="0" end="300" vehsPerHour="400" '
                      'from="left1A1" to="C1right1"/>', 300)
    cfg.write_text(cfg.read_text().replace("</input>", f'<additional-files value="{edges}"/></input>'
                                           '<output><summary-output value="my-summary.xml"/></output>'
                                           '<report><verbose value="true"/></report>'))
    sumo = UserSumo(cfg)
    try:
        summary = run_ok(["run", "--sumocfg", str(cfg), "--ev", EV, "--attach", str(sumo.port),
                          "--out", str(tmp_path / "o")])
        assert sumo.wait() == 0
    finally:
        sumo.stop()
    # the note the console gave is in summary.json too (attached_notes was empty); verbose, a
    # console report, is no output of that SUMO's
    said = ("attached: the SUMO you started writes the configuration's outputs (summary-output) itself; greenwave "
            "writes summary.json and trace.json into --out")
    assert summary["attached_notes"] == [said] and summary["notes"] == [said]
    assert ET.parse(tmp_path / "my-summary.xml").getroot().find("step") is not None
    assert ET.parse(tmp_path / "my-edge-data.xml").getroot().find("interval") is not None
    assert not (tmp_path / "o" / "outputs").exists()
    assert sorted(p.name for p in (tmp_path / "o" / "inputs").iterdir()) == [
        "greenwave_cross_streets.add.xml", "greenwave_vtypes.add.xml"]


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_attached_run_hands_back_and_lets_the_sumo_end_cleanly(tmp_path: Path, tiny_net: Path,
                                                                              sig: int, code: int) -> None:
    # the interrupt used to come inside a TraCI exchange: a traceback, and the user's SUMO crashed
    # (exit 139) with its outputs cut off
    cfg = user_config(tmp_path, tiny_net, "long", '<flow id="f" begin="0" end="20000" vehsPerHour="200" '
                      'from="left1A1" to="C1right1"/>', 20000)
    sumo = UserSumo(cfg)
    try:
        code_was, output = interrupt_mid_run(["run", "--sumocfg", str(cfg), "--ev", EV, "--attach", str(sumo.port),
                                              "--out", str(tmp_path / "o")], sig, REPO)
        assert code_was == code and "Traceback" not in output, output
        assert "signals handed back, SUMO closed, no summary written" in output
        assert sumo.wait() == 0
        ET.parse(sumo.trips)  # its outputs complete
    finally:
        sumo.stop()


Seen = list[tuple[float, dict[str, tuple[str, str]]]]  # (time, every signal's state and program)


def _watched_by_another_client(sumo: UserSumo, seen: Seen) -> threading.Thread:
    """A second client of ``sumo`` (order 2), stepping it to its end and putting what every signal
    shows (state, program) after each step in ``seen``: its thread, started."""
    import traci

    def other_client() -> None:
        conn = traci.connect(sumo.port, numRetries=60, label="other-client")
        conn.setOrder(2)
        try:
            while True:
                conn.simulationStep()
                if conn.simulation.getTime() >= 300:  # (SUMO steps past its end while a client asks)
                    break
                tls = conn.trafficlight
                seen.append((conn.simulation.getTime(), {i: (tls.getRedYellowGreenState(i), tls.getProgram(i))
                                                         for i in tls.getIDList()}))
        except traci.exceptions.FatalTraCIError:
            pass  # SUMO's end
        finally:
            conn.close(wait=False)

    watcher = threading.Thread(target=other_client, daemon=True)
    watcher.start()
    return watcher


def _interrupted_while_watched(tmp_path: Path, tiny_net: Path, sig: int,
                               again_after_s: float | None = None) -> tuple[int, str, Seen]:
    """An attached run (the EV departing at 60 s) sent ``sig`` at 75 s (and again ``again_after_s``
    later), while another client steps the SUMO to its end: greenwave's exit code and output, and
    what the other client saw. The SUMO must end cleanly, its outputs complete."""
    cfg = user_config(tmp_path, tiny_net, "two", '<flow id="f" begin="0" end="300" vehsPerHour="400" '
                      'from="left1A1" to="C1right1"/>', 300)
    sumo = UserSumo(cfg, "--num-clients", "2")
    seen: Seen = []
    watcher = _watched_by_another_client(sumo, seen)
    try:
        code, output = interrupt_mid_run(["run", "--sumocfg", str(cfg), "--ev", EV, "--attach",
                                          str(sumo.port), "--speed", "20", "--out", str(tmp_path / "o")],
                                         sig, REPO, again_after_s=again_after_s)
        watcher.join(timeout=120)
        assert sumo.wait() == 0, output
        ET.parse(sumo.trips)  # its outputs complete
    finally:
        sumo.stop()
    assert seen and seen[-1][0] >= 299, seen[-1:]  # the other client stepped SUMO on to its end
    return code, output, seen


def test_an_attached_run_interrupted_mid_preemption_hands_back_through_yellow_and_red(tmp_path: Path,
                                                                                     tiny_net: Path) -> None:
    # a SUMO with another client goes on after greenwave leaves: an interrupted run switched its
    # signals straight back to their programs, greens cut with no yellow (a safety review's S1);
    # the other client's view of the signals, judged by the independent monitor, must be clean
    from controller.core.safety import SafetyConfig, SafetyMonitor
    from controller.sim.netload import load_network

    code, output, seen = _interrupted_while_watched(tmp_path, tiny_net, signal.SIGINT)
    assert code == 130 and "Traceback" not in output, output
    network = load_network(tiny_net)
    monitor = SafetyMonitor(network.programs, SafetyConfig())
    for t, states in seen:
        monitor.observe(t, states)
    monitor.finish(seen[-1][0])
    preempted = {t for t, states in seen for tls, (_s, program) in states.items() if program != "0"}
    assert preempted and min(preempted) < 75.0 < max(preempted), "no signal was preempted at the interrupt"
    assert monitor.violations == [], monitor.violations


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_second_signal_cuts_the_hand_back_short_without_breaking_the_connection(tmp_path: Path, tiny_net: Path,
                                                                                  sig: int) -> None:
    # a second Ctrl-C (or SIGTERM) 50 ms after the first, during the hand-back, came inside a TraCI
    # exchange: a traceback (KeyError, struct.error) with a signal left on greenwave's program in
    # the user's SUMO, or a hand-back that hung (a safety review); now the signals are switched
    # straight back at the next step boundary, and said so
    code, output, seen = _interrupted_while_watched(tmp_path, tiny_net, sig, again_after_s=0.05)
    assert code == (130 if sig == signal.SIGINT else 143) and "Traceback" not in output, output
    assert "the connection to SUMO broke" not in output, output
    assert "SUMO closed, no summary written" in output, output
    left = {tls: program for tls, (_s, program) in seen[-1][1].items() if program != "0"}
    assert not left, left  # every signal back on its program


def _refused_by(config: Path, tmp_path: Path, *sumo_options: str, host: str = "127.0.0.1") -> str:
    """Attach ``run`` to a SUMO started with ``sumo_options``, which must be refused (exit 2, no
    traceback) and end that SUMO cleanly: the output, on one line, with ``{port}`` for its port."""
    sumo = UserSumo(config, *sumo_options)
    try:
        result = CliRunner().invoke(main, ["run", "--sumocfg", str(config), "--ev", EV, "--attach",
                                           f"{host}:{sumo.port}", "--out", str(tmp_path / "o")])
        said = " ".join(result.output.split())
        assert result.exit_code == 2 and "Traceback" not in said, said
        assert sumo.wait() == 0  # (closed: nothing left waiting for a client)
        return said.replace(str(sumo.port), "{port}")
    finally:
        sumo.stop()


def test_an_attached_sumo_of_another_step_length_is_refused(config: Path, tmp_path: Path) -> None:
    said = _refused_by(config, tmp_path, "--step-length", "0.5", host="localhost")
    assert "the SUMO at localhost:{port} steps 0.5 s" in said


def test_an_attached_sumo_with_an_end_of_its_own_ends_the_run_there(config: Path, tmp_path: Path) -> None:
    # started with --end 150 (its configuration says 300): greenwave drove it on to 300 s, unsaid
    sumo = UserSumo(config, "--end", "150")
    try:
        result = CliRunner().invoke(main, ["run", "--sumocfg", str(config), "--ev", EV, "--attach", str(sumo.port),
                                           "--out", str(tmp_path / "o")])
        assert result.exit_code == 0, result.output
        assert sumo.wait() == 0
    finally:
        sumo.stop()
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["end"] == 150.0 and summary["evs"][0]["arrived"]
    # (the first line, printed before attaching, said "simulating 0-300 s" alone)
    assert "simulating 0-300 s (or to the attached SUMO's own end, where earlier)" in " ".join(result.output.split())
    assert summary["attached_notes"] == [f"attached: the SUMO at 127.0.0.1:{sumo.port} ends at 150 s (its end "
                                         "option), before 300 s: the run ends there"]
    assert max(float(t.get("arrival", "0")) for t in ET.parse(sumo.trips).getroot().iter("tripinfo")) <= 151.0
    # --end is the user's word: the run goes to it, with a note
    sumo = UserSumo(config, "--end", "150")
    try:
        result = CliRunner().invoke(main, ["run", "--sumocfg", str(config), "--ev", EV, "--attach", str(sumo.port),
                                           "--end", "200", "--out", str(tmp_path / "o2")])
        assert result.exit_code == 0, result.output
        assert sumo.wait() == 0
    finally:
        sumo.stop()
    summary = json.loads((tmp_path / "o2" / "summary.json").read_text())
    assert summary["end"] == 200.0 and "own end" not in result.output
    assert summary["attached_notes"] == [f"attached: the SUMO at 127.0.0.1:{sumo.port} ends at 150 s (its end "
                                         "option); greenwave steps it to 200 s (--end)"]
    # an EV departing after that SUMO's end: refused, saying so
    said = _refused_by(config, tmp_path / "o3", "--end", "50")
    assert "the SUMO at 127.0.0.1:{port} ends at 50 s (its end option): EV 'ev1' departs at 60 s" in said


def test_an_attached_sumo_running_other_programs_is_refused(config: Path, tmp_path: Path, tiny_net: Path) -> None:
    # (greenwave's own files were listed as where the programs came from, with a WAUT as the likely cause)
    logic = next(t for t in ET.parse(tiny_net).getroot().iter("tlLogic") if t.get("id") == "A1")
    logic.set("programID", "alt")
    extra = tmp_path / "other-programs.add.xml"
    extra.write_text(f"<additional>{ET.tostring(logic, encoding='unicode')}</additional>")
    said = _refused_by(config, tmp_path, "--additional-files", str(extra))
    assert "traffic light 'A1': SUMO runs program 'alt'" in said
    assert "was the SUMO at 127.0.0.1:{port} started with other files than these?" in said
    assert "greenwave_" not in said


def test_an_attached_sumo_of_another_geometry_is_refused(config: Path, tmp_path: Path) -> None:
    # the same edge ids on longer blocks were driven: the escort's route 600 m long here, 700 m there
    longer = tmp_path / "longer.net.xml"
    subprocess.run([str(binary("netgenerate")), "--grid", "--grid.number", "3", "--grid.length", "250",
                    "--grid.attach-length", "100", "--default-junction-type", "traffic_light",
                    "--default.lanenumber", "1", "--tls.yellow.time", "3", "--tls.allred.time", "2",
                    "--no-turnarounds", "true", "--seed", "1", "-o", str(longer)], check=True, capture_output=True)
    said = _refused_by(config, tmp_path, "--net-file", str(longer))
    assert "the SUMO at 127.0.0.1:{port} runs another network than" in said and "m long there" in said


def test_attach_without_a_sumo_or_a_configuration_says_what_to_do(config: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(adapter_module, "ATTACH_TRIES", 1)
    port = getFreeSocketPort()
    for args, needle in [
        (["--sumocfg", str(config), "--ev", EV, "--attach", str(port)],
         f"no SUMO to attach to at 127.0.0.1:{port}"),
        (["--sumocfg", str(config), "--ev", EV, "--attach", "localhost:"], "give PORT or HOST:PORT"),
        (["--sumocfg", str(config), "--ev", EV, "--attach", "99999"], "give PORT or HOST:PORT"),
        (["--sumocfg", str(config), "--ev", EV, "--attach", "\u0661\u0662\u0663"], "give PORT or HOST:PORT"),
        (["--sumocfg", str(config), "--ev", EV, "--attach", "::1"], NOT_HOST),
        (["--sumocfg", str(config), "--ev", EV, "--attach", "[::1]:8813"], NOT_HOST),
        (["--sumocfg", str(config), "--ev", EV, "--attach", "localhost:8813:1"], NOT_HOST),
        (["--sumocfg", str(config), "--ev", EV, "--attach", str(port), "--seed", "3"], "--seed does not apply"),
        (["--sumocfg", str(config), "--ev", EV, "--attach", str(port), "--gui"], "--gui and --backend do not apply"),
        (["--attach", str(port)], "--attach needs --sumocfg"),
    ]:
        result = CliRunner().invoke(main, ["run", *args, "--out", str(tmp_path / "o")])
        assert result.exit_code == 2 and "Traceback" not in result.output, (args, result.output)
        assert needle in " ".join(result.output.split()), (args, result.output)
        if needle.startswith("no SUMO"):  # (it read "kept as *.partial.xml (none)")
            assert "SUMO wrote no outputs here" in (tmp_path / "o" / "INCOMPLETE.txt").read_text()


def test_a_sumo_waiting_for_more_clients_is_given_up_on(config: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # SUMO started with --num-clients 2 answers no client until both have connected: run waited
    # for ever, serve 5 minutes deaf to SIGTERM
    monkeypatch.setattr(adapter_module, "FIRST_ANSWER_S", 2.0)
    sumo = UserSumo(config, "--num-clients", "2")
    try:
        result = CliRunner().invoke(main, ["run", "--sumocfg", str(config), "--ev", EV, "--attach", str(sumo.port),
                                           "--out", str(tmp_path / "o")])
        said = " ".join(result.output.split())
        assert result.exit_code == 2 and "Traceback" not in said, said
        assert f"the SUMO at 127.0.0.1:{sumo.port} did not answer within 2 s" in said and "--num-clients" in said
    finally:
        sumo.stop()
    routes = config.parent / "user.rou.xml"
    scenario = write_scenario(tmp_path / "mine.toml", Path(ET.parse(config).getroot().find("input/net-file")
                                                           .get("value")),  # type: ignore[union-attr,arg-type]
                              demand=f'[demand]\nlevel = "real"\nroutes = ["{routes}"]\n')
    sumo = UserSumo(config, "--num-clients", "2")
    log = tmp_path / "serve.log"
    try:
        with log.open("w") as err:
            serve = subprocess.Popen([sys.executable, "-m", "controller", "serve", "--scenario", str(scenario),
                                      "--attach", str(sumo.port), "--port", "0", "--out", str(tmp_path / "s")],
                                     stdout=subprocess.DEVNULL, stderr=err)
            deadline = time.monotonic() + 60
            while "attaching to the SUMO" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)
            serve.send_signal(signal.SIGTERM)
            assert serve.wait(timeout=30) == 0  # (not the 60 s the first answer is waited for)
        said = " ".join(log.read_text().split())
        assert "SIGTERM: stopped before the simulation started; no signal was switched" in said, said
        assert "Traceback" not in said and "error" not in said
    finally:
        sumo.stop()


def _serve_refused(*args: str) -> str:
    """``greenwave serve ARGS``, which must stop at once with exit 2 and no traceback: its stderr."""
    refused = subprocess.run([sys.executable, "-m", "controller", "serve", *args], capture_output=True, text=True,
                             timeout=120, check=False)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    return " ".join(refused.stderr.split())


def test_serve_attached_escorts_in_the_users_sumo(config: Path, tmp_path: Path, tiny_net: Path) -> None:
    from tests.api.conftest import DEMAND, Server, dispatch_and_wait_for_the_end

    # the scenario names what the user's SUMO runs: the network and the route file of its
    # configuration; its [[ev]] (departing at 10 s) is not dispatched by a service, so the SUMO
    # beginning at 20 s is no refusal (it was); without collision.check-junctions: a note (it was
    # logged nowhere)
    routes = config.parent / "user.rou.xml"
    scenario = write_scenario(tmp_path / "mine.toml", tiny_net, end_s=300,
                              demand=f'[demand]\nlevel = "real"\nroutes = ["{routes}"]\n')
    user_sumo = UserSumo(config, "--begin", "20", as_greenwave=False)
    try:
        server = Server(scenario, tmp_path, speed=20.0, extra=("--attach", str(user_sumo.port), "--end", "200"))
        server.start()
        try:
            with server.client() as c:
                health = dispatch_and_wait_for_the_end(c, "amb-u")
                assert health["preempted"] == [] and not any(health["safety"].values())
                assert c.get("/v1/emergencies/amb-u").json()["state"] == "arrived"
                started = next(a["detail"] for a in c.get("/v1/audit").json()
                               if a["kind"] == "service" and a["detail"].get("event") == "started")
                assert started["attached"] == f"127.0.0.1:{user_sumo.port}" and started["backend"] == "traci"
        finally:
            assert server.stop() == 0, server.log.read_text()
        assert "runs with collision.check-junctions false" in " ".join(server.log.read_text().split())
        assert user_sumo.wait() == 0  # the service stopped: the connection closed, the SUMO ended
        mine = {t.get("id"): t for t in ET.parse(user_sumo.trips).getroot().iter("tripinfo")}
        assert mine["amb-u"].get("vType") == "greenwave_ambulance"
    finally:
        user_sumo.stop()
    # refused: a scenario generating its demand (the user's SUMO runs its own), --seed (its own
    # applies), an --end it is past already
    generated = write_scenario(tmp_path / "generated.toml", tiny_net, demand=DEMAND)
    assert "generates its demand" in _serve_refused("--scenario", str(generated), "--attach", "8813")
    assert "--seed does not apply" in _serve_refused("--scenario", str(scenario), "--attach", "8813", "--seed", "2")
    late = UserSumo(config, "--begin", "100")
    try:
        said = _serve_refused("--scenario", str(scenario), "--attach", str(late.port), "--end", "50", "--out",
                              str(tmp_path / "late"))
        assert "--end 50 s is not after the attached SUMO's time (100 s)" in said
    finally:
        late.stop()


def test_serve_attached_to_a_sumo_that_stops_answering_says_so_and_can_be_stopped(config: Path, tmp_path: Path,
                                                                                  tiny_net: Path) -> None:
    # the user's SUMO stopped (SIGSTOP) with a signal preempted: /healthz went on saying "ok",
    # and the service could not be stopped until SUMO went on (a second SIGTERM, a third: ignored)
    import httpx

    from tests.api.conftest import TOKEN, Server, wait_for
    from tests.api.sse import EventCollector
    from tests.api.test_lifecycle import DISPATCH

    routes = config.parent / "user.rou.xml"
    scenario = write_scenario(tmp_path / "mine.toml", tiny_net, end_s=300,
                              demand=f'[demand]\nlevel = "real"\nroutes = ["{routes}"]\n')
    user_sumo = UserSumo(config)
    try:
        server = Server(scenario, tmp_path, speed=10.0,
                        extra=("--attach", str(user_sumo.port), "--stall-after", "2")).start()
        assert server.proc is not None
        with server.client() as c:
            assert c.post("/v1/emergencies", json={**DISPATCH, "id": "amb-f"}).status_code == 201
            held = wait_for(lambda: c.get("/healthz").json()["preempted"], what="a preempted junction")
            user_sumo.proc.send_signal(signal.SIGSTOP)
            health = wait_for(lambda: (h := c.get("/healthz")).status_code == 503 and h.json(), timeout_s=20,
                              what="a stalled service")
            assert health["status"] == "stalled" and "the SUMO does not answer" in health["detail"], health
        with EventCollector(server.url, TOKEN) as stream:  # (an event stream open as it stops)
            wait_for(lambda: stream.events, what="the stream to replay")
            started = time.monotonic()
            server.proc.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            server.proc.send_signal(signal.SIGTERM)
            code = server.proc.wait(timeout=60)
        said = " ".join(server.log.read_text().split())
        assert code == 1 and time.monotonic() - started < 30, said
        assert "Traceback" not in said and "CancelledError" not in said, said
        assert "did not finish handing back within its stop timeout" in said and "the SUMO does not answer" in said
        assert f"left switched away from their programs: {', '.join(held)}" in said, said
        with pytest.raises(httpx.TransportError):
            httpx.get(server.url + "/healthz", timeout=1.0)
    finally:
        user_sumo.proc.send_signal(signal.SIGCONT)
        user_sumo.stop()
