"""Load benchmark of the HTTP API (not a unit test; not run by CI).

Starts ``greenwave serve`` on a scenario (default grid5-moderate) at ``--speed 10``, keeps an
escort en route (a new one is dispatched whenever the last has arrived), and lets ``--clients``
concurrent clients (default 100) poll an escort's status at ``--rate`` Hz each (default 10) for
``--duration`` s (default 60). Reports the API's latency (p50/p99/max, requests, errors, achieved
rate) as the clients saw it and the control tick's wall time (p50/p99/max, ticks over budget)
as the server measured it, against its budget (one simulation step's wall time at that speed).

    .venv/bin/python benchmarks/api_load.py [--scenario scenarios/grid5-moderate.toml] [--clients 100]
        [--rate 10] [--duration 60] [--speed 10] [--out runs/api_load.json]

The clients run in this process (asyncio + httpx) on the same machine as the server, so on a
small machine they compete with it for the CPU: the figures are an upper bound of the latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from controller.errors import GreenwaveError, ScenarioError  # noqa: E402

TOKEN = "api-load-benchmark"
ROUTES = {  # origin and destination edges of the escorts per scenario; others: the scenario's first EV
    "grid5-moderate": [("left0A0", "E4top4"), ("bottom2C0", "C4top2"), ("right2E2", "A2left2")],
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _quantiles(values: list[float]) -> dict[str, float | None]:
    if len(values) < 2:
        return {"p50": values[0] if values else None, "p99": values[0] if values else None,
                "max": values[0] if values else None}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": round(cuts[49], 2), "p99": round(cuts[98], 2), "max": round(max(values), 2)}


def _routes(scenario: Path) -> list[tuple[str, str]]:
    from controller.scenario import load_scenario

    sc = load_scenario(scenario)
    if sc.name in ROUTES:
        return ROUTES[sc.name]
    if not sc.ev or sc.ev[0].from_edge is None or sc.ev[0].to_edge is None:
        raise ScenarioError(f"{scenario}: give a scenario whose first [[ev]] has 'from' and 'to' (the escorts' way)")
    return [(sc.ev[0].from_edge, sc.ev[0].to_edge)]


class Dispatcher:
    """Keeps one escort en route: dispatches the next when the current one has finished."""

    def __init__(self, client: httpx.AsyncClient, routes: list[tuple[str, str]]) -> None:
        self.client, self.routes = client, routes
        self.current = ""
        self.n = 0
        self.finished: list[dict[str, Any]] = []

    async def dispatch(self) -> None:
        origin, destination = self.routes[self.n % len(self.routes)]
        self.n += 1
        r = await self.client.post("/v1/emergencies", json={"id": f"load-{self.n}", "origin": {"edge": origin},
                                                            "destination": {"edge": destination}})
        r.raise_for_status()
        self.current = r.json()["id"]

    async def run(self, until: float) -> None:
        while time.monotonic() < until:
            await asyncio.sleep(0.5)
            r = await self.client.get(f"/v1/emergencies/{self.current}")
            escort = r.json()
            if escort["state"] in ("arrived", "cancelled"):
                self.finished.append({"id": escort["id"], "state": escort["state"],
                                      "travel_s": None if escort["arrived_s"] is None or escort["departed_s"] is None
                                      else round(escort["arrived_s"] - escort["departed_s"], 1)})
                await self.dispatch()


class RawClient:
    """One keep-alive HTTP/1.1 connection speaking just enough HTTP for GETs of JSON: a load
    generator much lighter than a full client, so that the server, not the client, is measured."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port, self.token = host, port, token
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, path: str) -> int:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\nAuthorization: Bearer {self.token}\r\n"
                          f"Accept: application/json\r\n\r\n".encode())
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next((int(ln.split(":", 1)[1]) for ln in lines[1:] if ln.lower().startswith("content-length:")), 0)
        await self.reader.readexactly(length)
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(OSError):
                await self.writer.wait_closed()


