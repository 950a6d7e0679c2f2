"""Reproducible background demand: random fringe-to-fringe trips drawn from a seed.

:func:`write_random_trips` writes a SUMO routes file of ``<trip>`` elements between edges at
the boundary of a network. SUMO routes each trip itself when it is inserted, so no duarouter or
randomTrips.py run is needed, and the same seed always gives a byte-identical file.

Entry edges are edges whose start node is fed from nowhere but the edge's own reverse (the
network boundary); exit edges are edges whose end node leads nowhere but back. A trip's
destination is always reachable from its origin for a passenger car.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sumolib

from controller import MAX_TRIPS
from controller.errors import NetworkError, ScenarioError

__all__ = ["KNOWN_PARAMS", "write_random_trips"]

VTYPE_ID = "bg_passenger"
VCLASS = "passenger"

#: Keyword parameters accepted through ``**params`` (besides the named arguments).
KNOWN_PARAMS: frozenset[str] = frozenset({"fringe_only", "main_edges", "main_share", "min_trip_m"})


@dataclass(frozen=True)
class _Endpoints:
    entries: list[Any]  # sumolib edges
    exits: list[Any]
    reachable: dict[str, list[Any]]  # entry id -> reachable exits (sorted by id)


def write_random_trips(
    net_file: Path,
    out_file: Path,
    *,
    seed: int,
    begin_s: float,
    end_s: float,
    vehicles_per_hour: float,
    through_share: float = 0.6,
    **params: Any,
) -> int:
    """Write random background trips between boundary edges of ``net_file`` to ``out_file``.

    ``round(vehicles_per_hour * (end_s - begin_s) / 3600)`` trips depart at uniformly random
    times in ``[begin_s, end_s)``, written sorted by departure with ids ``bg0, bg1, ...``,
    vehicle type ``bg_passenger`` (vClass passenger), ``departLane="best"`` and
    ``departSpeed="max"``.

    Args:
        net_file: SUMO network (``.net.xml`` or ``.net.xml.gz``).
        out_file: routes file to write (parent folders are created).
        seed: seed for ``numpy.random.default_rng``; the same seed gives the same file.
        begin_s, end_s: departure window in seconds, ``begin_s < end_s``.
        vehicles_per_hour: mean insertion rate over the whole network, ``> 0``.
        through_share: share of trips that leave on the "through" exit of their entry, the
            reachable exit lying most nearly straight ahead of the entry's direction; the rest
            pick uniformly among the entry's other reachable exits. In ``[0, 1]``.

    Keyword params (``**params``):
        fringe_only (bool, default True): trips go between boundary edges. If False, any
            passenger edge can be an origin or destination (origin != destination).
        main_edges (list of edge ids, default []): the main street's entry edges.
        main_share (float in [0, 1], default 0): share of trips that start on one of
            ``main_edges`` (uniformly); the others start uniformly on the other entries.
            Use it to load an arterial more than its cross streets.
        min_trip_m (float >= 0, default 0): origins and destinations closer than this
            straight-line distance are not paired (drops short corner-turning trips).

    Returns:
        The number of trips written.

    Raises:
        ScenarioError: a parameter is unknown or invalid (the message names it).
        NetworkError: the network cannot be read or has no usable boundary edges.
    """
    unknown = sorted(set(params) - KNOWN_PARAMS)
    if unknown:
        raise ScenarioError(
            f"random_trips: unknown demand parameter(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted({'through_share', *KNOWN_PARAMS}))}"
        )
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ScenarioError(f"random_trips: 'seed' must be a non-negative integer, got {seed!r}")
    begin = _number("begin_s", begin_s, minimum=0.0)
    end = _number("end_s", end_s, minimum=0.0)
    if end <= begin:
        raise ScenarioError(f"random_trips: 'end_s' ({end_s}) must be greater than 'begin_s' ({begin_s})")
    rate = _number("vehicles_per_hour", vehicles_per_hour, minimum=0.0)
    if rate <= 0:
        raise ScenarioError(f"random_trips: 'vehicles_per_hour' must be > 0, got {vehicles_per_hour!r}")
    if rate * (end - begin) / 3600.0 > MAX_TRIPS:
        raise ScenarioError(
            f"random_trips: 'vehicles_per_hour' {rate:g} over {end - begin:g} s makes "
            f"{rate * (end - begin) / 3600.0:.3g} trips; at most {MAX_TRIPS:,} are generated for one run"
        )
    through = _number("through_share", through_share, minimum=0.0, maximum=1.0)
    fringe_only = params.get("fringe_only", True)
    if not isinstance(fringe_only, bool):
        raise ScenarioError(f"random_trips: 'fringe_only' must be true or false, got {fringe_only!r}")
    main_share = _number("main_share", params.get("main_share", 0.0), minimum=0.0, maximum=1.0)
    min_trip_m = _number("min_trip_m", params.get("min_trip_m", 0.0), minimum=0.0)
    main_ids = params.get("main_edges", [])
    if isinstance(main_ids, str) or not isinstance(main_ids, Sequence):
        raise ScenarioError(f"random_trips: 'main_edges' must be a list of edge ids, got {main_ids!r}")
    if not all(isinstance(e, str) for e in main_ids):
        raise ScenarioError(f"random_trips: 'main_edges' must be a list of edge ids, got {main_ids!r}")
    if main_share > 0 and not main_ids:
        raise ScenarioError("random_trips: 'main_share' > 0 needs a non-empty 'main_edges' list")

    net = _read_net(Path(net_file))
    ends = _endpoints(net, Path(net_file), fringe_only=fringe_only, min_trip_m=min_trip_m)
    entry_ids = {e.getID() for e in ends.entries}
    for eid in main_ids:
        if eid not in entry_ids:
            raise ScenarioError(
                f"random_trips: 'main_edges' entry {eid!r} is not a usable "
                f"{'boundary entry ' if fringe_only else ''}edge of {net_file}"
            )
    main = [e for e in ends.entries if e.getID() in set(main_ids)]
    other = [e for e in ends.entries if e.getID() not in set(main_ids)]
    if main_share < 1 and not other:
        raise ScenarioError("random_trips: 'main_edges' covers every entry but 'main_share' < 1")

    rng = np.random.default_rng(int(seed))
    n = round(rate * (end - begin) / 3600.0)
    departs = np.sort(rng.uniform(begin, end, size=n))
    use_main = rng.random(n) < main_share
    go_through = rng.random(n) < through
    pick_origin = rng.random(n)
    pick_dest = rng.random(n)

    through_exit: dict[str, Any] = {}
    lines: list[str] = []
    for i in range(n):
        pool = main if use_main[i] else other
        origin = pool[min(int(pick_origin[i] * len(pool)), len(pool) - 1)]
        candidates = ends.reachable[origin.getID()]
        oid = origin.getID()
        if oid not in through_exit:
            through_exit[oid] = _through_exit(origin, candidates)
        straight = through_exit[oid]
        if go_through[i] or len(candidates) == 1:
            dest = straight
        else:
            rest = [c for c in candidates if c is not straight]
            dest = rest[min(int(pick_dest[i] * len(rest)), len(rest) - 1)]
        lines.append(
            f'    <trip id="bg{i}" type="{VTYPE_ID}" depart="{departs[i]:.2f}" from="{oid}" '
            f'to="{dest.getID()}" departLane="best" departSpeed="max"/>'
        )

    out = Path(out_file)
    out.parent.mkdir(parents=True, exist_ok=True)
    header = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<!-- greenwave random_trips: seed={int(seed)} begin={begin:g} end={end:g} "
        f"vehicles_per_hour={rate:g} through_share={through:g} -->\n"
        "<routes>\n"
        f'    <vType id="{VTYPE_ID}" vClass="{VCLASS}"/>\n'
    )
    out.write_text(header + "".join(line + "\n" for line in lines) + "</routes>\n", encoding="utf-8")
    return n


def _number(name: str, value: Any, *, minimum: float, maximum: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ScenarioError(f"random_trips: '{name}' must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or v < minimum or v > maximum:
        bounds = f"[{minimum:g}, {maximum:g}]" if math.isfinite(maximum) else f">= {minimum:g}"
        raise ScenarioError(f"random_trips: '{name}' must be finite and {bounds}, got {value!r}")
    return v


def _read_net(path: Path) -> Any:
    if not path.is_file():
        raise NetworkError(f"network file not found: {path}")
    try:
        return sumolib.net.readNet(str(path))
    except Exception as e:  # sumolib raises plain exceptions from the XML parser
        raise NetworkError(f"cannot read network {path}: {e}") from e


def _usable(edge: Any) -> bool:
    return bool(edge.getFunction() == "" and edge.allows(VCLASS))


def _endpoints(net: Any, net_file: Path, *, fringe_only: bool, min_trip_m: float) -> _Endpoints:
    edges = sorted((e for e in net.getEdges() if _usable(e)), key=lambda e: e.getID())
    if fringe_only:
        entries = [e for e in edges if _is_entry(e)]
        exits = [e for e in edges if _is_exit(e)]
    else:
        entries = list(edges)
        exits = list(edges)
    reachable: dict[str, list[Any]] = {}
    exit_ids = {e.getID() for e in exits}
    farthest = 0.0  # (the longest connected pair, for the message when min_trip_m leaves none)
    for entry in entries:
        seen = _reachable_ids(entry)
        apart = [
            (x, _distance(entry, x))
            for x in exits
            if x.getID() in seen and x is not entry and x.getToNode() is not entry.getFromNode()
        ]
        farthest = max([farthest, *(d for _, d in apart)])
        ok = [x for x, d in apart if d >= min_trip_m]
        if ok:
            reachable[entry.getID()] = ok
    entries = [e for e in entries if e.getID() in reachable]
    if not entries and farthest > 0:
        # (the user's parameter, not the network, leaves no pair: a ScenarioError, which the
        # scenario's loader names by its file and field)
        raise ScenarioError(
            f"random_trips: 'min_trip_m' {min_trip_m:g} m leaves no trip: the farthest connected "
            f"entry and exit of {net_file} are {farthest:.0f} m apart"
        )
    if not entries or not exit_ids:
        # (named by its file: the message showed sumolib's object, '<sumolib.net.Net object at 0x...>')
        raise NetworkError(f"network {net_file} has no connected boundary entry and exit edges for passenger cars")
    return _Endpoints(entries=entries, exits=exits, reachable=reachable)


def _is_entry(edge: Any) -> bool:
    """Nothing enters the edge's start node except (possibly) the edge's own reverse."""
    origin = edge.getFromNode()
    return all(e.getFromNode() is edge.getToNode() for e in origin.getIncoming())


def _is_exit(edge: Any) -> bool:
    """Nothing leaves the edge's end node except (possibly) the edge's own reverse."""
    end = edge.getToNode()
    return all(e.getToNode() is edge.getFromNode() for e in end.getOutgoing())


def _reachable_ids(start: Any) -> set[str]:
    """Ids of the edges a passenger car can reach from ``start`` (following lane connections)."""
    seen = {start.getID()}
    stack = [start]
    while stack:
        edge = stack.pop()
        for nxt in _successors(edge):
            nid = nxt.getID()
            if nid not in seen:
                seen.add(nid)
                stack.append(nxt)
    return seen


def _successors(edge: Any) -> Iterable[Any]:
    for nxt, conns in edge.getOutgoing().items():
        if _usable(nxt) and any(c.getFromLane().allows(VCLASS) for c in conns):
            yield nxt


def _distance(a: Any, b: Any) -> float:
    (ax, ay), (bx, by) = a.getFromNode().getCoord()[:2], b.getToNode().getCoord()[:2]
    return math.hypot(bx - ax, by - ay)


def _through_exit(entry: Any, exits: list[Any]) -> Any:
    """The exit most nearly straight ahead of the entry's heading (ties: the farther one)."""
    (fx, fy), (tx, ty) = entry.getFromNode().getCoord()[:2], entry.getToNode().getCoord()[:2]
    heading = math.atan2(ty - fy, tx - fx)

    def key(x: Any) -> tuple[float, float, str]:
        ex, ey = x.getToNode().getCoord()[:2]
        bearing = math.atan2(ey - fy, ex - fx)
        diff = abs((bearing - heading + math.pi) % (2 * math.pi) - math.pi)
        return (round(diff, 6), -math.hypot(ex - fx, ey - fy), x.getID())

    return min(exits, key=key)
