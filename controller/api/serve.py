"""``greenwave serve``: the scenario's simulation and the controller live, with the HTTP API in front.

Start-up: prepare the scenario (its network and background demand; its own ``[[ev]]`` entries
are not dispatched: escorts come through the API), open the audit log, start the service thread,
then serve with uvicorn until SIGINT or SIGTERM. On the way out, whatever happened, the service
hands every preempted junction back and closes SUMO before the process ends.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import click
import uvicorn

from controller.errors import GreenwaveError
from controller.runtime.audit import AuditLog
from controller.runtime.service import SimService
from controller.runtime.setup import prepare_scenario
from controller.scenario import load_scenario

TOKEN_ENV = "GREENWAVE_TOKEN"


@dataclass(frozen=True)
class ServeOptions:
    scenario: Path
    host: str = "127.0.0.1"
    port: int = 8080
    token_file: Path | None = None
    speed: float | None = None
    audit_db: Path | None = None
    seed: int = 1
    end_s: float | None = None
    out_dir: Path | None = None
    sse_max_s: float = 600.0


def read_token(token_file: Path | None) -> tuple[str, bool]:
    """The bearer token (from the file, else $GREENWAVE_TOKEN, else a new one) and whether it is new."""
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise GreenwaveError(f"--token-file '{token_file}': {e.strerror or e}") from None
        if not token:
            raise GreenwaveError(f"--token-file '{token_file}' is empty")
        return token, False
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        return env, False
    return secrets.token_urlsafe(32), True


def serve(options: ServeOptions) -> int:
    """Run the service until a signal; returns the exit code (0 after a clean stop, 1 after a failure)."""
    from controller.api.app import create_app

    token, generated = read_token(options.token_file)
    scenario = load_scenario(options.scenario)
    out = (options.out_dir or Path("runs") / f"serve-{scenario.name}").resolve()
    audit = AuditLog((options.audit_db or out / "audit.sqlite").resolve())
    stop_signal: list[int] = []

    def on_signal(sig: int, frame: FrameType | None) -> None:
        stop_signal.append(sig)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    service: SimService | None = None
    try:
        setup = prepare_scenario(scenario, seed=options.seed, out_dir=out)
        service = SimService(setup, audit=audit, speed=options.speed, end_s=options.end_s)
        service.start()
        app = create_app(service, token, sse_max_s=options.sse_max_s)
        config = uvicorn.Config(app, host=options.host, port=options.port, log_level="warning", access_log=False,
                                timeout_graceful_shutdown=2, lifespan="off")
        server = uvicorn.Server(config)
        running = service

        def watch() -> None:  # the simulation failed or stopped: stop serving
            running.wait()
            server.should_exit = True

        threading.Thread(target=watch, name="greenwave-watch", daemon=True).start()
        pace = "as fast as possible" if options.speed is None else f"{options.speed:g} simulated s per wall s"
        click.echo(f"greenwave: serving {setup.name} on http://{options.host}:{options.port} ({pace}); "
                   f"audit log {audit.path}", err=True)
        if generated:
            click.echo(f"greenwave: no --token-file or ${TOKEN_ENV}: token {token}", err=True)
        if not stop_signal:
            server.run()
    finally:
        if service is not None:
            service.stop()
        audit.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if service is not None and service.state.failed:
        click.echo(f"greenwave: error: the simulation failed: {service.state.failed}; every signal was handed back",
                   err=True)
        return 1
    return 0


logging.getLogger("greenwave").addHandler(logging.NullHandler())
