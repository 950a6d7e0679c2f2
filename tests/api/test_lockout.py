"""The re-service lockout over HTTP: an escort standing before a signal past its maximum presence
time sees the hand-back and then, on its junction and on the signal, until when the signal takes
no preemption (``locked_until_s``); a waiting escort used to see only ``idle``."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.api.conftest import DEMAND, Server, wait_for
from tests.helpers import write_scenario

pytestmark = pytest.mark.sumo


def test_a_maximum_presence_hand_back_shows_the_lockout_to_the_escort_and_on_the_signal(
    tiny_net: Path, tmp_path: Path
) -> None:
    scenario = write_scenario(tmp_path / "short-presence.toml", tiny_net, end_s=3600, demand=DEMAND,
                              extra="\n[controller]\nmax_presence_s = 40\nmax_presence_grace_s = 0\n"
                                    # (standing alone under its green: let go after this long, else)
                                    "stall_release_s = 100\n")
    server = Server(scenario, tmp_path, speed=20.0).start()
    stop = threading.Event()
    stander: threading.Thread | None = None
    try:
        with server.client() as c:
            r = c.post("/v1/emergencies", json={"route": ["left1A1", "A1B1", "B1C1", "C1right1"], "id": "stuck",
                                                "tracking": "external"})
            assert r.status_code == 201, r.text

            def stand() -> None:  # 40 m before A1's stop line, not moving, a fix every simulated 10 s or so
                with server.client() as fixes:
                    while not stop.wait(0.5):
                        fixes.post("/v1/emergencies/stuck/positions",
                                   json={"edge": "left1A1", "offset_m": 60.0, "speed_mps": 0.0})

            stander = threading.Thread(target=stand, daemon=True)
            stander.start()
            handback = wait_for(lambda: next((a for a in c.get("/v1/audit", params={"kind": "handback"}).json()
                                              if a["tls_id"] == "A1"), None), timeout_s=60, what="A1's hand-back")
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
    finally:
        stop.set()
        if stander is not None:
            stander.join(timeout=10)
        server.stop()


def test_an_escort_standing_alone_under_its_green_lets_the_signal_go(tiny_net: Path, tmp_path: Path) -> None:
    # the same escort standing 40 m before A1 with nothing queued ahead of it, the default
    # stall_release_s (30 s): A1 goes back to its program 30 s into its green ("EV stalled"), not
    # at the maximum presence, and is not taken again while the escort stands
    scenario = write_scenario(tmp_path / "standing.toml", tiny_net, end_s=3600, demand=DEMAND)
    server = Server(scenario, tmp_path, speed=20.0).start()
    stop = threading.Event()
    stander: threading.Thread | None = None
    try:
        with server.client() as c:
            r = c.post("/v1/emergencies", json={"route": ["left1A1", "A1B1", "B1C1", "C1right1"], "id": "parked",
                                                "tracking": "external"})
            assert r.status_code == 201, r.text

            def stand() -> None:
                with server.client() as fixes:
                    while not stop.wait(0.5):
                        fixes.post("/v1/emergencies/parked/positions",
                                   json={"edge": "left1A1", "offset_m": 60.0, "speed_mps": 0.0})

            stander = threading.Thread(target=stand, daemon=True)
            stander.start()
            handback = wait_for(lambda: next((a for a in c.get("/v1/audit", params={"kind": "handback"}).json()
                                              if a["tls_id"] == "A1"), None), timeout_s=60, what="A1's hand-back")
            assert handback["detail"]["reasons"] == {"parked": "EV stalled"}, handback
            dwell = next(a for a in c.get("/v1/audit", params={"kind": "decision"}).json()
                         if a["tls_id"] == "A1" and a["detail"].get("stage") == "dwell")
            assert handback["t_s"] - dwell["t_s"] < 40.0, (dwell, handback)  # not the 150 s maximum presence
            t_back = handback["t_s"]
            # standing on: 60 simulated seconds later A1 is still in its program
            wait_for(lambda: c.get("/healthz").json()["t_s"] > t_back + 60.0, timeout_s=30, what="a minute more")
            a1 = next(s for s in c.get("/v1/signals").json() if s["tls_id"] == "A1")
            assert not a1["preempted"] and a1["stage"] in ("idle", "armed"), a1
    finally:
        stop.set()
        if stander is not None:
            stander.join(timeout=10)
        server.stop()
