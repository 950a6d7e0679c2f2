"""A pure, read-only model of a SUMO network: what the core needs to know, nothing more.

It is built once from a ``.net.xml`` (and the signal programs of additional files) by
``controller.sim.netload`` and then handed to the core. SUMO's nouns are kept: ``edge_id``,
``lane_id``, ``tls_id``, ``link_index``, ``program``, ``phase``. Units are in the names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

# re-exported: the state characters are defined in controller.core.states (compiled with the core)
from controller.core.states import GREEN_CHARS as GREEN_CHARS
from controller.core.states import RED_CHARS as RED_CHARS
from controller.core.states import YELLOW_CHARS as YELLOW_CHARS
from controller.core.states import is_green as is_green
from controller.core.states import is_red as is_red
from controller.core.states import is_yellow as is_yellow


@dataclass(frozen=True)
class Phase:
    """One phase of a signal program. ``state`` is SUMO's signal string, one char per link."""

    state: str
    duration_s: float
    min_dur_s: float
    max_dur_s: float
    name: str = ""
    # False where the file gave no minDur (SUMO then uses the duration): the minimum green of
    # a static program without minDur is the configurable floor, not the phase's full length.
    min_dur_given: bool = True


@dataclass(frozen=True)
class Program:
    """A traffic light's program (``tlLogic``) as SUMO runs it."""

    tls_id: str
    program_id: str
    kind: str  # "static", "actuated", "delay_based", ...
    offset_s: float
    phases: tuple[Phase, ...]

    def __post_init__(self) -> None:
        if not self.phases:
            raise ValueError(f"program {self.program_id!r} of traffic light {self.tls_id!r} has no phases")
        n = len(self.phases[0].state)
        for i, p in enumerate(self.phases):
            if len(p.state) != n:
                raise ValueError(
                    f"program {self.program_id!r} of traffic light {self.tls_id!r}: phase {i} has "
                    f"{len(p.state)} links, phase 0 has {n}"
                )

    @property
    def link_count(self) -> int:
        return len(self.phases[0].state)

    @property
    def cycle_s(self) -> float:
        return sum(p.duration_s for p in self.phases)


def program_differences(
    program: Program, running_id: str, running: Sequence[tuple[str, float, float, float]], limit: int = 3
) -> list[str]:
    """How ``program`` (as read from the files) differs from the program SUMO runs for its
    signal: ``running_id`` and its phases as ``(state, duration, minDur, maxDur)`` in seconds
    (SUMO gives a phase without minDur its duration, as the reader does). What the controller
    and the monitor use is compared: the states, durations and minDurs, to SUMO's millisecond
    (maxDur is used by neither, and SUMO makes one not given unlimited where the reader takes
    the duration). At most ``limit`` differences; [] where they agree. The controller plans
    with the program read, and the safety monitor judges the signal by it: where SUMO runs
    another, both would be wrong together (a yellow or an all-red read a second short is
    cleared a second short)."""
    if not running_id:
        return ["SUMO has no such traffic light"]
    if running_id != program.program_id:
        return [f"SUMO runs program '{running_id}', not '{program.program_id}'"]
    if len(running) != len(program.phases):
        return [f"SUMO's program has {len(running)} phases, not {len(program.phases)}"]
    out: list[str] = []
    for k, (ours, (state, duration, min_dur, _max_dur)) in enumerate(zip(program.phases, running, strict=True)):
        if ours.state != state:
            out.append(f"phase {k} shows '{state}' in SUMO, not '{ours.state}'")
        for name, mine, theirs in (("duration", ours.duration_s, duration), ("minDur", ours.min_dur_s, min_dur)):
            if abs(mine - theirs) >= 0.0005:  # SUMO keeps times in whole milliseconds
                out.append(f"phase {k} {name} is {theirs:g} s in SUMO, not {mine:g} s")
        if len(out) >= limit:
            break
    return out[:limit]


@dataclass(frozen=True)
class Lane:
    lane_id: str
    edge_id: str
    index: int
    length_m: float
    speed_mps: float
    allows_emergency: bool = True


