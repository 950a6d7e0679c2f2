"""The trace recorder's reading of the states SUMO displayed: green lost on a preempted approach."""

from __future__ import annotations

from controller.core.corridor import Corridor, CorridorJunction
from controller.core.progress import EvProgress
from controller.core.snapshot import SignalState, Snapshot
from controller.runtime.trace import TraceRecorder


def _corridor() -> Corridor:
    j = CorridorJunction(index=0, junction_id="J", tls_id="T", approach_edge="a", exit_edge="b", route_index=0,
                         approach_lanes=("a_0",), link_indices=(1, 2), green_phases=(0,), yellow_s=3.0,
                         all_red_s=0.0, distance_m=100.0)
    return Corridor(route=("a", "b"), junctions=(j,), edge_offsets_m=(0.0, 100.0), length_m=200.0)


def _record(states: list[str], *, crosses_at: int) -> TraceRecorder:
    """One EV at 10 m/s from 0 m (it crosses the stop line at 100 m: t = 10 s ... ``crosses_at``
    shifts when), the signal showing ``states[t]`` at t = 0, 1, ..."""
    corridor = _corridor()
    rec = TraceRecorder({"ev": "ambulance"})
    p = EvProgress("ev", corridor, depart_s=0.0)
    for t, state in enumerate(states):
        p.position_m = 100.0 * t / crosses_at
        snap = Snapshot(float(t), {}, {"T": SignalState("T", state, "online", 0)})
        rec.observe(snap, {"ev": p})
    return rec


def _preemption(dwell: float | None) -> dict[str, object]:
    return {"tls": "T", "ev": "ev", "junction_index": 0, "entry": 0.0, "dwell": dwell, "exit": 12.0}


def test_green_lost_counts_the_evs_movement_turning_yellow_between_dwell_and_crossing() -> None:
    states = ["rrrr", "rGGr", "rGGr", "ryyr", "rrrr", "rGGr", "rGgr", "ryGr", "rGGr", "rGGr", "rGGr", "ryyr"]
    rec = _record(states, crosses_at=10)
    # green from 1; lost at 3 (yellow) and at 7 (one of its links); g counts as green; the yellow
    # at 11 comes after the crossing (10 s)
    assert rec.green_lost([_preemption(1.0)]) == [2]
    # dwell later: only the loss after it counts
    assert rec.green_lost([_preemption(5.0)]) == [1]
    # no dwell (the entry never showed the EV's movement green), another EV, another signal
    assert rec.green_lost([_preemption(None)]) == [None]
    assert rec.green_lost([{**_preemption(1.0), "ev": "other"}]) == [None]
    assert rec.green_lost([{**_preemption(1.0), "tls": "U"}]) == [None]
    # links the signal's states do not have
    short = _record([s[:2] for s in states], crosses_at=10)
    assert short.green_lost([_preemption(1.0)]) == [None]


def test_green_lost_is_zero_when_the_movement_stays_green_until_the_crossing() -> None:
    states = ["rrrr", "rGGr", *(["rGGr"] * 9), "ryyr", "rrrr"]
    assert _record(states, crosses_at=10).green_lost([_preemption(1.0)]) == [0]
    # an EV that has not crossed yet: the hand-back's own yellow counts, and so does the program's
    # after it (a maximum-presence hand-back into a phase still green for the EV, ended by the
    # program 7 s later: Bologna's 235 in a reviewer's run, not counted), until the next
    # preemption of the junction for the EV begins, which counts its own
    never = _record(states, crosses_at=100)
    assert never.green_lost([_preemption(1.0)]) == [1]
    assert never.green_lost([{**_preemption(1.0), "restored": 11.0}]) == [1]  # the hand-back's own yellow
    assert never.green_lost([{**_preemption(1.0), "restored": 10.0}]) == [1]  # the program's, after it
    again = {**_preemption(11.5), "entry": 11.0}
    assert never.green_lost([{**_preemption(1.0), "restored": 10.0}, again]) == [0, 0]
    assert never.green_lost([{**_preemption(1.0), "restored": 10.0}, {**again, "entry": 12.0}]) == [1, 0]


