"""Read a SUMO network (and the signal programs of additional files) into the pure model.

This is the one module that reads network files with sumolib; everything else works on
:class:`controller.core.network.Network`.

What ends up in the model:

* ``edges``: every normal edge, and every internal edge (``function="internal"``, ids
  ``:junction_i``) so that the length and speed of a crossing stay known. Pedestrian
  ``crossing``/``walkingarea`` edges and macroscopic connectors are left out.
* ``connections``: every connection between two normal edges, with the node it crosses,
  its tls id and link index (``''``/-1 when unsignalized), its direction, its first internal
  lane and the summed length of the chain of internal lanes it drives over.
* ``programs``: the ACTIVE program of each traffic light when the simulation starts.
* ``junction_types``: node id -> SUMO junction type (``traffic_light``, ``priority``, ...).

Which program is active. SUMO's documentation (Simulation/Traffic_Lights, "Loading a new
Program") says: it is possible to load several programs for a single tls; *the program loaded
last will be used* (unless a WAUT says otherwise). The net is loaded before the additional
files, and additional files in the order given, so the last ``<tlLogic>`` for a tls id over
(net, additional_1, additional_2, ...) is the active one; that is what ``load_network`` returns.
Also per that page: a ``<tlLogic>`` without phases whose ``id``/``programID`` name an already
loaded program only changes that program's ``offset``; ``programID="off"`` switches the
signal off (the tls then has no entry in ``programs``). WAUTs (programs switched by time of
day) are refused: greenwave plans and checks each signal against one program, and SUMO would run
another one from the WAUT's switch on (or from the start).
"""

from __future__ import annotations

import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import sumolib

from controller.core.network import Connection, Edge, Lane, Network, Phase, Program
from controller.errors import NetworkError
from controller.sim.xmlroot import NET_ROOTS, wrong_kind

EMERGENCY = "emergency"
_KEPT_FUNCTIONS = ("", "internal")


def load_network(net_file: Path, additional_files: Sequence[Path] = ()) -> Network:
    """Read ``net_file`` and the ``<tlLogic>`` elements of ``additional_files`` (in order).

    Raises :class:`NetworkError` naming the file for a missing, unreadable or malformed file,
    and naming the file and tls id for a malformed or inapplicable ``<tlLogic>``.
    """
    net_file = Path(net_file)
    _check_readable(net_file, "network file")
    if problem := wrong_kind(net_file, NET_ROOTS, "a SUMO network"):
        raise NetworkError(f"network file {net_file}: {problem}")
    for add in additional_files:
        _check_readable(Path(add), "additional file")

    try:
        net: Any = sumolib.net.readNet(str(net_file), withPrograms=True, withInternal=True)
    except Exception as exc:  # sumolib raises whatever the SAX parser or its own code raises
        raise NetworkError(f"cannot read network file {net_file}: {exc}") from exc

    edges = _edges(net)
    connections = _connections(net, net_file)
    junction_types = {n.getID(): str(n.getType()) for n in net.getNodes()}
    unsupported: dict[str, str] = {}
    programs = _net_programs(net, net_file, unsupported)
    for add in additional_files:
        _apply_additional(programs, Path(add), {t.getID() for t in net.getTrafficLights()}, unsupported)
    for tls_id in unsupported:
        programs.pop(tls_id, None)

    _check_link_counts(programs, connections, net_file, additional_files)
    return Network(
        edges=edges,
        connections=tuple(connections),
        programs=programs,
        junction_types=junction_types,
        source=net_file.name,
        unsupported=unsupported,
    )


def _order_problem(nexts: Sequence[Sequence[int]], program_id: str, where: str) -> str | None:
    """Why a program whose phases give ``next`` lists cannot be switched, or None where every
    list names the phase after it (or none is given). greenwave reads a program as its phases
    in order: the yellows and red clearances it must keep, the minimum greens, when the program
    comes back to a phase. SUMO runs the phases in the order ``next`` says."""
    n = len(nexts)
    for i, nxt in enumerate(nexts):
        if list(nxt) not in ([], [(i + 1) % n]):
            return (f"its program '{program_id}' ({where}) runs its phases in an order of its own (phase {i} has "
                    f"next=\"{' '.join(str(k) for k in nxt)}\"), which greenwave cannot follow: it reads a program as "
                    "its phases in order. Give the phases in the order they run, without next")
    return None


