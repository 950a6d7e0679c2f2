"""The simulation thread failing under a live service: the escorts under way end and the
signals that were preempted are reported handed back before the error, so that a client following
the events is not left waiting for escorts and hand-backs that will never come."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controller.runtime.service import SimService
from controller.runtime.service_model import Dispatch
from controller.sim.adapter import SumoAdapter
from tests.api.conftest import ROW, in_process_service, wait_for

pytestmark = pytest.mark.sumo


def _escort_preempting(service: SimService) -> float:
    """Dispatch escort "amb" along the row and wait until a signal is preempted for it; the
    deadline (monotonic) for the rest of the test."""
    route = ("left1A1", "A1B1", "B1C1", "C1right1")
    service.submit(Dispatch(escort_id="amb", route=route)).result(timeout=30)
    deadline = time.monotonic() + 30
    while not service.state.preempted and time.monotonic() < deadline:
        time.sleep(0.05)
    return deadline


@contextlib.contextmanager
def _escorting(scenario: Path, tmp_path: Path) -> Iterator[tuple[SimService, float]]:
    """A service on ``scenario`` with escort "amb" preempting (:func:`_escort_preempting`), and
    the deadline; stopped on the way out."""
    service: SimService = in_process_service(scenario, tmp_path, speed=20.0)
    service.start()
    try:
        yield service, _escort_preempting(service)
    finally:
        service.stop()


def _fail_and_wait(service: SimService, monkeypatch: pytest.MonkeyPatch, deadline: float) -> None:
    """Make the simulation thread's next step raise, and wait until the service reports it failed."""

    def boom(self: SumoAdapter) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(SumoAdapter, "step", boom)
    while service.state.failed is None and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_failed_simulation_ends_its_escorts_and_reports_the_hand_backs(
    tiny_scenario: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _escorting(tiny_scenario, tmp_path) as (service, deadline):
        held = service.state.preempted
        assert held and set(held) <= set(ROW)
        _fail_and_wait(service, monkeypatch, deadline)
        assert service.state.failed == "internal error in the simulation thread: RuntimeError"
    events = [(e.type, e.data) for e in service.events.since(0)]
    kinds = [k for k, _ in events]
    cancel = next(d for k, d in events if k == "cancel")
    assert cancel["escort"] == "amb" and cancel["reason"].startswith("the simulation failed")
    assert set(cancel["handing_back"]) >= set(held)  # (the audit's cancel row lists them too: it did not)
    row = next(r for r in service.audit.since(0, kind="cancel") if r.escort_id == "amb")
    assert row.detail["handing_back"] == cancel["handing_back"]
    handed = {d["tls_id"] for k, d in events if k == "handback" and d.get("forced")}
    assert handed >= set(held)
    # the shape of any hand-back's (it had tls_id, t_s and forced alone: a client reading its
    # escorts broke); restored: the adapter set the signals back (SUMO itself did not die)
    for d in (d for k, d in events if k in ("handback", "disarmed") and d.get("forced")):
        assert d["stage"] == "idle" and d["previous"] in ("armed", "entry", "dwell", "exit"), d
        assert d["escorts"] == ["amb"] and d["reasons"]["amb"].startswith("the simulation failed"), d
    assert all(d["restored"] is True for k, d in events if k == "handback" and d.get("forced"))
    assert next(d for k, d in events if k == "error")["t_s"] is not None
    failed = next(r for r in service.audit.since(0, kind="service") if r.detail.get("event") == "failed")
    assert failed.t_s is not None
    # a signal only armed for the escort (none to hand back) got no event at all: now disarmed
    stage_of = {d["tls_id"]: k for k, d in events if k in ("armed", "entry", "dwell", "exit", "handback", "disarmed")
                and not d.get("forced")}
    armed = {tls for tls, k in stage_of.items() if k == "armed"}
    assert armed  # (the row's later signals wait armed while the first is switched)
    assert {d["tls_id"] for k, d in events if k == "disarmed" and d.get("forced")} == armed - handed
    assert kinds.index("cancel") < kinds.index("error") and kinds[-1] == "error"
    view = service.state.escorts["amb"]  # what GET /v1/emergencies/amb shows
    assert view.state == "cancelled" and view.reason.startswith("the simulation failed")


def test_escorts_read_ended_where_the_failure_leaves_their_views_unreadable(
    tiny_scenario: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _escorting(tiny_scenario, tmp_path) as (service, deadline):
        live = service.state.escorts["amb"]
        assert live.state == "en_route" and any(j.eta_s is not None for j in live.junctions)

        def unreadable(self: SimService, *args: object) -> None:
            raise RuntimeError("views")

        monkeypatch.setattr(SimService, "_escort_view", unreadable)
        _fail_and_wait(service, monkeypatch, deadline)
    view = service.state.escorts["amb"]  # the last view, ended: it showed the escort en route
    assert view.state == "cancelled" and view.reason.startswith("the simulation failed")
    assert view.cancelled_s is not None and view.position is None and view.speed_mps is None
    assert all(j.eta_s is None and j.stage == "idle" for j in view.junctions)
    assert [j.tls_id for j in view.junctions] == [j.tls_id for j in live.junctions]


def test_a_simulation_step_that_does_not_end_is_reported_stalled(
    tiny_scenario: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an attached SUMO stopped (SIGSTOP) mid-escort: /healthz went on answering 200 "ok", its
    # time standing still, and a liveness probe saw nothing wrong
    import asyncio
    import threading

    import httpx

    from controller.api.app import create_app

    class Client:  # (the app in this process, without a server)
        def __init__(self, app: Any) -> None:
            self.app = app

        def get(self, path: str) -> httpx.Response:
            async def get() -> httpx.Response:
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app),
                                             base_url="http://test") as c:
                    return await c.get(path)

            return asyncio.run(get())

    with _escorting(tiny_scenario, tmp_path) as (service, _deadline):
        service.stall_after_s = 1.0
        client = Client(create_app(service, "t"))
        assert client.get("/healthz").json()["status"] == "ok"
        answer = threading.Event()
        stepping = SumoAdapter.step

        def frozen(self: SumoAdapter) -> object:
            answer.wait(30)
            return stepping(self)

        monkeypatch.setattr(SumoAdapter, "step", frozen)
        try:
            r = wait_for(lambda: (h := client.get("/healthz")).status_code == 503 and h, timeout_s=10,
                         what="a stalled service")
            body = r.json()
            assert body["status"] == "stalled" and body["preempted"], body
            detail = body["detail"]
            assert detail.startswith("no simulation step has ended for ") and "does not answer" in detail
            assert "\ngreenwave_up 0\n" in client.get("/metrics").text
        finally:
            answer.set()  # (SUMO answers again: the service steps on)
        monkeypatch.setattr(SumoAdapter, "step", stepping)
        wait_for(lambda: client.get("/healthz").json()["status"] == "ok", timeout_s=10,
                 what="the service stepping again")


def test_a_forced_stop_logs_no_traceback_for_the_streams_it_cancels() -> None:
    # (a second signal with an event stream open: uvicorn logged "Exception in ASGI application"
    # and a CancelledError traceback for a stop as asked)
    import asyncio
    import logging

    from controller.api.serve import QuietCancel

    def record(exc: BaseException | None) -> logging.LogRecord:
        info = (type(exc), exc, None) if exc is not None else None
        return logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, "Exception in ASGI application",
                                 None, info)

    quiet = QuietCancel()
    assert not quiet.filter(record(asyncio.CancelledError("Task cancelled, timeout graceful shutdown exceeded")))
    assert quiet.filter(record(RuntimeError("a real failure")))  # (still logged)
    assert quiet.filter(record(None))
