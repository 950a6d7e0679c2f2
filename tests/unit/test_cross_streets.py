"""The cross streets whose time loss summary.json reports: the streets a preemption holds red."""

from __future__ import annotations

from pathlib import Path

from controller.runtime.setup import CROSS_STREET_UPSTREAM_M, cross_street_edges, prepare_scenario
from controller.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


def test_the_opposing_approach_green_with_the_ev_is_not_a_cross_street(tmp_path: Path) -> None:
    # Ingolstadt 7's police car: the first version counted 104010354 (coming the other way into
    # gneJ207, green with the EV), 32124637#1 and 285716192#0.83 as cross streets, 23 % of the
    # cross-street time loss under `none`
    setup = prepare_scenario(load_scenario(SCENARIOS / "ingolstadt7.toml"), seed=1, out_dir=tmp_path / "o")
    edges = cross_street_edges(setup.network, setup.evs)
    assert not {"104010354", "32124637#1", "285716192#0.83"} & set(edges)
    assert not set(edges) & set(setup.evs[0].corridor.route)
    # every one is red in each phase serving the EV, or leads onto one within the reach
    net = setup.network
    assert "124812856#1" in edges and "124812856#0" in edges  # a 1 m edge and the one before it
    assert net.edges["124812856#1"].length_m < CROSS_STREET_UPSTREAM_M
    assert net.connections_between("124812856#0", "124812856#1")


def test_the_grids_cross_streets_are_the_two_side_approaches_of_each_signal(tmp_path: Path) -> None:
    setup = prepare_scenario(load_scenario(SCENARIOS / "grid5-moderate.toml"), seed=1, out_dir=tmp_path / "o")
    edges = cross_street_edges(setup.network, setup.evs)
    assert len(edges) == 2 * len(setup.evs[0].corridor.junctions)
    assert {"A1A0", "bottom0A0"} <= set(edges)
