"""Free-flow time: the EV's route driven by the same vehicle type alone on the empty network,
with every signal on the route showing its approach green (DESIGN §5). Obtained by simulating
it, and cached per (network, route, vehicle type, step length) on disk.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from controller.core.corridor import approach_links
from controller.core.snapshot import SignalCommand
from controller.errors import SimulationError
from controller.runtime.setup import EvPlan, RunSetup
from controller.sim.adapter import Backend, SumoAdapter

CACHE_VERSION = 1
_memory: dict[str, float] = {}


def cache_file() -> Path:
    root = os.environ.get("GREENWAVE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "greenwave"
    )
    return Path(root) / "freeflow.json"


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _key(setup: RunSetup, ev: EvPlan, vtypes: Path) -> str:
    payload = json.dumps(
        [CACHE_VERSION, _file_digest(setup.inputs.net_file), _file_digest(vtypes), ev.vtype_id,
         list(ev.route), setup.step_length_s],
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _load_cache() -> dict[str, float]:
    try:
        data = json.loads(cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _store(key: str, value: float) -> None:
    data = _load_cache()
    data[key] = value
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=0, sort_keys=True), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass  # a cache that cannot be written only costs time


def free_flow_time(setup: RunSetup, ev: EvPlan, *, backend: Backend = "libsumo") -> float:
    vtypes = setup.inputs.additional_files[0]  # the run's EV vehicle types, written by setup
    key = _key(setup, ev, vtypes)
    if key in _memory:
        return _memory[key]
    cached = _load_cache().get(key)
    if cached is not None:
        _memory[key] = cached
        return cached
    value = _simulate(setup, ev, vtypes, backend)
    _memory[key] = value
    _store(key, value)
    return value


def _simulate(setup: RunSetup, ev: EvPlan, vtypes: Path, backend: Backend) -> float:
    network = setup.network
    with tempfile.TemporaryDirectory(prefix="greenwave-freeflow-") as tmp:
        tripinfo = Path(tmp) / "tripinfo.xml"
        args = [
            "--net-file", str(setup.inputs.net_file),
            "--additional-files", str(vtypes),
            "--begin", "0",
            "--step-length", f"{setup.step_length_s:g}",
            "--no-step-log", "true",
            "--duration-log.disable", "true",
            "--no-warnings", "true",
            "--tripinfo-output", str(tripinfo),
        ]  # fmt: skip
        commands: dict[str, set[int]] = {}
        for j in ev.corridor.junctions:
            commands.setdefault(j.tls_id, set()).update(approach_links(network, j))
        with SumoAdapter(args, backend=backend, error_log=Path(tmp) / "errors.log") as sim:
            sim.add_vehicle(ev.ev_id, ev.route, ev.vtype_id, depart="0")
            sim.apply(
                [
                    SignalCommand(
                        tls,
                        "set_state",
                        state="".join(
                            "G" if i in links else "r" for i in range(network.programs[tls].link_count)
                        ),
                        reason="free flow: route green",
                    )
                    for tls, links in sorted(commands.items())
                ]
            )
            limit = 10 * ev.corridor.length_m / 1.0 + 600  # generous: 1 m/s average
            arrived = False
            while sim.time_s < limit:
                snap = sim.step()
                if ev.ev_id in snap.arrived:
                    arrived = True
                    break
            if not arrived:
                raise SimulationError(f"free-flow run: '{ev.ev_id}' did not arrive on an empty network")
            sim.step()  # let SUMO write the tripinfo
        root = ET.parse(tripinfo).getroot()
        for trip in root.iter("tripinfo"):
            if trip.get("id") == ev.ev_id:
                return float(trip.get("duration", "nan"))
    raise SimulationError(f"free-flow run: no tripinfo written for '{ev.ev_id}'")
