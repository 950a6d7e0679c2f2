"""The real server in a subprocess (``greenwave serve`` on 127.0.0.1, a free port) against a real
SUMO scenario: the tiny 3x3 grid with a little background demand."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import write_scenario

REPO = Path(__file__).resolve().parents[2]
TOKEN = "test-token-3f6a"
DEMAND = '[demand]\nlevel = "light"\ngenerator = "random_trips"\nvehicles_per_hour = 400\n'
# Every signal on the tiny grid's middle row, west to east: the route left1A1 -> C1right1
ROW = ("A1", "B1", "C1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``greenwave serve`` as a subprocess; ``stop()`` sends SIGTERM like a supervisor would."""

    def __init__(self, scenario: Path, workdir: Path, *, speed: float = 10.0, audit_db: Path | None = None,
                 extra: tuple[str, ...] = ()) -> None:
        self.scenario = scenario
        self.workdir = workdir
        self.speed = speed
        self.audit_db = audit_db or workdir / "audit.sqlite"
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.log = workdir / "serve.log"

    def start(self) -> Server:
        token_file = self.workdir / "token"
        token_file.write_text(TOKEN + "\n")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        args = [sys.executable, "-m", "controller", "serve", "--scenario", str(self.scenario), "--port", str(port),
                "--token-file", str(token_file), "--speed", f"{self.speed:g}", "--audit-db", str(self.audit_db),
                "--out", str(self.workdir / "out"), *self.extra]
        env = {k: v for k, v in os.environ.items() if k != "GREENWAVE_TOKEN"}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"server did not come up:\n{self.log.read_text()}")

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=20.0)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(f"server did not stop on SIGTERM:\n{self.log.read_text()}") from None
        return int(self.proc.returncode)


@pytest.fixture(scope="session")
def tiny_scenario(tiny_net: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("api") / "tiny.toml"
    return write_scenario(path, tiny_net, end_s=3600, demand=DEMAND)


@pytest.fixture
def server(tiny_scenario: Path, tmp_path: Path) -> Iterator[Server]:
    s = Server(tiny_scenario, tmp_path).start()
    try:
        yield s
    finally:
        s.stop()


def in_process_service(scenario: Path, tmp_path: Path, speed: float, end_s: float | None = None) -> Any:
    """A SimService on ``scenario`` (seed 1) in this process, not started: its run's folder and
    audit log under ``tmp_path``."""
    from controller.runtime.audit import AuditLog
    from controller.runtime.service import SimService
    from controller.runtime.setup import prepare_scenario
    from controller.scenario import load_scenario

    setup = prepare_scenario(load_scenario(scenario, service=True), seed=1, out_dir=tmp_path / "out",
                             with_evs=False)  # (as serve)
    return SimService(setup, audit=AuditLog(tmp_path / "audit.sqlite"), speed=speed, end_s=end_s)


def wait_for(predicate: Any, timeout_s: float = 60.0, every_s: float = 0.1, what: str = "condition") -> Any:
    """Poll ``predicate()`` until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what}")


def dispatch_and_wait_for_the_end(client: httpx.Client, escort_id: str,
                                  route: tuple[str, ...] = ("left1A1", "A1B1", "B1C1", "C1right1")) -> Any:
    """Dispatch an escort (on the tiny grid's middle row by default), wait for a junction preempted
    for it, then for the service's --end; return /healthz then."""
    r = client.post("/v1/emergencies", json={"route": list(route), "id": escort_id})
    assert r.status_code == 201, r.text
    wait_for(lambda: client.get("/healthz").json()["preempted"], what="a preempted junction")
    return wait_for(lambda: (h := client.get("/healthz").json())["status"] == "ended" and h, timeout_s=60,
                    what="the end")


def all_handed_back(client: httpx.Client) -> bool:
    """Every signal an escort had is idle and in its program (or no longer read: a signal stops
    being listed 120 s after its hand-back once no escort needs it)."""
    signals = client.get("/v1/signals").json()
    health = client.get("/healthz").json()
    return all(s["stage"] == "idle" and not s["preempted"] for s in signals) and health["preempted"] == []
