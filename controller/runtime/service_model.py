"""What the live service publishes (immutable views of escorts and signals, read by the API)
and the commands it takes (queued to its thread)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

EscortState = Literal["dispatched", "en_route", "arrived", "cancelled"]
Tracking = Literal["simulation", "external"]


# -- what the service publishes (immutable) --------------------------------------------------------
@dataclass(frozen=True)
class JunctionView:
    index: int
    tls_id: str
    junction_id: str
    distance_m: float
    eta_s: float | None
    eta_in_s: float | None
    eta_low_s: float | None
    eta_high_s: float | None
    stage: str
    granted: bool
    crossed_s: float | None
    locked_until_s: float | None = None  # no preemption for it here before (re-service lockout)


@dataclass(frozen=True)
class PositionView:
    edge: str
    offset_m: float
    route_distance_m: float
    source: Tracking


@dataclass(frozen=True)
class EscortView:
    id: str
    vehicle_id: str
    vehicle_type: str
    priority: int
    state: EscortState
    reason: str
    tracking: Tracking
    route: tuple[str, ...]
    route_length_m: float
    dispatched_s: float
    departed_s: float | None
    arrived_s: float | None
    cancelled_s: float | None
    position: PositionView | None
    speed_mps: float | None
    junctions: tuple[JunctionView, ...]

    @property
    def active(self) -> bool:
        return self.state in ("dispatched", "en_route")


@dataclass(frozen=True)
class SignalView:
    tls_id: str
    state: str
    program: str
    phase: int
    stage: str
    escorts: tuple[str, ...]  # the escorts it is armed or switched for
    preempted: bool  # switched away from its program by greenwave now
    watched: bool = True  # read by greenwave now (the views listed are those read)
    locked_until_s: float | None = None  # no preemption before (re-service lockout)


@dataclass(frozen=True)
class ServiceState:
    t_s: float
    ticks: int
    running: bool
    ended: bool
    failed: str | None
    escorts: Mapping[str, EscortView] = field(default_factory=dict)
    signals: Mapping[str, SignalView] = field(default_factory=dict)
    preempted: tuple[str, ...] = ()
    safety: Mapping[str, int] = field(default_factory=dict)
    targets_refused: int = 0  # planner ticks that refused a green target no program phase shows


# -- commands ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Place:
    edge: str | None = None
    lon: float | None = None
    lat: float | None = None


@dataclass(frozen=True)
class Dispatch:
    escort_id: str | None = None
    vehicle_type: str = "ambulance"
    priority: int | None = None
    origin: Place | None = None
    destination: Place | None = None
    route: tuple[str, ...] | None = None
    vehicle_id: str | None = None
    tracking: Tracking = "simulation"


@dataclass(frozen=True)
class Position:
    escort_id: str
    edge: str | None = None
    offset_m: float | None = None
    lon: float | None = None
    lat: float | None = None
    speed_mps: float = 0.0
    t_s: float | None = None  # simulation time of the fix; now when None


@dataclass(frozen=True)
class Cancel:
    escort_id: str


@dataclass(frozen=True)
class Reroute:
    """A new way on for an escort under way: ``route`` (holding the edge it is on now) or a
    ``destination`` routed to from there."""

    escort_id: str
    route: tuple[str, ...] | None = None
    destination: Place | None = None


Command = Dispatch | Position | Cancel | Reroute
