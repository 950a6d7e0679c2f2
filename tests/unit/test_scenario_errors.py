"""A scenario file's mistakes are named in one line: the misspelled field first, with the field
it probably meant."""

from __future__ import annotations

from pathlib import Path

import pytest

from controller.errors import ScenarioError
from controller.scenario import load_scenario

GRID = Path(__file__).resolve().parents[2] / "scenarios" / "grid5-moderate.toml"


def _scenario(tmp_path: Path, *edits: tuple[str, str]) -> Path:
    text = GRID.read_text().replace("../networks", str(GRID.parent.parent / "networks"))
    for old, new in edits:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "s.toml"
    path.write_text(text)
    return path


def _message(path: Path) -> str:
    """The one-line error loading ``path`` gives."""
    with pytest.raises(ScenarioError) as e:
        load_scenario(path)
    return str(e.value)


def test_the_unmodified_scenario_loads(tmp_path: Path) -> None:
    assert load_scenario(_scenario(tmp_path)).name == "grid5-moderate"


def test_a_misspelled_section_is_named_with_the_one_meant(tmp_path: Path) -> None:
    path = _scenario(tmp_path, ("[simulation]", "[simulaton]"))
    assert _message(path) == (f"{path}: field 'simulaton': not a field here (did you mean 'simulation'?); "
                            "field 'simulation': Field required")


def test_a_misspelled_optional_field_is_named_with_the_one_meant(tmp_path: Path) -> None:
    # only a missing (required) field was suggested: an optional one misspelled got no hint
    path = _scenario(tmp_path, ("[simulation]", "[controller]\nmargn_s = 3\n\n[simulation]"))
    assert _message(path) == f"{path}: field 'controller.margn_s': not a field here (did you mean 'margin_s'?)"
    path = _scenario(tmp_path, ("[simulation]", "[simulation]\nstep_lenght_s = 0.5"))
    assert _message(path) == (f"{path}: field 'simulation.step_lenght_s': not a field here "
                              "(did you mean 'step_length_s'?)")
    # a key the file writes under another name than the field's (an alias): that key
    path = _scenario(tmp_path, ('from = "', 'fromm = "'))
    assert _message(path).startswith(f"{path}: field 'ev[0].fromm': not a field here (did you mean 'from'?)")
    path = _scenario(tmp_path, ("[simulation]", "[controller]\nzzz = 3\n\n[simulation]"))
    assert _message(path) == f"{path}: field 'controller.zzz': not a field here"


def test_a_misspelled_demand_level_is_refused(tmp_path: Path) -> None:
    # a label, but "moderate" turns on a verdict: "moderat" silently dropped it
    path = _scenario(tmp_path, ('level = "moderate"', 'level = "moderat"'))
    assert _message(path) == (f"{path}: field 'demand.level': Input should be 'none', 'light', 'moderate', 'heavy', "
                              "'real' or 'synthetic'")


def test_a_file_of_the_wrong_kind_is_named(tmp_path: Path) -> None:
    # a route file given as the net was read as a network without the EV's edges ("edge ... is not
    # in network x.rou.xml"); a net given as a route file ran with no traffic, said in SUMO's log alone
    routes = tmp_path / "r.rou.xml"
    routes.write_text('<routes><trip id="t" depart="0" from="a" to="b"/></routes>')
    net = GRID.parent.parent / "networks" / "grid5" / "grid5.net.xml"
    path = _scenario(tmp_path, (f'net = "{net}"', f'net = "{routes}"'))
    assert _message(path) == (f"{path}: field 'network.net': 'r.rou.xml' is a route file (its root element is "
                              "<routes>, a SUMO network's is <net>)")
    path = _scenario(tmp_path, ("[simulation]", f'routes = ["{routes}", "{net}"]\n\n[simulation]'),
                     ('generator = "random_trips"\n', ""), ("vehicles_per_hour = 5400\n", ""),
                     ("params = { through_share = 0.6 }\n", ""))
    assert _message(path) == (f"{path}: field 'demand.routes[1]': 'grid5.net.xml' is a SUMO network (its root "
                              "element is <net>, a route file's is <routes>)")


