"""A user's SUMO configuration read as it is: what greenwave copies and where outputs go."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from controller.errors import ScenarioError
from controller.runtime.setup import sumocfg_name
from controller.sim.sumocfg import read_sumocfg, redirect_additional_outputs, sumo_time_s


def _detectors(path: Path, *files: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    dets = "".join(f'<e1Detector id="d{i}{path.parent.name}" lane="a_0" pos="5" freq="60" file="{f}"/>'
                   for i, f in enumerate(files))
    path.write_text(f"<additional>{dets}</additional>", encoding="utf-8")
    return path


def test_files_of_one_name_in_different_folders_stay_two_files(tmp_path: Path) -> None:
    # a valid configuration SUMO loads: additional-files="sub/dets.add.xml,sub2/dets.add.xml",
    # each with a detector writing e1.xml in its own folder (the copies used to overwrite each other)
    user = tmp_path / "cfg"
    a = _detectors(user / "sub" / "dets.add.xml", "e1.xml", "e1.xml")  # two detectors, one file
    b = _detectors(user / "sub2" / "dets.add.xml", "e1.xml")
    out = tmp_path / "out"
    used: dict[str, Path] = {}
    copies = [redirect_additional_outputs(p, out, used) for p in (a, b)]
    assert [c.name for c in copies] == ["dets.add.xml", "dets.add-2.xml"]
    assert all(c.parent == (out / "inputs").resolve() for c in copies)
    files = [[d.get("file") for d in ET.parse(c).getroot()] for c in copies]
    assert files == [[str((out / "outputs" / "e1.xml").resolve())] * 2, [str((out / "outputs" / "e1-2.xml").resolve())]]
    assert a.read_text(encoding="utf-8").count('file="e1.xml"') == 2  # the user's files are left as they are
    # without outputs a file is used where it is
    plain = user / "plain.add.xml"
    plain.write_text('<additional><vType id="x"/></additional>', encoding="utf-8")
    assert redirect_additional_outputs(plain, out, used) == plain


def test_timed_event_and_calibrator_outputs_are_redirected_too(tmp_path: Path) -> None:
    # a SaveTLSStates event writes to its `dest` (it landed next to the user's additional file)
    user = tmp_path / "cfg"
    user.mkdir()
    add = user / "tls.add.xml"
    add.write_text('<additional><timedEvent type="SaveTLSStates" source="J1" dest="tls-J1.xml"/>'
                   '<calibrator id="c" edge="a" pos="0" output="cal.xml"/></additional>', encoding="utf-8")
    out = tmp_path / "out"
    copy = redirect_additional_outputs(add, out, {})
    assert copy.parent == (out / "inputs").resolve()
    event, calibrator = list(ET.parse(copy).getroot())
    assert event.get("dest") == str((out / "outputs" / "tls-J1.xml").resolve())
    assert event.get("source") == "J1"
    assert calibrator.get("output") == str((out / "outputs" / "cal.xml").resolve())
    # a variable speed sign's file is its definition, an input: used where it is
    vss = user / "vss.add.xml"
    vss.write_text('<additional><variableSpeedSign id="v" lanes="a_0" file="vss-steps.xml"/></additional>',
                   encoding="utf-8")
    assert redirect_additional_outputs(vss, out, {}) == vss


def test_times_in_seconds_or_days_hours_minutes_seconds(tmp_path: Path) -> None:
    assert sumo_time_s("57700") == 57700.0 and sumo_time_s("57700.5") == 57700.5 and sumo_time_s("-1") == -1.0
    assert sumo_time_s("16:01:40") == 57700.0 and sumo_time_s("1:00:00:10") == 86410.0 and sumo_time_s("2:30") == 150.0
    for bad in ("abc", "nan", "inf", "1:2:3:4:5", "16:-1:00", ""):
        assert sumo_time_s(bad) is None, bad
    # a configuration with its begin in H:M:S (SUMO starts it at 57700; it used to be refused)
    (tmp_path / "net.net.xml").write_text("<net/>", encoding="utf-8")
    cfg = tmp_path / "run.sumocfg"
    cfg.write_text('<configuration><input><net-file value="net.net.xml"/></input>'
                   '<time><begin value="16:01:40"/><end value="16:31:40"/></time></configuration>', encoding="utf-8")
    inputs = read_sumocfg(cfg)
    assert (inputs.begin_s, inputs.end_s) == (57700.0, 59500.0)
    cfg.write_text('<configuration><input><net-file value="net.net.xml"/></input>'
                   '<time><begin value="four"/></time></configuration>', encoding="utf-8")
    with pytest.raises(ScenarioError, match=r"option 'begin': 'four' is not a time"):
        read_sumocfg(cfg)


def test_a_run_is_named_after_its_configuration_and_a_generic_one_after_its_folder(tmp_path: Path) -> None:
    city = tmp_path / "bologna_joined"
    city.mkdir()
    assert sumocfg_name(city / "run.sumocfg") == "bologna_joined-run"
    assert sumocfg_name(city / "all_modes.sumocfg") == "all_modes"


def test_a_copied_additional_file_still_finds_what_it_includes(tmp_path: Path) -> None:
    # copied to the run's inputs/ for its outputs, a relative <include href> pointed nowhere
    user = tmp_path / "cfg"
    (user / "parts").mkdir(parents=True)
    (user / "parts" / "sub.add.xml").write_text('<additional><vType id="x"/></additional>', encoding="utf-8")
    main = user / "main.add.xml"
    main.write_text('<additional><include href="parts/sub.add.xml"/><include href="/abs/other.add.xml"/>'
                    '<e1Detector id="d" lane="a_0" pos="1" period="60" file="e1.xml"/></additional>', encoding="utf-8")
    copy = redirect_additional_outputs(main, tmp_path / "out", {})
    hrefs = [el.get("href") for el in ET.parse(copy).getroot().iter("include")]
    assert hrefs == [str((user / "parts" / "sub.add.xml").resolve()), "/abs/other.add.xml"]
    assert 'href="parts/sub.add.xml"' in main.read_text(encoding="utf-8")  # the user's file as it was


def test_an_option_given_with_the_short_attribute_v_is_read(tmp_path: Path) -> None:
    # <net-file v="..."/> runs in SUMO; it was refused: "no 'net-file' in the configuration"
    (tmp_path / "net.net.xml").write_text("<net/>", encoding="utf-8")
    cfg = tmp_path / "short.sumocfg"
    cfg.write_text('<configuration><input><net-file v="net.net.xml"/></input>'
                   '<time><begin v="100"/><end value="700"/></time></configuration>', encoding="utf-8")
    inputs = read_sumocfg(cfg)
    assert inputs.net_file == (tmp_path / "net.net.xml").resolve() and (inputs.begin_s, inputs.end_s) == (100.0, 700.0)