def _next_list(raw: str | None, where: str, tls_id: str) -> list[int]:
    try:
        return [int(x) for x in (raw or "").split()]
    except ValueError:
        raise NetworkError(f"{where}: tlLogic '{tls_id}': phase next {raw!r} is not a list of phase indices") from None


def _check_readable(path: Path, what: str) -> None:
    if not path.is_file():
        raise NetworkError(f"{what} {path} does not exist or is not a file")
    if not os.access(path, os.R_OK):
        raise NetworkError(f"{what} {path} is not readable")


def _edges(net: Any) -> dict[str, Edge]:
    edges: dict[str, Edge] = {}
    for e in net.getEdges(withInternal=True):
        function = e.getFunction()
        if function not in _KEPT_FUNCTIONS:
            continue
        edge_id = e.getID()
        lanes = tuple(
            Lane(
                lane_id=ln.getID(),
                edge_id=edge_id,
                index=ln.getIndex(),
                length_m=float(ln.getLength()),
                speed_mps=float(ln.getSpeed()),
                allows_emergency=bool(ln.allows(EMERGENCY)),
            )
            for ln in e.getLanes()
        )
        edges[edge_id] = Edge(
            edge_id=edge_id,
            from_node=e.getFromNode().getID(),
            to_node=e.getToNode().getID(),
            # sumolib's (and SUMO routing's) edge length is the length of lane 0, its speed
            # is the edge's speed; keep both so routing agrees with sumolib
            length_m=float(e.getLength()),
            speed_mps=float(e.getSpeed()),
            lanes=lanes,
            function=function,
            bidi=e.getBidi().getID() if e.getBidi() is not None else "",
        )
    return edges


def _junction_indices(node: Any) -> dict[Any, int]:
    """Each connection of a node -> its index in the node's right-of-way request (the order of
    sumolib's ``Node.getLinkIndex``, computed once for all of them)."""
    out: dict[Any, int] = {}
    index = 0
    incoming = {e.getID(): e for e in node.getIncoming()}
    for lane_id in getattr(node, "_incLanes", ()):
        edge_id, _, lane_index = lane_id.rpartition("_")
        edge = incoming.get(edge_id)
        if edge is None or not lane_index.isdigit():
            continue
        for conn in edge.getLane(int(lane_index)).getOutgoing():
            from_function = conn.getFromLane().getEdge().getFunction()
            to_function = conn.getToLane().getEdge().getFunction()
            if to_function == "walkingarea" or (from_function == "walkingarea" and to_function != "crossing"):
                continue
            out[conn] = index
            index += 1
    return out


def _foe_links(node: Any, conns: Sequence[Any]) -> dict[Any, tuple[int, ...]]:
    """For each signalized connection of ``conns`` (all crossing ``node``), the link indices of
    the same signal whose connections are its foes in the node's request."""
    if not conns or not node.hasFoes():
        return {}
    index = _junction_indices(node)
    signalized = [(c, index[c]) for c in conns if c.getTLSID() and c in index]
    out: dict[Any, tuple[int, ...]] = {}
    for c, i in signalized:
        try:
            foes = {int(d.getTLLinkIndex()) for d, k in signalized
                    if d is not c and d.getTLSID() == c.getTLSID() and node.areFoes(i, k)}
        except (KeyError, IndexError):  # a request shorter than the connections: no foe data
            return {}
        out[c] = tuple(sorted(foes))
    return out


def _connections(net: Any, net_file: Path) -> list[Connection]:
    out: list[Connection] = []
    by_node: dict[str, list[Any]] = {}
    for e in net.getEdges(withInternal=False):
        if e.getFunction() == "":
            for to_edge, conns in e.getOutgoing().items():
                if to_edge.getFunction() == "":
                    by_node.setdefault(e.getToNode().getID(), []).extend(conns)
    foes: dict[Any, tuple[int, ...]] = {}
    for node_id, conns in by_node.items():
        if any(c.getTLSID() for c in conns):
            foes.update(_foe_links(net.getNode(node_id), conns))
    for e in net.getEdges(withInternal=False):
        if e.getFunction() != "":
            continue
        junction_id = e.getToNode().getID()
        for to_edge, conns in e.getOutgoing().items():
            if to_edge.getFunction() != "":
                continue
            for c in conns:
                via_lane_id = c.getViaLaneID() or ""
                out.append(
                    Connection(
                        from_edge=e.getID(),
                        to_edge=to_edge.getID(),
                        from_lane=c.getFromLane().getID(),
                        to_lane=c.getToLane().getID(),
                        junction_id=junction_id,
                        tls_id=c.getTLSID() or "",
                        link_index=int(c.getTLLinkIndex()) if c.getTLSID() else -1,
                        direction=c.getDirection(),
                        via_lane_id=via_lane_id,
                        via_length_m=_via_length(net, via_lane_id, net_file),
                        foe_links=foes.get(c, ()),
                    )
                )
    return out


