"""Request and response bodies of the HTTP API (pydantic; they make the OpenAPI schema)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

from controller import MAX_ID_LENGTH

# (at least one character not a dot: an id '.' or '..' in a URL path is resolved away by clients,
# so such an escort could not be read or cancelled; the length is checked with max_length)
ID_PATTERN = r"^[A-Za-z0-9_.:#-]*[A-Za-z0-9_:#-][A-Za-z0-9_.:#-]*$"
VehicleType = Literal["ambulance", "fire", "police", "transit"]
Stage = Literal["idle", "armed", "entry", "dwell", "exit"]


def printable(text: str) -> bool:
    """No control characters and no lone surrogates (which no network's ids hold, and which JSON
    encoded as UTF-8 cannot carry: an edge id '\\ud800' in a route made a 500, and its audit row
    a 500 on every read of the log)."""
    return text.isprintable()


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class EdgePlace(_In):
    edge: str = Field(min_length=1, max_length=256, description="A network edge id.")


class GeoPlace(_In):
    lon: float = Field(ge=-180, le=180, description="Longitude (WGS84); needs a geo-referenced network.")
    lat: float = Field(ge=-90, le=90, description="Latitude (WGS84).")


def _place_kind(value: Any) -> str:
    """Which kind of place a body gives: an ``edge``, else longitude and latitude (so that a bad
    one is named by its own fields, not by both kinds')."""
    if isinstance(value, EdgePlace) or (isinstance(value, dict) and "edge" in value):
        return "edge"
    return "geo"


Place = Annotated[Annotated[EdgePlace, Tag("edge")] | Annotated[GeoPlace, Tag("geo")], Discriminator(_place_kind)]


def _check_edge_ids(route: list[str] | None) -> None:
    if route is not None and not all(1 <= len(e) <= 256 for e in route):
        raise ValueError("route: every edge id has 1 to 256 characters")
    for k, e in enumerate(route or ()):
        if not printable(e):
            raise ValueError(f"route[{k}]: an edge id holds no control characters and no lone surrogates")


class DispatchRequest(_In):
    """Dispatch an escort: ``origin`` and ``destination``, or a ``route``, or the ``vehicle_id`` of
    a vehicle running in the simulation (escorted along its own route), or of one of the
    scenario's route files not yet departed (escorted from its departure)."""

    id: str | None = Field(default=None, pattern=ID_PATTERN, max_length=MAX_ID_LENGTH,
                            description="Escort id [default: escort-N]: letters, digits and _ . : # - (not dots "
                                        "alone). In a URL path a # is written %23.")
    vehicle_type: VehicleType = "ambulance"
    priority: int | None = Field(default=None, ge=1, le=3, strict=True,
                                 description="1 = highest [default: by vehicle_type].")
    origin: Place | None = None
    destination: Place | None = None
    route: list[str] | None = Field(default=None, min_length=1, max_length=2000, description="Edge ids.")
    vehicle_id: str | None = Field(default=None, min_length=1, max_length=256,
                                   description="A vehicle running in the simulation, or one of the scenario's route "
                                               "files that departs later: escorted along its own route.")
    tracking: Literal["simulation", "external"] = Field(
        default="simulation",
        description="simulation: greenwave adds the vehicle to SUMO and follows it; external: positions come "
        "only from POST .../positions (a GPS-tracked escort).",
    )

    @model_validator(mode="after")
    def _one_way_to_say_where(self) -> DispatchRequest:
        od = (self.origin is not None, self.destination is not None)
        given = [name for name, v in (("origin/destination", any(od)), ("route", self.route is not None),
                                      ("vehicle_id", self.vehicle_id is not None)) if v]
        if len(given) != 1:
            raise ValueError("give exactly one of: origin and destination, route, vehicle_id"
                             + (f" (got {', '.join(given)})" if given else ""))
        if any(od) and not all(od):
            raise ValueError(f"'{'destination' if od[0] else 'origin'}' is missing")
        _check_edge_ids(self.route)
        if self.vehicle_id is not None and self.tracking == "external":
            raise ValueError("tracking 'external' goes with origin/destination or route, not vehicle_id")
        return self


class RouteRequest(_In):
    """A new way on for an escort under way: a ``route`` holding the edge it is on now (the way
    on from there), or a ``destination`` greenwave routes to from that edge."""

    route: list[str] | None = Field(default=None, min_length=1, max_length=2000, description="Edge ids.")
    destination: Place | None = None

    @model_validator(mode="after")
    def _route_or_destination(self) -> RouteRequest:
        if (self.route is None) == (self.destination is None):
            raise ValueError("give exactly one of: route, destination")
        _check_edge_ids(self.route)
        return self


class PositionRequest(_In):
    """One position fix: ``edge`` (and ``offset_m`` along it), or ``lon`` and ``lat``."""

    edge: str | None = Field(default=None, min_length=1, max_length=256)
    offset_m: float | None = Field(default=None, ge=0, le=100_000)
    lon: float | None = Field(default=None, ge=-180, le=180)
    lat: float | None = Field(default=None, ge=-90, le=90)
    speed_mps: float = Field(default=0.0, ge=0, le=100)
    timestamp: float | None = Field(default=None, ge=0, le=1e9,
                                    description="Simulation time of the fix in s [default: now].")

    @model_validator(mode="after")
    def _edge_or_lonlat(self) -> PositionRequest:
        geo = (self.lon is not None, self.lat is not None)
        if (self.edge is not None) == any(geo):
            raise ValueError("give 'edge' (with 'offset_m') or 'lon' and 'lat'")
        if any(geo) and not all(geo):
            raise ValueError(f"'{'lat' if geo[0] else 'lon'}' is missing")
        if self.offset_m is not None and self.edge is None:
            raise ValueError("'offset_m' goes with 'edge'")
        if self.edge is not None and self.offset_m is None:  # (not 0: each fix would be an edge's start)
            raise ValueError("'offset_m' is missing (the fix's distance along 'edge', in m)")
        return self


class JunctionOut(_Out):
    index: int
    tls_id: str
    junction_id: str
    distance_m: float
    eta_s: float | None = Field(description="Predicted arrival at the stop line (simulation time).")
    eta_in_s: float | None = Field(description="Seconds from now to eta_s.")
    eta_low_s: float | None
    eta_high_s: float | None
    stage: Stage
    granted: bool = Field(description="This escort's request took part in a preemption of the signal here: "
                          "switched for it, or served by a state switched for another escort that shows its "
                          "movement green too.")
    crossed_s: float | None
    locked_until_s: float | None = Field(
        default=None, description="The signal takes no preemption for this escort before this time (simulation "
        "time): its re-service lockout after a maximum-presence hand-back, 30 s of its own program. Null "
        "otherwise.")


class PositionOut(_Out):
    edge: str
    offset_m: float
    route_distance_m: float
    source: Literal["simulation", "external"]


class EscortOut(_Out):
    id: str
    vehicle_id: str
    vehicle_type: VehicleType
    priority: int
    state: Literal["dispatched", "en_route", "arrived", "cancelled"]
    reason: str
    tracking: Literal["simulation", "external"]
    route: list[str]
    route_length_m: float
    dispatched_s: float
    departed_s: float | None
    arrived_s: float | None
    cancelled_s: float | None
    position: PositionOut | None
    speed_mps: float | None
    junctions: list[JunctionOut]


class PositionAccepted(BaseModel):
    escort: str
    edge: str
    offset_m: float
    route_index: int
    route_distance_m: float
    distance_from_route_m: float
    t_s: float


class SignalOut(_Out):
    tls_id: str
    watched: bool = Field(description="Read by greenwave now (on an escort's route); false: its program runs "
                          "untouched and state, program and phase are not read.")
    state: str | None
    program: str | None
    phase: int | None
    stage: Stage
    escorts: list[str] = Field(description="Escorts the signal is armed or switched for.")
    preempted: bool = Field(description="Switched away from its program by greenwave now.")
    locked_until_s: float | None = Field(
        default=None, description="No preemption before this time (simulation time): the re-service lockout "
        "after a maximum-presence hand-back. Null otherwise.")


class AuditOut(_Out):
    id: int
    at: str
    t_s: float | None
    kind: str
    escort_id: str | None
    tls_id: str | None
    detail: dict[str, Any]


class Health(BaseModel):
    status: Literal["ok", "ended", "failed", "stopped", "stalled"]
    t_s: float
    ticks: int
    escorts_active: int
    preempted: list[str]
    safety: dict[str, int]
    targets_refused: int = Field(
        0, description="Planner ticks that refused a green target no phase of the signal's program shows "
        "(the request is then not served with it). 0 in a healthy service; each new one is also an "
        "event and an audit row.")
    ticks_recent: dict[str, float | int | None] = Field(
        description="Wall time of the recent ticks (up to 1000): whole tick (SUMO step, controller, publishing) "
        "and control alone, p50/p99/max in ms, against the budget (one step's wall time at the set speed).")
    detail: str | None = None


class ErrorOut(BaseModel):
    error: str
    detail: str
    errors: list[dict[str, Any]] | None = None
