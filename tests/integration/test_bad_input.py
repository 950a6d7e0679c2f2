"""Bad input: one line naming the file, field or id; exit code 2; no traceback; no summary."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from controller.cli import main
from tests.helpers import write_scenario

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, args)
    assert "Traceback" not in result.output
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"unexpected exception: {result.exception!r}")
    return result.exit_code, result.output


def _assert_error(code: int, output: str, *needles: str) -> None:
    assert code == 2, output
    lines = [ln for ln in output.splitlines() if ln.startswith("greenwave: error:")]
    assert len(lines) == 1, output
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


def test_missing_scenario_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    code, out = _run(["run", str(missing), "--out", str(tmp_path / "o")])
    _assert_error(code, out, "nope.toml", "does not exist")
    assert not (tmp_path / "o" / "summary.json").exists()


def test_malformed_toml(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n[network\nnet = 1\n', encoding="utf-8")
    code, out = _run(["run", str(bad)])
    _assert_error(code, out, "bad.toml", "not valid TOML")


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda s: s.replace("end_s = 200", "end_s = -5"), "simulation.end_s"),
        (lambda s: s.replace('from = "left1A1"\n', ""), "ev[0]"),
        (lambda s: s.replace("depart_s = 10", 'depart_s = "soon"'), "ev[0].depart_s"),
        (lambda s: s + 'colour = "red"\n', "ev[0].colour"),
        (lambda s: s.replace('type = "ambulance"', 'type = "taxi"'), "ev[0].type"),
    ],
)
def test_invalid_field_is_named(tmp_path: Path, tiny_net: Path, edit: object, field: str) -> None:
    path = write_scenario(tmp_path / "s.toml", tiny_net, extra='type = "ambulance"\n')
    path.write_text(edit(path.read_text()), encoding="utf-8")  # type: ignore[operator]
    code, out = _run(["run", str(path)])
    _assert_error(code, out, "s.toml", f"'{field}'")


def test_an_ev_with_a_route_and_an_origin_or_an_id_sumo_cannot_write_is_refused(tmp_path: Path,
                                                                                 tiny_net: Path) -> None:
    path = write_scenario(tmp_path / "s.toml", tiny_net, ev='route = ["left1A1", "A1B1"]\nfrom = "C1right1"')
    code, out = _run(["run", str(path)])
    _assert_error(code, out, "s.toml", "'ev[0]'", "give 'route', or 'from' and 'to' edges, not both")
    path.write_text(path.read_text().replace('id = "amb"', 'id = "a&b<c"'), encoding="utf-8")
    code, out = _run(["run", str(path)])
    _assert_error(code, out, "'ev[0]'", "'&' '<'", "an EV id may not hold")
    cfg = tmp_path / "c.sumocfg"
    cfg.write_text(f'<configuration><input><net-file value="{tiny_net}"/></input></configuration>')
    code, out = _run(["run", "--sumocfg", str(cfg), "--ev", "left1A1,C1right1,10,ambulance,a&b", "--out",
                      str(tmp_path / "o")])
    _assert_error(code, out, "--ev", "ID 'a&b' contains")
    assert not (tmp_path / "o").exists()


def test_a_sumo_configuration_given_as_the_scenario_says_to_use_sumocfg(tmp_path: Path, tiny_net: Path) -> None:
    cfg = tmp_path / "c.sumocfg"
    cfg.write_text(f'<configuration><input><net-file value="{tiny_net}"/></input></configuration>')
    code, out = _run(["run", str(cfg)])
    _assert_error(code, out, "c.sumocfg", "an XML file, not a scenario file", "--sumocfg FILE --ev")
    binary = tmp_path / "x.toml"
    binary.write_bytes(b"\x1f\x8b\x08\x00\xff\xfe")
    code, out = _run(["run", str(binary)])
    _assert_error(code, out, "x.toml", "not UTF-8 text")


def test_a_recording_that_cannot_be_written_is_refused_before_the_run(tmp_path: Path, tiny_net: Path) -> None:
    path = write_scenario(tmp_path / "s.toml", tiny_net)
    code, out = _run(["run", str(path), "--record", str(tmp_path / "nope" / "x.jsonl"), "--out", str(tmp_path / "o")])
    _assert_error(code, out, "--record", f"the folder '{tmp_path / 'nope'}' does not exist")
    code, out = _run(["run", str(path), "--record", str(tmp_path), "--out", str(tmp_path / "o")])
    _assert_error(code, out, "--record", "is a folder; give a file")
    assert not (tmp_path / "o").exists()
    # into the run's own new folder (or below it): the run makes it
    code, out = _run(["run", str(path), "--record", str(tmp_path / "o" / "rec" / "x.jsonl"), "--out",
                      str(tmp_path / "o")])
    assert code == 0, out
    assert (tmp_path / "o" / "rec" / "x.jsonl").read_text().startswith('{"format": "greenwave-snapshots/1"')
    # a recording replaces only a recording: not the scenario (it did), nor the run's own outputs
    text = path.read_text()
    for target, message in ((path, "exists and is not a greenwave recording"),
                            (tmp_path / "o" / "summary.json", "is one of the run's own outputs"),
                            (tmp_path / "o" / "tripinfo.partial.xml", "is one of the run's own outputs")):
        code, out = _run(["run", str(path), "--record", str(target), "--out", str(tmp_path / "o")])
        _assert_error(code, out, "--record", message)
    assert path.read_text() == text and (tmp_path / "o" / "summary.json").is_file()
    code, out = _run(["run", str(path), "--record", str(tmp_path / "o" / "rec" / "x.jsonl"), "--out",
                      str(tmp_path / "o")])
    assert code == 0, out  # a recording is replaced
    # so is an empty file, and what is not a regular file is written to as it is (it was read first:
    # a pipe blocked the run for good)
    (tmp_path / "empty.jsonl").write_text("")
    for target in (tmp_path / "empty.jsonl", Path("/dev/null")):
        code, out = _run(["run", str(path), "--record", str(target), "--out", str(tmp_path / "o")])
        assert code == 0, out
    assert (tmp_path / "empty.jsonl").read_text().startswith('{"format": "greenwave-snapshots/1"')
    code, out = _run(["run", str(path), "--record", str(tmp_path / "o" / "summary.json.tmp"), "--out",
                      str(tmp_path / "o")])
    _assert_error(code, out, "--record", "is one of the run's own outputs")


def test_missing_network_file_is_named(tmp_path: Path) -> None:
    path = write_scenario(tmp_path / "s.toml", tmp_path / "missing.net.xml")
    code, out = _run(["run", str(path)])
    _assert_error(code, out, "network.net", "missing.net.xml")


def test_unknown_edge_is_named(tmp_path: Path, tiny_net: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "sc").mkdir()
    path = write_scenario(tmp_path / "sc" / "s.toml", tiny_net, ev='from = "left1A1"\nto = "NoSuchEdge"')
    code, out = _run(["run", str(path), "--out", str(tmp_path / "runs" / "o")])
    _assert_error(code, out, f"greenwave: error: {path}: field 'ev[0]': EV ", "to edge 'NoSuchEdge' is not in network")
    assert not (tmp_path / "runs").exists()  # the folders it made are removed again (not even inputs/)
    # the file as the user named it, as every other field's error names it (this one gave "s.toml")
    monkeypatch.chdir(tmp_path)
    code, out = _run(["run", "sc/s.toml", "--out", str(tmp_path / "runs" / "o")])
    _assert_error(code, out, "greenwave: error: sc/s.toml: field 'ev[0]': EV ")


def test_no_route_between_edges(tmp_path: Path, tiny_net: Path) -> None:
    # A0left0 leaves the grid at its west edge; nothing leads from it back into the grid.
    path = write_scenario(tmp_path / "s.toml", tiny_net, ev='from = "A0left0"\nto = "C1right1"')
    code, out = _run(["run", str(path), "--out", str(tmp_path / "o")])
    _assert_error(code, out, "A0left0", "C1right1")
    assert "route" in out
    assert not (tmp_path / "o").exists()


def test_ev_with_bad_format_on_command_line(tmp_path: Path, tiny_net: Path) -> None:
    cfg = tmp_path / "c.sumocfg"
    cfg.write_text(f'<configuration><input><net-file value="{tiny_net}"/></input></configuration>')
    code, out = _run(["run", "--sumocfg", str(cfg), "--ev", "left1A1,C1right1"])
    _assert_error(code, out, "--ev", "FROM_EDGE,TO_EDGE,DEPART")


@pytest.mark.sumo
def test_configuration_sumo_rejects(tmp_path: Path, tiny_net: Path) -> None:
    routes = tmp_path / "bad.rou.xml"
    routes.write_text(
        '<routes><vehicle id="v" type="noSuchType" depart="0"><route edges="left1A1"/></vehicle></routes>'
    )
    cfg = tmp_path / "c.sumocfg"
    cfg.write_text(
        f'<configuration><input><net-file value="{tiny_net}"/><route-files value="{routes.name}"/></input>'
        "</configuration>"
    )
    out_dir = tmp_path / "o"
    code, out = _run(["run", "--sumocfg", str(cfg), "--ev", "left1A1,C1right1,10", "--out", str(out_dir)])
    _assert_error(code, out, "SUMO rejected", "noSuchType")
    assert not (out_dir / "summary.json").exists()


@pytest.mark.sumo
@pytest.mark.parametrize("backend", ["libsumo", "traci"])
def test_a_vehicle_sumo_rejects_during_the_run_is_one_line(tmp_path: Path, tiny_net: Path, backend: str) -> None:
    # SUMO reads a route file as it goes: a type it does not know, met at 300 s, stopped it then.
    # With libsumo that was a 40-line traceback and exit 1 (its FatalTraCIError was not caught);
    # over TraCI the error said only "Connection closed by SUMO"
    routes = tmp_path / "late.rou.xml"
    routes.write_text("<routes>" + "".join(f'<trip id="v{k}" depart="{k * 50}" from="left1A1" to="C1right1"/>'
                                           for k in range(1, 10))
                      + '<trip id="zz" type="nosuch" depart="500" from="left1A1" to="C1right1"/></routes>')
    cfg = tmp_path / "c.sumocfg"
    cfg.write_text(f'<configuration><input><net-file value="{tiny_net}"/><route-files value="{routes.name}"/>'
                   "</input></configuration>")
    out_dir = tmp_path / "o"
    code, out = _run(["run", "--sumocfg", str(cfg), "--ev", "left1A1,C1right1,10", "--out", str(out_dir),
                      "--backend", backend, "--end", "600"])
    _assert_error(code, out, "SUMO stopped: The vehicle type 'nosuch' for vehicle 'zz' is not known.",
                  f"(a trip 'zz' is in {routes})")
    assert "simulated (300/600 s" in out  # (it stopped during the run)
    assert not (out_dir / "summary.json").exists() and (out_dir / "INCOMPLETE.txt").is_file()


def test_a_refusal_that_names_a_vehicle_or_a_type_of_greenwaves_names_the_file(tmp_path: Path, tiny_net: Path) -> None:
    # SUMO names the vehicle, not its file; and a type of greenwave's own name looked like the user's fault alone
    good = tmp_path / "good.rou.xml"
    good.write_text('<routes><trip id="g1" depart="0" from="left1A1" to="C1right1"/></routes>')
    late = tmp_path / "late.rou.xml"
    late.write_text('<routes><vehicle id="late1" depart="5"><route edges="left1A1 NOSUCHEDGE"/></vehicle></routes>')
    types = tmp_path / "types.add.xml"
    types.write_text('<additional><vType id="greenwave_fire"/></additional>')
    for routes, additional, needle in (
            (f"{good.name},{late.name}", "", f"(a vehicle 'late1' is in {late})"),
            (good.name, f'<additional-files value="{types.name}"/>',
             "(greenwave defines the vehicle types greenwave_ambulance, greenwave_fire, greenwave_police and "
             "greenwave_transit itself: give yours other ids)")):
        cfg = tmp_path / "c.sumocfg"
        cfg.write_text(f'<configuration><input><net-file value="{tiny_net}"/><route-files value="{routes}"/>'
                       f"{additional}</input></configuration>")
        code, out = _run(["run", "--sumocfg", str(cfg), "--ev", "left1A1,C1right1,10", "--out", str(tmp_path / "o")])
        _assert_error(code, out, "SUMO rejected", needle)


def test_program_that_cannot_serve_the_route(tmp_path: Path, tiny_net: Path) -> None:
    """A program (from an additional file) that never gives the EV's movement green at B1."""
    from controller.sim.netload import load_network

    network = load_network(tiny_net)
    b1 = network.programs["B1"]
    served = {c.link_index for c in network.connections if c.tls_id == "B1" and c.from_edge == "A1B1"
              and c.to_edge == "B1C1"}
    assert served
    phases = "".join(
        f'<phase duration="{p.duration_s:g}" state="'
        + "".join("r" if i in served else ch for i, ch in enumerate(p.state))
        + '"/>'
        for p in b1.phases
    )
    add = tmp_path / "never.add.xml"
    add.write_text(f'<additional><tlLogic id="B1" type="static" programID="never" offset="0">{phases}'
                   "</tlLogic></additional>")
    # the route given edge by edge: refused, naming the signal, the movement and the program
    path = write_scenario(tmp_path / "s.toml", tiny_net, additional=f'["{add}"]',
                          ev='route = ["left1A1", "A1B1", "B1C1", "C1right1"]')
    code, out = _run(["run", str(path), "--out", str(tmp_path / "o")])
    _assert_error(code, out, "'B1'", "A1B1")
    assert re.search(r"never", out)
    # from and to: routed round it, with a note naming it
    path = write_scenario(tmp_path / "t.toml", tiny_net, additional=f'["{add}"]')
    code, out = _run(["run", str(path), "--out", str(tmp_path / "p")])
    assert code == 0, out
    assert "does not take the fastest route: traffic light 'B1'" in " ".join(out.split())


