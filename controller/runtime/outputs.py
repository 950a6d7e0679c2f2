"""Reading SUMO's own output files of a run: tripinfo, statistics, collisions."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from controller.errors import OutputError, SimulationError


@dataclass(frozen=True)
class Trip:
    vehicle_id: str
    depart_s: float
    arrival_s: float
    duration_s: float
    time_loss_s: float
    waiting_count: int
    waiting_time_s: float
    vtype: str = ""


@dataclass(frozen=True)
class Collision:
    t_s: float
    lane_id: str  # where it happened (an internal lane ':J_3_0' on a junction's crossing)
    collider: str
    victim: str


@dataclass(frozen=True)
class SumoOutputs:
    trips: dict[str, Trip]
    collisions: int = 0
    emergency_braking: int = 0
    emergency_stops: int = 0
    teleports: int = 0  # SUMO's total, which counts the vehicles teleported after a collision too
    teleports_traffic: int = 0  # jam, yield and wrong-lane teleports: the others
    collision_list: tuple[Collision, ...] = field(default_factory=tuple)  # collisions.xml's
    inserted: int | None = None  # vehicles SUMO inserted over the whole run (statistics.xml)


PREEMPTED_COLLISION_AFTER_S = 30.0  # collisions_preempted: up to this long after the hand-back


def _parse(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        free = _free_bytes(path.parent)
        if free is not None and free < _NEARLY_FULL_BYTES:
            raise OutputError(f"SUMO output '{path}' is missing or incomplete ({e}): the device holding it is "
                              f"full ({free // 1024} kB free), and SUMO cut its outputs off") from None
        raise SimulationError(f"SUMO output '{path}' is missing or incomplete: {e}") from None


_NEARLY_FULL_BYTES = 1 << 20  # less free space than this where an output is cut off: the disk is full


def _free_bytes(folder: Path) -> int | None:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def read_outputs(out_dir: Path) -> SumoOutputs:
    trips: dict[str, Trip] = {}
    for t in _parse(out_dir / "tripinfo.xml").iter("tripinfo"):
        vid = t.get("id", "")
        trips[vid] = Trip(
            vehicle_id=vid,
            depart_s=float(t.get("depart", "nan")),
            arrival_s=float(t.get("arrival", "nan")),
            duration_s=float(t.get("duration", "nan")),
            time_loss_s=float(t.get("timeLoss", "nan")),
            waiting_count=int(t.get("waitingCount", "0")),
            waiting_time_s=float(t.get("waitingTime", "0")),
            vtype=t.get("vType", ""),
        )
    stats = _parse(out_dir / "statistics.xml")
    vehicles = stats.find("vehicles")
    safety = stats.find("safety")
    teleports = stats.find("teleports")
    collisions: list[Collision] = []
    coll_file = out_dir / "collisions.xml"
    if coll_file.is_file():
        for c in _parse(coll_file).iter("collision"):
            collisions.append(
                Collision(float(c.get("time", "nan")), c.get("lane", ""), c.get("collider", ""), c.get("victim", ""))
            )
    return SumoOutputs(
        trips=trips,
        collisions=int(safety.get("collisions", "0")) if safety is not None else 0,
        emergency_braking=int(safety.get("emergencyBraking", "0")) if safety is not None else 0,
        emergency_stops=int(safety.get("emergencyStops", "0")) if safety is not None else 0,
        teleports=int(teleports.get("total", "0")) if teleports is not None else 0,
        teleports_traffic=sum(int(teleports.get(k, "0")) for k in ("jam", "yield", "wrongLane"))
        if teleports is not None else 0,
        collision_list=tuple(collisions),
        inserted=int(vehicles.get("inserted", "0")) if vehicles is not None else None,
    )


def junction_of_lane(lane_id: str) -> str | None:
    """The junction an internal lane crosses (':J_3_0' -> 'J', ':cluster_1_2_5_0' -> 'cluster_1_2');
    None for an edge's lane."""
    if not lane_id.startswith(":"):
        return None
    parts = lane_id[1:].rsplit("_", 2)
    return parts[0] if len(parts) == 3 else None


def collisions_while_preempted(
    collisions: Iterable[Collision],
    junction_tls: Mapping[str, str],
    windows: Mapping[str, Sequence[tuple[float, float]]],
    after_s: float = PREEMPTED_COLLISION_AFTER_S,
    clock_lag_s: float = 0.0,
) -> int:
    """How many collisions happened on the crossing of a preempted signal while it was preempted:
    from its entry until ``after_s`` after it was back in its program (``windows``: per traffic
    light, (entry, back) times on the controller's clock; ``junction_tls``: the traffic light of
    each signalized junction; ``clock_lag_s``: how far SUMO's output times are behind that clock,
    one step: SUMO stamps a step's events with the step's start, TraCI's time is its end)."""
    n = 0
    for c in collisions:
        junction = junction_of_lane(c.lane_id)
        tls = junction_tls.get(junction) if junction is not None else None
        t = c.t_s + clock_lag_s
        if tls is not None and any(a <= t <= b + after_s for a, b in windows.get(tls, ())):
            n += 1
    return n


