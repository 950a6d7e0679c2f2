"""The bundled scenarios, run the way a user runs them (the issue's acceptance commands)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from controller.scenario import load_scenario
from tests.helpers import run_ok
from tests.integration.test_run_tiny import assert_design_fields

pytestmark = pytest.mark.sumo

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((REPO / "scenarios").glob("*.toml"))



def test_every_scenario_file_is_valid_and_routes_cross_enough_signals() -> None:

    names = {p.stem for p in SCENARIOS}
    assert {"grid5-moderate", "grid5-heavy", "arterial-moderate", "arterial-heavy", "ingolstadt21",
            "ingolstadt7", "bologna"} <= names
    for path in SCENARIOS:
        sc = load_scenario(path)
        assert all(ev.depart_s >= sc.simulation.begin_s + 300 for ev in sc.ev), path.name  # after a warm-up


@pytest.mark.parametrize("name", ["grid5-moderate", "ingolstadt7", "bologna", "arterial-heavy", "ingolstadt21"])
def test_route_signal_counts(name: str, tmp_path: Path) -> None:
    from controller.runtime.setup import prepare_scenario

    setup = prepare_scenario(load_scenario(REPO / "scenarios" / f"{name}.toml"), seed=1, out_dir=tmp_path)
    for ev in setup.evs:
        assert len(ev.corridor.junctions) >= 6
    if name == "ingolstadt7":
        assert len(set(setup.evs[0].corridor.tls_ids())) == 7
    if name == "grid5-moderate":
        assert len(setup.evs[0].corridor.junctions) == 9


def test_grid5_moderate_none_and_oracle(tmp_path: Path) -> None:
    scenario = str(REPO / "scenarios" / "grid5-moderate.toml")
    none = run_ok(["run", scenario, "--controller", "none", "--seed", "3", "--out", str(tmp_path / "a")])
    oracle = run_ok(["run", scenario, "--controller", "oracle", "--seed", "3", "--out", str(tmp_path / "b")])
    for s in (none, oracle):
        assert_design_fields(s)
        for ev in s["evs"]:
            assert ev["travel_time"] >= ev["free_flow_time"] > 0
        assert all(v == 0 for v in s["safety"]["by_touch"]["untouched"].values())
    assert all(none["safety"][r] == 0 for r in ("S1", "S2", "S3", "S4"))
    assert oracle["evs"][0]["travel_time"] <= none["evs"][0]["travel_time"] + 2
    assert oracle["evs"][0]["preempted"] == oracle["evs"][0]["junctions"] == 9


def test_ingolstadt7_oracle_not_slower_than_none(tmp_path: Path) -> None:
    scenario = str(REPO / "scenarios" / "ingolstadt7.toml")
    none = run_ok(["run", scenario, "--controller", "none", "--seed", "1", "--out", str(tmp_path / "a")])
    oracle = run_ok(["run", scenario, "--controller", "oracle", "--seed", "1", "--out", str(tmp_path / "b")])
    assert oracle["evs"][0]["travel_time"] <= none["evs"][0]["travel_time"] + 2
    assert none["safety"]["S1"] == none["safety"]["S2"] == none["safety"]["S3"] == none["safety"]["S4"] == 0


def test_bologna_sumocfg_writes_nothing_into_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "bologna_joined"
    shutil.copytree(REPO / "networks" / "bologna_joined", folder)
    before = sorted(p.name for p in folder.iterdir())
    s = run_ok(["run", "--sumocfg", str(folder / "run.sumocfg"), "--ev", "a210,b28,900", "--out",
              str(tmp_path / "out"), "--end", "1500"])
    assert sorted(p.name for p in folder.iterdir()) == before
    ev = s["evs"][0]
    assert ev["arrival"] is not None and ev["travel_time"] >= ev["free_flow_time"] > 0
    assert (tmp_path / "out" / "outputs" / "e1_output.xml").is_file()
    assert all(v == 0 for v in s["safety"]["by_touch"]["untouched"].values())


def test_controller_settings_of_a_scenario_reach_the_controller(tmp_path: Path) -> None:
    from controller.runtime.run import controller_config, with_step

    text = (REPO / "scenarios" / "arterial-moderate.toml").read_text().replace(
        "upstream_share = 0.5", "upstream_share = 0.25\nprogression = false\nmax_lead_s = 80\nhandback_sync = false\n"
        "exclusive_service = \"whole\"\nneed_median_ticks = 1\nlate_entry_tolerance_s = 6\nserve_first_s = 25")
    path = tmp_path / "s.toml"
    path.write_text(text.replace("../networks", str(REPO / "networks")))
    cfg = controller_config(load_scenario(path).controller.overrides())
    assert cfg.progression is False and cfg.upstream_share == 0.25 and cfg.planner.max_lead_s == 80
    assert cfg.planner.handback_sync is False and cfg.exclusive_service == "whole"
    assert cfg.planner.median_ticks == 1 and cfg.planner.late_entry_tolerance_s == 6
    assert cfg.planner.serve_first_s == 25
    default = controller_config(load_scenario(REPO / "scenarios" / "arterial-moderate.toml").controller.overrides())
    assert default.progression is True and default.planner.max_lead_s == 100 and default.planner.handback_sync
    assert default.planner.median_ticks == 5 and default.planner.late_entry_tolerance_s == 3
    # the median's 5 s at any step: 50 ticks at 0.1 s, unless given in ticks
    assert with_step(default, 0.1).planner.median_ticks == 50
    assert with_step(cfg, 0.1).planner.median_ticks == 1
    assert default.planner.serve_first_s == 10


def test_the_ev_does_not_stand_on_green_for_the_next_signals_queue(tmp_path: Path) -> None:
    # Ingolstadt 21 westbound (the scenario's route the other way), seed 3: gneJ207's queue backs
    # up over the 17 m street out of the long joined junction before it, and SUMO lets no vehicle
    # enter a junction without room beyond it: the EV stood 6 s at its stop line on green, with
    # gneJ207 timed for its own approach's queue only (spillback_link_m 0, as before). (Since the
    # yellow-trap rule it crawls there instead of standing, 9 s slower than with the setting.)
    from dataclasses import replace

    from controller.runtime.run import run
    from controller.runtime.setup import prepare_sumocfg
    from controller.scenario import EvSpec

    results = {}
    for spillback_link_m in (100.0, 0.0):
        ev = EvSpec.model_validate({"id": "ev2", "from": "315358244", "to": "201956820", "depart_s": 58050})
        setup = prepare_sumocfg(REPO / "networks" / "resco_ingolstadt21" / "ingolstadt21.sumocfg", [ev], seed=3,
                                out_dir=tmp_path / f"s{spillback_link_m:g}", end_s=58400)
        summary = run(replace(setup, controller={**setup.controller, "spillback_link_m": spillback_link_m}),
                      "greenwave")
        (result,) = summary["evs"]
        assert result["arrival"] is not None and all(summary["safety"][r] == 0 for r in ("S1", "S2", "S3", "S4", "S5"))
        results[spillback_link_m] = result
    assert results[100.0]["stops"] == 0 and results[100.0]["time_stopped"] == 0, results[100.0]
    assert results[0.0]["travel_time"] >= results[100.0]["travel_time"] + 5.0, (results[0.0], results[100.0])


def test_a_run_lists_the_same_violations_whatever_pythons_hash_seed(tmp_path: Path) -> None:
    # the adapter read its watched signals from a set: the order of summary.json's violations
    # (the first 200 listed) changed with PYTHONHASHSEED, 601 lines apart on this run
    import json
    import os
    import subprocess
    import sys

    listed = []
    for seed in ("1", "2"):
        out = tmp_path / f"h{seed}"
        done = subprocess.run(
            [sys.executable, "-m", "controller", "run", str(REPO / "scenarios" / "grid5-moderate.toml"),
             "--controller", "oracle", "--seed", "5", "--out", str(out)],
            capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)},
        )
        assert done.returncode == 0, done.stderr
        listed.append(json.loads((out / "summary.json").read_text())["safety"]["violations"])
    assert len(listed[0]) > 20 and listed[0] == listed[1]