@pytest.mark.parametrize(("params", "needle"), [("{ bogus = 1 }", "bogus"), ("{ seed = 3 }", "seed")])
def test_bad_generator_parameter_is_named(tmp_path: Path, tiny_net: Path, params: str, needle: str) -> None:
    demand = f'[demand]\nlevel = "light"\ngenerator = "random_trips"\nvehicles_per_hour = 100\nparams = {params}\n'
    path = write_scenario(tmp_path / "s.toml", tiny_net, demand=demand)
    code, out = _run(["run", str(path), "--out", str(tmp_path / "o")])
    _assert_error(code, out, f"greenwave: error: {path}: field 'demand", needle)


def test_invalid_ev_entry_is_named_once(tmp_path: Path, tiny_net: Path) -> None:
    # the entry's own error, not also "field 'ev': ... at least 1 item"
    path = write_scenario(tmp_path / "s.toml", tiny_net, extra='type = "taxi"\n')
    code, out = _run(["run", str(path)])
    _assert_error(code, out, "'ev[0].type'")
    assert "field 'ev':" not in out


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--end", "nan"], "'--end': 'nan' is not a finite number"),
        (["--end", "inf"], "'--end': 'inf' is not a finite number"),
        (["--budget-ms", "nan"], "'--budget-ms': 'nan' is not a finite number"),
        (["--speed", "nan"], "'--speed': 'nan' is not a finite number"),
        (["--detect-range", "nan"], "'--detect-range': 'nan' is not a finite number"),
        (["--detect-eta", "inf"], "'--detect-eta': 'inf' is not a finite number"),
        (["--seed", "-1"], "'--seed': -1 is not in the range"),
        (["--seed", "99999999999"], "'--seed': 99999999999 is not in the range 0<=x<=2147483647"),
    ],
)
def test_non_finite_or_out_of_range_options_are_refused(tmp_path: Path, args: list[str], needle: str) -> None:
    # (nan passes click's range checks: every comparison with it is false)
    code, out = _run(["run", "--sumocfg", str(tmp_path / "x.sumocfg"), "--ev", "a,b,1", *args])
    assert code == 2 and needle in out, out


