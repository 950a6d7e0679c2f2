"""A green target the planner refuses (no phase of the signal's program shows it) reaches an
integrator: an event and an audit row the first time, and a count in /healthz and /metrics
(``run`` counts the same in summary.json's ``safety.targets_refused``)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from controller.api.app import create_app
from controller.core.snapshot import Snapshot
from controller.runtime.events import EventBus
from controller.runtime.service import SimService
from controller.sim.adapter import SumoAdapter
from tests.api.conftest import in_process_service

pytestmark = pytest.mark.sumo


async def _health_and_metrics(service: SimService) -> tuple[dict[str, object], str]:
    transport = httpx.ASGITransport(app=create_app(service, "t"))
    async with httpx.AsyncClient(transport=transport, base_url="http://greenwave") as client:
        return (await client.get("/healthz")).json(), (await client.get("/metrics")).text


def test_a_refused_target_is_reported_once_and_counted(
    tiny_scenario: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service: SimService = in_process_service(tiny_scenario, tmp_path, speed=50.0)
    step = SumoAdapter.step
    steps = 0

    def refusing_step(self: SumoAdapter) -> Snapshot:
        # in the simulation thread, as the planner would count them: 3 refusals at once, then 2 more
        # of the same target and one of another
        nonlocal steps
        steps += 1
        refused = service._controller.planner.refused_targets if service._controller is not None else None
        if refused is not None and steps == 3:
            refused[("B1", "GGGGrrrr")] = 3
        if refused is not None and steps == 6:
            refused[("B1", "GGGGrrrr")] = 5
            refused[("C1", "rrrrGGGG")] = 1
        return step(self)

    monkeypatch.setattr(SumoAdapter, "step", refusing_step)
    service.start()
    try:
        deadline = time.monotonic() + 30
        while service.state.targets_refused < 6 and time.monotonic() < deadline:
            time.sleep(0.05)
        health, metrics = asyncio.run(_health_and_metrics(service))
    finally:
        service.stop()
    assert health["targets_refused"] == 6
    assert "greenwave_targets_refused 6" in metrics
    assert health["safety"] == {"S1": 0, "S2": 0, "S3": 0, "S4": 0, "S5": 0}  # not a monitor violation
    events = [e.data for e in service.events.since(0) if e.type == "target_refused"]
    assert [(e["tls_id"], e["target"]) for e in events] == [("B1", "GGGGrrrr"), ("C1", "rrrrGGGG")]
    rows = [r for r in service.audit.since(0, kind="decision") if r.detail.get("stage") == "target_refused"]
    assert [(r.tls_id, r.detail["target"]) for r in rows] == [("B1", "GGGGrrrr"), ("C1", "rrrrGGGG")]


def test_a_client_further_behind_than_the_events_kept_is_told_what_it_lost(tiny_scenario: Path,
                                                                          tmp_path: Path) -> None:
    # the service keeps the last 10,000 events: a replay from an older id skipped the others silently
    service: SimService = in_process_service(tiny_scenario, tmp_path, speed=50.0)
    service.events = EventBus(keep=3, first_id=1)
    for n in range(5):
        service.events.publish("eta", n=n)

    async def replay(since: int) -> str:
        transport = httpx.ASGITransport(app=create_app(service, "t", sse_max_s=0.2))
        async with httpx.AsyncClient(transport=transport, base_url="http://greenwave") as client:
            r = await client.get("/v1/events", params={"since": since}, headers={"Authorization": "Bearer t"})
            return r.text

    text = asyncio.run(replay(0))
    assert 'event: gap\ndata: {"after_id": 0, "lost": 2}\n\n' in text
    assert text.index("event: gap") < text.index("id: 3\n") and "id: 2\n" not in text
    assert "event: gap" not in asyncio.run(replay(2))
