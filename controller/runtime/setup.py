"""From a scenario (or a user's .sumocfg plus EVs) to everything one run needs.

All files a run writes go under its output folder: generated demand and vehicle types in
``inputs/``, SUMO's outputs beside ``summary.json``. Nothing is written next to the user's files.
"""

from __future__ import annotations

import gzip
import importlib.metadata
import itertools
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO
from xml.sax.saxutils import escape

from controller import MAX_WINDOW_S
from controller.core.corridor import Corridor, build_corridor, escortable_route
from controller.core.greenwave import PRIORITY
from controller.core.network import Network, Program, program_differences
from controller.core.routing import route_cost, validate_route
from controller.core.states import is_green
from controller.errors import GreenwaveError, NetworkError, ScenarioError
from controller.runtime.outputs import CROSS_STREETS_FILE
from controller.scenario import EvSpec, Scenario
from controller.sim.netload import load_network
from controller.sim.sumocfg import (
    CONSOLE_AND_SERVER_OPTIONS,
    SumoInputs,
    read_sumocfg,
    redirect_additional_outputs,
    sumo_time_s,
)

EV_VTYPE_PREFIX = "greenwave_"


@dataclass(frozen=True)
class EvPlan:
    ev_id: str
    ev_type: str  # ambulance | fire | police | transit
    vtype_id: str
    depart_s: float
    route: tuple[str, ...]
    corridor: Corridor
    # why the fastest route from its origin to its destination was passed over (a movement on it
    # greenwave cannot serve), "" where it was taken or the route was given
    detour: str = ""
    # a vehicle of the configuration's route files (``--escort``): SUMO inserts it itself, with its
    # own vehicle type (defined in ``vtype_file`` for the free-flow run; None: one of SUMO's
    # default types); greenwave adds the others
    in_routes: bool = False
    vtype_file: Path | None = None
    # how the vehicle is inserted and where its trip ends (SUMO's vehicle attributes: departLane,
    # departSpeed, ...; for a vehicle of the route files all of its own, and once it has departed
    # the speed factor SUMO drew for it), the same in the free-flow run
    insertion: tuple[tuple[str, str], ...] = (("departLane", "best"), ("departSpeed", "max"))


