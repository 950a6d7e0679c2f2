"""An escorted vehicle that leaves the simulation without arriving (removed by someone else) ends
its escort: cancelled ('vanished from the simulation', also the reason its signals' exits give),
its signals handed back, and the cancel lists them as every cancel does."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from controller.core.snapshot import Snapshot
from controller.runtime.service import SimService
from controller.runtime.service_model import Dispatch
from controller.sim.adapter import SumoAdapter
from tests.api.conftest import ROW, in_process_service
from tests.helpers import long_teleport_sumocfg

pytestmark = pytest.mark.sumo


def test_a_vanished_escorts_cancel_lists_the_signals_it_held(
    tiny_scenario: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service: SimService = in_process_service(tiny_scenario, tmp_path, speed=20.0)
    step = SumoAdapter.step
    gone = False

    def losing_step(self: SumoAdapter) -> Snapshot:
        # from the step after a signal was switched for it, the ambulance is no longer seen
        snap = step(self)
        return replace(snap, vehicles={k: v for k, v in snap.vehicles.items() if k != "amb"}) if gone else snap

    monkeypatch.setattr(SumoAdapter, "step", losing_step)
    service.start()
    try:
        service.submit(Dispatch(escort_id="amb", route=("left1A1", "A1B1", "B1C1", "C1right1"))).result(timeout=30)
        deadline = time.monotonic() + 30
        while not service.state.preempted and time.monotonic() < deadline:
            time.sleep(0.01)
        # (the service thread reads the flag on its next step: what it held then is read after the end)
        gone = True
        while service.state.escorts["amb"].state != "cancelled" and time.monotonic() < deadline:
            time.sleep(0.01)
        while service.state.preempted and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        service.stop()
    assert service.state.escorts["amb"].reason == "vanished from the simulation"
    events = [(e.id, e.type, e.data) for e in service.events.since(0)]
    cancel = next(d for _, k, d in events if k == "cancel")
    # the switched signals at the vanishing: entered and not handed back before the cancel's tick
    t = cancel["t_s"]
    entered = {d["tls_id"] for _, k, d in events if k == "entry" and d["t_s"] < t}
    back = {d["tls_id"] for _, k, d in events if k == "handback" and d["t_s"] < t}
    assert entered - back, events
    assert entered - back <= set(cancel["handing_back"]) <= set(ROW), (cancel, events)
    row = next(r for r in service.audit.since(0, kind="cancel") if r.escort_id == "amb")
    assert row.detail == {"reason": "vanished from the simulation", "handing_back": cancel["handing_back"]}
    # each is handed back (or disarmed, if only armed) on that tick or after
    for tls in cancel["handing_back"]:
        assert any(k in ("handback", "disarmed") and d["tls_id"] == tls and d["t_s"] >= t for _, k, d in events), tls
    # the exits and hand-backs give the cancel's wording (the planner's was 'vanished')
    reasons = [d["reasons"] for _, k, d in events if k in ("exit", "handback") and d["t_s"] >= t and "reasons" in d]
    assert reasons and all(r == {"amb": "vanished from the simulation"} for r in reasons), reasons
    # and the cancel comes first in the stream, as a cancel by request's does: the signals' exits
    # and disarms it causes on its tick followed it (they came before it, the escort still
    # "en_route" for a client updating it on the cancel)
    cancel_id = next(i for i, k, _ in events if k == "cancel")
    caused = [(i, k) for i, k, d in events if k in ("exit", "disarmed", "handback") and d["t_s"] == t]
    assert caused and all(i > cancel_id for i, _ in caused), (cancel_id, caused)


def test_an_escort_sumo_carries_off_the_road_for_long_arrives_with_no_made_up_crossings(
        tiny_net: Path, tmp_path: Path) -> None:
    # (the run's integration test, through the service: the ambulance stuck behind a car stopped
    # on A1B1, B1C1 filled by a long stopped vehicle: SUMO's teleport carries it off the road for
    # about three minutes, to C1C2.) It is not taken for vanished: its held signals go back while
    # it is off the road, C2 is served once it is back, it arrives; B1 and C1, passed off the road,
    # have no crossing time
    scenario = tmp_path / "s.toml"
    scenario.write_text(f'name = "tp"\n[network]\nsumocfg = "{long_teleport_sumocfg(tmp_path, tiny_net)}"\n'
                        '[simulation]\nbegin_s = 0\nend_s = 600\n')
    service: SimService = in_process_service(scenario, tmp_path, speed=100.0)
    service.start()
    try:
        service.submit(Dispatch(escort_id="amb", route=("left1A1", "A1B1", "B1C1", "C1C2", "C2right2"))).result(
            timeout=30)
        deadline = time.monotonic() + 60
        while service.state.escorts["amb"].state not in ("arrived", "cancelled") and time.monotonic() < deadline:
            time.sleep(0.05)
        view = service.state.escorts["amb"]
        assert view.state == "arrived", (view.state, view.reason)
        crossed = {j.tls_id: j.crossed_s for j in view.junctions}
        assert crossed["B1"] is None and crossed["C1"] is None, crossed
        assert crossed["A1"] is not None and crossed["C2"] is not None, crossed
        events = [(e.type, e.data) for e in service.events.since(0)]
        assert not [d for k, d in events if k == "cancel"], events
        reasons = {d["tls_id"]: d.get("reasons", {}).get("amb") for k, d in events if k in ("exit", "handback")}
        assert reasons.get("B1") == "teleported by SUMO" and reasons.get("C2") == "crossed", reasons
    finally:
        service.stop()
