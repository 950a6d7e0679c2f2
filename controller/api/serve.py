"""``greenwave serve``: the scenario's simulation and the controller live, with the HTTP API in front.

Start-up: listen on the port and take the output folder (a second instance on the same port or
folder stops here, before it writes anything), prepare the scenario (its network and background
demand; its own ``[[ev]]`` entries are not dispatched: escorts come through the API), open the
audit log, start the service thread, then serve with uvicorn until SIGINT or SIGTERM.

On SIGINT or SIGTERM the service hands every preempted junction back first, while the HTTP server
still runs, so that event streams get the cancels and hand-backs and then end; then the server
stops. On the way out, whatever happened, every junction is handed back and SUMO closed before the
process ends. A second signal stops the server at once (the hand-back still completes).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import secrets
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import IO

import click
import uvicorn

from controller.errors import GreenwaveError, ScenarioError
from controller.runtime.audit import AuditLog
from controller.runtime.folder_lock import hold_folder
from controller.runtime.run import INCOMPLETE_FILE, clear_run_folder, mark_incomplete
from controller.runtime.service import SimService, StartStopped
from controller.runtime.setup import prepare_scenario
from controller.scenario import Scenario, load_scenario
from controller.sim.adapter import Backend

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
    backend: Backend = "libsumo"
    gui: bool = False  # sumo-gui, over TraCI
    attach: tuple[str, int] | None = None  # (host, port) of a SUMO the user started, driven over TraCI
    stall_after_s: float = 30.0  # /healthz says "stalled" once no step has ended for this long


def read_token(token_file: Path | None) -> tuple[str, bool]:
    """The bearer token (from the file, else $GREENWAVE_TOKEN, else a new one) and whether it is new."""
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise GreenwaveError(f"--token-file '{token_file}': {e.strerror or e}") from None
        except UnicodeDecodeError as e:
            raise GreenwaveError(f"--token-file '{token_file}' is not text (byte {e.start + 1} is not UTF-8): a "
                                 "token is visible ASCII characters") from None
        if not token:
            raise GreenwaveError(f"--token-file '{token_file}' is empty")
        _check_token(token, f"--token-file '{token_file}'")
        return token, False
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        _check_token(env, f"${TOKEN_ENV}")
        return env, False
    return secrets.token_urlsafe(32), True


def _check_token(token: str, where: str) -> None:
    """A bearer token travels in an HTTP header: visible ASCII only, no spaces (one with other
    characters was taken, and no request could ever match it)."""
    bad = next((ch for ch in token if not "!" <= ch <= "~"), None)
    if bad is not None:
        raise GreenwaveError(f"{where}: the token has the character {bad!r} (U+{ord(bad):04X}); a bearer token "
                             "is sent in an HTTP header: use visible ASCII characters only, no spaces")


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound now: a port in use is an error before anything is written."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise GreenwaveError(f"--host '{host}': {e.strerror or e}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRNOTAVAIL:  # not an address of this machine: the host is wrong, not the port
            raise GreenwaveError(f"--host '{host}': cannot listen on it: {e.strerror or e} (not an address of "
                                 "this machine; 127.0.0.1 or 0.0.0.0 for all)") from None
        hint = " (another greenwave serve? give another --port)" if e.errno == errno.EADDRINUSE else ""
        raise GreenwaveError(f"--port {port}: cannot listen on {host}:{port}: {e.strerror or e}{hint}") from None
    # listening at once: a port that is only bound (SO_REUSEADDR) is bound again by a second
    # instance started while the first prepares a large scenario (the NDS city: half a minute)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _take_folder(out: Path) -> IO[str]:
    """An exclusive lock on the output folder, held while the process runs (released when it ends):
    two instances writing SUMO's outputs and the audit log into one folder would spoil both."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        handle = (out / ".serve.lock").open("a", encoding="utf-8")
    except OSError as e:
        raise GreenwaveError(f"--out '{out}': {e.strerror or e}") from None
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return handle
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise GreenwaveError(f"--out '{out}': another greenwave serve is using this folder; give another --out"
                             ) from None
    return handle