@dataclass(frozen=True)
class RunSetup:
    name: str
    source: str
    demand_level: str
    inputs: SumoInputs  # final: sanitized additional files, generated demand included
    begin_s: float
    end_s: float
    step_length_s: float
    network: Network
    evs: tuple[EvPlan, ...]
    out_dir: Path
    seed: int
    bluelight: bool
    controller: dict[str, Any] = field(default_factory=dict)  # the scenario's controller settings
    # vehicles, trips and flows of the route files of an emergency vehicle type (vClass emergency)
    # that are not escorted: they run as other traffic
    emergency_in_routes: tuple[str, ...] = ()
    # the end is the user's own (--end, or a scenario file's), not the configuration's or the
    # default after the last departure: an attached SUMO's own end does not replace it
    end_given: bool = True

    @property
    def watched_tls(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for ev in self.evs:
            for tls in ev.corridor.tls_ids():
                seen.setdefault(tls, None)
        return tuple(seen)


EV_COLORS = {"ambulance": (255, 255, 255), "fire": (255, 0, 0), "police": (0, 0, 255), "transit": (255, 255, 0)}


def _write_ev_vtypes(path: Path, bluelight: bool) -> None:
    """The EVs' vehicle types (an attached SUMO gets the same through TraCI: ``SumoAdapter.define_ev_type``)."""
    param = '        <param key="has.bluelight.device" value="true"/>\n' if bluelight else ""
    body = "".join(
        f'    <vType id="{EV_VTYPE_PREFIX}{kind}" vClass="emergency" speedFactor="1" speedDev="0" '
        f'guiShape="emergency" color="{",".join(f"{c / 255:g}" for c in EV_COLORS[kind])}">\n{param}    </vType>\n'
        for kind in PRIORITY
    )
    path.write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n<additional>\n{body}</additional>\n', "utf-8")


CROSS_STREET_UPSTREAM_M = 100.0  # cross streets are followed this far back from the stop line


def cross_street_edges(network: Network, plans: Sequence[EvPlan]) -> list[str]:
    """The cross streets of the EVs' signalized junctions: the edges entering a junction none of
    whose links the program shows green in a phase that serves the EV's movement (the streets a
    preemption holds red), and, where such an edge is short, the edges before it up to
    ``CROSS_STREET_UPSTREAM_M`` back from the stop line (where their queue stands). Never an
    edge of an EV's route. (The first version left out only the approach coming back from the
    EV's exit edge: on split carriageways and joined junctions the opposing approach, green with
    the EV, was counted, and with two EVs each one's own approach.)"""
    on_routes = {e for ev in plans for e in ev.corridor.route}
    into: dict[str, list[str]] = {}  # node -> the normal edges ending there
    for e in network.edges.values():
        if not e.is_internal:
            into.setdefault(e.to_node, []).append(e.edge_id)
    out: dict[str, None] = {}
    for ev in plans:
        for j in ev.corridor.junctions:
            program = network.programs.get(j.tls_id)
            if program is None:
                continue
            served = [program.phases[k].state for k in j.green_phases if k < len(program.phases)]
            links: dict[str, list[int]] = {}
            for c in network.connections_of_tls(j.tls_id):
                if c.junction_id == j.junction_id and c.link_index >= 0:
                    links.setdefault(c.from_edge, []).append(c.link_index)
            for edge_id, idx in links.items():
                edge = network.edges.get(edge_id)
                if edge is None or edge.is_internal or edge_id in on_routes:
                    continue
                if any(is_green(state[i]) for state in served for i in idx if i < len(state)):
                    continue  # green with the EV (the opposing approach, a permitted turn)
                _add_upstream(network, into, edge_id, CROSS_STREET_UPSTREAM_M, on_routes, out)
    return list(out)


def _add_upstream(network: Network, into: Mapping[str, Sequence[str]], edge_id: str, reach_m: float,
                  skip: set[str], out: dict[str, None]) -> None:
    """``edge_id``, and the edges leading onto it (``into``: node -> edges ending there) while less
    than ``reach_m`` is covered (not those in ``skip``)."""
    todo = [(edge_id, reach_m)]
    while todo:
        eid, left = todo.pop()
        edge = network.edges.get(eid)
        if edge is None or edge.is_internal or eid in out:
            continue
        out[eid] = None
        left -= edge.length_m
        if left <= 0:
            continue
        for before in into.get(edge.from_node, ()):
            # (only an edge leading onto this one: not the other carriageway, going away)
            if before not in skip and before not in out and network.connections_between(before, eid):
                todo.append((before, left))


def _write_cross_street_data(path: Path, network: Network, plans: Sequence[EvPlan], output: Path,
                             end_s: float) -> None:
    """The cross streets' edgeData, up to the scenario's end (a run going on past it for an EV
    not yet arrived is measured over the same time as the other traffic's trips)."""
    edges = " ".join(escape(e, {'"': "&quot;"}) for e in cross_street_edges(network, plans))
    body = (
        f'    <edgeData id="greenwave_cross_streets" file="{escape(str(output), {chr(34): "&quot;"})}" '
        f'end="{end_s!r}" edges="{edges}"/>\n'
        if edges
        else ""
    )
    path.write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n<additional>\n{body}</additional>\n', "utf-8")


def _plan_evs(network: Network, evs: Sequence[EvSpec], source: str | None = None,
              classes: Mapping[str, str] | None = None) -> tuple[EvPlan, ...]:
    """``source``: the scenario file the EVs come from, as errors name it (with its entries);
    ``classes``: the vehicle class of an EV of the route files (--escort), by id (the others
    are added as vClass emergency)."""
    plans = []
    for n, ev in enumerate(evs):
        detour = ""
        try:
            if ev.route is not None:
                validate_route(network, ev.route, emergency=(classes or {}).get(ev.id, "emergency") == "emergency")
                route = tuple(ev.route)
            else:
                assert ev.from_edge is not None and ev.to_edge is not None  # guaranteed by EvSpec
                passed_over: list[tuple[tuple[str, ...], str]] = []
                route = escortable_route(network, ev.from_edge, ev.to_edge, passed_over=passed_over)
                for fastest, why in passed_over:
                    # (as summary.json's route_length_m counts, and the free-flow time the route was chosen by)
                    extra = _length_m(network, route) - _length_m(network, fastest)
                    later = route_cost(network, route) - route_cost(network, fastest)
                    detour = f"{why}; the route taken avoids it ({extra:+.0f} m, {later:+.0f} s at the speed limits)"
            corridor = build_corridor(network, route)
        except GreenwaveError as e:  # which EV, then what is wrong with it
            # ([[escort]] entries come after the [[ev]] ones)
            added = sum(1 for e in evs if classes is None or e.id not in classes)
            entry = f"escort[{n - added}]" if classes is not None and ev.id in classes else f"ev[{n}]"
            where = f"{source}: field '{entry}': " if source is not None else ""
            raise type(e)(f"{where}EV '{ev.id}' ({_describe(ev)}): {e}") from None
        plans.append(
            EvPlan(
                ev_id=ev.id,
                ev_type=ev.type,
                vtype_id=f"{EV_VTYPE_PREFIX}{ev.type}",
                depart_s=ev.depart_s,
                route=route,
                corridor=corridor,
                detour=detour,
            )
        )
    return tuple(plans)


def _escorted_plans(plans: Sequence[EvPlan], own: Mapping[str, RouteFileVehicle], vtype_file: Path
                    ) -> tuple[EvPlan, ...]:
    """``plans`` with those of the route files' vehicles (``own``) given their own vehicle types
    and insertion; their types' definitions written to ``vtype_file`` for the free-flow run."""
    definitions = {v.vtype_id: v.vtype_xml for v in own.values() if v.vtype_xml is not None}
    if definitions:
        body = "".join(f"    {xml}\n" for _, xml in sorted(definitions.items()))
        vtype_file.write_text(f'<?xml version="1.0" encoding="UTF-8"?>\n<additional>\n{body}</additional>\n',
                              "utf-8")
    out = []
    for plan in plans:
        v = own.get(plan.ev_id)
        if v is not None:
            plan = replace(plan, vtype_id=v.vtype_id, in_routes=True, insertion=v.insertion,
                           vtype_file=vtype_file.resolve() if v.vtype_xml is not None else None)
        out.append(plan)
    return tuple(out)


def _length_m(network: Network, route: Sequence[str]) -> float:
    """A route's length as its corridor (and summary.json's ``route_length_m``) counts it: its
    edges and the crossings between them (a note's detour left out the junctions' internal lanes)."""
    return sum(network.edges[e].length_m for e in route) + sum(
        min(c.via_length_m for c in network.connections_between(a, b)) for a, b in itertools.pairwise(route))


OPTIONS_NOT_USED = "the configuration's output, console report and TraCI server options are not used"


def setup_notes(setup: RunSetup, *, attached: bool = False, ours: str = "summary.json and trace.json",
                service: bool = False) -> list[str]:
    """What a user should know of ``setup`` before its run: options of the configuration not
    used, EVs turning round, routes that are not the fastest, EVs crossing no traffic light.
    ``greenwave run`` prints them; summary.json keeps them (``notes``). ``ours``: what greenwave
    writes into --out itself (a service: its audit log); ``service``: for ``greenwave serve``, whose
    escorts come through its API."""
    notes = []
    outputs = [name for name in setup.inputs.dropped if name not in CONSOLE_AND_SERVER_OPTIONS]
    if outputs and attached:
        notes.append(f"attached: the SUMO you started writes the configuration's outputs ({', '.join(outputs)}) "
                     f"itself; greenwave writes {ours} into --out")
    elif setup.inputs.dropped and not attached:
        notes.append(f"{OPTIONS_NOT_USED} (greenwave writes its own outputs into --out and runs SUMO itself): "
                     f"{', '.join(setup.inputs.dropped)}")
    for ev in setup.evs:
        turn = next(((a, b) for a, b in zip(ev.route, ev.route[1:], strict=False)
                     if any(c.direction == "t" for c in setup.network.connections_between(a, b))), None)
        if turn is not None:
            notes.append(f"EV '{ev.ev_id}' turns around (a U-turn) from edge {turn[0]} onto {turn[1]}: is its "
                         "destination on the other carriageway?")
        if ev.detour:
            notes.append(f"EV '{ev.ev_id}' does not take the fastest route: {ev.detour}")
        if not ev.corridor.junctions:
            notes.append(f"EV '{ev.ev_id}' crosses no traffic light on its route ({ev.route[0]} to {ev.route[-1]}): "
                         "there is nothing to preempt for it")
        notes += single_track_notes(ev.ev_id, ev.corridor) + signal_off_notes(ev.ev_id, ev.corridor)
    if setup.emergency_in_routes:
        named = setup.emergency_in_routes
        listed = ", ".join(f"'{v}'" for v in named[:EMERGENCY_NAMED])
        listed += ", ..." if len(named) > EMERGENCY_NAMED else ""
        how = ("POST /v1/emergencies with its vehicle_id" if service
               else "--escort VEHICLE, or [[escort]] in a scenario file")
        notes.append(f"{len(named)} vehicle(s), trip(s) or flow(s) of the route files have an emergency vehicle type "
                     f"({listed}): they run as other traffic unless escorted ({how})")
    return notes


def single_track_notes(ev_id: str, corridor: Corridor) -> list[str]:
    """A note for each signal on the corridor left to its program because the EV's movement there
    enters a section the other direction uses too (:attr:`CorridorJunction.single_track`)."""
    return [f"EV '{ev_id}': traffic light '{j.tls_id}' lets it onto edge {j.exit_edge}, which the other "
            f"direction uses too (bidi edge {j.single_track}: a single track or a one-lane two-way road); "
            "it is left to its program for this EV: a green held for it could send it head-on into a "
            "vehicle on that section" for j in corridor.junctions if j.single_track]


def signal_off_notes(ev_id: str, corridor: Corridor) -> list[str]:
    """A note for each signal on the corridor left to its program because the program switches a
    link off and on (:attr:`CorridorJunction.signal_off`)."""
    return [f"EV '{ev_id}': traffic light '{j.tls_id}' is left to its program for this EV: its program "
            f"'{j.program_id}' switches a link between signalled and off ({j.signal_off}), and greenwave "
            "does not end an off state (vehicles passing by the junction's right of way) safely"
            for j in corridor.junctions if j.signal_off]


EMERGENCY_NAMED = 5  # the route files' emergency vehicles named in the note


_ID_TAGS = frozenset({"vehicle", "trip", "flow", "person"})


def _open_xml(path: Path) -> gzip.GzipFile | BinaryIO:
    """A route or additional file for reading, gzip-compressed ones (``.gz``) too."""
    return gzip.GzipFile(path, "rb") if path.suffix == ".gz" else path.open("rb")


def route_file_ids(route_files: Sequence[Path], *, types: dict[str, str] | None = None,
                   classes: dict[str, str] | None = None) -> dict[str, tuple[str, Path]]:
    """The ids of the vehicles, trips, flows and persons in route files: id -> (tag, file).
    Parsed as XML (a line-by-line search took a commented-out vehicle for one and missed a tag
    split over lines). Unreadable or malformed files keep what was read before the fault (SUMO
    names the file when it loads it). Where given, ``types`` gets the vehicle type each vehicle,
    trip and flow names, and ``classes`` the vehicle class of each vehicle type defined (as
    :func:`vtype_classes`), in the same pass."""
    found: dict[str, tuple[str, Path]] = {}
    for path in route_files:
        try:
            with _open_xml(path) as f:
                root = None
                for event, el in ET.iterparse(f, events=("start", "end")):
                    if root is None:
                        root = el
                    elif event == "start" and el.tag in _ID_TAGS and el.get("id") is not None:
                        found.setdefault(str(el.get("id")), (str(el.tag), path))
                        if types is not None and el.tag != "person" and el.get("type") is not None:
                            types.setdefault(str(el.get("id")), str(el.get("type")))
                    elif event == "start" and classes is not None and el.tag == "vType" and el.get("id") is not None:
                        classes.setdefault(str(el.get("id")), el.get("vClass") or "passenger")
                    elif event == "end" and el in root:  # (a top-level element read: let it go)
                        root.remove(el)
        except (OSError, EOFError, ET.ParseError):  # (a truncated gzip file raises EOFError)
            continue
    return found


def _sumo_version() -> str:
    try:
        return importlib.metadata.version("eclipse-sumo")
    except importlib.metadata.PackageNotFoundError:
        return "version unknown"


def rejection_hint(detail: str, inputs: SumoInputs, source: str = "") -> str:
    """What to add to SUMO's refusal of a run's inputs: the route file holding the vehicle,
    trip, flow or person it names, where it names one of greenwave's own vehicle types, and an
    option SUMO does not know (``source``: the configuration it came from)."""
    hints = []
    unknown = re.search(r"No option with the name '([^']+)' exists", detail)
    if unknown is not None and unknown.group(1) in inputs.options:  # (the user's, not greenwave's own)
        hints.append(f"'{unknown.group(1)}' is not an option of this SUMO (eclipse-sumo {_sumo_version()}): "
                     f"misspelled in {source or 'the configuration'}, or an option of another version")
    named = re.search(r"\b(?:vehicle|trip|flow|person) '([^']+)'", detail)
    if named is not None and (hit := id_in_routes(route_file_ids(inputs.route_files), named.group(1))) is not None:
        hints.append(f"{hit[1]} is in {hit[0]}")
    if any(f"'{EV_VTYPE_PREFIX}{kind}'" in detail for kind in PRIORITY):
        *most, last = (EV_VTYPE_PREFIX + k for k in PRIORITY)
        hints.append(f"greenwave defines the vehicle types {', '.join(most)} and {last} itself: give yours other ids")
    return f" ({'; '.join(hints)})" if hints else ""


def vtype_classes(files: Sequence[Path]) -> dict[str, str]:
    """The vehicle classes of the vehicle types defined in route and additional files: vType id
    -> vClass (``passenger`` where none is given, SUMO's default). Unreadable files are passed
    over (the run has read them: what it names from here is a figure, not an input)."""
    found: dict[str, str] = {}
    for path in files:
        try:
            with _open_xml(path) as f:
                for _, el in ET.iterparse(f, events=("end",)):
                    if el.tag == "vType" and el.get("id") is not None:
                        found.setdefault(str(el.get("id")), el.get("vClass") or "passenger")
                    if el.tag in _ID_TAGS:
                        el.clear()
        except (OSError, EOFError, ET.ParseError):
            continue
    return found


def id_in_routes(ids: Mapping[str, tuple[str, Path]], vehicle_id: str) -> tuple[Path, str] | None:
    """Where the route files (:func:`route_file_ids`) have ``vehicle_id`` already, as a vehicle,
    trip or person of its own or as one of a flow's vehicles (``<flow id>.<n>``): the file, and
    what is there (``a trip 'bg7'``, ``flow 'buses' (its vehicle 'buses.2')``)."""
    hit = ids.get(vehicle_id)
    if hit is not None:
        return hit[1], f"a {hit[0]} '{vehicle_id}'"
    flow, dot, n = vehicle_id.rpartition(".")
    if dot and n.isdigit() and (hit := ids.get(flow)) is not None and hit[0] == "flow":
        return hit[1], f"flow '{flow}' (its vehicle '{vehicle_id}')"
    return None


# a vehicle's attributes that are not kept for its free-flow run (there it departs at 0 on the route
# it drove, of its type); the others (departLane, departSpeed, arrivalPos, speedFactor, ...) are
_NOT_KEPT = frozenset({"id", "type", "depart", "route", "from", "to", "via"})
# attributes that start or end the trip elsewhere than the route's ends: refused (the corridor and
# its signals run from the route's first edge to its last)
_ROUTE_PART = ("departEdge", "arrivalEdge")


@dataclass(frozen=True)
class RouteFileVehicle:
    """A vehicle of the route (or additional) files that greenwave escorts (``--escort``) along
    its own route from its own departure, as SUMO inserts it."""

    vehicle_id: str
    file: Path
    depart_s: float
    route: tuple[str, ...]  # () for a trip
    trip: tuple[str, str] | None  # a trip's from and to edges (SUMO routes it: planned the fastest way)
    vtype_id: str
    vtype_xml: str | None  # its vType's definition, for the free-flow run (None: a SUMO default type)
    vclass: str
    insertion: tuple[tuple[str, str], ...]  # its other attributes (SUMO's defaults where it gives none)


def find_route_file_vehicle(files: Sequence[Path], vehicle_id: str, what: str = "") -> RouteFileVehicle:
    """``vehicle_id``'s definition in ``files`` (route files, then additional files), for an
    escort: a ``<vehicle>`` with a route of edges (its own, or a ``<route>`` it names) or a
    ``<trip>`` from an edge to an edge, a depart time, no stops, and a vehicle type defined in the
    files or one of SUMO's defaults. Anything else is a :class:`ScenarioError` naming the file and
    what is there."""
    what = what or f"--escort '{vehicle_id}'"  # (how the vehicle was asked for, in messages)
    found: tuple[ET.Element, Path] | None = None
    routes: dict[str, ET.Element] = {}
    vtypes: dict[str, str] = {}
    distributions: dict[str, str] = {}  # id -> tag (vTypeDistribution, routeDistribution)
    for path in files:
        try:
            with _open_xml(path) as f:
                for _, el in ET.iterparse(f, events=("end",)):
                    tag, el_id = el.tag, el.get("id")
                    if tag == "vType" and el_id is not None:
                        el.tail = None
                        vtypes.setdefault(el_id, ET.tostring(el, encoding="unicode"))
                    elif tag in ("vTypeDistribution", "routeDistribution") and el_id is not None:
                        distributions.setdefault(el_id, tag)
                    elif tag == "route" and el_id is not None:
                        routes.setdefault(el_id, el)
                    elif tag in _ID_TAGS:
                        if el_id == vehicle_id and found is None:
                            found = (el, path)
                        else:
                            el.clear()
        except (OSError, EOFError, ET.ParseError) as e:
            raise ScenarioError(f"{what}: cannot read {path}: {e}") from None
    if found is None:
        flow_vehicle = id_in_routes(route_file_ids(files), vehicle_id)
        if flow_vehicle is not None:  # (one of a flow's vehicles)
            raise ScenarioError(f"{what}: {flow_vehicle[0]} has it as {flow_vehicle[1]}: greenwave escorts a "
                                "<vehicle> of its own, with a route")
        names = ", ".join(p.name for p in files) or "none"
        raise ScenarioError(f"{what}: no vehicle of that id in the configuration's route and additional files "
                            f"({names})")
    el, path = found
    where = f"{what}: {path}: its {el.tag}"
    if el.tag not in ("vehicle", "trip"):
        raise ScenarioError(f"{where} is not a <vehicle> or <trip>: greenwave escorts one vehicle")
    depart_raw = el.get("depart", "")
    depart = sumo_time_s(depart_raw)
    if depart is None:
        raise ScenarioError(f"{where} departs at '{depart_raw}': greenwave escorts a vehicle departing at a time")
    trip: tuple[str, str] | None = None
    edges: tuple[str, ...] = ()
    own_route = el.find("route")
    if el.tag == "trip":
        from_edge, to_edge = el.get("from"), el.get("to")
        if from_edge is None or to_edge is None or el.get("via"):
            raise ScenarioError(f"{where} is not from an edge to an edge without 'via' (greenwave plans a trip the "
                                "fastest way, as SUMO routes it): give it a route, or its 'from' and 'to' edges")
        trip = (from_edge, to_edge)
        route_el = el
    elif own_route is not None:
        route_el = own_route
    elif el.find("routeDistribution") is not None:
        raise ScenarioError(f"{where} has a route distribution: greenwave escorts a vehicle with one route")
    else:
        ref = el.get("route")
        if ref is None:
            raise ScenarioError(f"{where} has no route")
        if distributions.get(ref) == "routeDistribution":
            raise ScenarioError(f"{where} route '{ref}' is a route distribution: greenwave escorts a vehicle with "
                                "one route")
        named = routes.get(ref)
        if named is None:
            raise ScenarioError(f"{where} route '{ref}' is not defined in the configuration's route and additional "
                                "files")
        route_el = named
    if trip is None:
        edges = tuple((route_el.get("edges") or "").split())
        if not edges:
            raise ScenarioError(f"{where} route has no edges")
    if route_el.get("repeat", "0") not in ("0", ""):
        raise ScenarioError(f"{where} route repeats: greenwave escorts a vehicle driving its route once")
    if el.find("stop") is not None or route_el.find("stop") is not None:
        raise ScenarioError(f"{where} has stops: greenwave escorts a vehicle driving to its destination "
                            "without stopping (its stops would count as delay)")
    vtype_id = el.get("type") or "DEFAULT_VEHTYPE"
    if distributions.get(vtype_id) == "vTypeDistribution":
        raise ScenarioError(f"{where} type '{vtype_id}' is a type distribution: give the vehicle one vehicle type")
    vtype_xml = vtypes.get(vtype_id)
    if vtype_xml is None and not vtype_id.startswith("DEFAULT_"):
        raise ScenarioError(f"{where} type '{vtype_id}' is not defined in the configuration's route and additional "
                            "files")
    vclass = (ET.fromstring(vtype_xml).get("vClass") if vtype_xml is not None else None) or (
        "pedestrian" if vtype_id == "DEFAULT_PEDTYPE" else "bicycle" if vtype_id == "DEFAULT_BIKETYPE" else "passenger")
    part = next((name for name in _ROUTE_PART if el.get(name) is not None), None)
    if part is not None:
        raise ScenarioError(f"{where} has {part}=\"{el.get(part)}\": greenwave escorts a vehicle from its route's "
                            "first edge to its last")
    insertion = tuple((name, value) for name, value in el.attrib.items() if name not in _NOT_KEPT)
    return RouteFileVehicle(vehicle_id, path, depart, edges, trip, vtype_id, vtype_xml, vclass, insertion)


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _check_ids_free(route_files: Sequence[Path], ids: Sequence[str],
                    escorted: Mapping[str, RouteFileVehicle] | None = None,
                    taken: Mapping[str, tuple[str, Path]] | None = None, source: str | None = None) -> None:
    """An EV id that a vehicle of the route files has already: an error now, naming both, rather
    than SUMO refusing one of them during the run (``escorted``: the route files' own vehicles
    greenwave escorts, whose ids are theirs; ``taken``: :func:`route_file_ids` of the route
    files, where read already; ``source``: the scenario file the EVs come from, as errors name
    it, the ids being its ``[[ev]]`` entries' in order; else they are --ev's)."""
    seen: set[str] = set()
    for n, ev_id in enumerate(ids, 1):
        if ev_id in seen:
            if escorted and ev_id in escorted:
                raise ScenarioError(f"EV id '{ev_id}' is given twice: --escort '{ev_id}' escorts the vehicle of "
                                    f"{escorted[ev_id].file.name}, an --ev with that ID would add another")
            raise ScenarioError(f"EV id '{ev_id}' is given twice (the {_ordinal(n)} EV's; an EV given no id gets "
                                f"'ev<n>', n its place in the list: give the EVs distinct ids)")
        seen.add(ev_id)
    entries = [(n, ev_id) for n, ev_id in enumerate(ids) if not escorted or ev_id not in escorted]
    if not entries:
        return
    taken = route_file_ids(route_files) if taken is None else taken
    for n, ev_id in entries:
        hit = id_in_routes(taken, ev_id)
        if hit is not None and source is not None:
            raise ScenarioError(f"{source}: field 'ev[{n}].id': {hit[1]} of {hit[0]} has it already: give the EV "
                                "another id")
        if hit is not None:
            raise ScenarioError(
                f"{hit[0]}: {hit[1]} is there already: give the EV another id (--ev FROM,TO,DEPART,TYPE,ID)")


def _describe(ev: EvSpec) -> str:
    where = f"route {' '.join(ev.route)}" if ev.route is not None else f"from {ev.from_edge} to {ev.to_edge}"
    return f"{where}, departing at {ev.depart_s:g} s"


RUN_MARK = ".greenwave-run"
SUMO_LOG = "sumo.log"  # SUMO's own log, in the run's folder
SUMO_ERROR_LOG = "sumo-errors.log"  # what SUMO reported as errors, in the run's folder


def program_sources(inputs: SumoInputs) -> str:
    """The files the signal programs are read from, for a message: the net, and its additional
    files where there are any."""
    adds = [Path(a).name for a in inputs.additional_files
            if not Path(a).name.startswith("greenwave_")]  # (not greenwave's own: EV types, edge data)
    return str(inputs.net_file) + (f" (with {', '.join(adds)})" if adds else "")


def check_running_programs(
    programs: Mapping[str, Program],
    running: Mapping[str, tuple[str, Sequence[tuple[str, float, float, float]]]],
    source: str,
    attached: str | None = None,
) -> None:
    """Refuse to control or judge signals whose program, as greenwave read it from ``source``
    (the net and its additional files, :func:`program_sources`), is not the one SUMO runs
    (``SumoAdapter.running_programs``):
    the controller plans its clearances from the program read and the safety monitor checks them
    against the same one, so a misreading would go unseen by both. ``attached``: the address of
    a SUMO the user started (its own files may differ from ``source``'s)."""
    wrong = []
    for tls_id, program in programs.items():
        if tls_id not in running:
            continue
        diffs = program_differences(program, running[tls_id][0], running[tls_id][1], limit=1)
        if diffs:
            wrong.append(f"traffic light '{tls_id}': {'; '.join(diffs)}")
    if wrong:
        shown = "; ".join(wrong[:3]) + (f"; and {len(wrong) - 3} more traffic lights" if len(wrong) > 3 else "")
        why = (f"was the SUMO at {attached} started with other files than these?" if attached is not None else
               "a WAUT or a program loaded another way than a <tlLogic> in the net or an additional file would "
               "explain it")
        raise NetworkError(
            f"{source}: the signal programs greenwave read are not the ones SUMO runs ({shown}). greenwave "
            f"plans every switch and checks its safety against the program it reads, so it does not run "
            f"against another; {why}"
        )


def is_run_folder(path: Path) -> bool:
    """Is ``path`` a folder greenwave wrote a run into (its marker; before it, a summary or the EV
    types it writes into ``inputs/``)? Only such a folder may be reused by another run's --out."""
    return (path / RUN_MARK).is_file() or (path / "summary.json").is_file() or (
        path / "inputs" / "greenwave_vtypes.add.xml").is_file()


def _finish(
    *,
    name: str,
    source: str,
    demand_level: str,
    inputs: SumoInputs,
    begin_s: float,
    end_s: float,
    step_length_s: float,
    evs: Sequence[EvSpec],
    out_dir: Path,
    seed: int,
    bluelight: bool,
    scenario_file: str | None = None,
    redirect_outputs: bool = True,
    escorted: Sequence[RouteFileVehicle] = (),
    end_given: bool = True,
) -> RunSetup:
    own = {v.vehicle_id: v for v in escorted}
    types: dict[str, str] = {}
    classes: dict[str, str] = {}
    # (vehicles may be defined in additional files too)
    taken = route_file_ids((*inputs.route_files, *inputs.additional_files), types=types, classes=classes)
    _check_ids_free(inputs.route_files, [ev.id for ev in evs], escorted=own, taken=taken, source=scenario_file)
    # the route files' emergency vehicles greenwave does not escort: a note says they run as other traffic
    emergency = tuple(vid for vid, vtype in types.items() if classes.get(vtype) == "emergency" and vid not in own)
    inputs_dir = out_dir / "inputs"
    inputs_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RUN_MARK).touch()  # a run's folder: --out may reuse it (see is_run_folder)
    used: dict[str, Path] = {}  # names given in inputs/ and outputs/ (two files of one name stay two)
    additionals = (tuple(redirect_additional_outputs(a, out_dir, used) for a in inputs.additional_files)
                   if redirect_outputs else inputs.additional_files)
    network = load_network(inputs.net_file, inputs.additional_files)
    plans = _plan_evs(network, evs, scenario_file, {v.vehicle_id: v.vclass for v in escorted})
    if own:
        plans = _escorted_plans(plans, own, inputs_dir / "greenwave_escorted_vtypes.add.xml")
    vtypes = inputs_dir / "greenwave_vtypes.add.xml"
    _write_ev_vtypes(vtypes, bluelight)
    cross = inputs_dir / "greenwave_cross_streets.add.xml"
    _write_cross_street_data(cross, network, plans, out_dir / CROSS_STREETS_FILE, end_s)
    final = SumoInputs(
        net_file=inputs.net_file,
        route_files=inputs.route_files,
        additional_files=(vtypes.resolve(), *additionals, cross.resolve()),
        begin_s=begin_s,
        end_s=end_s,
        step_length_s=step_length_s,
        options=inputs.options,
        dropped=inputs.dropped,
    )
    return RunSetup(
        name=name,
        source=source,
        demand_level=demand_level,
        inputs=final,
        begin_s=begin_s,
        end_s=end_s,
        step_length_s=step_length_s,
        network=network,
        evs=plans,
        out_dir=out_dir,
        seed=seed,
        bluelight=bluelight,
        emergency_in_routes=emergency,
        end_given=end_given,
    )