def test_several_mistakes_are_listed_up_to_three(tmp_path: Path) -> None:
    path = _scenario(tmp_path, ("depart_s = 600", "depart = 600"), ("vehicles_per_hour", "vehicles_per_hr"),
                     ('type = "ambulance"', 'type = "tank"'))
    msg = _message(path)
    assert msg.startswith(f"{path}: field 'demand.vehicles_per_hr': not a field here (did you mean "
                          "'vehicles_per_hour'?); "
                          "field 'ev[0].depart': not a field here (did you mean 'depart_s'?); ")
    assert msg.endswith("more problem)") or msg.endswith("more problems)")
    assert "\n" not in msg


def test_checks_across_fields_name_the_field(tmp_path: Path) -> None:
    # the whole file's checks (an EV departing outside the simulation, two EVs of one id) name
    # the field they fail on, as the checks of single fields do
    path = _scenario(tmp_path, ("end_s = 1500", "end_s = 500"))
    assert _message(path) == (f"{path}: field 'ev[0].depart_s': EV 'ambulance_1' departs at 600 s, outside the "
                            "simulation [0, 500) s (simulation.begin_s, simulation.end_s)")
    ev = GRID.read_text().split("[[ev]]")[1]
    path = _scenario(tmp_path, ('type = "ambulance"', 'type = "ambulance"\n\n[[ev]]' + ev.replace('600', '610')))
    assert _message(path) == f"{path}: field 'ev': duplicate ev id(s): ambulance_1"


def test_a_simulation_or_demand_too_large_is_refused(tmp_path: Path) -> None:
    # 1e12 s and 1e9 vehicles per hour were taken, and ran out of memory making the demand
    path = _scenario(tmp_path, ("end_s = 1500", "end_s = 1e12"))
    assert _message(path) == (f"{path}: field 'simulation': end_s (1e+12) is 1.16e+07 days after begin_s (0): "
                            "at most 7 days are simulated in one run")
    path = _scenario(tmp_path, ("vehicles_per_hour = 5400", "vehicles_per_hour = 4.9e6"))
    assert _message(path) == (f"{path}: field 'demand.vehicles_per_hour': 4.9e+06 over the 1500 s simulated "
                            "makes 2.04e+06 trips; at most 2,000,000 are generated for one run")
    # 7 days, and just under 2,000,000 trips, load
    path = _scenario(tmp_path, ("end_s = 1500", "end_s = 604800"),
                     ("vehicles_per_hour = 5400", "vehicles_per_hour = 11904"))
    assert load_scenario(path).simulation.end_s == 604800


@pytest.mark.parametrize("setting", ["margin_s = inf", "max_lead_s = inf", "stall_release_s = -inf",
                                     "detect_range_m = nan"])
def test_a_controller_setting_must_be_finite(tmp_path: Path, setting: str) -> None:
    # an infinite margin_s passed, ran the whole simulation and crashed writing summary.json
    path = _scenario(tmp_path, ('type = "ambulance"', f'type = "ambulance"\n\n[controller]\n{setting}'))
    assert _message(path) == f"{path}: field 'controller.{setting.split()[0]}': Input should be a finite number"


@pytest.mark.parametrize(("setting", "says"), [
    ('margin_s = "3"', "Input should be a valid number"),
    ("progression = 1", "Input should be a valid boolean"),
    ('hold_crossing_turns = "true"', "Input should be a valid boolean"),
    ("need_median_ticks = 5.0", "Input should be a valid integer"),
    ("max_lead_s = true", "Input should be a valid number"),
])
def test_a_controller_setting_of_the_wrong_type_is_not_converted(tmp_path: Path, setting: str, says: str) -> None:
    # margin_s = "3" ran as 3, progression = 1 as true: a quoted number or a 1 for true is usually
    # a slip (a value meant for another field, a line pasted from elsewhere), which should show
    path = _scenario(tmp_path, ('type = "ambulance"', f'type = "ambulance"\n\n[controller]\n{setting}'))
    assert _message(path) == f"{path}: field 'controller.{setting.split()[0]}': {says}"


def test_numbers_elsewhere_are_numbers_too(tmp_path: Path) -> None:
    for old, new, field in (("end_s = 1500", 'end_s = "1500"', "simulation.end_s"),
                            ("depart_s = 600", 'depart_s = "600"', "ev[0].depart_s"),
                            ("vehicles_per_hour = 5400", 'vehicles_per_hour = "5400"', "demand.vehicles_per_hour")):
        path = _scenario(tmp_path, (old, new))
        assert _message(path) == f"{path}: field '{field}': Input should be a valid number"
    # whole numbers are numbers of seconds as they are
    path = _scenario(tmp_path, ('type = "ambulance"', 'type = "ambulance"\n\n[controller]\nmargin_s = 3'))
    assert load_scenario(path).controller.margin_s == 3.0