def collisions_until(outputs: SumoOutputs, end_s: float) -> tuple[int, int]:
    """SUMO's collisions up to ``end_s`` (on SUMO's clock, as trips' arrivals are counted for
    :func:`background`) and after it. From ``collisions.xml`` where it lists every collision
    ``statistics.xml`` counts; else all are counted before the end (they cannot be told apart)."""
    if len(outputs.collision_list) != outputs.collisions:
        return outputs.collisions, 0
    before = sum(1 for c in outputs.collision_list if c.t_s <= end_s + 1e-9)
    return before, outputs.collisions - before


def collisions_involving(collisions: Iterable[Collision], vehicle_ids: Collection[str]) -> int:
    """How many collisions had one of ``vehicle_ids`` (the EVs) as collider or victim."""
    return sum(1 for c in collisions if c.collider in vehicle_ids or c.victim in vehicle_ids)


def unfinished(outputs: SumoOutputs, exclude: Collection[str], until_s: float, evs_inserted: int) -> int | None:
    """How many other vehicles (not in ``exclude``, the ``evs_inserted`` EVs) SUMO had inserted
    that had not arrived by ``until_s``: on the road then, or inserted after it (a run going on
    for an EV) and not yet arrived at the run's end; None without SUMO's statistics."""
    if outputs.inserted is None:
        return None
    done = sum(1 for vid, t in outputs.trips.items()
               if vid not in exclude and (t.arrival_s <= until_s + 1e-9 or t.depart_s > until_s + 1e-9))
    return max(0, outputs.inserted - evs_inserted - done)


def background(outputs: SumoOutputs, exclude: Collection[str], until_s: float) -> tuple[int, float | None]:
    """Number and mean time loss of the non-EV trips that arrived by ``until_s``."""
    losses = [
        t.time_loss_s for vid, t in outputs.trips.items() if vid not in exclude and t.arrival_s <= until_s + 1e-9
    ]
    return len(losses), (sum(losses) / len(losses) if losses else None)


# SUMO's own vehicle types and their classes (a vType given no vClass is a passenger car)
DEFAULT_VTYPE_CLASSES = {"DEFAULT_VEHTYPE": "passenger", "DEFAULT_BIKETYPE": "bicycle", "DEFAULT_TAXITYPE": "taxi",
                         "DEFAULT_RAILTYPE": "rail", "DEFAULT_PEDTYPE": "pedestrian"}


def background_by_class(outputs: SumoOutputs, exclude: Collection[str], until_s: float,
                        vtype_classes: Mapping[str, str]) -> dict[str, dict[str, float | int | None]]:
    """:func:`background` per vehicle class (``vtype_classes``: vType id -> vClass; a type not
    known there counts as ``passenger``, SUMO's default), the classes sorted by trips."""
    losses: dict[str, list[float]] = {}
    for vid, t in outputs.trips.items():
        if vid not in exclude and t.arrival_s <= until_s + 1e-9:
            vclass = vtype_classes.get(t.vtype) or DEFAULT_VTYPE_CLASSES.get(t.vtype, "passenger")
            losses.setdefault(vclass, []).append(t.time_loss_s)
    return {c: {"trips": len(v), "mean_time_loss": round(sum(v) / len(v), 3)}
            for c, v in sorted(losses.items(), key=lambda kv: (-len(kv[1]), kv[0]))}


CROSS_STREETS_FILE = "cross_streets.xml"


def cross_streets(out_dir: Path) -> dict[str, float | int | None]:
    """Entries of vehicles into the cross streets of the EVs' signals (``vehicles``: one per
    vehicle and edge), and their mean time loss there per entry (SUMO's edgeData up to the
    scenario's end, as the other trips are counted)."""
    path = out_dir / CROSS_STREETS_FILE
    if not path.is_file():
        return {"edges": 0, "vehicles": 0, "mean_time_loss": None}
    entered = 0.0
    loss = 0.0
    edges = set()
    for e in _parse(path).iter("edge"):
        edges.add(e.get("id", ""))
        entered += float(e.get("entered", "0")) + float(e.get("departed", "0"))
        loss += float(e.get("timeLoss", "0"))
    return {
        "edges": len(edges),
        "vehicles": int(entered),
        "mean_time_loss": round(loss / entered, 3) if entered else None,
    }
