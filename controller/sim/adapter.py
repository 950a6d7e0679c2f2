"""The one owner of a SUMO connection.

``SumoAdapter`` starts SUMO (in-process through libsumo by default, or over a TraCI socket,
optionally with sumo-gui) or attaches to one the user started (``attach``), subscribes once to
what the run needs (the emergency vehicles and the traffic lights on their routes, never every
signal of the network), reads one :class:`~controller.core.snapshot.Snapshot` per step from the
subscription results, and turns the core's :class:`~controller.core.snapshot.SignalCommand` data
into TraCI calls.

It is a context manager: on any exit (error, Ctrl-C) every traffic light it switched is handed
back to its original program and SUMO is closed. Connections are held on the object; the
module-level ``traci.*`` singleton is never used, so several adapters (e.g. a free-flow run
beside a main run over TraCI) do not interfere. libsumo is one simulation per process, so the
adapter refuses to open a second libsumo simulation while one is open.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal

import libsumo
import traci
import traci.connection
import traci.constants as tc
from sumolib.miscutils import getFreeSocketPort

from controller.core.snapshot import LaneState, SignalCommand, SignalState, Snapshot, VehicleState
from controller.errors import SimulationError, SumoCrashed
from controller.sim.sumo_paths import binary

Backend = Literal["libsumo", "traci"]
RunningPhase = tuple[str, float, float, float]  # a phase SUMO runs: state, duration, minDur, maxDur (s)

_VEHICLE_VARS = (
    tc.VAR_ROAD_ID,
    tc.VAR_LANE_ID,
    tc.VAR_LANEPOSITION,
    tc.VAR_SPEED,
    tc.VAR_ROUTE_INDEX,
    tc.VAR_DISTANCE,
    tc.VAR_ROUTE_ID,  # a new id where SUMO replaces the route (rerouter, device.rerouting)
)
_SIGNAL_VARS = (tc.TL_RED_YELLOW_GREEN_STATE, tc.TL_CURRENT_PROGRAM, tc.TL_CURRENT_PHASE)
_LANE_VARS = (tc.LAST_STEP_VEHICLE_NUMBER, tc.LAST_STEP_VEHICLE_HALTING_NUMBER)
_SIM_VARS = (
    tc.VAR_DEPARTED_VEHICLES_IDS,
    tc.VAR_ARRIVED_VEHICLES_IDS,
    tc.VAR_TELEPORT_STARTING_VEHICLES_NUMBER,
    tc.VAR_TELEPORT_STARTING_VEHICLES_IDS,
    tc.VAR_TELEPORT_ENDING_VEHICLES_IDS,
    tc.VAR_COLLIDING_VEHICLES_IDS,
    tc.VAR_EMERGENCYSTOPPING_VEHICLES_NUMBER,
)
# What SUMO raises: libsumo's and the TraCI client's exceptions share no base class. The TraCI
# client's are taken from traci.connection, which raises them: importing libsumo rebinds
# traci.exceptions.TraCIException to libsumo's own class, so that name misses what the TraCI
# client raises (an unknown signal over TraCI was a traceback).
SUMO_ERRORS: tuple[type[BaseException], ...] = (
    libsumo.TraCIException,
    libsumo.FatalTraCIError,  # (SUMO's own error in a step: a vehicle type it does not know, loaded late)
    traci.connection.TraCIException,
    traci.connection.FatalTraCIError,
    traci.exceptions.TraCIException,
    traci.exceptions.FatalTraCIError,
)
_CONNECT_ERRORS: tuple[type[BaseException], ...] = (*SUMO_ERRORS, OSError)
_SUMO_GONE = (traci.connection.FatalTraCIError, traci.exceptions.FatalTraCIError)  # (over TraCI: SUMO ended)
# A switched signal's crossings (the internal lanes of its links) are read for this long after
# each state it was set to: while a switch to new greens waits for the vehicles of the links
# that turned red to leave (the planner's all-red extension), not through a long dwell.
CROSSING_READ_S = 30.0
_UNKNOWN_VEHICLE = re.compile(r"Vehicle '(.+)' is not known")
_labels = itertools.count()
ATTACH_TRIES = 10  # seconds (about) to wait for an attached SUMO to open its port
ATTACH_ORDER = 1  # greenwave's client order at an attached SUMO serving several clients
# seconds an attached SUMO may take to answer greenwave's first command: one started with
# --num-clients N answers none until all N have connected
FIRST_ANSWER_S = 60.0
RESTORE_ANSWER_S = 10.0  # seconds SUMO may take to answer a hand-back as greenwave closes (it answers at once)
CLOSE_WAIT_S = 30.0  # seconds SUMO (its own, over TraCI) may take to end once closed: it writes its outputs
# SUMO's defaults for vClass "emergency" that a type made by TraCI does not take from its class
# (Vehicle_Type_Parameter_Defaults; the dynamics, Krauss's, are the passenger car's already)
EMERGENCY_CLASS_DEFAULTS = {"setLength": 6.5, "setWidth": 2.16, "setHeight": 2.86, "setMass": 5000.0}
_libsumo_open = False


def _stderr_of(call: Callable[[], object], said: list[str]) -> None:
    """Run ``call`` with file descriptor 2 captured (SUMO in this process writes its option and
    loading errors there, before its error log exists), write what it said to stderr as before
    where ``call`` returns, and append it to ``said`` (also when ``call`` raises: the caller then
    says it in one line). Where fd 2 cannot be captured (closed, no temporary file), ``call``
    runs as it is."""
    if sys.stderr is not None:
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:
        call()
        return
    try:
        tmp = tempfile.TemporaryFile()  # noqa: SIM115 (closed by the with below, once fd 2 is saved)
    except OSError:
        os.close(saved)
        call()
        return
    with tmp:
        os.dup2(tmp.fileno(), 2)
        failed = True
        try:
            call()
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text = tmp.read().decode("utf-8", errors="replace")
            said.append(text)
            if text and not failed:
                os.write(2, text.encode("utf-8", errors="replace"))


def _first_error(text: str) -> str:
    """SUMO's first 'Error: ...' message in ``text``, with its continuation lines (indented):
    the cause, where its last one is only 'Process Error' or 'Could not parse commandline options'."""
    lines = text.splitlines()
    for k, ln in enumerate(lines):
        if ln.startswith("Error:"):
            rest = lines[k + 1:]
            n = next((i for i, x in enumerate(rest) if not x.startswith((" ", "\t"))), len(rest))
            return " ".join([ln.removeprefix("Error:").strip(), *(x.strip() for x in rest[:min(n, 3)])])
    return ""


def _last_line(text: str) -> str:
    """The last non-empty line of ``text`` (what a program said last before it ended)."""
    return next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "")


def _last_error(log: Path | None) -> str:
    """The last 'Error: ...' line SUMO wrote to its error log, if any."""
    if log is None or not log.is_file():
        return ""
    lines = [ln.strip() for ln in log.read_text(encoding="utf-8", errors="replace").splitlines()]
    errors = [ln for ln in lines if ln.startswith("Error:")]
    return errors[-1].removeprefix("Error:").strip() if errors else ""


def gui_problem() -> str | None:
    """Why sumo-gui cannot be shown here, or None: on Linux without a display it would exit at
    once, and TraCI go on retrying to connect to it for a minute."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return ("--gui needs a display, and neither DISPLAY nor WAYLAND_DISPLAY is set (run without --gui, or "
                "with X forwarding / a desktop session)")
    return None