def serve(options: ServeOptions) -> int:
    """Run the service until a signal; returns the exit code (0 after a clean stop, 1 after a failure)."""
    token, generated = read_token(options.token_file)
    scenario = load_scenario(options.scenario, service=True)
    if options.attach is not None and scenario.demand.generator is not None:
        raise ScenarioError(f"--attach: {options.scenario} generates its demand ([demand] generator), which a SUMO "
                            "you started does not run: attach with a scenario naming the network and route files "
                            "(or the .sumocfg) that SUMO was started with")
    if options.end_s is not None and options.end_s <= scenario.simulation.begin_s:
        # (before anything is written)
        raise ScenarioError(f"--end {options.end_s:g} s is not after the scenario's begin "
                            f"({scenario.simulation.begin_s:g} s)")
    out = (options.out_dir or Path("runs") / f"serve-{scenario.name}").resolve()
    sock = _listen(options.host, options.port)
    with contextlib.ExitStack() as held:  # (each let go in turn when the service ends or fails)
        held.callback(sock.close)
        # the topmost folder this serve will create (out, or a parent missing too), if any
        made = next((f for f in reversed((out, *out.parents)) if not f.exists()), None)
        # (as a run's or a bench's: a run into a serve's folder is refused while it serves)
        held.enter_context(hold_folder(out, "--out", "serve"))
        held.callback(_take_folder(out).close)
        try:
            # (two instances on one audit log handed out the same default ids: each reads the
            # highest at its start)
            held.enter_context(hold_folder((options.audit_db or out / "audit.sqlite").resolve(), "--audit-db",
                                           "serve", noun="audit log", inside_own=True))
        except GreenwaveError:
            if made is not None:  # (nothing else written: the folders made go again)
                shutil.rmtree(made, ignore_errors=True)
            raise
        return _serve(options, scenario, token, generated, out, sock)


STOP_S = 120.0  # a stop waits this long for the hand-back (a few seconds, as SUMO steps on)
SECOND_SIGNAL_STOP_S = 10.0  # after a second signal, this long at least, then until SUMO is stalled

# a service stops on these (SIGHUP too: a terminal or an SSH session closing killed it at once,
# its preempted signals not handed back and no stop in its audit log)
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, *((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ()))