def _via_length(net: Any, via_lane_id: str, net_file: Path) -> float:
    """Sum the lengths of the chain of internal lanes starting at ``via_lane_id``."""
    total = 0.0
    seen: set[str] = set()
    lane_id = via_lane_id
    while lane_id:
        if lane_id in seen:
            raise NetworkError(f"internal lane '{lane_id}' loops back on itself in {net_file}")
        seen.add(lane_id)
        try:
            lane = net.getLane(lane_id)
        except KeyError as exc:
            raise NetworkError(f"internal lane '{lane_id}' is not in network {net_file}") from exc
        total += float(lane.getLength())
        outgoing = lane.getOutgoing()
        lane_id = (outgoing[0].getViaLaneID() or "") if outgoing else ""
    return total


def _net_programs(net: Any, net_file: Path, unsupported: dict[str, str]) -> dict[str, Program]:
    programs: dict[str, Program] = {}
    for tls in net.getTrafficLights():
        loaded = tls.getPrograms()  # programID -> TLSProgram, in file order
        if not loaded:
            continue
        program_id, prog = list(loaded.items())[-1]  # loaded last = active
        phases = tuple(
            _phase(
                state=p.state,
                duration=p.duration,
                min_dur=p.minDur if p.minDur is not None and p.minDur >= 0 else None,
                max_dur=p.maxDur if p.maxDur is not None and p.maxDur >= 0 else None,
                name=p.name or "",
                where=f"network file {net_file}",
                tls_id=tls.getID(),
            )
            for p in prog.getPhases()
        )
        programs[tls.getID()] = _program(
            tls.getID(), str(program_id), str(prog.getType()), float(prog.getOffset()), phases, net_file
        )
        nexts = [[int(k) for k in p.next or ()] for p in prog.getPhases()]  # (sumolib: a list of ints)
        problem = _order_problem(nexts, str(program_id), f"network file {net_file}")
        if problem:
            unsupported[tls.getID()] = problem
    return programs


def _phase(
    state: str,
    duration: Any,
    min_dur: Any,
    max_dur: Any,
    name: str,
    where: str,
    tls_id: str,
) -> Phase:
    try:
        duration_s = float(duration)
        min_dur_s = duration_s if min_dur is None else float(min_dur)
        max_dur_s = duration_s if max_dur is None else float(max_dur)
    except (TypeError, ValueError) as exc:
        raise NetworkError(f"{where}: tlLogic '{tls_id}': invalid phase duration ({exc})") from exc
    if not state:
        raise NetworkError(f"{where}: tlLogic '{tls_id}': phase without a state")
    if not 0 < duration_s < math.inf:  # (NaN too: SUMO runs a NaN phase as -9.2e15 s)
        raise NetworkError(f"{where}: tlLogic '{tls_id}': phase duration {duration_s} is not a positive finite "
                           "number of seconds")
    # (a negative one is SUMO's "not given"; an unlimited maxDur is what SUMO assumes without one)
    if not math.isfinite(min_dur_s) or math.isnan(max_dur_s):
        name, value = ("minDur", min_dur_s) if not math.isfinite(min_dur_s) else ("maxDur", max_dur_s)
        raise NetworkError(f"{where}: tlLogic '{tls_id}': phase {name} {value} is not a number of seconds "
                           f"{'(finite)' if name == 'minDur' else ''}".rstrip())
    return Phase(
        state=state,
        duration_s=duration_s,
        min_dur_s=min_dur_s,
        max_dur_s=max_dur_s,
        name=name,
        min_dur_given=min_dur is not None,
    )


