"""An escort standing before a signal, over HTTP: past its maximum presence time it sees the
hand-back, why (``reasons``), and then, on its junction and on the signal, until when the signal
takes no preemption (``locked_until_s``; a waiting escort used to see only ``idle``); standing
alone under its green, the signal lets go sooner (the stall rule)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import DEMAND, Server, wait_for
from tests.helpers import write_scenario

pytestmark = pytest.mark.sumo

ROUTE = ["left1A1", "A1B1", "B1C1", "C1right1"]


@contextmanager
def _standing(tiny_net: Path, tmp_path: Path, escort_id: str, controller: str = "") -> Iterator[httpx.Client]:
    """A server on the tiny grid (``controller``: the scenario's [controller] lines) and an
    external escort ``escort_id`` reporting, every simulated 10 s or so, that it stands 40 m
    before A1's stop line; a client of that server."""
    scenario = write_scenario(tmp_path / f"{escort_id}.toml", tiny_net, end_s=3600, demand=DEMAND,
                              extra=f"\n[controller]\n{controller}" if controller else "")
    server = Server(scenario, tmp_path, speed=20.0).start()
    stop = threading.Event()
    stander: threading.Thread | None = None
    try:
        with server.client() as c:
            r = c.post("/v1/emergencies", json={"route": ROUTE, "id": escort_id, "tracking": "external"})
            assert r.status_code == 201, r.text

            def stand() -> None:
                with server.client() as fixes:
                    while not stop.wait(0.5):
                        fixes.post(f"/v1/emergencies/{escort_id}/positions",
                                   json={"edge": "left1A1", "offset_m": 60.0, "speed_mps": 0.0})

            stander = threading.Thread(target=stand, daemon=True)
            stander.start()
            yield c
    finally:
        stop.set()
        if stander is not None:
            stander.join(timeout=10)
        server.stop()


def _a1_handback(c: httpx.Client) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(lambda: next((a for a in c.get("/v1/audit", params={"kind": "handback"}).json()
                                                   if a["tls_id"] == "A1"), None), timeout_s=60, what="A1's hand-back")
    return found


def test_a_maximum_presence_hand_back_shows_the_lockout_to_the_escort_and_on_the_signal(
    tiny_net: Path, tmp_path: Path
) -> None:
    # (standing alone under its green it would be let go after stall_release_s: longer here)
    with _standing(tiny_net, tmp_path, "stuck",
                   "max_presence_s = 40\nmax_presence_grace_s = 0\nstall_release_s = 100\n") as c:
        handback = _a1_handback(c)
        assert handback["detail"]["reasons"] == {"stuck": "max presence"}, handback
        junction = wait_for(lambda: next((j for j in c.get("/v1/emergencies/stuck").json()["junctions"]
                                          if j["tls_id"] == "A1" and j["locked_until_s"] is not None), None),
                            timeout_s=30, what="the lockout on the escort's junction")
        signal = next(s for s in c.get("/v1/signals").json() if s["tls_id"] == "A1")
        # the program runs 30 s from the hand-back (the EV had not crossed: the maximum presence)
        assert junction["locked_until_s"] == pytest.approx(handback["t_s"] + 30.0, abs=1.0), (handback, junction)
        assert junction["crossed_s"] is None and junction["stage"] == "idle", junction
        assert signal["locked_until_s"] == junction["locked_until_s"] and not signal["preempted"], signal
        # once it has passed, neither shows a lockout any longer
        wait_for(lambda: next(j for j in c.get("/v1/emergencies/stuck").json()["junctions"]
                              if j["tls_id"] == "A1")["locked_until_s"] is None, timeout_s=30,
                 what="the lockout to end")


def test_an_escort_standing_alone_under_its_green_lets_the_signal_go(tiny_net: Path, tmp_path: Path) -> None:
    # the default stall_release_s (30 s), nothing queued ahead of the escort: A1 goes back to its
    # program 30 s into its green ("EV stalled"), not at the maximum presence, and is not taken
    # again while the escort stands
    with _standing(tiny_net, tmp_path, "parked") as c:
        handback = _a1_handback(c)
        assert handback["detail"]["reasons"] == {"parked": "EV stalled"}, handback
        dwell = next(a for a in c.get("/v1/audit", params={"kind": "decision"}).json()
                     if a["tls_id"] == "A1" and a["detail"].get("stage") == "dwell")
        assert handback["t_s"] - dwell["t_s"] < 40.0, (dwell, handback)  # not the 150 s maximum presence
        t_back = handback["t_s"]
        # standing on: 60 simulated seconds later A1 is still in its program
        wait_for(lambda: c.get("/healthz").json()["t_s"] > t_back + 60.0, timeout_s=30, what="a minute more")
        a1 = next(s for s in c.get("/v1/signals").json() if s["tls_id"] == "A1")
        assert not a1["preempted"] and a1["stage"] in ("idle", "armed"), a1