class QuietCancel(logging.Filter):
    """uvicorn's error log without the traceback of each request it cancels as a forced stop
    gives up waiting for it (an open event stream, on a second signal): "Exception in ASGI
    application ... CancelledError: Task cancelled, timeout graceful shutdown exceeded", a
    traceback for a stop as asked. Its line saying how many it cancelled stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, asyncio.CancelledError)


class _Server(uvicorn.Server):
    """uvicorn's server; its first SIGINT, SIGTERM or SIGHUP stops the service (the hand-back)
    while the server still answers and streams, and the server exits once the service has stopped."""

    def __init__(self, config: uvicorn.Config, service: SimService, signals: list[int]) -> None:
        super().__init__(config)
        self.service = service
        self.signals = signals

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn's, for SIGHUP too (uvicorn takes SIGINT and SIGTERM only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in _STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.signals.append(sig)
        if len(self.signals) == 1:
            threading.Thread(target=self.service.stop, name="greenwave-stop", daemon=True).start()
        else:
            super().handle_exit(sig, frame)


def _serve(options: ServeOptions, scenario: Scenario, token: str, generated: bool, out: Path,
           sock: socket.socket) -> int:
    from controller.api.app import create_app

    audit = AuditLog((options.audit_db or out / "audit.sqlite").resolve())
    stop_signal: list[int] = []

    def on_signal(sig: int, frame: FrameType | None) -> None:
        stop_signal.append(sig)

    previous = {sig: signal.signal(sig, on_signal) for sig in _STOP_SIGNALS}
    service: SimService | None = None
    marked = False  # (INCOMPLETE.txt written: this service's folder until a clean stop)
    try:
        setup = prepare_scenario(scenario, seed=options.seed, out_dir=out, attached=options.attach is not None,
                                 with_evs=False)
        clear_run_folder(setup)  # (an earlier run's summary, trace and outputs: not this serve's)
        # (the folder marked until a clean stop: killed, its SUMO outputs cut off looked complete)
        (out / INCOMPLETE_FILE).write_text(
            f"This service is running (greenwave serve, process {os.getpid()}, started "
            f"{datetime.now(timezone.utc).isoformat(timespec='seconds')}). The file goes when it stops "
            "cleanly; if it is here and that process is gone, the service was killed (SIGKILL, out of "
            "memory): SUMO's outputs here then cover part of the simulated time only, and may be cut off.\n",
            "utf-8")
        marked = True
        unfinished = audit.unfinished_session()
        if unfinished is not None:  # (a log held by one service at a time: that one was killed)
            audit.record("service", event="unfinished", session_started_at=unfinished.at,
                         detail="the previous session recorded no stop: it was killed (SIGKILL, out of memory), "
                                "its escorts and preemptions ending with it")
            click.echo(f"greenwave: note: the audit log's previous session (started {unfinished.at}) recorded no "
                       "stop: it was killed", err=True)
        service = SimService(setup, audit=audit, speed=options.speed, end_s=options.end_s,
                             backend=options.backend, gui=options.gui, attach=options.attach,
                             stall_after_s=options.stall_after_s)
        if options.attach is not None:
            click.echo(f"greenwave: attaching to the SUMO at {options.attach[0]}:{options.attach[1]} (one waiting for "
                       "more clients, --num-clients, answers once they have all connected) ...", err=True)
        try:
            service.start(stop_asked=lambda: bool(stop_signal))
        except StartStopped as e:
            click.echo(f"greenwave: {signal.Signals(stop_signal[0]).name}: {e}", err=True)
            (out / INCOMPLETE_FILE).unlink(missing_ok=True)
            return 0
        for note in service.notes:
            click.echo(f"greenwave: note: {note}", err=True)
        app = create_app(service, token, sse_max_s=options.sse_max_s)
        config = uvicorn.Config(app, host=options.host, port=options.port, log_level="warning", access_log=False,
                                timeout_graceful_shutdown=2, lifespan="off")
        server = _Server(config, service, stop_signal)
        running = service

        def watch() -> None:  # the simulation failed or stopped: stop serving
            running.wait()
            server.should_exit = True

        threading.Thread(target=watch, name="greenwave-watch", daemon=True).start()
        pace = "as fast as possible" if options.speed is None else f"{options.speed:g} simulated s per wall s"
        port = sock.getsockname()[1]  # (the one the system gave for --port 0)
        host = f"[{options.host}]" if ":" in options.host else options.host
        click.echo(f"greenwave: serving {setup.name} on http://{host}:{port} ({pace}); "
                   f"audit log {audit.path}", err=True)
        if generated:
            click.echo(f"greenwave: no --token-file or ${TOKEN_ENV}: token {token}", err=True)
        if not stop_signal:
            quiet = QuietCancel()
            uvicorn_log = logging.getLogger("uvicorn.error")
            uvicorn_log.addFilter(quiet)
            try:
                server.run(sockets=[sock])
            finally:
                uvicorn_log.removeFilter(quiet)
        app.state.rejections.flush()  # (the requests refused for their token since its last row)
    except BaseException as e:  # (it did not start, or serving failed: not left saying it runs)
        if marked:
            mark_incomplete(out, e if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}", "service")
        raise
    finally:
        if service is not None:
            if len(stop_signal) > 1:
                # (a second signal: a hand-back SUMO does not answer, stopped or stuck, is given up
                # once it is stalled (10 s at least), not 120 s on; one SUMO answers, slow as it
                # may be, runs its course)
                service.stop(SECOND_SIGNAL_STOP_S)
                deadline = time.monotonic() + STOP_S
                while not service.finished and service.stalled_s() is None and time.monotonic() < deadline:
                    service.stop(1.0)
            else:
                service.stop(STOP_S)
        audit.close()
        for sig, handler in previous.items():
            # nothing was served: the caller's handlers back; else the process ends after its
            # hand-back, and a further SIGTERM or SIGINT (a supervisor repeating itself) is
            # ignored, not a kill after a clean stop (exit 143). SIG_IGN, not a Python handler:
            # the interpreter resets those to the default as it finalizes.
            signal.signal(sig, handler if service is None else signal.SIG_IGN)
    if service is not None and service.state.failed:
        mark_incomplete(out, service.state.failed, "service")  # (SUMO's outputs of the part that ran)
        after = ("every signal had been handed back at --end" if service.state.ended
                 else "SUMO ended, its signals with it (none left to hand back)" if service.sumo_ended
                 else "every signal was handed back")
        click.echo(f"greenwave: error: the simulation failed: {service.state.failed}; {after}", err=True)
        return 1
    if service is not None and not service.finished:
        mark_incomplete(out, "it did not finish handing back within its stop timeout", "service")
        held = service.state.preempted
        stalled = service.stalled_s()
        click.echo(f"greenwave: error: the service did not finish handing back within its stop timeout "
                   f"(at {service.state.t_s:g} s simulated"
                   + (f"; no simulation step has ended for {stalled:.0f} s: the SUMO does not answer" if stalled
                      else "") + ")"
                   + (f"; left switched away from their programs: {', '.join(held)}" if held else "")
                   + f"; see the audit log {audit.path}", err=True)
        return 1
    (out / INCOMPLETE_FILE).unlink(missing_ok=True)  # (a clean stop, or nothing served)
    if service is not None:
        click.echo(f"greenwave: stopped at {service.state.t_s:g} s simulated; every signal handed back; "
                   f"audit log {audit.path}", err=True)
    return 0


logging.getLogger("greenwave").addHandler(logging.NullHandler())
