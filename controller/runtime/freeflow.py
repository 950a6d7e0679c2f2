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
from collections.abc import Mapping, Sequence
from pathlib import Path

from controller.core.corridor import approach_links
from controller.core.snapshot import SignalCommand
from controller.errors import SimulationError
from controller.runtime.setup import EvPlan, RunSetup
from controller.sim.adapter import Backend, SumoAdapter

CACHE_VERSION = 2  # 2: values from a batched session (one build only) are not reused
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
    parts: list[object] = [CACHE_VERSION, _file_digest(setup.inputs.net_file), _file_digest(vtypes), ev.vtype_id,
                           list(ev.route), setup.step_length_s]
    if ev.in_routes:  # (a vehicle of the route files: its own type's definition and insertion)
        parts += ["as defined", _file_digest(ev.vtype_file) if ev.vtype_file is not None else None,
                  [list(a) for a in ev.insertion]]
    payload = json.dumps(parts)
    return hashlib.sha256(payload.encode()).hexdigest()


def _load_cache() -> dict[str, float]:
    try:
        data = json.loads(cache_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _store(values: Mapping[str, float]) -> None:
    data = _load_cache()
    data.update(values)
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=0, sort_keys=True), encoding="utf-8")
        tmp.replace(path)
    except OSError:
        pass  # a cache that cannot be written only costs time


def free_flow_time(setup: RunSetup, ev: EvPlan, *, backend: Backend = "libsumo") -> float:
    return free_flow_times(setup, [ev], backend=backend)[ev.ev_id]


def free_flow_times(setup: RunSetup, evs: Sequence[EvPlan], *, backend: Backend = "libsumo") -> dict[str, float]:
    """Free-flow time of every EV, from the cache or simulated, each in a SUMO session of its own:
    the EV type dawdles (SUMO's default sigma), drawn from the session's random numbers, so one
    EV's value must not depend on which others were simulated before it in the same session."""
    vtypes = setup.inputs.additional_files[0]  # the run's EV vehicle types, written by setup
    out: dict[str, float] = {}
    missing: list[tuple[EvPlan, str]] = []
    cache: dict[str, float] | None = None
    for ev in evs:
        key = _key(setup, ev, vtypes)
        if key not in _memory:
            cache = _load_cache() if cache is None else cache
            if key in cache:
                _memory[key] = cache[key]
        if key in _memory:
            out[ev.ev_id] = _memory[key]
        else:
            missing.append((ev, key))
    if missing:
        for ev, key in missing:
            _memory[key] = out[ev.ev_id] = _simulate(setup, ev, vtypes, backend)
        _store({key: _memory[key] for _, key in missing})
    return out


def _simulate(setup: RunSetup, ev: EvPlan, vtypes: Path, backend: Backend) -> float:
    """The EV alone on the empty network, every signal on its route showing its approach green."""
    network = setup.network
    links: dict[str, set[int]] = {}
    for j in ev.corridor.junctions:
        links.setdefault(j.tls_id, set()).update(approach_links(network, j))
    with tempfile.TemporaryDirectory(prefix="greenwave-freeflow-") as tmp:
        tripinfo = Path(tmp) / "tripinfo.xml"
        args = [
            "--net-file", str(setup.inputs.net_file),
            "--additional-files", ",".join(str(f) for f in (vtypes, ev.vtype_file) if f is not None),
            "--begin", "0",
            "--step-length", f"{setup.step_length_s:g}",
            "--no-step-log", "true",
            "--duration-log.disable", "true",
            "--no-warnings", "true",
            "--tripinfo-output", str(tripinfo),
        ]  # fmt: skip
        if ev.in_routes:
            # (a vehicle of the route files: defined as there, so that SUMO's defaults for what it
            # does not give are those of the run, not TraCI's)
            vehicle = ET.Element("vehicle", {**dict(ev.insertion), "id": ev.ev_id, "type": ev.vtype_id, "depart": "0"})
            ET.SubElement(vehicle, "route", {"edges": " ".join(ev.route)})
            routes = Path(tmp) / "vehicle.rou.xml"
            routes.write_text(f"<routes>{ET.tostring(vehicle, encoding='unicode')}</routes>", "utf-8")
            args += ["--route-files", str(routes)]
        with SumoAdapter(args, backend=backend, error_log=Path(tmp) / "errors.log") as sim:
            if not ev.in_routes:
                sim.add_vehicle(ev.ev_id, ev.route, ev.vtype_id, depart="0", insertion=dict(ev.insertion))
            sim.apply([
                SignalCommand(tls, "set_state", reason="free flow: route green", state="".join(
                    "G" if i in ln else "r" for i in range(network.programs[tls].link_count)))
                for tls, ln in sorted(links.items())
            ])  # fmt: skip
            limit = 10 * ev.corridor.length_m / 1.0 + 600  # generous: 0.1 m/s average
            while sim.time_s < limit:
                if ev.ev_id in sim.step().arrived:
                    break
            else:
                raise SimulationError(f"free-flow run: '{ev.ev_id}' did not arrive on an empty network")
            sim.step()  # let SUMO write the tripinfo
        for trip in ET.parse(tripinfo).getroot().iter("tripinfo"):
            if trip.get("id") == ev.ev_id:
                return float(trip.get("duration", "nan"))
    raise SimulationError(f"free-flow run: no tripinfo written for '{ev.ev_id}'")
