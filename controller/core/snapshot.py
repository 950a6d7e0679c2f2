"""What one tick reads from the simulation, and the commands the core sends back: plain data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple


class VehicleState(NamedTuple):  # a tuple: read for every watched object on every step, cheaply
    vehicle_id: str
    road_id: str  # edge id, or an internal edge ':...' while crossing a junction
    lane_id: str
    lane_pos_m: float
    speed_mps: float
    route_index: int  # index in the vehicle's route of the edge it is on (or last left)
    odometer_m: float  # distance driven since departure

    @property
    def on_junction(self) -> bool:
        return self.road_id.startswith(":")


class SignalState(NamedTuple):  # a tuple: read for every watched object on every step, cheaply
    tls_id: str
    state: str  # SUMO's red-yellow-green string, one char per link
    program_id: str  # "online" while a controller sets states directly
    phase: int
    # the links with a vehicle on their crossing (the link's internal lanes) now, each with the
    # links whose crossing conflicts with it (SUMO's internal foes): (link, (foe links)); read
    # only while the signal is switched away from its program and changing (see SumoAdapter)
    occupied: tuple[tuple[int, tuple[int, ...]], ...] = ()


class LaneState(NamedTuple):  # a tuple: read for every watched object on every step, cheaply
    lane_id: str
    vehicles: int
    halting: int  # vehicles below 0.1 m/s


@dataclass(frozen=True)
class Snapshot:
    """The state after one simulation step at time ``t_s``."""

    t_s: float
    vehicles: Mapping[str, VehicleState]  # the watched (emergency) vehicles that are running
    signals: Mapping[str, SignalState]  # the watched traffic lights
    lanes: Mapping[str, LaneState] = field(default_factory=dict)  # the watched approach lanes
    departed: tuple[str, ...] = ()
    arrived: tuple[str, ...] = ()
    teleports_started: int = 0
    # the watched vehicles SUMO is teleporting (off the road, back on it further on its route):
    # absent from ``vehicles`` without having vanished
    teleporting: frozenset[str] = frozenset()
    teleport_started: frozenset[str] = frozenset()  # those whose teleport began in this step (back on already or not)
    # the speed factor SUMO drew for each watched vehicle seen on the road so far (its chosen
    # speed is that × the lane's speed limit, capped by its type's maximum speed)
    speed_factors: Mapping[str, float] = field(default_factory=dict)
    colliding: tuple[str, ...] = ()
    emergency_stopping: int = 0
    extra: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class SignalCommand:
    """One command to one traffic light, produced by a controller and applied by the adapter.

    - ``set_state``: show ``state`` (switches SUMO to its 'online' program until restored);
    - ``restore``: return to program ``program_id``, entering at ``phase`` if given (for the
      remaining ``phase_remaining_s`` if given).
    """

    tls_id: str
    kind: Literal["set_state", "restore"]
    state: str = ""
    program_id: str = ""
    phase: int | None = None
    phase_remaining_s: float | None = None
    reason: str = ""