class SumoAdapter:
    """Owns one SUMO simulation. Use as ``with SumoAdapter(args) as sim: ...``."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        backend: Backend = "libsumo",
        gui: bool = False,
        error_log: Path | None = None,
        explain: Callable[[str], str] | None = None,
        attach: tuple[str, int] | None = None,
    ) -> None:
        """``explain``: what to add to SUMO's message where it refuses the inputs (the file
        holding the vehicle it names, say). ``attach``: (host, port) of a SUMO the user started
        with ``--remote-port``, connected to over TraCI instead of starting one (``args`` unused);
        closing the connection then ends its simulation, as SUMO does when its last client leaves."""
        if (gui or attach is not None) and backend == "libsumo":
            backend = "traci"  # sumo-gui runs as its own process; an attached SUMO is one
        self.backend: Backend = backend
        self.gui = gui and attach is None
        self.attach = attach
        self._args = list(args)
        self._error_log = error_log
        self._explain = explain
        self._api: Any = None
        self._label = ""
        self._aborted = False  # abort(): stop waiting for an attached SUMO's first answer
        self._traci_stderr: IO[bytes] | None = None  # the SUMO process's stderr (TraCI)
        self._traci_proc: subprocess.Popen[bytes] | None = None  # the SUMO process (TraCI)
        self._traci_said = 0  # how much of it was written to ours
        # (dicts, not sets: read in the order watched, so that what the step returns, and the
        # monitor's violations listed from it, do not depend on Python's hash seed)
        self._vehicles: dict[str, None] = {}
        self._awaiting: dict[str, None] = {}  # vehicles of the route files to watch once they depart
        self._teleporting: set[str] = set()  # watched vehicles off the road in a teleport
        # the signals the hand-back as greenwave closed could not switch back (the connection broke)
        self.left_switched: tuple[str, ...] = ()
        self.speed_factors: Mapping[str, float] = {}  # those seen on the road: the speed factor SUMO drew for each
        self._route_ids: dict[str, str] = {}  # watched vehicle -> the id of its route, as last read
        # watched vehicles whose route is new in the last step: seen for the first time since they
        # departed (SUMO may have routed them at insertion), or given another by SUMO since
        self.routes_new: frozenset[str] = frozenset()
        self._signals: dict[str, None] = {}
        self._last_signals: dict[str, SignalState] = {}
        self._last_lanes: dict[str, LaneState] = {}
        self.last_step_ms = 0.0  # SUMO's simulationStep in the last step()
        self.last_read_ms = 0.0  # reading the watched objects' results after it
        self._lanes: dict[str, None] = {}
        self._original_program: dict[str, str] = {}  # tls switched by us -> program to return to
        self._set_at: dict[str, float] = {}  # tls switched by us -> when it was last set to a state
        self._crossings: dict[str, tuple[tuple[int, tuple[str, ...], tuple[int, ...]], ...]] = {}  # _crossings_of
        self.time_s = 0.0
        # the SUMO process ended under a step, or before close() (over TraCI): its signals went
        # with it, and its outputs are cut off
        self.ended = False
        self.exit_code: int | None = None  # the SUMO process's, once closed (TraCI, not attached)
        # attached: SUMO's collisions as (time, lane, collider, victim), its outputs not being ours
        self.collision_log: list[tuple[float, str, str, str]] = []

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> SumoAdapter:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
        if isinstance(exc, KeyboardInterrupt) and self.left_switched:
            # (the CLI says so, not "signals handed back")
            exc.left_switched = self.left_switched  # type: ignore[attr-defined]

    def start(self) -> None:
        global _libsumo_open
        if self.attach is not None:
            self._connect(*self.attach)
            self.time_s = float(self._api.simulation.getTime())
            self._api.simulation.subscribe(list(_SIM_VARS))
            return
        problem = gui_problem() if self.gui else None
        if problem:
            raise SimulationError(problem)
        cmd = [str(binary("sumo-gui" if self.gui else "sumo")), *self._args]
        if self._error_log is not None:
            cmd += ["--error-log", str(self._error_log)]
        if self.gui:  # (not twice: a GUI configuration may set them itself, and SUMO refused the second)
            cmd += [flag for flag in ("--start", "--quit-on-end") if flag not in self._args]
        said: list[str] = []  # what SUMO wrote to stderr while starting in this process
        try:
            if self.backend == "libsumo":
                if _libsumo_open:
                    raise SimulationError("a libsumo simulation is already open in this process")
                _stderr_of(lambda: libsumo.start(cmd), said)
                _libsumo_open = True
                self._api = libsumo
            else:
                self._label = f"greenwave-{next(_labels)}"
                self._start_traci(cmd, said)
                self._api = traci.getConnection(self._label)
        except SUMO_ERRORS as e:
            # (where SUMO said no "Error:" line, its last words: "unable to open display", a
            # missing library; TraCI's own "TraCI server already finished" said nothing of why)
            detail = (_last_error(self._error_log) or _first_error("".join(said))
                      or _last_line("".join(said)) or str(e))
            if "".join(said).strip() and self._error_log is not None:
                # (what SUMO said before its error log existed: kept there, not printed)
                with contextlib.suppress(OSError), self._error_log.open("a", encoding="utf-8") as log:
                    text = "".join(said)
                    log.write(text if text.endswith("\n") else text + "\n")
            detail = " ".join(detail.split())  # (one line: SUMO goes on over several at times)
            more = self._explain(detail) if self._explain is not None else ""
            raise SimulationError(f"SUMO rejected the configuration: {detail}{more}") from None
        self.time_s = float(self._api.simulation.getTime())
        self._api.simulation.subscribe(list(_SIM_VARS))

    def _connect(self, host: str, port: int) -> None:
        """Connect to a SUMO listening on ``host:port`` (the user's own, started with
        ``--remote-port``), trying for about ``ATTACH_TRIES`` seconds; its first answer is
        waited for ``FIRST_ANSWER_S`` (or until :meth:`abort`)."""
        self._label = f"greenwave-{next(_labels)}"
        where = f"{host}:{port}"
        asked_at: float | None = None
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # (TraCI prints "Retrying in 1 seconds")
                self._api = traci.connect(port, numRetries=ATTACH_TRIES, host=host, label=self._label)
            # (a timeout on the socket makes TraCI's read give up; abort() shuts the socket down)
            self._api._socket.settimeout(FIRST_ANSWER_S)
            if self._aborted:
                self._api._socket.shutdown(socket.SHUT_RDWR)
            asked_at = time.monotonic()
            self._api.getVersion()
            # (the first command: SUMO serves several clients in their order; one alone needs none)
            self._api.setOrder(ATTACH_ORDER)
            self._api._socket.settimeout(None)
        except _CONNECT_ERRORS as e:
            with contextlib.suppress(*_CONNECT_ERRORS):
                if self._api is not None:
                    self._api.close(wait=False)
            self._api = None
            detail = " ".join(str(e).split())
            if self._aborted:
                raise SimulationError(f"stopped while waiting for the SUMO at {where} to answer") from None
            if asked_at is not None and time.monotonic() - asked_at >= FIRST_ANSWER_S - 1.0:
                raise SimulationError(
                    f"the SUMO at {where} did not answer within {FIRST_ANSWER_S:g} s: a SUMO started with "
                    f"--num-clients N answers once all N clients have connected (greenwave takes client order "
                    f"{ATTACH_ORDER}); connect the others first, or start SUMO without --num-clients") from None
            if "could not connect" in detail.lower():  # (nothing listens there)
                raise SimulationError(f"no SUMO to attach to at {where} ({detail}): start SUMO with --remote-port "
                                      f"{port} first (a SUMO serving its clients already listens no more)") from None
            if "order" in detail.lower():
                detail = (f"{detail.rstrip('.')}: greenwave takes client order {ATTACH_ORDER}; give your other "
                          "clients other numbers")
            raise SimulationError(f"could not attach to the SUMO at {where}: {detail}") from None

    def abort(self) -> None:
        """From another thread, while :meth:`start` waits for an attached SUMO to answer (one
        waiting for more clients): give up, :meth:`start` raising. Nothing was switched yet.
        Not for a running simulation (it would cut a TraCI message)."""
        self._aborted = True
        api = self._api
        sock = getattr(api, "_socket", None) if api is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def option(self, name: str) -> str:
        """The value of one of SUMO's options (``net-file``, ``step-length``, ``seed``), as SUMO
        holds it."""
        return str(self._api.simulation.getOption(name))

    def edge_ids(self) -> tuple[str, ...]:
        """Every edge of SUMO's network, internal ones (``:J_0``) included."""
        return tuple(self._api.edge.getIDList())

    def edge_length_m(self, edge_id: str) -> float:
        """The length of an edge as SUMO has it (its first lane's)."""
        return float(self._api.lane.getLength(f"{edge_id}_0"))

    def step_length_s(self) -> float:
        return float(self._api.simulation.getDeltaT())

    def sumo_version(self) -> str:
        """The SUMO this runs (``SUMO v1_28_0+0000-...`` as SUMO says it): its figures are that
        version's (a baseline's deterministic figures move with it)."""
        return str(self._api.getVersion()[1])

    def end_time_s(self) -> float | None:
        """SUMO's own end (its ``end`` option), None where it has none."""
        end = float(self._api.simulation.getEndTime())
        return end if end >= 0 else None

    def define_ev_type(self, type_id: str, color: tuple[int, int, int]) -> None:
        """Create the vehicle type ``type_id`` for emergency vehicles in a running SUMO, as the
        vType files greenwave writes define it (vClass emergency, speed factor 1 without
        deviation), where those files cannot be loaded: an attached SUMO. A copy of SUMO's
        default type given the class through TraCI keeps the passenger car's size and mass:
        the emergency class's defaults are set too."""
        vt = self._api.vehicletype
        if type_id in vt.getIDList():
            raise SimulationError(f"the attached SUMO has a vehicle type '{type_id}' already: greenwave adds its "
                                  "emergency vehicles' types under that name")
        try:
            vt.copy("DEFAULT_VEHTYPE", type_id)
            vt.setVehicleClass(type_id, "emergency")
            vt.setSpeedFactor(type_id, 1.0)
            vt.setSpeedDeviation(type_id, 0.0)
            vt.setShapeClass(type_id, "emergency")
            vt.setColor(type_id, (*color, 255))
            for setter, value in EMERGENCY_CLASS_DEFAULTS.items():
                getattr(vt, setter)(type_id, value)
        except SUMO_ERRORS as e:
            raise SimulationError(f"SUMO refused vehicle type '{type_id}': {e}") from None

    def _start_traci(self, cmd: Sequence[str], said: list[str]) -> None:
        """Start SUMO (or sumo-gui) as a process and connect to it over TraCI, its stderr in a
        file: where it refuses its options or inputs, what it said is in ``said`` and the
        TraCIException raised at once (``traci.start`` restarted it up to 60 times, each time
        printing its errors, for a port conflict it took the refusal to be). A port taken
        meanwhile by another program is retried on another, twice."""
        for attempt in range(3):
            port = getFreeSocketPort()
            err = tempfile.TemporaryFile()  # noqa: SIM115 (kept open while SUMO runs: _echo_traci_stderr)
            try:
                # (a session of its own: a terminal's Ctrl-C or hang-up, sent to its whole process
                # group, reached SUMO too, which ended at once, the hand-back lost; greenwave takes
                # them and closes it)
                proc = subprocess.Popen([*cmd, "--remote-port", str(port)], stderr=err, start_new_session=True)
            except OSError as e:  # (not executable, another architecture: a traceback before)
                err.close()
                raise SimulationError(f"SUMO could not be started: {cmd[0]}: {e.strerror or e}") from None
            try:
                # (TraCI prints "Retrying in 1 seconds" while SUMO loads and opens its port; a SUMO
                # still loading after a minute, a large network, is waited for up to 5 minutes, not
                # restarted at once as if its port were taken: restarted, it loaded again, three
                # times, and the error said "Could not connect in 61 tries")
                with contextlib.redirect_stdout(io.StringIO()):
                    for waited in range(5):
                        try:
                            traci.init(port, numRetries=60, label=self._label, proc=proc)
                            break
                        except SUMO_ERRORS:
                            if proc.poll() is not None or waited == 4:
                                raise
            except BaseException as e:
                if not isinstance(e, SUMO_ERRORS):
                    # (interrupted while connecting, Ctrl-C or SIGTERM: the SUMO started here went
                    # on running, listening on its port, after greenwave had exited)
                    proc.kill()
                    proc.wait()
                    err.close()
                    raise
                refused = proc.poll() is not None
                if not refused:
                    proc.kill()
                proc.wait()
                err.seek(0)
                text = err.read().decode("utf-8", errors="replace")
                err.close()
                if refused or attempt == 2:
                    said.append(text)
                    raise
                continue
            self._traci_stderr, self._traci_proc = err, proc
            self._echo_traci_stderr()
            return

    def _echo_traci_stderr(self) -> None:
        """Write to stderr what the SUMO process said there since the last call."""
        err = self._traci_stderr
        if err is None:
            return
        with contextlib.suppress(OSError, ValueError):
            err.seek(self._traci_said)
            text = err.read()
            self._traci_said += len(text)
            if text:
                sys.stderr.flush()
                os.write(2, text)

    def close(self) -> None:
        """Hand back every signal this adapter switched, then close SUMO. Safe to call twice."""
        global _libsumo_open
        if self._api is None:
            return
        try:
            sock = getattr(self._api, "_socket", None)  # (over TraCI: a connection cut mid-message by a
            if sock is not None:                          # third Ctrl-C may never answer again)
                with contextlib.suppress(OSError):
                    sock.settimeout(RESTORE_ANSWER_S)
            self.restore_all()
        finally:
            with contextlib.suppress(*SUMO_ERRORS, OSError):  # SUMO may already be gone; don't mask the cause
                self._api.close()
            proc = self._traci_proc
            if proc is not None:  # (SUMO of its own over TraCI: did it end as closed, or was it gone?)
                try:
                    self.exit_code = proc.wait(timeout=CLOSE_WAIT_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    self.exit_code = proc.wait()
                self.ended = self.ended or self.exit_code != 0
            if self.backend == "libsumo":
                _libsumo_open = False
            self._api = None
            self._echo_traci_stderr()  # (what it said since the last step, and as it ended)
            if self._traci_stderr is not None:
                self._traci_stderr.close()
                self._traci_stderr = None
            self._traci_proc = None

    # -- what to read ------------------------------------------------------------------------
    def watch_vehicle(self, vehicle_id: str, *, from_departure: bool = False) -> None:
        """Read ``vehicle_id`` every step. ``from_departure``: a vehicle of the route files, which
        SUMO knows only once it has read that far (a few minutes ahead): watched from the step it
        departs in."""
        if from_departure:
            self._awaiting[vehicle_id] = None
            return
        self._api.vehicle.subscribe(vehicle_id, list(_VEHICLE_VARS))
        self._vehicles[vehicle_id] = None

    def watch_signals(self, tls_ids: Iterable[str]) -> None:
        for tls_id in sorted(tls_ids):
            if tls_id in self._signals:
                continue
            self._api.trafficlight.subscribe(tls_id, list(_SIGNAL_VARS))
            self._signals[tls_id] = None

    def running_programs(self, tls_ids: Iterable[str]) -> dict[str, tuple[str, tuple[RunningPhase, ...]]]:
        """The program SUMO runs for each signal: its id and its phases as ``(state, duration,
        minDur, maxDur)`` (SUMO's own reading of the files, to check greenwave's against)."""
        out: dict[str, tuple[str, tuple[RunningPhase, ...]]] = {}
        tls_api = self._api.trafficlight
        for tls_id in tls_ids:
            try:
                program_id = str(tls_api.getProgram(tls_id))
                logics = tls_api.getAllProgramLogics(tls_id)
            except SUMO_ERRORS:
                out[tls_id] = ("", ())  # no such signal in SUMO
                continue
            for logic in logics:
                if str(logic.programID) == program_id:
                    out[tls_id] = (program_id, tuple((str(p.state), float(p.duration), float(p.minDur),
                                                      float(p.maxDur)) for p in logic.phases))
                    break
            else:
                out[tls_id] = (program_id, ())
        return out

    def watch_lanes(self, lane_ids: Iterable[str]) -> None:
        for lane_id in sorted(lane_ids):
            if lane_id in self._lanes:
                continue
            self._api.lane.subscribe(lane_id, list(_LANE_VARS))
            self._lanes[lane_id] = None

    def unwatch_signals(self, tls_ids: Iterable[str]) -> None:
        """Stop reading these signals each step (no EV needs them any more)."""
        for tls_id in tls_ids:
            if tls_id in self._signals:
                del self._signals[tls_id]
                with contextlib.suppress(*SUMO_ERRORS):
                    self._api.trafficlight.unsubscribe(tls_id)

    def unwatch_lanes(self, lane_ids: Iterable[str]) -> None:
        for lane_id in lane_ids:
            if lane_id in self._lanes:
                del self._lanes[lane_id]
                with contextlib.suppress(*SUMO_ERRORS):
                    self._api.lane.unsubscribe(lane_id)

    @property
    def watched(self) -> tuple[int, int, int]:
        """How many vehicles, signals and lanes are read each step."""
        return len(self._vehicles), len(self._signals), len(self._lanes)

    # -- setup calls -------------------------------------------------------------------------
    def pending_vehicle(self, vehicle_id: str) -> bool:
        """The vehicle waits for SUMO to insert it (its departure time reached, no room yet)."""
        return vehicle_id in self._api.simulation.getPendingVehicles()

    def awaited_in_simulation(self, vehicle_id: str) -> bool:
        """A vehicle of the route files watched from its departure (:meth:`watch_vehicle`) has
        departed, or waits for insertion: False where SUMO did not load it (it ignores a vehicle
        listed out of departure order), or an attached SUMO does not load its file."""
        return vehicle_id not in self._awaiting or self.pending_vehicle(vehicle_id)

    def vehicle_type_ids(self) -> frozenset[str]:
        """The vehicle types SUMO has loaded."""
        return frozenset(str(t) for t in self._api.vehicletype.getIDList())

    def vehicle_type(self, type_id: str) -> dict[str, float]:
        """Dynamics of a vehicle type: max speed, acceleration, deceleration, speed factor, length."""
        vt = self._api.vehicletype
        return {
            "max_speed_mps": float(vt.getMaxSpeed(type_id)),
            "accel_mps2": float(vt.getAccel(type_id)),
            "decel_mps2": float(vt.getDecel(type_id)),
            "speed_factor": float(vt.getSpeedFactor(type_id)),
            "length_m": float(vt.getLength(type_id)),
        }

    def add_vehicle(
        self, vehicle_id: str, route: Sequence[str], type_id: str, depart: str = "now",
        insertion: Mapping[str, str] | None = None,
    ) -> None:
        """``insertion``: SUMO's vehicle attributes for where it is inserted and where its trip
        ends (``departLane``, ``departSpeed``, ...; SUMO's defaults where not given; None: the best
        lane at the maximum speed, as greenwave's EVs depart)."""
        how = dict(insertion) if insertion is not None else {"departLane": "best", "departSpeed": "max"}
        # a route SUMO keeps when it then refuses the vehicle (TraCI cannot remove a route): a
        # retry with the same vehicle id takes another route id
        taken = set(self._api.route.getIDList())
        route_id = f"{vehicle_id}__route"
        n = 1
        while route_id in taken:
            n += 1
            route_id = f"{vehicle_id}__route{n}"
        try:
            self._api.route.add(route_id, list(route))
            self._api.vehicle.add(vehicle_id, route_id, typeID=type_id, depart=depart, **how)
        except SUMO_ERRORS as e:
            raise SimulationError(f"SUMO refused vehicle '{vehicle_id}': {e}") from None

    def vehicle_route(self, vehicle_id: str) -> tuple[str, ...]:
        return tuple(self._api.vehicle.getRoute(vehicle_id))

    def vehicle_route_index(self, vehicle_id: str) -> int:
        """The index in its route of the edge the running vehicle is on (on a junction: the edge
        before it)."""
        return int(self._api.vehicle.getRouteIndex(vehicle_id))

    def route_index_ahead(self, vehicle_id: str) -> int:
        """The index in its route of the edge whose end the vehicle has still to cross: the one it
        is on, or inside a junction the one it is entering (0 before it has departed)."""
        index = max(0, self.vehicle_route_index(vehicle_id))
        return index + 1 if self.vehicle_road(vehicle_id).startswith(":") else index

    def vehicle_road(self, vehicle_id: str) -> str:
        """The edge the running vehicle is on (an internal one, ``:...``, inside a junction)."""
        return str(self._api.vehicle.getRoadID(vehicle_id))

    def set_vehicle_route(self, vehicle_id: str, edges: Sequence[str]) -> None:
        """Give the running vehicle a new way on, ``edges`` beginning with the one it is on now;
        SUMO keeps the edges it has driven in its route."""
        self._api.vehicle.setRoute(vehicle_id, list(edges))

    def remove_pending_vehicle(self, vehicle_id: str) -> bool:
        """Take a vehicle SUMO has not inserted yet (waiting for room to depart, or added since the
        last step, which SUMO's pending list does not show yet) out of the simulation: True if it
        was taken out, False otherwise (running, arrived, unknown)."""
        if vehicle_id in self._api.vehicle.getIDList():
            return False
        try:
            self._api.vehicle.remove(vehicle_id)
        except SUMO_ERRORS:
            return False
        return True

    def vehicle_exists(self, vehicle_id: str) -> bool:
        """The vehicle is running in the simulation now (departed, not arrived)."""
        return vehicle_id in self._api.vehicle.getIDList()

    def vehicle_type_id(self, vehicle_id: str) -> str:
        return str(self._api.vehicle.getTypeID(vehicle_id))

    def vehicle_departure_s(self, vehicle_id: str) -> float:
        """When the running vehicle departed (simulation time)."""
        return float(self._api.vehicle.getDeparture(vehicle_id))

    # -- geometry (for map matching external positions) --------------------------------------
    def lane_shape(self, lane_id: str) -> tuple[tuple[float, float], ...]:
        return tuple((float(x), float(y)) for x, y in self._api.lane.getShape(lane_id))

    def lonlat_to_xy(self, lon: float, lat: float) -> tuple[float, float]:
        """Network coordinates of a longitude/latitude (meaningful only on a geo-referenced network)."""
        x, y = self._api.simulation.convertGeo(lon, lat, True)
        return float(x), float(y)

    def nearest_edge(self, x: float, y: float, vclass: str = "emergency") -> tuple[str, float] | None:
        """The nearest edge usable by ``vclass`` to (x, y) and the position on it, None if there is none."""
        try:
            edge_id, pos, _lane = self._api.simulation.convertRoad(x, y, False, vclass)
        except SUMO_ERRORS:
            return None
        return (str(edge_id), float(pos)) if edge_id else None

    # -- the per-tick batch ------------------------------------------------------------------
    def step(self) -> Snapshot:
        """Advance one step and read everything watched, from the subscription results."""
        direct = False  # read with plain getters: this step's subscription results are lost
        t0 = time.perf_counter()
        try:
            if self.backend == "libsumo":
                self._api.simulationStep()
            else:
                # (TraCI prints "Error! Vehicle 'x' is not known." for each variable subscribed of
                # a vehicle another client removed, seven lines a step: the run says it vanished)
                with contextlib.redirect_stdout(io.StringIO()):
                    self._api.simulationStep()
        except SUMO_ERRORS as e:
            if isinstance(e, _SUMO_GONE):
                self.ended = True
            if not self._drop_vanished(str(e)):
                if self._traci_proc is not None and isinstance(e, _SUMO_GONE):  # (it writes its error log as it ends)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self._traci_proc.wait(timeout=5.0)
                said = _last_error(self._error_log)
                detail = " ".join((said or str(e)).split())
                if not said and isinstance(e, _SUMO_GONE):  # (no error of SUMO's: killed, or crashed)
                    raise SumoCrashed(f"SUMO stopped: {detail} (it ended without an error message: killed, "
                                      "or crashed)") from None
                more = self._explain(detail) if self._explain is not None else ""
                raise SimulationError(f"SUMO stopped: {detail}{more}") from None
            direct = True
        t1 = time.perf_counter()
        self.last_step_ms = (t1 - t0) * 1000.0
        if self._traci_stderr is not None:
            self._echo_traci_stderr()  # (its warnings as they come, as libsumo's in this process)
        try:
            snapshot = self._read(direct)
            self.last_read_ms = (time.perf_counter() - t1) * 1000.0
            if self.attach is not None and snapshot.colliding:
                # (SUMO's collision output is the starting SUMO's, not greenwave's: read here, stamped
                # with the step's start as that output stamps them)
                start = self.time_s - float(self._api.simulation.getDeltaT())
                self.collision_log.extend((start, c.lane, c.collider, c.victim)
                                          for c in self._api.simulation.getCollisions())
        except _SUMO_GONE as e:  # (gone between the step and its reading: a traceback before)
            self.ended = True
            detail = " ".join(str(e).split())
            raise SumoCrashed(f"SUMO stopped: {detail} (it ended without an error message: killed, "
                              "or crashed)") from None
        return snapshot

    def _read(self, direct: bool) -> Snapshot:
        api = self._api
        self.time_s = float(api.simulation.getTime())
        sim = api.simulation.getSubscriptionResults()
        arrived = tuple(sim.get(tc.VAR_ARRIVED_VEHICLES_IDS, ()))
        departed = tuple(sim.get(tc.VAR_DEPARTED_VEHICLES_IDS, ()))
        vehicles: dict[str, VehicleState] = {}
        all_vehicles = {} if direct else api.vehicle.getAllSubscriptionResults()  # one call for all
        if self._awaiting:
            # (read with plain getters in the step they depart in: subscribed now, their results come
            # with the next step's)
            running = set(api.vehicle.getIDList()) if direct else departed
            for vid in [v for v in self._awaiting if v in running]:
                del self._awaiting[vid]
                api.vehicle.subscribe(vid, list(_VEHICLE_VARS))
                self._vehicles[vid] = None
                all_vehicles = dict(all_vehicles)
                all_vehicles[vid] = self._direct_vehicle(vid)
        replaced: set[str] = set()
        factors: dict[str, float] = {}
        route_ids = self._route_ids
        for vid in self._vehicles:
            r = self._direct_vehicle(vid) if direct else all_vehicles.get(vid)
            if not r:
                continue
            road = r.get(tc.VAR_ROAD_ID, "")
            if not road:  # not yet departed (SUMO reports invalid values)
                continue
            route_id = r.get(tc.VAR_ROUTE_ID, "")
            if route_ids.get(vid) != route_id:
                replaced.add(vid)
            route_ids[vid] = route_id
            vehicles[vid] = VehicleState(vid, road, r[tc.VAR_LANE_ID], float(r[tc.VAR_LANEPOSITION]),
                                         float(r[tc.VAR_SPEED]), int(r[tc.VAR_ROUTE_INDEX]),
                                         float(r[tc.VAR_DISTANCE]))
            if vid not in self.speed_factors:  # (once a vehicle: drawn at its insertion)
                factors[vid] = float(api.vehicle.getSpeedFactor(vid))
        if factors:  # (a new mapping: a snapshot handed out before keeps its own)
            self.speed_factors = {**self.speed_factors, **factors}
        for vid in arrived:
            self._vehicles.pop(vid, None)
            route_ids.pop(vid, None)
        # (a jump teleport starts and ends in one step: it is over)
        starting = sim.get(tc.VAR_TELEPORT_STARTING_VEHICLES_IDS, ())
        ending = sim.get(tc.VAR_TELEPORT_ENDING_VEHICLES_IDS, ())
        if starting or ending or self._teleporting:
            self._teleporting = {v for v in (self._teleporting | set(starting)) - set(ending)
                                 if v in self._vehicles and v not in vehicles}
        started = frozenset(v for v in starting if v in self._vehicles) if starting else frozenset()
        self.routes_new = frozenset(replaced)
        # one call per domain for every subscribed object (not one per object); an unchanged
        # signal or lane keeps last step's state object
        all_signals = {} if direct else api.trafficlight.getAllSubscriptionResults()
        signals: dict[str, SignalState] = {}
        last_signals = self._last_signals
        for tls_id in self._signals:
            r = all_signals.get(tls_id) or self._direct_signal(tls_id)
            state, program, phase = r[tc.TL_RED_YELLOW_GREEN_STATE], r[tc.TL_CURRENT_PROGRAM], r[tc.TL_CURRENT_PHASE]
            old = last_signals.get(tls_id)
            occupied = self._occupied(tls_id) if self.time_s - self._set_at.get(tls_id, -1e18) <= CROSSING_READ_S \
                and tls_id in self._original_program else ()
            if old is None or old.state != state or old.program_id != program or old.phase != phase \
                    or old.occupied != occupied:
                old = SignalState(tls_id, state, program, int(phase), occupied)
            signals[tls_id] = old
        self._last_signals = signals
        all_lanes = {} if direct else api.lane.getAllSubscriptionResults()
        lanes: dict[str, LaneState] = {}
        last_lanes = self._last_lanes
        for lane_id in self._lanes:
            r = all_lanes.get(lane_id) or self._direct_lane(lane_id)
            n, h = r[tc.LAST_STEP_VEHICLE_NUMBER], r[tc.LAST_STEP_VEHICLE_HALTING_NUMBER]
            prev = last_lanes.get(lane_id)
            lanes[lane_id] = prev if prev is not None and prev.vehicles == n and prev.halting == h \
                else LaneState(lane_id, int(n), int(h))
        self._last_lanes = lanes
        return Snapshot(
            t_s=self.time_s,
            vehicles=vehicles,
            signals=signals,
            lanes=lanes,
            departed=departed,
            arrived=arrived,
            teleports_started=int(sim.get(tc.VAR_TELEPORT_STARTING_VEHICLES_NUMBER, 0)),
            teleporting=frozenset(self._teleporting),
            teleport_started=started,
            speed_factors=self.speed_factors,
            colliding=tuple(sim.get(tc.VAR_COLLIDING_VEHICLES_IDS, ())),
            emergency_stopping=int(sim.get(tc.VAR_EMERGENCYSTOPPING_VEHICLES_NUMBER, 0)),
        )

    def _drop_vanished(self, message: str) -> bool:
        """A watched vehicle was removed behind our back (by another TraCI client, an operator):
        SUMO then fails every step on its subscription. Forget it and go on; the controller sees
        it vanish and hands its signals back."""
        match = _UNKNOWN_VEHICLE.search(message)
        if match is None or match.group(1) not in self._vehicles:
            return False
        vehicle_id = match.group(1)
        self._vehicles.pop(vehicle_id, None)
        with contextlib.suppress(*SUMO_ERRORS):
            self._api.vehicle.unsubscribe(vehicle_id)
        return True

    def _direct_vehicle(self, vid: str) -> dict[int, Any]:
        v = self._api.vehicle
        try:
            return {
                tc.VAR_ROAD_ID: v.getRoadID(vid),
                tc.VAR_LANE_ID: v.getLaneID(vid),
                tc.VAR_LANEPOSITION: v.getLanePosition(vid),
                tc.VAR_SPEED: v.getSpeed(vid),
                tc.VAR_ROUTE_INDEX: v.getRouteIndex(vid),
                tc.VAR_DISTANCE: v.getDistance(vid),
                tc.VAR_ROUTE_ID: v.getRouteID(vid),
            }
        except SUMO_ERRORS:
            return {}

    def _direct_signal(self, tls_id: str) -> dict[int, Any]:
        tl = self._api.trafficlight
        return {
            tc.TL_RED_YELLOW_GREEN_STATE: tl.getRedYellowGreenState(tls_id),
            tc.TL_CURRENT_PROGRAM: tl.getProgram(tls_id),
            tc.TL_CURRENT_PHASE: tl.getPhase(tls_id),
        }

    def _occupied(self, tls_id: str) -> tuple[tuple[int, tuple[int, ...]], ...]:
        """The signal's links with a vehicle on their crossing now, each with its foe links. A
        vehicle counts while any part of it is there (a bus whose front has left the junction:
        the lane's occupancy, not its vehicle count, which goes by the front)."""
        lane = self._api.lane
        return tuple((index, foes) for index, lanes, foes in self._crossings_of(tls_id)
                     if any(lane.getLastStepVehicleNumber(ln) or lane.getLastStepOccupancy(ln) > 0 for ln in lanes))

    def _crossings_of(self, tls_id: str) -> tuple[tuple[int, tuple[str, ...], tuple[int, ...]], ...]:
        """Per link index of the signal: the internal lanes its vehicles cross the junction on (the
        chain from the link's first internal lane on), and the links whose internal lanes SUMO
        says conflict with those (read from SUMO once)."""
        cached = self._crossings.get(tls_id)
        if cached is not None:
            return cached
        api = self._api
        chains: list[tuple[int, list[str]]] = []
        for index, links in enumerate(api.trafficlight.getControlledLinks(tls_id)):
            lanes: list[str] = []
            for link in links:
                via = str(link[2]) if len(link) > 2 else ""
                while via.startswith(":") and via not in lanes:
                    lanes.append(via)
                    # an internal lane's link leads on over its internal junction's lane (via)
                    via = next((str(v) for nxt in api.lane.getLinks(via) for v in (nxt[4], nxt[0])
                                if str(v).startswith(":")), "")
            if lanes:
                chains.append((index, lanes))
        owner: dict[str, set[int]] = {}
        for index, lanes in chains:
            for lane in lanes:
                owner.setdefault(lane, set()).add(index)
        foes: dict[int, set[int]] = {}
        for index, lanes in chains:
            try:
                foe_lanes = {str(f) for lane in lanes for f in api.lane.getInternalFoes(lane)}
                foes[index] = {i for f in foe_lanes for i in owner.get(f, ())}
            except SUMO_ERRORS:  # no conflict data: every other link may cross its path
                foes[index] = {i for i, _ in chains}
        for index in list(foes):  # both ways (SUMO lists a few pairs on one side only)
            for other in foes[index]:
                foes.setdefault(other, set()).add(index)
        out: list[tuple[int, tuple[str, ...], tuple[int, ...]]] = []
        for index, lanes in chains:
            out.append((index, tuple(lanes), tuple(sorted(foes[index] - {index}))))
        self._crossings[tls_id] = cached = tuple(out)
        return cached

    def _direct_lane(self, lane_id: str) -> dict[int, Any]:
        ln = self._api.lane
        return {
            tc.LAST_STEP_VEHICLE_NUMBER: ln.getLastStepVehicleNumber(lane_id),
            tc.LAST_STEP_VEHICLE_HALTING_NUMBER: ln.getLastStepHaltingNumber(lane_id),
        }

    # -- commands ----------------------------------------------------------------------------
    def apply(self, commands: Sequence[SignalCommand]) -> None:
        tl = self._api.trafficlight
        for cmd in commands:
            if cmd.kind == "set_state":
                if cmd.tls_id not in self._original_program:
                    self._original_program[cmd.tls_id] = str(tl.getProgram(cmd.tls_id))
                tl.setRedYellowGreenState(cmd.tls_id, cmd.state)
                self._set_at[cmd.tls_id] = self.time_s
            else:
                program = cmd.program_id or self._original_program.get(cmd.tls_id, "")
                if program:
                    tl.setProgram(cmd.tls_id, program)
                if cmd.phase is not None:
                    tl.setPhase(cmd.tls_id, cmd.phase)
                if cmd.phase_remaining_s is not None:
                    tl.setPhaseDuration(cmd.tls_id, cmd.phase_remaining_s)
                self._original_program.pop(cmd.tls_id, None)

    def signals_now(self, tls_ids: Collection[str]) -> dict[str, tuple[str, str, int]]:
        """(state, program, phase) each of ``tls_ids`` shows now, after this tick's commands (a
        snapshot has what they showed in the step simulated before them)."""
        tl = self._api.trafficlight
        return {t: (str(tl.getRedYellowGreenState(t)), str(tl.getProgram(t)), int(tl.getPhase(t))) for t in tls_ids}

    def restore_all(self) -> list[str]:
        """Return every signal this adapter switched to its original program (S5 on any exit)."""
        restored: list[str] = []
        if self.ended or (self._traci_proc is not None and self._traci_proc.poll() is not None):
            # (SUMO ended under a step, or its process has: its signals went with it)
            self._original_program.clear()
            return restored
        for tls_id, program in list(self._original_program.items()):
            try:
                self._api.trafficlight.setProgram(tls_id, program)
                restored.append(tls_id)
            except (*_SUMO_GONE, OSError, struct.error, KeyError, ValueError, IndexError):
                # over TraCI, a connection cut inside an exchange (a signal delivered at once, SUMO
                # killed), or a SUMO that no longer answers (stopped: its answer timed out): its
                # answers are no longer read right, and the others would fare no better
                left = sorted(set(self._original_program) - set(restored))
                self.left_switched = tuple(left)
                print(f"greenwave: the connection to SUMO broke while handing the signals back; left switched "
                      f"away from their programs: {', '.join(left)}", file=sys.stderr)
                break
            except SUMO_ERRORS:  # keep restoring the others
                continue
        self._original_program.clear()
        return restored

    @property
    def preempted(self) -> tuple[str, ...]:
        return tuple(sorted(self._original_program))

    @property
    def switched(self) -> Collection[str]:
        """The signals switched away from their program now (a live view, no copy)."""
        return self._original_program.keys()