def _scenario_inputs(scenario: Scenario) -> SumoInputs:
    """The SUMO inputs a scenario file names (its configuration's and its own), before generated demand."""
    net = scenario.network
    if net.sumocfg is not None:
        inputs = read_sumocfg(net.sumocfg)
        sim = scenario.simulation
        lo = inputs.begin_s if inputs.begin_s is not None else -math.inf
        hi = inputs.end_s if inputs.end_s is not None and inputs.end_s >= 0 else math.inf
        if sim.end_s <= lo or sim.begin_s >= hi:
            # (the scenario's window replaces the configuration's: one outside it simulated an empty
            # city, "background: 0 trips", reported as a clean result)
            shown = f"[{'' if lo == -math.inf else f'{lo:g}'}, {'' if hi == math.inf else f'{hi:g}'}) s"
            raise ScenarioError(f"{scenario.shown}: field 'simulation': the window [{sim.begin_s:g}, {sim.end_s:g}) s "
                                f"lies outside its configuration's {shown} ({net.sumocfg.name}), whose demand "
                                "departs there; set simulation.begin_s and end_s within it")
        return SumoInputs(
            net_file=inputs.net_file,
            route_files=inputs.route_files + scenario.demand.routes,
            additional_files=inputs.additional_files + net.additional,
            options=inputs.options,
            dropped=inputs.dropped,
        )
    assert net.net is not None  # guaranteed by NetworkSpec
    return SumoInputs(net_file=net.net, route_files=scenario.demand.routes, additional_files=net.additional)


