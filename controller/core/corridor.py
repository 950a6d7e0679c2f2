"""The corridor: the signals an emergency vehicle meets along its route, and where they are.

``build_corridor`` walks a validated route; at every pair of consecutive edges
(approach -> exit) whose connections are signalized it records one :class:`CorridorJunction`:
which links of which traffic light the vehicle needs, in which program phases they are all
green, and the program's yellow and all-red clearance times for them. A traffic light that
controls several junctions appears once per junction crossed, each time with its own links.

Distances are measured along the route from the start of its first edge: every edge counts
its ``length_m``; every crossing between two route edges counts the shortest
``via_length_m`` among the connections between them (the crossing sumolib's routing counts).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from controller.core.network import Connection, Network, Program
from controller.core.routing import fastest_route, validate_route
from controller.core.states import is_green, is_yellow
from controller.errors import CorridorError, RouteError

DEFAULT_YELLOW_S = 3.0


@dataclass(frozen=True)
class CorridorJunction:
    index: int  # order along the route, 0-based
    junction_id: str  # the node crossed
    tls_id: str
    approach_edge: str  # route edge that ends at this stop line
    exit_edge: str  # the next route edge
    route_index: int  # index of approach_edge in the route
    approach_lanes: tuple[str, ...]  # every lane of approach_edge with a connection to exit_edge
    link_indices: tuple[int, ...]  # every link index of tls_id from those lanes to exit_edge (sorted)
    green_phases: tuple[int, ...]  # program phase indices in which all link_indices are green
    yellow_s: float  # shortest yellow run of these links in the program (3.0 if never yellow)
    all_red_s: float  # shortest all-red clearance before these links turn green (0 if none)
    distance_m: float  # from the start of the route's first edge to this stop line
    program_id: str = ""  # the program the phases refer to
    crossing_length_m: float = 0.0  # length of the crossing from this stop line onto exit_edge
    # every phase of the program shows all link_indices protected green ('G'): the program never
    # stops the EV here, and a preemption would only hold the other approaches red
    never_red: bool = False
    # the movement enters a section the other direction uses too (``exit_edge`` has a ``bidi``
    # edge: a single track, or a single-lane road both ways): the signal guards its ends, and a
    # green held for the EV could send it head-on into a vehicle on the section; left to its
    # program (the bidi edge's id, '' where there is none)
    single_track: str = ""
    # the program switches a link between signalled and off ('o', 'O': no signal, the junction's
    # right of way alone) from phase to phase: greenwave does not know how to end an unsignalled
    # right of way safely (SUMO shows no yellow before it), so the signal is left to its program
    # (which link and phases, '' where there is none). A link off in every phase is kept as shown.
    signal_off: str = ""


@dataclass(frozen=True)
class Corridor:
    route: tuple[str, ...]
    junctions: tuple[CorridorJunction, ...]
    edge_offsets_m: tuple[float, ...]  # route start -> start of each route edge (crossings included)
    length_m: float  # route start to end of last edge

    def position_m(self, route_index: int, lane_pos_m: float) -> float:
        """Position along the route of a vehicle on route edge ``route_index`` at ``lane_pos_m``."""
        if not 0 <= route_index < len(self.route):
            raise IndexError(f"route index {route_index} is outside the route (0..{len(self.route) - 1})")
        return self.edge_offsets_m[route_index] + lane_pos_m

    def tls_ids(self) -> tuple[str, ...]:
        """Distinct traffic light ids, in route order."""
        return tuple(dict.fromkeys(j.tls_id for j in self.junctions))


def build_corridor(network: Network, route: Sequence[str], *, unservable: list[str] | None = None,
                   unservable_from: int = 0) -> Corridor:
    """The signals along ``route`` (a sequence of normal edge ids).

    Raises :class:`NetworkError` for an unknown edge, :class:`RouteError` for two consecutive
    edges without a connection, :class:`CorridorError` when a signal on the route has no
    program or no phase giving green to every link the route needs there; with ``unservable``
    given, such a signal is left out of the corridor (its program runs on) and the error's
    message appended to it instead (a route SUMO chose, which the EV drives anyway), but for
    the movements out of the route's edges before ``unservable_from`` (driven already, or being
    crossed: left out without a word).
    """
    route_t = tuple(route)
    validate_route(network, route_t)

    offsets: list[float] = [0.0]
    crossing: list[float] = []
    for i in range(len(route_t) - 1):
        cross_m = min(c.via_length_m for c in network.connections_between(route_t[i], route_t[i + 1]))
        crossing.append(cross_m)
        offsets.append(offsets[-1] + network.edges[route_t[i]].length_m + cross_m)
    length_m = offsets[-1] + network.edges[route_t[-1]].length_m

    junctions: list[CorridorJunction] = []
    for i in range(len(route_t) - 1):
        approach = route_t[i]
        for conns in _signalized(network, approach, route_t[i + 1]):
            try:
                junctions.append(
                    _junction(
                        network,
                        conns,
                        index=len(junctions),
                        route_index=i,
                        distance_m=offsets[i] + network.edges[approach].length_m,
                        crossing_length_m=crossing[i],
                    )
                )
            except CorridorError as e:
                if unservable is None:
                    raise
                if i >= unservable_from:
                    unservable.append(str(e))
    return Corridor(
        route=route_t,
        junctions=tuple(junctions),
        edge_offsets_m=tuple(offsets),
        length_m=length_m,
    )


def escortable_route(network: Network, from_edge: str, to_edge: str, *,
                     passed_over: list[tuple[tuple[str, ...], str]] | None = None) -> tuple[str, ...]:
    """The fastest route from ``from_edge`` to ``to_edge`` whose every signal greenwave can serve
    (:func:`can_escort`): a faster one through a movement no phase of its signal shows green
    (links green in different phases, no program) is passed over (appended to ``passed_over``,
    where given, with the :class:`CorridorError` message naming that movement). Where every
    route holds such a movement, the :class:`CorridorError` of the fastest; :class:`RouteError`
    and :class:`NetworkError` as :func:`fastest_route` raises them."""
    fastest = fastest_route(network, from_edge, to_edge)
    unservable: list[str] = []
    build_corridor(network, fastest, unservable=unservable)
    if not unservable:
        return fastest
    try:
        route = fastest_route(network, from_edge, to_edge, allow=lambda a, b: can_escort(network, a, b))
    except RouteError:
        raise CorridorError(unservable[0]) from None
    if passed_over is not None:
        passed_over.append((fastest, unservable[0]))
    return route


def can_escort(network: Network, approach: str, exit_: str) -> bool:
    """Can greenwave serve the move from edge ``approach`` onto ``exit_``: has every signal it
    crosses a program with a phase giving green to all its links (as :func:`build_corridor` needs)?"""
    key = (approach, exit_)
    cache: dict[tuple[str, str], bool] = network.__dict__.setdefault("_escortable_cache", {})
    ok = cache.get(key)
    if ok is None:
        try:
            for conns in _signalized(network, approach, exit_):
                _junction(network, conns, index=0, route_index=0, distance_m=0.0, crossing_length_m=0.0)
            ok = True
        except CorridorError:
            ok = False
        cache[key] = ok
    return ok


def _signalized(network: Network, approach: str, exit_: str) -> list[list[Connection]]:
    """The signalized connections from ``approach`` onto ``exit_``, one list per traffic light
    (one node has one controller; should a net still mix several, they are kept apart)."""
    signalized = [c for c in network.connections_between(approach, exit_) if c.tls_id and c.link_index >= 0]
    return [[c for c in signalized if c.tls_id == tls_id] for tls_id in dict.fromkeys(c.tls_id for c in signalized)]


def _lane_order(network: Network, lane_id: str) -> int:
    edge = network.edges.get(lane_id.rpartition("_")[0])
    if edge is not None:
        for ln in edge.lanes:
            if ln.lane_id == lane_id:
                return ln.index
    return 0


def _junction(
    network: Network,
    conns: Sequence[Connection],
    index: int,
    route_index: int,
    distance_m: float,
    crossing_length_m: float,
) -> CorridorJunction:
    first = conns[0]
    tls_id, approach, exit_ = first.tls_id, first.from_edge, first.to_edge
    source = network.source or "<network>"
    program = network.programs.get(tls_id)
    if program is None and tls_id in network.unsupported:
        raise CorridorError(f"traffic light '{tls_id}' ({source}): {network.unsupported[tls_id]}; the route "
                            f"crosses it from edge '{approach}' to '{exit_}'")
    if program is None:
        raise CorridorError(
            f"traffic light '{tls_id}' ({source}) has no active program (switched off?); "
            f"the route crosses it from edge '{approach}' to '{exit_}'"
        )
    lanes = tuple(sorted(dict.fromkeys(c.from_lane for c in conns), key=lambda ln: _lane_order(network, ln)))
    links = tuple(sorted({c.link_index for c in conns}))
    if links[-1] >= program.link_count:
        raise CorridorError(
            f"traffic light '{tls_id}' ({source}): program '{program.program_id}' has "
            f"{program.link_count} signals, the route from edge '{approach}' to '{exit_}' uses link {links[-1]}"
        )
    green = green_phases(program, links)
    if not green:
        raise CorridorError(
            f"traffic light '{tls_id}' ({source}): no phase of program '{program.program_id}' gives green "
            f"to every link from edge '{approach}' to '{exit_}' (links {list(links)})"
        )
    return CorridorJunction(
        index=index,
        junction_id=first.junction_id,
        tls_id=tls_id,
        approach_edge=approach,
        exit_edge=exit_,
        route_index=route_index,
        approach_lanes=lanes,
        link_indices=links,
        green_phases=green,
        yellow_s=yellow_time_s(program, links),
        all_red_s=all_red_time_s(program, links),
        distance_m=distance_m,
        program_id=program.program_id,
        crossing_length_m=crossing_length_m,
        never_red=all(p.state[i] == "G" for p in program.phases for i in links),
        single_track=network.edges[exit_].bidi if exit_ in network.edges else "",
        signal_off=switched_off_link(program),
    )


def switched_off_link(program: Program) -> str:
    """The first link the program shows off ('o', 'O') in some phases and otherwise in others
    (signalled, or the other off state: SUMO switches between them with no yellow either),
    described ('' where none is): see :attr:`CorridorJunction.signal_off`."""
    phases = program.phases
    for i in range(program.link_count):
        off = [k for k, p in enumerate(phases) if p.state[i] in "oO"]
        other = next((k for k, p in enumerate(phases) if p.state[i] != phases[off[0]].state[i]), None) \
            if off else None
        if other is not None:  # (signalled in some phases, or off blinking in some and not in others)
            return (f"link {i} is '{phases[off[0]].state[i]}' (off) in phase {off[0]} and "
                    f"'{phases[other].state[i]}' in phase {other}")
    return ""


def green_phases(program: Program, links: Sequence[int]) -> tuple[int, ...]:
    """Indices of the phases in which every one of ``links`` is green ('G' or 'g')."""
    return tuple(k for k, p in enumerate(program.phases) if all(is_green(p.state[i]) for i in links))


def yellow_time_s(program: Program, links: Sequence[int]) -> float:
    """Shortest yellow run of any of ``links`` over the cyclic phase sequence.

    A run is a maximal sequence of consecutive phases (cyclically; identical consecutive
    phases merge) in which the link is yellow; its length is the sum of their ``duration_s``.
    3.0 when the program never shows these links yellow.
    """
    phases = program.phases
    n = len(phases)
    runs: list[float] = []
    for link in links:
        yellow = [is_yellow(p.state[link]) for p in phases]
        if all(yellow):
            runs.append(program.cycle_s)
            continue
        for k in range(n):
            if yellow[k] and not yellow[k - 1]:  # a run starts at k (k - 1 wraps to the last phase)
                total = 0.0
                j = k
                while yellow[j % n]:
                    total += phases[j % n].duration_s
                    j += 1
                runs.append(total)
    return min(runs) if runs else DEFAULT_YELLOW_S


def all_red_time_s(program: Program, links: Sequence[int]) -> float:
    """Shortest all-red clearance just before ``links`` turn green, over the cyclic sequence.

    For every phase in which all ``links`` turn green (they were not all green in the phase
    before), sum the durations of the immediately preceding phases in which no signal of the
    whole program is green or yellow. 0 when there is no such occurrence.
    """
    phases = program.phases
    n = len(phases)
    green = [all(is_green(p.state[i]) for i in links) for p in phases]
    all_red = [not any(is_green(c) or is_yellow(c) for c in p.state) for p in phases]
    clearances: list[float] = []
    for k in range(n):
        if green[k] and not green[k - 1]:
            total = 0.0
            j = k - 1
            steps = 0
            while all_red[j % n] and steps < n:
                total += phases[j % n].duration_s
                j -= 1
                steps += 1
            clearances.append(total)
    return min(clearances) if clearances else 0.0


def approach_links(network: Network, junction: CorridorJunction) -> frozenset[int]:
    """Every link index of the junction's signal that leaves the EV's approach edge (its own
    movement and the turns that share the approach)."""
    links = {
        c.link_index
        for c in network.connections_from(junction.approach_edge)
        if c.tls_id == junction.tls_id and c.link_index >= 0
    }
    return frozenset(links | set(junction.link_indices))