def test_green_lost_counts_a_yellow_read_at_the_tick_the_ev_is_first_past_the_line() -> None:
    # the state read at a tick is the one SUMO moved the vehicles under in the step that ended
    # there: an EV first seen at the line at 10 s crossed under the yellow read at 10 s
    states = ["rrrr", "rGGr", *(["rGGr"] * 8), "ryyr", "rrrr"]
    assert _record(states, crosses_at=10).green_lost([_preemption(1.0)]) == [1]


def test_green_lost_ends_where_the_ev_leaves_the_corridor() -> None:
    # re-routed at 5 s onto a route without the signal: the hand-back's yellow at 7 s is not
    # the EV meeting yellow
    corridor, other = _corridor(), Corridor(route=("c",), junctions=(), edge_offsets_m=(0.0,), length_m=100.0)
    rec = TraceRecorder({"ev": "ambulance"})
    p = EvProgress("ev", corridor, depart_s=0.0)
    states = ["rrrr", "rGGr", "rGGr", "rGGr", "rGGr", "rGGr", "rGGr", "ryyr", "rrrr", "rrrr"]
    for t, state in enumerate(states):
        if t == 5:
            p = EvProgress("ev", other, depart_s=0.0)
        p.position_m = 10.0 * t
        rec.observe(Snapshot(float(t), {}, {"T": SignalState("T", state, "online", 0)}), {"ev": p})
    assert rec.green_lost([{**_preemption(1.0), "restored": 9.0}]) == [0]


def test_green_lost_counts_a_permissive_green_as_green() -> None:
    states = ["rrrr", "rGGr", "rGgr", "rggr", "rGGr", *(["rGGr"] * 6), "ryyr"]
    assert _record(states, crosses_at=10).green_lost([_preemption(1.0)]) == [0]


def test_the_slowest_speed_counts_only_the_100_m_before_a_stop_line() -> None:
    # the stop line at 100 m: the 0.4 m/s crawl 40 m before it counts; 0.05 m/s 101 m before it
    # and 0.2 m/s past it do not
    rec = TraceRecorder({"ev": "ambulance"})
    p = EvProgress("ev", _corridor(), depart_s=0.0)
    for t, (pos, speed) in enumerate([(-1.0, 0.05), (60.0, 0.4), (99.0, 8.0), (150.0, 0.2)]):
        p.position_m, p.speed_mps = pos, speed
        rec.observe(Snapshot(float(t), {}, {"T": SignalState("T", "rGG", "online", 0)}), {"ev": p})
    assert rec.slowest_before_signals("ev") == 0.4  # (-1 m is 101 m before the line)
    assert rec.slowest_before_signals("ev", within_m=39.0) == 8.0
    assert rec.slowest_before_signals("other") is None


def test_a_signal_no_longer_read_is_marked_and_drawn_as_nothing() -> None:
    # read from 0 to 3, not read 4..5, read again from 6: the trace says so, and the diagram's
    # bars stop where the reading stopped (the last state read was drawn on to the plot's end)
    from controller.report.figures import movement_intervals

    corridor = _corridor()
    rec = TraceRecorder({"ev": "ambulance"})
    p = EvProgress("ev", corridor, depart_s=0.0)
    read = {0: "rGGr", 1: "rGGr", 2: "ryyr", 3: "rrrr", 6: "rrrr", 7: "rGGr"}
    for t in range(8):
        signals = {"T": SignalState("T", read[t], "online", 0)} if t in read else {}
        rec.observe(Snapshot(float(t), {}, signals), {"ev": p})
    changes = rec.as_dict(header={})["signals"]["T"]
    assert changes == [[0.0, "rGGr"], [2.0, "ryyr"], [3.0, "rrrr"], [4.0, ""], [6.0, "rrrr"], [7.0, "rGGr"]]
    spans = movement_intervals([(t, s) for t, s in changes], (1, 2), 0.0, 10.0)
    assert [(a, b) for a, b, _ in spans] == [(0.0, 2.0), (2.0, 3.0), (3.0, 4.0), (6.0, 7.0), (7.0, 10.0)]