def check_scenario(scenario: Scenario) -> None:
    """Refuse, as a run would (the same errors), a scenario whose EVs cannot be planned: an edge
    the network lacks, a route that does not connect, an id its route files already use. Reads
    the network and its programs, writes nothing and starts no SUMO (a bench checks its suite so,
    before any run)."""
    inputs = _scenario_inputs(scenario)
    escorted, evs = _scenario_escorts(scenario, inputs)
    _check_ids_free(inputs.route_files, [ev.id for ev in evs], escorted={v.vehicle_id: v for v in escorted},
                    source=scenario.shown)
    _plan_evs(load_network(inputs.net_file, inputs.additional_files), evs, scenario.shown,
              {v.vehicle_id: v.vclass for v in escorted})


def _scenario_escorts(scenario: Scenario, inputs: SumoInputs) -> tuple[list[RouteFileVehicle], list[EvSpec]]:
    """The scenario's ``[[escort]]`` vehicles found in its route files (generated demand apart),
    and its EVs with them (errors name the entry)."""
    escorted = []
    for n, e in enumerate(scenario.escort):
        try:
            v = find_route_file_vehicle((*inputs.route_files, *inputs.additional_files), e.vehicle,
                                        f"vehicle '{e.vehicle}'")
        except ScenarioError as err:
            if scenario.demand.generator is not None and not inputs.route_files:
                raise ScenarioError(f"{scenario.shown}: field 'escort[{n}]': vehicle '{e.vehicle}': the scenario's "
                                    "demand is generated (demand.generator), with no vehicle of its own to escort; "
                                    "give the EV as an [[ev]] entry") from None
            raise ScenarioError(f"{scenario.shown}: field 'escort[{n}]': {err}") from None
        sim = scenario.simulation
        if not sim.begin_s <= v.depart_s < sim.end_s:
            raise ScenarioError(f"{scenario.shown}: field 'escort[{n}]': vehicle '{v.vehicle_id}' "
                                f"of {v.file.name} departs at {v.depart_s:g} s, outside the simulation "
                                f"[{sim.begin_s:g}, {sim.end_s:g}) s")
        escorted.append(v)
    return escorted, [*scenario.ev, *_escort_specs(escorted, [e.type for e in scenario.escort])]