def test_serve_refuses_a_non_finite_speed() -> None:
    code, out = _run(["serve", "--scenario", "x.toml", "--speed", "nan"])
    assert code == 2 and "'--speed': 'nan' is not a finite number" in out, out


@pytest.mark.parametrize("depart", ["nan", "inf", "-5"])
def test_ev_departure_must_be_finite_and_not_negative(tmp_path: Path, tiny_net: Path, depart: str) -> None:
    cfg = tmp_path / "x.sumocfg"
    cfg.write_text("<configuration/>", encoding="utf-8")
    code, out = _run(["run", "--sumocfg", str(cfg), "--ev", f"a,b,{depart}", "--out", str(tmp_path / "o")])
    _assert_error(code, out, f"DEPART '{depart}'", "finite")


def test_output_folder_that_is_a_file_or_cannot_be_made(tmp_path: Path, tiny_net: Path) -> None:
    path = write_scenario(tmp_path / "s.toml", tiny_net)
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me", encoding="utf-8")
    code, out = _run(["run", str(path), "--out", str(a_file)])
    _assert_error(code, out, f"--out '{a_file}' is a file")
    assert a_file.read_text(encoding="utf-8") == "keep me"
    code, out = _run(["run", str(path), "--out", str(a_file / "below")])
    _assert_error(code, out, "--out", "cannot create the folder")


