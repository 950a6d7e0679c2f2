"""Where an emergency vehicle is along its corridor, which stop lines it has crossed, and when.

Pure: fed one :class:`~controller.core.snapshot.VehicleState` (or ``None`` when the vehicle is
not in the simulation) per tick with the tick's time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.core.corridor import Corridor
from controller.core.snapshot import VehicleState

STOP_SPEED_MPS = 0.1  # a stop is an episode below this speed after departure (DESIGN §5)
ARRIVAL_SLACK_M = 10.0  # an arrival within this (and twice the last speed's step) of the last edge is one


@dataclass(frozen=True)
class StopEpisode:
    start_s: float
    end_s: float | None  # None while still stopped
    position_m: float
    next_junction: int | None  # corridor index of the next stop line ahead, if any
    distance_to_stop_line_m: float | None
    # on the route edge that ends at that stop line: in its queue, wherever that reached back to
    # (no junction between the EV and the signal), not only within the last 100 m
    on_approach: bool = False


@dataclass
class EvProgress:
    """Mutable tracker of one emergency vehicle on one corridor."""

    ev_id: str
    corridor: Corridor
    depart_s: float | None = None
    arrived_s: float | None = None
    position_m: float | None = None
    speed_mps: float = 0.0
    crossed_s: dict[int, float] = field(default_factory=dict)  # corridor junction index -> time
    stops: list[StopEpisode] = field(default_factory=list)
    reroutes: int = 0  # how often the EV left its planned route and got a new corridor
    vanished_s: float | None = None  # left the simulation without arriving (removed by someone)
    teleports: int = 0  # how often SUMO took it off the road in a teleport (and put it back on)
    off_road: bool = False  # in a teleport now
    # corridor junctions it went past off the road, in a teleport: their ``crossed_s`` is when it
    # was back (or arrived), not when it crossed; no arrival to score an ETA against
    passed_off_road: set[int] = field(default_factory=set)
    _offset_m: float | None = None  # route position minus odometer
    _last_t_s: float | None = None

    @property
    def next_junction(self) -> int | None:
        """Index of the first corridor junction not yet crossed, None when all are behind."""
        for j in self.corridor.junctions:
            if j.index not in self.crossed_s:
                return j.index
        return None

    @property
    def open_stop(self) -> StopEpisode | None:
        """The stop the EV is in now, if any."""
        return self.stops[-1] if self.stops and self.stops[-1].end_s is None else None

    @property
    def running(self) -> bool:
        return self.depart_s is not None and self.arrived_s is None and self.vanished_s is None

    @property
    def done(self) -> bool:
        return self.arrived_s is not None or self.vanished_s is not None

    def crossed(self, junction_index: int) -> bool:
        return junction_index in self.crossed_s

    def rerouted(self, corridor: Corridor) -> EvProgress:
        """This EV's progress on the corridor of its new route (it left the planned one). A route
        SUMO replaces keeps the edges already driven: the stop lines between two edges both routes
        share keep their crossing times (the new corridor would otherwise mark every one behind the
        EV crossed at its first update); the departure and the stops carry over."""
        old, new = self.corridor.route, corridor.route
        common = 0
        while common < min(len(old), len(new)) and old[common] == new[common]:
            common += 1
        before: dict[tuple[int, str], int] = {(j.route_index, j.junction_id): j.index for j in self.corridor.junctions}
        crossed: dict[int, float] = {}
        off_road: set[int] = set()
        for j in corridor.junctions:
            k = before.get((j.route_index, j.junction_id))
            if j.route_index + 1 < common and k is not None and k in self.crossed_s:
                crossed[j.index] = self.crossed_s[k]
                if k in self.passed_off_road:
                    off_road.add(j.index)
        # (a teleport's count and state carry over too: the count restarted at 0 on a new route)
        moved = EvProgress(self.ev_id, corridor, depart_s=self.depart_s, crossed_s=crossed, stops=self.stops,
                           reroutes=self.reroutes + 1, teleports=self.teleports, off_road=self.off_road,
                           passed_off_road=off_road)
        # where it is, if on the edges both routes share (route positions are the same there):
        # re-routed inside a junction it is not placed again until it has left it, and meanwhile
        # had no position (its requests dropped, the signals it still needed handed back)
        shared_m = corridor.edge_offsets_m[common] if common < len(new) else corridor.length_m
        if common and self.position_m is not None and self._offset_m is not None and self.position_m <= shared_m:
            moved.position_m, moved.speed_mps = self.position_m, self.speed_mps
            moved._offset_m, moved._last_t_s = self._offset_m, self._last_t_s
        return moved

    def time_stopped_s(self, end_s: float) -> float:
        # (a float start: with no stop the Python files gave int 0, the compiled core 0.0)
        return sum(((s.end_s if s.end_s is not None else end_s) - s.start_s for s in self.stops), 0.0)

    def not_inserted(self, t_s: float) -> None:
        """The vehicle will not depart (SUMO did not load it): its escort ends, as for a vehicle
        that vanished, before it began."""
        if self.depart_s is None and self.vanished_s is None:
            self.vanished_s = t_s

    def update(self, t_s: float, vehicle: VehicleState | None, *, arrived: bool = False,
               sure_arrival: bool = False, teleporting: bool = False, teleport_started: bool = False) -> None:
        """``sure_arrival``: an arrival that is not SUMO's (an external escort's fix at its route's
        end) is taken as it is, however far the last position was from the end. ``teleporting``:
        SUMO has taken the vehicle off the road in a teleport (a jam, a wait too long); it comes
        back further on its route, or arrives: it has not vanished meanwhile (``teleport_started``:
        one began in this step, whether it is back on already or not)."""
        if teleport_started and self.running:
            self.teleports += 1
        if teleporting and vehicle is None and not arrived and self.running:
            if not self.off_road:
                self.off_road = True
                self._close_stop(t_s)
            return
        # (an arrival straight out of a teleport is one: its route's end was reached off the road)
        if arrived and not sure_arrival and not self.off_road and self.depart_s is not None \
                and self.arrived_s is None and not self._reached_end(t_s):
            # SUMO lists a vehicle it removed among the arrived (``time-to-teleport.remove``, a
            # jam's teleport ending nowhere; a rerouter closing its way): one last seen short of
            # its route's last edge, and unable to have driven there since, has vanished
            vehicle = None
            arrived = False
        if arrived and self.depart_s is not None and self.arrived_s is None:
            self.arrived_s = t_s
            for j in self.corridor.junctions:  # it reached its destination: everything is behind it
                if j.index not in self.crossed_s:
                    self.crossed_s[j.index] = t_s
                    if self.off_road:
                        self.passed_off_road.add(j.index)
            self._close_stop(t_s)
            return
        if vehicle is None:
            if self.depart_s is not None and self.arrived_s is None and self.vanished_s is None:
                self.vanished_s = t_s
                self._close_stop(t_s)
            return
        if self.depart_s is None:
            self.depart_s = t_s
        # (back from a teleport, or through one within this step: what it went past since it was
        # last seen, it went past off the road)
        returning, self.off_road = self.off_road or teleport_started, False
        if not vehicle.on_junction and 0 <= vehicle.route_index < len(self.corridor.route):
            on_route = self.corridor.position_m(vehicle.route_index, vehicle.lane_pos_m)
            self._offset_m = on_route - vehicle.odometer_m
        if self._offset_m is None:
            return
        previous = self.position_m
        position = self._offset_m + vehicle.odometer_m
        self.position_m = position
        self.speed_mps = vehicle.speed_mps
        for j in self.corridor.junctions:
            if j.index in self.crossed_s:
                continue
            past_stop_line = position >= j.distance_m or vehicle.route_index > j.route_index or (
                vehicle.on_junction and vehicle.route_index == j.route_index
            )
            if not past_stop_line:
                break
            if returning:  # passed in the teleport: first seen past it now
                self.crossed_s[j.index] = t_s
                self.passed_off_road.add(j.index)
            else:
                self.crossed_s[j.index] = self._interpolate(t_s, previous, position, j.distance_m)
        self._track_stops(t_s, vehicle)
        self._last_t_s = t_s

    def _reached_end(self, t_s: float) -> bool:
        """Could the EV be on its route's last edge now (where it arrives), from where and how
        fast it was last seen? (Not seen at all: nothing to go by, taken as arrived.)"""
        if self.position_m is None or self._last_t_s is None:
            return True
        last_edge_m = self.corridor.edge_offsets_m[-1]
        reach = max(self.speed_mps, 1.0) * max(t_s - self._last_t_s, 1.0) * 2.0 + ARRIVAL_SLACK_M
        return self.position_m + reach >= last_edge_m

    def _interpolate(self, t_s: float, previous: float | None, position: float, target: float) -> float:
        if previous is None or self._last_t_s is None or position <= previous:
            return t_s
        frac = min(max((target - previous) / (position - previous), 0.0), 1.0)
        return self._last_t_s + frac * (t_s - self._last_t_s)

    def _track_stops(self, t_s: float, vehicle: VehicleState) -> None:
        stopped = vehicle.speed_mps < STOP_SPEED_MPS
        open_stop = self.open_stop
        if stopped and open_stop is None:
            nxt = self.next_junction
            dist = None
            on_approach = False
            if nxt is not None and self.position_m is not None:
                j = self.corridor.junctions[nxt]
                dist = j.distance_m - self.position_m
                on_approach = self.position_m >= self.corridor.edge_offsets_m[j.route_index]
            self.stops.append(StopEpisode(t_s, None, self.position_m or 0.0, nxt, dist, on_approach))
        elif not stopped and open_stop is not None:
            self._close_stop(t_s)

    def _close_stop(self, t_s: float) -> None:
        s = self.open_stop
        if s is not None:
            self.stops[-1] = StopEpisode(s.start_s, t_s, s.position_m, s.next_junction, s.distance_to_stop_line_m,
                                         s.on_approach)