@dataclass(frozen=True)
class Edge:
    edge_id: str
    from_node: str
    to_node: str
    length_m: float
    speed_mps: float
    lanes: tuple[Lane, ...]
    function: str = ""  # "" for normal edges, "internal", "connector", ...
    # the edge over the same lane(s) the other way (SUMO's ``bidi``: a single track, or a
    # single-lane road used both ways), '' if none
    bidi: str = ""

    @property
    def is_internal(self) -> bool:
        return self.function == "internal"


@dataclass(frozen=True)
class Connection:
    """A lane-to-lane connection across a junction, as in the net's ``<connection>`` elements.

    ``tls_id`` is empty and ``link_index`` is -1 for an unsignalized connection.
    ``foe_links``: see the field.
    ``via_lane_id`` is the first internal lane of the crossing ('' if the net has none);
    ``via_length_m`` the summed length of its internal lanes.
    """

    from_edge: str
    to_edge: str
    from_lane: str
    to_lane: str
    junction_id: str
    tls_id: str = ""
    link_index: int = -1
    direction: str = ""  # SUMO's dir: s, l, r, t, L, R
    via_lane_id: str = ""
    via_length_m: float = 0.0
    # the link indices of the same signal whose connections cross or merge with this one at
    # its junction (SUMO's right-of-way request ``foes``); () where the net gives none
    foe_links: tuple[int, ...] = ()


@dataclass(frozen=True)
class Network:
    """Edges, connections and the active signal program of each traffic light."""

    edges: Mapping[str, Edge]
    connections: tuple[Connection, ...]
    programs: Mapping[str, Program]  # tls_id -> the program SUMO runs when the simulation starts
    junction_types: Mapping[str, str] = field(default_factory=dict)  # node id -> type
    source: str = ""  # the file it was read from, for error messages
    # tls_id -> why greenwave cannot switch it (its program is not in ``programs``): a program
    # whose phases SUMO runs in an order of their own (``next``)
    unsupported: Mapping[str, str] = field(default_factory=dict)

    def connections_between(self, from_edge: str, to_edge: str) -> tuple[Connection, ...]:
        return tuple(c for c in self._by_pair().get((from_edge, to_edge), ()))

    def connections_from(self, from_edge: str) -> tuple[Connection, ...]:
        """The connections leaving an edge (indexed once, on first use)."""
        return self._index("_from_cache", lambda c: c.from_edge).get(from_edge, ())

    def connections_of_tls(self, tls_id: str) -> tuple[Connection, ...]:
        """The connections a traffic light controls."""
        return self._index("_tls_cache", lambda c: c.tls_id).get(tls_id, ())

    def link_foes(self, tls_id: str) -> tuple[frozenset[int], ...] | None:
        """Per link index of the traffic light, the link indices whose connections cross or merge
        with its own (the net's right-of-way ``foes``); None where the net gives none."""
        program = self.programs.get(tls_id)
        conns = self.connections_of_tls(tls_id)
        if program is None or not any(c.foe_links for c in conns):
            return None
        out: list[set[int]] = [set() for _ in range(program.link_count)]
        for c in conns:
            if 0 <= c.link_index < len(out):
                out[c.link_index].update(f for f in c.foe_links if 0 <= f < len(out) and f != c.link_index)
        return tuple(frozenset(f) for f in out)

    def _index(self, name: str, key: Callable[[Connection], str]) -> Mapping[str, tuple[Connection, ...]]:
        cache: Mapping[str, tuple[Connection, ...]] | None = self.__dict__.get(name)
        if cache is None:
            built: dict[str, list[Connection]] = {}
            for c in self.connections:
                built.setdefault(key(c), []).append(c)
            cache = {k: tuple(v) for k, v in built.items()}
            object.__setattr__(self, name, cache)
        return cache

    def _by_pair(self) -> Mapping[tuple[str, str], list[Connection]]:
        cache = self.__dict__.get("_pair_cache")
        if cache is None:
            built: dict[tuple[str, str], list[Connection]] = {}
            for c in self.connections:
                built.setdefault((c.from_edge, c.to_edge), []).append(c)
            object.__setattr__(self, "_pair_cache", built)
            cache = built
        return cache