async def poller(url: str, dispatcher: Dispatcher, rate_hz: float, until: float,
                 latencies: list[float], errors: dict[str, int], offset_s: float) -> None:
    host, port = url.removeprefix("http://").split(":")
    client = RawClient(host, int(port), TOKEN)
    period = 1.0 / rate_hz
    next_at = time.monotonic() + offset_s
    try:
        while True:
            delay = next_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if time.monotonic() >= until:
                return
            next_at += period
            t0 = time.perf_counter()
            try:
                status = await client.get(f"/v1/emergencies/{dispatcher.current}")
                latencies.append((time.perf_counter() - t0) * 1000.0)
                if status != 200:
                    errors[str(status)] = errors.get(str(status), 0) + 1
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                await client.close()
                client = RawClient(host, int(port), TOKEN)
            if time.monotonic() > next_at + period:  # fell behind: skip the missed slots, do not burst
                next_at = time.monotonic()
    finally:
        await client.close()


async def load(url: str, args: argparse.Namespace, routes: list[tuple[str, str]]) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    limits = httpx.Limits(max_connections=args.clients + 5, max_keepalive_connections=args.clients + 5)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30.0, limits=limits) as client:
        before = (await client.get("/healthz")).json()
        dispatcher = Dispatcher(client, routes)
        until = time.monotonic() + args.duration
        latencies: list[float] = []
        errors: dict[str, int] = {}
        await dispatcher.dispatch()
        started = time.monotonic()
        tasks = [asyncio.create_task(poller(url, dispatcher, args.rate, until, latencies, errors,
                                            offset_s=i / (args.clients * args.rate)))
                 for i in range(args.clients)]
        await asyncio.gather(dispatcher.run(until), *tasks)
        wall = time.monotonic() - started
        after = (await client.get("/healthz")).json()
    ticks = after["ticks"] - before["ticks"]
    return {
        "clients": args.clients, "rate_hz": args.rate, "duration_s": args.duration, "speed": args.speed,
        "requests": len(latencies), "errors": errors, "achieved_rps": round(len(latencies) / wall, 1),
        "target_rps": args.clients * args.rate,
        "api_ms": _quantiles(latencies),
        "ticks": ticks, "simulated_s": round(after["t_s"] - before["t_s"], 1),
        "tick": {k: v for k, v in after["ticks_recent"].items()},
        "escorts_finished": dispatcher.finished,
        "safety": after["safety"],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", type=Path, default=REPO / "scenarios" / "grid5-moderate.toml")
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--rate", type=float, default=10.0, help="polls per second per client")
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--speed", type=float, default=10.0)
    p.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    args = p.parse_args()
    if args.clients < 1 or args.rate <= 0 or args.duration <= 0 or args.speed <= 0:
        p.error("--clients must be at least 1, and --rate, --duration and --speed above 0")
    try:
        routes = _routes(args.scenario)
    except GreenwaveError as e:
        p.error(str(e))
    with tempfile.TemporaryDirectory(prefix="greenwave-load-") as tmp:
        token_file = Path(tmp) / "token"
        token_file.write_text(TOKEN)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log = (Path(tmp) / "serve.log").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller", "serve", "--scenario", str(args.scenario), "--port", str(port),
             "--token-file", str(token_file), "--speed", f"{args.speed:g}", "--audit-db", f"{tmp}/audit.sqlite",
             "--out", f"{tmp}/out"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env={**os.environ},
        )
        try:
            deadline = time.monotonic() + 180
            while True:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"server did not start:\n{(Path(tmp) / 'serve.log').read_text()}")
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            result = asyncio.run(load(url, args, routes))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=120)
            log.close()
        result["server_exit"] = proc.returncode
        result["scenario"] = args.scenario.stem
    t = result["tick"]
    print(json.dumps(result, indent=2))
    print(f"\nAPI: {result['requests']} requests in {args.duration:g} s ({result['achieved_rps']}/s of "
          f"{result['target_rps']:g}/s), errors {sum(result['errors'].values())}, latency p50 "
          f"{result['api_ms']['p50']} ms p99 {result['api_ms']['p99']} ms max {result['api_ms']['max']} ms")
    print(f"tick (last {t['n']}): p50 {t['tick_ms_p50']} ms p99 {t['tick_ms_p99']} ms max {t['tick_ms_max']} ms, "
          f"control alone p50 {t['control_ms_p50']} ms p99 {t['control_ms_p99']} ms; budget {t['budget_ms']} ms, "
          f"over budget {t['over_budget']}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