def _program(
    tls_id: str, program_id: str, kind: str, offset_s: float, phases: tuple[Phase, ...], file: Path
) -> Program:
    try:
        return Program(tls_id=tls_id, program_id=program_id, kind=kind, offset_s=offset_s, phases=phases)
    except ValueError as exc:
        raise NetworkError(f"{file}: tlLogic '{tls_id}': {exc}") from exc


def _apply_additional(programs: dict[str, Program], add_file: Path, known_tls: set[str],
                      unsupported: dict[str, str]) -> None:
    """Apply the ``<tlLogic>`` elements of one additional file, in file order."""
    try:
        root = ET.parse(add_file).getroot()
    except (ET.ParseError, OSError) as exc:
        raise NetworkError(f"cannot read additional file {add_file}: {exc}") from exc

    waut = root.find(".//WAUT")
    if waut is not None:
        signals = sorted({j.get("junctionID", "?") for j in root.iter("wautJunction")
                          if j.get("wautID") == waut.get("id")})
        raise NetworkError(
            f"additional file {add_file}: WAUT '{waut.get('id', '?')}' switches the programs of "
            f"{', '.join(signals) or 'its signals'} by time of day, which greenwave cannot follow (it plans and "
            "checks every signal against one program, the one loaded last): remove the WAUT, or give the "
            "program that runs during the scenario as the last one loaded")

    for tl in root.iter("tlLogic"):
        tls_id = tl.get("id")
        if not tls_id:
            raise NetworkError(f"additional file {add_file}: tlLogic without an id")
        where = f"additional file {add_file}"
        if tls_id not in known_tls:
            raise NetworkError(f"{where}: tlLogic '{tls_id}' names a traffic light that is not in the network")
        program_id = tl.get("programID")
        if program_id is None:
            raise NetworkError(f"{where}: tlLogic '{tls_id}' has no programID")
        try:
            offset_s = float(tl.get("offset", "0"))
        except ValueError as exc:
            raise NetworkError(f"{where}: tlLogic '{tls_id}': invalid offset {tl.get('offset')!r}") from exc
        if not math.isfinite(offset_s):
            raise NetworkError(f"{where}: tlLogic '{tls_id}': offset {offset_s} is not a finite number of seconds")

        phase_elems = tl.findall("phase")
        if not phase_elems:
            current = programs.get(tls_id)
            if program_id == "off":
                programs.pop(tls_id, None)
                unsupported.pop(tls_id, None)
            elif current is not None and current.program_id == program_id and "offset" in tl.attrib:
                programs[tls_id] = replace(current, offset_s=offset_s)
            else:
                raise NetworkError(f"{where}: tlLogic '{tls_id}' (programID '{program_id}') has no phases")
            continue

        phases = []
        for ph in phase_elems:
            if "duration" not in ph.attrib:
                raise NetworkError(f"{where}: tlLogic '{tls_id}': phase without a duration")
            phases.append(
                _phase(
                    state=ph.get("state", ""),
                    duration=ph.get("duration"),
                    min_dur=ph.get("minDur"),
                    max_dur=ph.get("maxDur"),
                    name=ph.get("name", ""),
                    where=where,
                    tls_id=tls_id,
                )
            )
        programs[tls_id] = _program(tls_id, program_id, tl.get("type", "static"), offset_s, tuple(phases), add_file)
        problem = _order_problem([_next_list(ph.get("next"), where, tls_id) for ph in phase_elems], program_id, where)
        if problem:
            unsupported[tls_id] = problem
        else:
            unsupported.pop(tls_id, None)


def _check_link_counts(
    programs: dict[str, Program],
    connections: Sequence[Connection],
    net_file: Path,
    additional_files: Sequence[Path],
) -> None:
    """Every program must have a signal for each link index its connections use (SUMO checks it too)."""
    max_index: dict[str, int] = {}
    for c in connections:
        if c.tls_id and c.link_index >= 0:
            max_index[c.tls_id] = max(max_index.get(c.tls_id, -1), c.link_index)
    files = ", ".join(str(p) for p in (net_file, *additional_files))
    for tls_id, prog in programs.items():
        need = max_index.get(tls_id, -1) + 1
        if prog.link_count < need:
            raise NetworkError(
                f"tlLogic '{tls_id}' program '{prog.program_id}' ({files}) has {prog.link_count} "
                f"signals but its connections use link index {need - 1}"
            )
