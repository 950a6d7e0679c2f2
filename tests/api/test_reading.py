"""What a live service reads from SUMO: an escort's corridor while it is under way, its signals
until 120 s after they are back in their programs (then they leave /v1/signals, and SUMO is no
longer asked for them); a signal another escort still needs stays."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.runtime.service import SimService
from controller.runtime.service_model import Cancel, Dispatch
from controller.runtime.watch import KEEP_AFTER_S
from tests.api.conftest import ROW, in_process_service, wait_for

pytestmark = pytest.mark.sumo


def test_signals_are_read_while_an_escort_needs_them(tiny_scenario: Path, tmp_path: Path) -> None:
    service: SimService = in_process_service(tiny_scenario, tmp_path, speed=100.0)
    service.start()
    try:
        row = ("left1A1", "A1B1", "B1C1", "C1right1")
        column = ("bottom1B0", "B0B1", "B1B2", "B2top1")  # crosses the row at B1
        service.submit(Dispatch(escort_id="amb", route=row)).result(timeout=30)
        assert set(service.state.signals) == set(ROW)
        wait_for(lambda: service.state.escorts["amb"].state == "arrived", what="the ambulance's arrival")
        arrived_s = service.state.escorts["amb"].arrived_s
        assert arrived_s is not None
        # a second escort through B1 (dispatched 60 s after the ambulance arrived), cancelled at once
        wait_for(lambda: service.state.t_s >= arrived_s + 60, what="60 s after the arrival")
        service.submit(Dispatch(escort_id="fire", route=column, vehicle_type="fire")).result(timeout=30)
        assert set(service.state.signals) == {*ROW, "B0", "B2"}
        service.submit(Cancel("fire")).result(timeout=30)
        cancelled_s = service.state.escorts["fire"].cancelled_s
        assert cancelled_s is not None
        # the ambulance's A1 and C1 leave KEEP_AFTER_S after its arrival; B1, needed by the fire
        # engine since, stays with the fire engine's B0 and B2 until KEEP_AFTER_S after its cancel
        wait_for(lambda: not {"A1", "C1"} & set(service.state.signals), what="A1 and C1 dropped")
        assert service.state.t_s - arrived_s >= KEEP_AFTER_S
        assert set(service.state.signals) == {"B0", "B1", "B2"}
        wait_for(lambda: not service.state.signals, what="every signal dropped")
        assert service.state.t_s - cancelled_s >= KEEP_AFTER_S
        assert service.state.preempted == () and sum(service.state.safety.values()) == 0
        reading = service._reading
        assert reading is not None and reading.signals == frozenset()
        # ended and settled: each escort's view is kept, no longer rebuilt every tick
        for esc in service._escorts.values():
            assert esc.final and service.state.escorts[esc.id] is esc.view
            assert esc.view is not None and all(j.stage == "idle" for j in esc.view.junctions)
        # event ids count from the start time in microseconds (rising across restarts even when a
        # run publishes more than one event a millisecond)
        assert service.events.since(0)[0].id > 10**15
    finally:
        service.stop()


def test_a_signals_view_shows_its_program_as_the_tick_leaves_it(
    tiny_scenario: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # state, program and phase were read before the tick's commands, stage and preempted after
    # them: in the tick of a switch or a hand-back a signal showed 'preempted' with its own
    # program, or not preempted with the 'online' one greenwave sets
    service: SimService = in_process_service(tiny_scenario, tmp_path, speed=100.0)
    views: list[tuple[float, str, str, bool, str]] = []
    publish = SimService._publish

    def recording(self: SimService, t_s: float, **kwargs: Any) -> None:
        publish(self, t_s, **kwargs)
        views.extend((t_s, v.tls_id, v.program, v.preempted, v.stage) for v in self.state.signals.values())

    monkeypatch.setattr(SimService, "_publish", recording)
    service.start()
    try:
        service.submit(Dispatch(escort_id="amb", route=("left1A1", "A1B1", "B1C1", "C1right1"))).result(timeout=30)
        wait_for(lambda: service.state.escorts["amb"].state == "arrived" and not service.state.preempted,
                 what="the arrival and every hand-back")
    finally:
        service.stop()
    assert {tls for _, tls, _, preempted, _ in views if preempted} == set(ROW)  # each was switched
    wrong = [v for v in views if v[3] != (v[2] == "online")]
    assert not wrong, wrong[:5]