@pytest.mark.parametrize("name", ["./grid", "../../elsewhere", "/tmp/abs", "a b", "", "a\\u0000b"])
def test_a_scenario_name_is_a_plain_folder_name(tmp_path: Path, name: str) -> None:
    # it names the run's folders: './grid' shared another scenario's bench folder, '../../x' and
    # '/tmp/abs' wrote outside --out, a NUL byte was a traceback
    path = _scenario(tmp_path, ('name = "grid5-moderate"', f'name = "{name}"'))
    with pytest.raises(ScenarioError, match=r"field 'name': .*a scenario name has 1 to 100 letters, digits"):
        load_scenario(path)


@pytest.mark.parametrize("name", ["köln-innenstadt", "x_y.z-1", "Nürnberg"])
def test_scenario_names_in_any_script_load(tmp_path: Path, name: str) -> None:
    path = _scenario(tmp_path, ('name = "grid5-moderate"', f'name = "{name}"'))
    assert load_scenario(path).name == name


def test_an_ev_id_with_a_control_character_is_refused(tmp_path: Path) -> None:
    # it ran the whole simulation, then SUMO's tripinfo.xml could not be read
    path = _scenario(tmp_path, ('id = "ambulance_1"', 'id = "a\\u0001b"'))
    with pytest.raises(ScenarioError, match=r"field 'ev\[0\]': id 'a\\x01b' contains '\\x01': .*control characters"):
        load_scenario(path)


def test_a_byte_order_mark_is_read_past(tmp_path: Path) -> None:
    # some editors write one; it was 'not valid TOML: Invalid statement (at line 1, column 1)'
    path = _scenario(tmp_path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert load_scenario(path).name == "grid5-moderate"


def test_a_file_that_cannot_be_read_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _scenario(tmp_path)

    def refuse(self: Path, *args: object, **kwargs: object) -> str:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_text", refuse)
    with pytest.raises(ScenarioError, match=r"s\.toml: cannot be read: Permission denied"):
        load_scenario(path)


def test_escorts_of_route_file_vehicles_are_checked_with_the_evs(tmp_path: Path) -> None:
    # [[escort]] (a vehicle of the route files) may stand for the [[ev]] entries; one of the two is needed
    ev = "[[ev]]" + GRID.read_text().split("[[ev]]")[1]
    path = _scenario(tmp_path, (ev, '[[escort]]\nvehicle = "amb7"\ntype = "fire"\n'))
    assert [(e.vehicle, e.type) for e in load_scenario(path).escort] == [("amb7", "fire")]
    path = _scenario(tmp_path, (ev, ""))
    assert _message(path) == (f"{path}: field 'ev': give at least one [[ev]] (or [[escort]]: a vehicle of the "
                              "route files)")
    path = _scenario(tmp_path, (ev, ev + '\n[[escort]]\nvehicle = "ambulance_1"\n'))
    assert _message(path) == (f"{path}: field 'escort': vehicle(s) given twice (in [[escort]] or as an [[ev]] id): "
                              "ambulance_1")
    # a service ignores them, none given or given twice (README: "not dispatched, nor planned or checked")
    assert load_scenario(path, service=True).escort[0].vehicle == "ambulance_1"
    assert load_scenario(_scenario(tmp_path, (ev, "")), service=True).ev == ()
    path = _scenario(tmp_path, (ev, '[[escort]]\nvehicle = "a b"\n'))
    assert "field 'escort[0]': " in _message(path) and "may not hold white space" in _message(path)


def test_an_escort_in_a_scenario_of_generated_demand_is_told_there_is_nothing_to_escort(tmp_path: Path) -> None:
    # it said "no vehicle of that id in the configuration's route and additional files (none)"
    from controller.runtime.setup import check_scenario

    ev = "[[ev]]" + GRID.read_text().split("[[ev]]")[1]
    path = _scenario(tmp_path, (ev, '[[escort]]\nvehicle = "ghost"\n'))
    with pytest.raises(ScenarioError) as e:
        check_scenario(load_scenario(path))
    assert str(e.value) == (f"{path}: field 'escort[0]': vehicle 'ghost': the scenario's demand is generated "
                            "(demand.generator), with no vehicle of its own to escort; give the EV as an [[ev]] entry")