def _escort_specs(escorted: Sequence[RouteFileVehicle], types: Sequence[str]) -> list[EvSpec]:
    """The EVs of the route files' vehicles escorted, as the EVs greenwave adds are given."""
    return [EvSpec.model_validate({"id": v.vehicle_id, "depart_s": v.depart_s, "type": kind,
                                   **({"route": v.route} if v.trip is None else {"from": v.trip[0], "to": v.trip[1]})})
            for v, kind in zip(escorted, types, strict=True)]


def prepare_scenario(scenario: Scenario, *, seed: int, out_dir: Path, bluelight: bool = False,
                     attached: bool = False, with_evs: bool = True) -> RunSetup:
    """A run of ``scenario``. ``attached``: as for :func:`prepare_sumocfg`. ``with_evs`` False:
    without the scenario's ``[[ev]]`` entries (a service, whose escorts come through its API:
    an entry it never dispatches must not refuse it, or cost its routing)."""
    sim = scenario.simulation
    inputs = _scenario_inputs(scenario)
    # (the scenario's own route files: generated demand has no vehicle to escort)
    escorted, evs = _scenario_escorts(scenario, inputs) if with_evs else ([], [])
    demand = scenario.demand
    if demand.generator is not None:
        from controller.sim.demand import write_random_trips

        assert demand.vehicles_per_hour is not None  # guaranteed by DemandSpec
        (out_dir / "inputs").mkdir(parents=True, exist_ok=True)
        trips = out_dir / "inputs" / "background.rou.xml"
        generator_params: dict[str, Any] = dict(demand.params)
        try:
            write_random_trips(
                inputs.net_file,
                trips,
                seed=seed,
                begin_s=sim.begin_s,
                end_s=sim.end_s,
                vehicles_per_hour=demand.vehicles_per_hour,
                **generator_params,
            )
        except ScenarioError as e:
            raise ScenarioError(f"{scenario.shown}: field 'demand.params': {e}") from None
        inputs = SumoInputs(
            net_file=inputs.net_file,
            route_files=(*inputs.route_files, trips.resolve()),
            additional_files=inputs.additional_files,
            options=inputs.options,
            dropped=inputs.dropped,
        )
    setup = _finish(
        name=scenario.name,
        source=str(scenario.source or scenario.name),
        demand_level=demand.level,
        inputs=inputs,
        begin_s=sim.begin_s,
        end_s=sim.end_s,
        step_length_s=sim.step_length_s,
        evs=evs,
        out_dir=out_dir,
        seed=seed,
        bluelight=bluelight,
        scenario_file=scenario.shown,
        redirect_outputs=not attached,
        escorted=escorted,
    )
    return replace(setup, controller=scenario.controller.overrides())