def test_output_folder_with_the_users_files_in_it_is_refused(tmp_path: Path, tiny_net: Path) -> None:
    # greenwave writes nothing next to the user's files: not into the scenario's own folder, nor
    # into a folder of other files that is not a run's; nothing in them changes
    path = write_scenario(tmp_path / "s.toml", tiny_net)
    before = sorted(p.name for p in tmp_path.iterdir())
    code, out = _run(["run", str(path), "--out", str(tmp_path)])
    _assert_error(code, out, f"--out '{tmp_path}' is the folder of your input 's.toml'")
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    (cfg / "run.sumocfg").write_text(f'<configuration><input><net-file value="{tiny_net}"/></input></configuration>')
    code, out = _run(["run", "--sumocfg", str(cfg / "run.sumocfg"), "--ev", "left1A1,C1right1,10", "--out", str(cfg)])
    _assert_error(code, out, "is the folder of your input 'run.sumocfg'", "writes nothing next to your files")
    assert sorted(p.name for p in cfg.iterdir()) == ["run.sumocfg"]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("keep me", encoding="utf-8")
    for command, kind in ((["run", str(path)], "run"), (["bench", "benchmarks/ci.toml"], "bench")):
        code, out = _run([*command, "--out", str(other)])
        _assert_error(code, out, f"--out '{other}' has other files in it ('notes.txt')",
                      f"is not a greenwave {kind}'s folder")
    assert sorted(p.name for p in other.iterdir()) == ["notes.txt"]
    # greenwave's own folders of the other kind are named as such (they were "other files")
    ran, benched = tmp_path / "ran", tmp_path / "benched"
    for folder, mark, made in ((ran, ".greenwave-run", "summary.json"), (benched, ".greenwave-bench", "bench.json")):
        folder.mkdir()
        (folder / mark).touch()
        (folder / made).write_text("{}", encoding="utf-8")
    code, out = _run(["bench", "benchmarks/ci.toml", "--out", str(ran)])
    _assert_error(code, out, f"--out '{ran}' is a greenwave run's folder, not a bench's: give a new or empty folder")
    code, out = _run(["run", str(path), "--out", str(benched)])
    _assert_error(code, out, f"--out '{benched}' is a greenwave bench's folder, not a run's")
    # nor one of its run folders (a run there replaced the bench's, which bench.json still described)
    inside = benched / "runs" / "grid5-moderate" / "none-s1"
    inside.mkdir(parents=True)
    (inside / ".greenwave-run").touch()
    code, out = _run(["run", str(path), "--out", str(inside)])
    _assert_error(code, out, f"--out '{inside}' is inside the greenwave bench folder '{benched.resolve()}'")
    assert sorted(p.name for p in inside.iterdir()) == [".greenwave-run"]
    assert sorted(p.name for p in ran.iterdir()) == [".greenwave-run", "summary.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*before, "cfg", "other", "ran", "benched"])


def test_an_id_given_to_one_ev_and_by_default_to_another_is_explained(tmp_path: Path, tiny_net: Path) -> None:
    cfg = tmp_path / "run.sumocfg"
    cfg.write_text(f'<configuration><input><net-file value="{tiny_net}"/></input></configuration>')
    code, out = _run(["run", "--sumocfg", str(cfg), "--ev", "left1A1,C1right1,10,ambulance,ev2",
                      "--ev", "left1A1,C1right1,20,fire", "--out", str(tmp_path / "o")])
    _assert_error(code, out, "EV id 'ev2' is given twice (the 2nd EV's; an EV given no id gets 'ev<n>'")


def test_an_end_beyond_a_week_is_refused(tmp_path: Path, tiny_net: Path) -> None:
    cfg = tmp_path / "run.sumocfg"
    cfg.write_text(f'<configuration><input><net-file value="{tiny_net}"/></input></configuration>')
    code, out = _run(["run", "--sumocfg", str(cfg), "--ev", "left1A1,C1right1,10", "--end", "1e12",
                      "--out", str(tmp_path / "o")])
    _assert_error(code, out, "--end 1e+12 s is", "at most 7 days are simulated in one run")


@pytest.mark.parametrize(("time", "message"), [
    ('<step-length value="-1"/>', "step-length -1 s: greenwave runs steps over 0 and up to 1 s"),
    ('<step-length value="0"/>', "step-length 0 s: greenwave runs steps over 0 and up to 1 s"),
    ('<step-length value="50"/>', "step-length 50 s: greenwave runs steps over 0 and up to 1 s"),
    ('<end value="1e9"/>', "the configuration's end (1e+09 s) is 1.16e+04 days after its begin (0 s)"),
])
def test_a_configurations_step_length_and_end_are_checked(tmp_path: Path, tiny_net: Path, time: str,
                                                          message: str) -> None:
    # -1 was a traceback, 0 ran at 1 s, 50 s ran a meaningless run full of violations
    cfg = tmp_path / "run.sumocfg"
    cfg.write_text(f'<configuration><input><net-file value="{tiny_net}"/></input><time>{time}</time>'
                   '</configuration>')
    code, out = _run(["run", "--sumocfg", str(cfg), "--ev", "left1A1,C1right1,10", "--out", str(tmp_path / "o")])
    _assert_error(code, out, message)


def test_sumos_own_reason_is_given_where_it_says_only_process_error(tmp_path: Path, tiny_net: Path) -> None:
    # SUMO wrote the cause to stderr before its error log existed; the error said 'Process Error'
    cfg = tmp_path / "run.sumocfg"
    cfg.write_text(f'<configuration><input><net-file value="{tiny_net}"/></input>'
                   '<time><begin value="-100"/></time></configuration>')
    code, out = _run(["run", "--sumocfg", str(cfg), "--ev", "left1A1,C1right1,10", "--out", str(tmp_path / "o")])
    _assert_error(code, out, "SUMO rejected the configuration: The begin time should not be negative.")


@pytest.mark.parametrize("backend", ["libsumo", "traci"])
def test_a_misspelled_option_is_one_line_naming_the_configuration(tmp_path: Path, tiny_net: Path, backend: str,
                                                                   capfd: pytest.CaptureFixture[str]) -> None:
    # SUMO's own lines went to the terminal too, one of them about a parameter '100' that is an
    # artefact of passing options on its command line; now they are in the run's SUMO error log.
    # Over TraCI, SUMO was started again 60 times (a port conflict, TraCI thought), printing them
    # each time, and the error said only "Could not connect in 1 tries".
    cfg = tmp_path / "run.sumocfg"
    cfg.write_text(f'<configuration><input><net-file value="{tiny_net}"/></input>'
                   '<processing><time-to-teleprt value="100"/></processing></configuration>')
    out_dir = tmp_path / "o"
    code, out = _run(["run", "--sumocfg", str(cfg), "--ev", "left1A1,C1right1,10", "--out", str(out_dir),
                      "--backend", backend])
    _assert_error(code, out, "No option with the name 'time-to-teleprt' exists",
                  "'time-to-teleprt' is not an option of this SUMO", f"misspelled in {cfg}")
    assert "Error:" not in capfd.readouterr().err
    assert "parameter '100'" in (out_dir / "sumo-errors.log").read_text(encoding="utf-8")


def test_a_network_given_as_the_configuration_or_a_folder_as_the_network(tmp_path: Path, tiny_net: Path) -> None:
    code, out = _run(["run", "--sumocfg", str(tiny_net), "--ev", "left1A1,C1right1,10", "--out", str(tmp_path / "o")])
    _assert_error(code, out, "not a SUMO configuration but a network file (its root element is <net>)")
    path = write_scenario(tmp_path / "s.toml", tmp_path)  # a folder as the network (as net = "" is)
    code, out = _run(["run", str(path), "--out", str(tmp_path / "o")])
    _assert_error(code, out, f"field 'network.net': '{tmp_path}' is a folder, not a file")


def test_an_end_not_after_the_configurations_begin_names_end(tmp_path: Path, tiny_net: Path) -> None:
    cfg = tmp_path / "run.sumocfg"
    cfg.write_text(f'<configuration><input><net-file value="{tiny_net}"/></input>'
                   '<time><begin value="500"/></time></configuration>')
    code, out = _run(["run", "--sumocfg", str(cfg), "--ev", "left1A1,C1right1,600", "--end", "100",
                      "--out", str(tmp_path / "o")])
    _assert_error(code, out, "--end 100 s is not after the configuration's begin (500 s")
    code, out = _run(["run", "--sumocfg", str(cfg), "--ev", "left1A1,C1right1,600", "--end", "550",
                      "--out", str(tmp_path / "o")])
    _assert_error(code, out, "departs at 600 s, outside the simulation [500, 550) s with --end")


def test_a_folder_given_as_the_scenario_or_configuration(tmp_path: Path) -> None:
    code, out = _run(["run", str(tmp_path)])
    _assert_error(code, out, "is a folder, not a scenario file")
    code, out = _run(["run", "--sumocfg", str(tmp_path), "--ev", "a,b,1"])
    _assert_error(code, out, f"'{tmp_path}' is a folder, not a SUMO configuration file")


def test_write_baseline_replaces_only_a_baseline_and_is_checked_before_any_run(tmp_path: Path) -> None:
    # it replaced the suite file, a bench.json or a run's summary.json with a baseline, and a
    # folder or a path under a file was a traceback after every run had finished
    suite = tmp_path / "ci.toml"
    suite.write_text(Path("benchmarks/ci.toml").read_text(encoding="utf-8"), encoding="utf-8")
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me", encoding="utf-8")
    for target, message in ((suite, "exists and is not a greenwave baseline"), (tmp_path, "is a folder"),
                            (a_file / "b.json", "cannot be written"),
                            (tmp_path / "out" / "bench.json", "is one of the bench's own outputs"),
                            (tmp_path / "out" / "runs" / "b.json", "is one of the bench's own outputs")):
        code, out = _run(["bench", "benchmarks/ci.toml", "--write-baseline", str(target),
                          "--out", str(tmp_path / "out")])
        _assert_error(code, out, f"--write-baseline {target}", message)
    assert suite.read_text(encoding="utf-8") == Path("benchmarks/ci.toml").read_text(encoding="utf-8")
    assert a_file.read_text(encoding="utf-8") == "keep me" and not (tmp_path / "out" / "runs").exists()


@pytest.mark.parametrize("command", [["bench", "benchmarks/ci.toml"], ["serve", "--scenario", "x.toml"]])
def test_bench_and_serve_name_an_output_folder_that_is_a_file(tmp_path: Path, command: list[str]) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me", encoding="utf-8")
    code, out = _run([*command, "--out", str(a_file)])
    _assert_error(code, out, f"--out '{a_file}' is a file")


def test_serve_out_refuses_a_folder_of_other_files_and_the_scenarios_own(tmp_path: Path, tiny_net: Path) -> None:
    # it overwrote them with SUMO's outputs (run refused both already)
    path = write_scenario(tmp_path / "s.toml", tiny_net)
    other = tmp_path / "other"
    other.mkdir()
    (other / "tripinfo.xml").write_text("keep me", encoding="utf-8")
    code, out = _run(["serve", "--scenario", str(path), "--out", str(other)])
    _assert_error(code, out, f"--out '{other}' has other files in it ('tripinfo.xml')", "is not a greenwave serve's")
    code, out = _run(["serve", "--scenario", str(path), "--out", str(tmp_path)])
    _assert_error(code, out, f"--out '{tmp_path}' is the folder of your input 's.toml'")
    assert (other / "tripinfo.xml").read_text(encoding="utf-8") == "keep me"


def test_serve_out_reuses_the_folder_of_a_serve_that_failed_while_preparing(tmp_path: Path, tiny_net: Path) -> None:
    # its lock and audit log come before the run's mark: the folder was refused as another's
    path = write_scenario(tmp_path / "s.toml", tiny_net)
    out = tmp_path / "srv"
    out.mkdir()
    (out / ".serve.lock").write_text("")
    (out / "audit.sqlite").write_bytes(b"")
    code, text = _run(["serve", "--scenario", str(path), "--out", str(out), "--token-file", str(tmp_path / "nope")])
    assert code == 2 and "other files" not in text and "nope" in text, text


def test_serve_out_takes_a_scenario_without_any_ev(tmp_path: Path, tiny_net: Path) -> None:
    # a service's scenario needs no [[ev]]: with --out it was still refused ("give at least one"),
    # the folder check reading the scenario as run does; here it gets on to the token file
    path = tmp_path / "s.toml"
    path.write_text(f'name = "svc"\n[network]\nnet = "{tiny_net}"\n[simulation]\nbegin_s = 0\nend_s = 600\n')
    code, text = _run(["serve", "--scenario", str(path), "--out", str(tmp_path / "srv"), "--token-file",
                       str(tmp_path / "nope")])
    assert code == 2 and "give at least one" not in text and "nope" in text, text


def test_serve_refuses_an_end_not_after_the_scenarios_begin(tmp_path: Path, tiny_net: Path) -> None:
    # (it used to start and report the simulation ended at once)
    from tests.api.conftest import free_port

    path = write_scenario(tmp_path / "s.toml", tiny_net)  # begins at 0 s
    code, out = _run(["serve", "--scenario", str(path), "--end", "0", "--port", str(free_port()),
                      "--out", str(tmp_path / "o")])
    _assert_error(code, out, "--end 0 s is not after the scenario's begin (0 s)")


def test_serve_on_an_address_not_of_this_machine_names_the_host(tmp_path: Path, tiny_net: Path) -> None:
    from tests.api.conftest import free_port

    path = write_scenario(tmp_path / "s.toml", tiny_net)
    code, out = _run(["serve", "--scenario", str(path), "--host", "192.0.2.1", "--port", str(free_port()),
                      "--out", str(tmp_path / "o")])  # (TEST-NET-1: documentation only, never assigned)
    _assert_error(code, out, "--host '192.0.2.1': cannot listen on it", "not an address of this machine")


@pytest.mark.parametrize("controller", ["greenwave", "none", "oracle"])
def test_detection_options_belong_to_the_local_controller(tmp_path: Path, tiny_net: Path, controller: str) -> None:
    # they used to be accepted and do nothing
    path = write_scenario(tmp_path / "s.toml", tiny_net)
    code, out = _run(["run", str(path), "--controller", controller, "--detect-range", "200",
                      "--out", str(tmp_path / "o")])
    _assert_error(code, out, "--detect-range and --detect-eta", f"--controller {controller}")
    assert not (tmp_path / "o").exists()


def test_a_route_that_turns_around_is_pointed_out(tmp_path: Path) -> None:
    # a destination given on the other carriageway makes the fastest route a U-turn: said, as a
    # note (the run goes on); an ordinary route gets no such note
    cfg = REPO / "networks" / "resco_ingolstadt7" / "ingolstadt7.sumocfg"
    code, out = _run(["run", "--sumocfg", str(cfg), "--ev", "24634415,-24634415,57610", "--end", "57640",
                      "--controller", "none", "--out", str(tmp_path / "u")])
    assert code == 0, out
    assert "EV 'ev1' turns around (a U-turn) from edge 24634415 onto -24634415" in " ".join(out.split())
    code, out = _run(["run", "--sumocfg", str(cfg), "--ev", "-173169611#0,32978638#0,57610", "--end", "57640",
                      "--controller", "none", "--out", str(tmp_path / "s")])
    assert code == 0 and "turns around" not in out, out


def test_serve_refuses_a_token_no_http_header_can_carry(tmp_path: Path, tiny_net: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # it started, and every request was refused 403: the header came back as other bytes
    path = write_scenario(tmp_path / "s.toml", tiny_net)
    token = tmp_path / "token.txt"
    token.write_text("clé-sécrète\n", encoding="utf-8")
    code, out = _run(["serve", "--scenario", str(path), "--out", str(tmp_path / "o"), "--token-file", str(token)])
    _assert_error(code, out, f"--token-file '{token}': the token has the character 'é' (U+00E9)",
                  "visible ASCII characters only")
    token.write_bytes(b"tok\xff\n")  # (a traceback: UnicodeDecodeError)
    code, out = _run(["serve", "--scenario", str(path), "--out", str(tmp_path / "o"), "--token-file", str(token)])
    _assert_error(code, out, f"--token-file '{token}' is not text (byte 4 is not UTF-8)")
    monkeypatch.setenv("GREENWAVE_TOKEN", "two words")
    code, out = _run(["serve", "--scenario", str(path), "--out", str(tmp_path / "o")])
    _assert_error(code, out, "$GREENWAVE_TOKEN: the token has the character ' ' (U+0020)")


@pytest.mark.sumo
def test_a_sumo_binary_that_cannot_be_executed_is_one_line(tmp_path: Path, tiny_net: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # not executable, or built for another architecture: a PermissionError / OSError traceback
    import subprocess

    def refuse(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    code, out = _run(["run", "--sumocfg", str(_cfg(tmp_path, tiny_net)), "--ev", "left1A1,C1right1,10", "--out",
                      str(tmp_path / "o"), "--backend", "traci"])
    _assert_error(code, out, "SUMO could not be started:", "Permission denied")


@pytest.mark.sumo
def test_an_interrupt_while_connecting_to_sumo_leaves_no_sumo_running(tmp_path: Path, tiny_net: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Ctrl-C or SIGTERM during traci.init: greenwave exited, and the SUMO it had started went on
    # running under init, listening on its port
    import subprocess

    import traci

    started: list[subprocess.Popen[bytes]] = []
    real_popen = subprocess.Popen

    def recording(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(subprocess, "Popen", recording)
    monkeypatch.setattr(traci, "init", interrupted)
    result = CliRunner().invoke(main, ["run", "--sumocfg", str(_cfg(tmp_path, tiny_net)), "--ev",
                                       "left1A1,C1right1,10", "--out", str(tmp_path / "o"), "--backend", "traci"])
    assert result.exit_code == 130, result.output
    assert len(started) == 1 and started[0].poll() is not None  # (killed and waited for)


def _cfg(tmp_path: Path, net: Path) -> Path:
    cfg = tmp_path / "c.sumocfg"
    cfg.write_text(f'<configuration><input><net-file value="{net}"/></input></configuration>')
    return cfg


@pytest.mark.sumo
def test_a_gui_that_cannot_open_its_display_says_so(tmp_path: Path, tiny_net: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # DISPLAY names a display that is not there: sumo-gui says so on stderr and exits, without an
    # "Error:" line; the message was TraCI's "TraCI server already finished"
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    code, out = _run(["run", "--sumocfg", str(_cfg(tmp_path, tiny_net)), "--ev", "left1A1,C1right1,10", "--out",
                      str(tmp_path / "o"), "--gui"])
    _assert_error(code, out, "SUMO rejected the configuration:", "display")
    assert "TraCI server already finished" not in out


@pytest.mark.sumo
def test_a_sumo_killed_during_the_run_is_a_failed_run_not_bad_input(tmp_path: Path, tiny_net: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # kill -9 of the sumo process over TraCI: "SUMO stopped: Connection closed by SUMO." with exit
    # 2, which README gives to bad input
    import signal

    from controller.sim.adapter import SumoAdapter

    real_step = SumoAdapter.step
    steps = [0]

    def step(self: SumoAdapter) -> Any:
        steps[0] += 1
        if steps[0] == 30 and self._traci_proc is not None:
            self._traci_proc.send_signal(signal.SIGKILL)
            self._traci_proc.wait()
        return real_step(self)

    monkeypatch.setattr(SumoAdapter, "step", step)
    out_dir = tmp_path / "o"
    code, out = _run(["run", "--sumocfg", str(_cfg(tmp_path, tiny_net)), "--ev", "left1A1,C1right1,10", "--out",
                      str(out_dir), "--backend", "traci", "--end", "200"])
    assert code == 1, out
    lines = [ln for ln in out.splitlines() if ln.startswith("greenwave: error:")]
    assert len(lines) == 1 and "ended without an error message: killed, or crashed" in lines[0], out
    assert not (out_dir / "summary.json").exists() and (out_dir / "INCOMPLETE.txt").is_file()


@pytest.mark.sumo
def test_a_sumo_slow_to_load_is_waited_for_not_restarted(tmp_path: Path, tiny_net: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # a SUMO still loading after TraCI's 61 tries (a minute) was taken for a port conflict and
    # restarted, three times, then "Could not connect in 61 tries"
    import subprocess

    import traci

    started: list[subprocess.Popen[bytes]] = []
    real_popen, real_init = subprocess.Popen, traci.init
    tries = [0]

    def recording(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    def slow(*args: Any, **kwargs: Any) -> Any:
        tries[0] += 1
        if tries[0] == 1:  # (the first minute of tries: SUMO still loading, its process alive)
            raise traci.exceptions.FatalTraCIError("Could not connect in 61 tries")
        return real_init(*args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", recording)
    monkeypatch.setattr(traci, "init", slow)
    out_dir = tmp_path / "o"
    code, out = _run(["run", "--sumocfg", str(_cfg(tmp_path, tiny_net)), "--ev", "left1A1,C1right1,10", "--out",
                      str(out_dir), "--backend", "traci", "--end", "100"])
    assert code == 0, out
    # one SUMO per connection made (the run's, and its free-flow run's): none restarted
    sumos = [p for p in started if isinstance(p.args, list) and "--remote-port" in p.args]
    assert tries[0] >= 2 and len(sumos) == tries[0] - 1


def test_a_comma_in_the_output_or_an_input_path_is_refused_before_sumo_reads_it(tmp_path: Path,
                                                                              tiny_net: Path) -> None:
    # SUMO splits its file lists at commas: "SUMO rejected the configuration: The route file
    # '/tmp/r/out' is not accessible", the folder left marked incomplete
    path = write_scenario(tmp_path / "s.toml", tiny_net)
    out = tmp_path / "out,with comma"
    code, text = _run(["run", str(path), "--out", str(out)])
    _assert_error(code, text, f"--out '{out}': SUMO reads a comma in a path as the end of a file name")
    assert not out.exists()
    odd = tmp_path / "we ird,dir"
    odd.mkdir()
    moved = write_scenario(odd / "s.toml", tiny_net)
    code, text = _run(["run", str(moved), "--out", str(tmp_path / "o")])
    _assert_error(code, text, f"input '{moved}': SUMO reads a comma in a path")


@pytest.mark.parametrize("error", [KeyboardInterrupt, "terminated"])
def test_an_interrupted_run_gives_back_the_signal_handlers_it_had(tmp_path: Path, tiny_net: Path,
                                                                   monkeypatch: pytest.MonkeyPatch,
                                                                   error: Any) -> None:
    # a second Ctrl-C or SIGTERM while an interrupted run exits is let go (it killed the process:
    # exit -2 or -15); left ignored instead, every process the caller started later ignored
    # SIGTERM (a multiprocessing pool's workers could not be stopped: a test run hung)
    import signal

    from controller import cli
    from controller.runtime import run as run_module

    def interrupted(*args: object, **kwargs: object) -> None:
        raise (cli.Terminated if error == "terminated" else KeyboardInterrupt)

    monkeypatch.setattr(run_module, "run", interrupted)
    path = write_scenario(tmp_path / "s.toml", tiny_net)
    taken = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    before = [signal.getsignal(sig) for sig in taken]
    result = CliRunner().invoke(main, ["run", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == (143 if error == "terminated" else 130), result.output
    assert [signal.getsignal(sig) for sig in taken] == before


def test_a_full_disk_is_a_one_line_error_and_leaves_no_output_that_looks_complete(
        tmp_path: Path, tiny_net: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a full disk gave tracebacks (writing the generated traffic, the trace, the summary), and
    # SUMO's cut-off tripinfo was "bad input" (exit 2); the stray .json.tmp: the test below
    import errno

    import controller.runtime.run as run_module
    import controller.sim.demand as demand_module

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    demand = '[demand]\nlevel = "light"\ngenerator = "random_trips"\nvehicles_per_hour = 300\n'
    path = write_scenario(tmp_path / "s.toml", tiny_net, demand=demand)
    with monkeypatch.context() as m:  # preparing: writing the generated traffic (no file named)
        m.setattr(demand_module, "write_random_trips", full)
        result = CliRunner().invoke(main, ["run", str(path), "--out", str(tmp_path / "p")])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert ("greenwave: error: no space left on the device while preparing the run, writing into --out "
            f"'{tmp_path / 'p'}'") in result.output
    real = run_module._write_json

    def full_at_the_summary(file: Path, data: Any, *, indent: int | None) -> None:
        if file.name != "summary.json":
            return real(file, data, indent=indent)
        raise OSError(errno.ENOSPC, "No space left on device", str(file.with_suffix(".json.tmp")))

    out = tmp_path / "o"
    with monkeypatch.context() as m:  # the run: writing its summary
        m.setattr(run_module, "_write_json", full_at_the_summary)
        result = CliRunner().invoke(main, ["run", str(path), "--out", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert "no space left on the device (writing" in result.output and "no summary.json was written" in result.output
    assert not (out / "summary.json").exists() and (out / "tripinfo.partial.xml").is_file()
    assert "no space left on the device" in (out / "INCOMPLETE.txt").read_text()


def test_a_json_output_cut_off_by_a_full_disk_leaves_no_stray_file(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    from controller.runtime.run import _write_json

    def full(self: Path, *args: object, **kwargs: object) -> None:
        with self.open("w") as f:
            f.write("{")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError):
        _write_json(tmp_path / "trace.json", {"a": 1}, indent=None)
    assert list(tmp_path.iterdir()) == []


def test_sumo_outputs_cut_off_on_a_full_disk_say_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import controller.runtime.outputs as outputs
    from controller.errors import OutputError, SimulationError

    (tmp_path / "tripinfo.xml").write_text("<tripinfos><tripinfo id=")
    with pytest.raises(SimulationError, match="is missing or incomplete") as plain:
        outputs.read_outputs(tmp_path)
    assert not isinstance(plain.value, OutputError)
    monkeypatch.setattr(outputs, "_free_bytes", lambda folder: 4096)
    with pytest.raises(OutputError, match=r"the device holding it is full \(4 kB free\)") as full:
        outputs.read_outputs(tmp_path)
    assert full.value.exit_code == 1


def test_an_interrupted_run_that_could_not_hand_back_says_so(tmp_path: Path, tiny_net: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # (an attached SUMO that stopped answering: the adapter names the signals left switched on the
    # interrupt; "signals handed back" was said)
    from controller.runtime import run as run_module

    def interrupted(*args: object, **kwargs: object) -> None:
        e = KeyboardInterrupt()
        e.left_switched = ("A1", "B1")  # type: ignore[attr-defined]
        raise e

    monkeypatch.setattr(run_module, "run", interrupted)
    path = write_scenario(tmp_path / "s.toml", tiny_net)
    result = CliRunner().invoke(main, ["run", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 130, result.output
    assert ("greenwave: interrupted; signals NOT handed back, the connection to SUMO broke: A1, B1 left switched "
            "away from their programs") in result.output
    assert "signals handed back" not in result.output