_GENERIC_NAMES = {"run", "sim", "simulation", "osm", "config", "configuration", "scenario", "test", "default", "main"}


def sumocfg_name(sumocfg: Path) -> str:
    """A run's scenario name from its configuration file: the file's stem, with its folder's name
    before it where the stem says nothing (every Bologna run was called 'run')."""
    stem = sumocfg.stem
    folder = sumocfg.resolve().parent.name
    return f"{folder}-{stem}" if stem.lower() in _GENERIC_NAMES and folder else stem


def prepare_sumocfg(
    sumocfg: Path,
    evs: Sequence[EvSpec],
    *,
    seed: int,
    out_dir: Path,
    end_s: float | None = None,
    bluelight: bool = False,
    attached: bool = False,
    escorts: Sequence[tuple[str, str]] = (),
) -> RunSetup:
    """A run of ``sumocfg`` with ``evs``, and the vehicles of its route files ``escorts``
    names ((vehicle id, EV type): escorted along their own routes, :func:`find_route_file_vehicle`).
    ``attached``: for a SUMO the user started with it, whose additional files write their outputs
    where they say (greenwave's copies with the outputs moved into ``out_dir`` would be neither
    loaded nor written)."""
    inputs = read_sumocfg(sumocfg)
    asked = [vehicle_id for vehicle_id, _ in escorts]
    twice = next((v for v in asked if asked.count(v) > 1), None)
    if twice is not None:
        raise ScenarioError(f"--escort '{twice}' is given twice")
    escorted = [find_route_file_vehicle((*inputs.route_files, *inputs.additional_files), vehicle_id)
                for vehicle_id, _ in escorts]
    evs = [*evs, *_escort_specs(escorted, [kind for _, kind in escorts])]
    begin = inputs.begin_s if inputs.begin_s is not None else 0.0
    last_depart = max(ev.depart_s for ev in evs)
    given_end = end_s is not None
    if end_s is None:
        config_end = inputs.end_s if inputs.end_s is not None and inputs.end_s >= 0 else None  # SUMO: -1, no end
        if config_end is not None and config_end <= last_depart:
            raise ScenarioError(
                f"{sumocfg}: EV '{max(evs, key=lambda e: e.depart_s).id}' departs at {last_depart:g} s, not "
                f"before the configuration's end ({config_end:g} s): give --end to simulate longer"
            )
        end_s = config_end if config_end is not None else last_depart + 1800.0
    elif end_s <= begin:
        raise ScenarioError(f"--end {end_s:g} s is not after the configuration's begin ({begin:g} s, {sumocfg})")
    elif end_s - begin > MAX_WINDOW_S:
        raise ScenarioError(f"--end {end_s:g} s is {(end_s - begin) / 86400.0:.3g} days after the configuration's "
                            f"begin ({begin:g} s): at most 7 days are simulated in one run")
    if not given_end and end_s - begin > MAX_WINDOW_S:
        what = ("the configuration's end" if inputs.end_s is not None and inputs.end_s >= 0
                else "the last EV's departure + 1800 s")
        raise ScenarioError(f"{sumocfg}: {what} ({end_s:g} s) is {(end_s - begin) / 86400.0:.3g} days after its "
                            f"begin ({begin:g} s): at most 7 days are simulated in one run (give --end)")
    step = inputs.step_length_s
    if step is not None and not 0 < step <= 1.0:
        # (0 was run at 1 s, a negative one was a traceback, 50 s a run of meaningless violations)
        raise ScenarioError(f"{sumocfg}: step-length {step:g} s: greenwave runs steps over 0 and up to 1 s "
                            "(the planner counts yellow and red clearance in steps)")
    for ev in evs:
        if ev.depart_s < begin or ev.depart_s >= end_s:
            window = f"[{begin:g}, {end_s:g}) s" + (" with --end" if ev.depart_s >= end_s and given_end else "")
            raise ScenarioError(f"{sumocfg}: EV '{ev.id}' departs at {ev.depart_s:g} s, outside the simulation "
                                f"{window}")
    return _finish(
        name=sumocfg_name(sumocfg),
        source=str(sumocfg),
        demand_level="sumocfg",
        inputs=inputs,
        begin_s=begin,
        end_s=end_s,
        step_length_s=step if step is not None else 1.0,
        evs=evs,
        out_dir=out_dir,
        seed=seed,
        bluelight=bluelight,
        redirect_outputs=not attached,
        escorted=escorted,
        end_given=given_end,
    )


# options of greenwave's own SUMO that change the simulation itself (an attached SUMO without
# them simulates otherwise: a note says so)
SIMULATION_OPTIONS = {"collision.check-junctions": "true"}


def sumo_args(setup: RunSetup) -> list[str]:
    """The SUMO command line (without the binary) of a run; outputs go to its folder.

    The user's own options (from a .sumocfg) are kept unless greenwave sets them itself."""
    inp = setup.inputs
    out = setup.out_dir
    ours: dict[str, str] = {"net-file": str(inp.net_file)}
    if inp.route_files:
        ours["route-files"] = ",".join(str(p) for p in inp.route_files)
    if inp.additional_files:
        ours["additional-files"] = ",".join(str(p) for p in inp.additional_files)
    ours.update(
        {
            "begin": f"{setup.begin_s:g}",
            "step-length": f"{setup.step_length_s:g}",
            "seed": str(setup.seed),
            "no-step-log": "true",
            "duration-log.disable": "true",
            **SIMULATION_OPTIONS,
            "tripinfo-output": str(out / "tripinfo.xml"),
            "statistic-output": str(out / "statistics.xml"),
            "collision-output": str(out / "collisions.xml"),
            "log": str(out / SUMO_LOG),
            "no-warnings": "true",
        }
    )
    ignored = {"random", "end"}  # the run's seed decides; greenwave ends the run itself
    args: list[str] = []
    for name, value in inp.options.items():
        if name not in ours and name not in ignored:
            args += [f"--{name}", value]
    for name, value in ours.items():
        args += [f"--{name}", value]
    return args
