"""ETA prediction: when an emergency vehicle reaches each stop line still ahead on its corridor.

Three layers, all pure (time is an argument):

* **Kinematics.** :func:`build_profile` turns the route into a piecewise-constant speed-limit
  profile along the corridor (route edges and the internal lanes of each crossing: a left
  turn's internal lane is much slower than the edges it joins). :func:`arrival_times_s` drives
  it from a position and speed: accelerate at ``accel`` to the local limit × ``speed_factor``
  (capped by ``max_speed``), cruise, and brake at ``decel`` ahead of slower segments so that
  every segment is entered within its limit. One forward pass gives the arrival time at every
  target; the braking envelope (the highest speed allowed at each segment start) is
  precomputed once per profile and dynamics.
* **Online correction.** :class:`EtaPredictor` learns how much slower than free flow the EV
  actually progresses (it follows cars): the ratio of moving time to kinematic time over the
  last ``correction_window_s``, clipped and smoothed, applied to the next ``recent_horizon_s``
  of kinematic time; beyond that, the same ratio over the whole trip so far (a car the EV is
  stuck behind now says little about the traffic a minute ahead). Stopped samples are left
  out and a run of movement that ends in a stop is compared with a kinematic run that also
  ends in a stop, so waiting at a red does not inflate the factor (the signal's effect is the
  queue term's job).
* **Queue term.** A red movement with vehicles queued ahead: the EV cannot pass before
  ``t + red_for + start-up lost time + vehicles × saturation headway``. Where that bound is
  later than the EV could get there, the EV waits: it crosses at the bound, slower the longer
  the wait (from rest once the wait is as long as a stop and start cost), and every later
  junction is delayed by the wait and by the time lost accelerating again.

:class:`EtaLog` records predictions and evaluates them against the actual arrivals (DESIGN §5).
"""

from __future__ import annotations

import bisect
import functools
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from controller.core.corridor import Corridor
from controller.core.network import Connection, Network

STOP_SPEED_MPS = 0.1  # below this the EV is stopped (DESIGN §5)
MIN_LIMIT_MPS = 0.1  # floor of a segment's effective limit (a 0 m/s lane would never be left)
_EPS_M = 1e-6
_PREDICTIONS_KEPT = 300  # per junction, for the learned spread
_ERRORS_KEPT = 200  # relative errors of recent predictions, for the learned spread
_SPREAD_MAX_HORIZON_S = 120.0
_SPREAD_MIN_HORIZON_S = 10.0


# ----------------------------------------------------------------------------------------------
# values


@dataclass(frozen=True)
class EvDynamics:
    max_speed_mps: float  # vehicle type maxSpeed
    accel_mps2: float
    decel_mps2: float
    speed_factor: float = 1.0  # drives at speed_factor × the lane speed limit (capped by max speed)
    length_m: float = 7.0  # vehicle type length: the EV has left a junction once its rear is past it

    def __post_init__(self) -> None:
        for name in ("max_speed_mps", "accel_mps2", "decel_mps2", "speed_factor", "length_m"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"EvDynamics.{name} must be a positive finite number, not {value!r}")


@dataclass(frozen=True)
class SpeedProfile:
    """Speed limits along the corridor: contiguous segments ``[starts_m[k], ends_m[k])``."""

    starts_m: tuple[float, ...]
    ends_m: tuple[float, ...]
    speeds_mps: tuple[float, ...]

    def __post_init__(self) -> None:
        n = len(self.starts_m)
        if n == 0 or len(self.ends_m) != n or len(self.speeds_mps) != n:
            raise ValueError(
                f"SpeedProfile needs as many starts, ends and speeds, at least one: got "
                f"{len(self.starts_m)}, {len(self.ends_m)}, {len(self.speeds_mps)}"
            )
        for k in range(n):
            if not self.ends_m[k] > self.starts_m[k]:
                raise ValueError(f"SpeedProfile segment {k} is empty: [{self.starts_m[k]}, {self.ends_m[k]})")
            if not (math.isfinite(self.speeds_mps[k]) and self.speeds_mps[k] > 0):
                raise ValueError(f"SpeedProfile segment {k} has speed {self.speeds_mps[k]!r}, not > 0")
            if k and abs(self.starts_m[k] - self.ends_m[k - 1]) > _EPS_M:
                raise ValueError(
                    f"SpeedProfile segment {k} starts at {self.starts_m[k]}, the previous one ends at "
                    f"{self.ends_m[k - 1]}: segments must be contiguous"
                )

    @property
    def start_m(self) -> float:
        return self.starts_m[0]

    @property
    def end_m(self) -> float:
        return self.ends_m[-1]

    def speed_at(self, position_m: float) -> float:
        """The limit at ``position_m`` (a boundary belongs to the segment it starts; outside, the nearest)."""
        k = bisect.bisect_right(self.starts_m, position_m) - 1
        return self.speeds_mps[min(max(k, 0), len(self.speeds_mps) - 1)]


# ----------------------------------------------------------------------------------------------
# the profile of a corridor


def crossing_connection(network: Network, from_edge: str, to_edge: str) -> Connection:
    """The connection whose crossing the corridor counts: the shortest ``via_length_m`` (as corridor.py)."""
    return min(network.connections_between(from_edge, to_edge), key=lambda c: c.via_length_m)


def _crossing_speed_mps(network: Network, conn: Connection) -> float:
    """Speed of the crossing's first internal lane; the exit edge's speed if the net has no internal lanes."""
    internal = network.edges.get(conn.via_lane_id.rpartition("_")[0]) if conn.via_lane_id else None
    if internal is not None:
        for lane in internal.lanes:
            if lane.lane_id == conn.via_lane_id:
                return lane.speed_mps
        return internal.speed_mps
    return network.edges[conn.to_edge].speed_mps


def build_profile(network: Network, corridor: Corridor) -> SpeedProfile:
    """Speed limits along ``corridor``: each route edge at its speed, each crossing at its internal lane's.

    Adjacent segments with the same limit are merged.
    """
    segments: list[tuple[float, float, float]] = []
    route, offsets = corridor.route, corridor.edge_offsets_m
    for i, edge_id in enumerate(route):
        edge = network.edges[edge_id]
        start = offsets[i]
        end = start + edge.length_m
        segments.append((start, end, edge.speed_mps))
        if i + 1 < len(route) and offsets[i + 1] - end > _EPS_M:
            conn = crossing_connection(network, edge_id, route[i + 1])
            segments.append((end, offsets[i + 1], _crossing_speed_mps(network, conn)))
    merged: list[list[float]] = []
    for start, end, speed in segments:
        if end - start <= _EPS_M:
            continue
        if merged and merged[-1][2] == speed:
            merged[-1][1] = end
        else:
            merged.append([start, end, speed])
    if not merged:
        raise ValueError(f"corridor {corridor.route!r} has zero length")
    for k in range(1, len(merged)):  # close float gaps between an edge end and a crossing start
        merged[k][0] = merged[k - 1][1]
    return SpeedProfile(
        starts_m=tuple(s[0] for s in merged),
        ends_m=tuple(s[1] for s in merged),
        speeds_mps=tuple(s[2] for s in merged),
    )


# ----------------------------------------------------------------------------------------------
# kinematics


class _Kinematics:
    """A profile with the EV's effective limits and braking envelope precomputed."""

    def __init__(self, profile: SpeedProfile, dyn: EvDynamics) -> None:
        self.starts = profile.starts_m
        self.ends = profile.ends_m
        self.a = dyn.accel_mps2
        self.b = dyn.decel_mps2
        self.limits = tuple(
            max(min(s * dyn.speed_factor, dyn.max_speed_mps), MIN_LIMIT_MPS) for s in profile.speeds_mps
        )
        n = len(self.limits)
        entry = [math.inf] * (n + 1)  # highest speed allowed at the start of segment k (n: the end)
        for k in range(n - 1, -1, -1):
            reach = math.sqrt(math.pow(entry[k + 1], 2.0) + 2 * self.b * (self.ends[k] - self.starts[k]))
            entry[k] = min(self.limits[k], reach)
        self.entry_cap = tuple(entry)
        self.top_speed = max(self.limits)
        # The saturated run: the fastest the EV can cross each segment, from the start. A run from
        # any state that enters segment k as fast as it does (the common case once the EV has
        # reached a limit) goes on exactly like it, so its times are looked up, not recomputed.
        self._ends_eps = tuple(e + _EPS_M for e in self.ends)
        sat: list[tuple[float, float, float, float]] = []
        cum = [0.0]
        u = math.inf
        for k in range(n):
            dist = self.ends[k] - self.starts[k]
            u, vc, p1, p2 = _segment(u, self.limits[k], self.entry_cap[k + 1], dist, self.a, self.b)
            sat.append((u, vc, p1, p2))
            cum.append(cum[-1] + _time_in(dist, u, vc, p1, p2, self.a, self.b))
            u = math.sqrt(max(math.pow(vc, 2.0) - 2 * self.b * (dist - p2), 0.0))
        self._sat = tuple(sat)
        self._sat_u = tuple(x[0] for x in sat)
        self._sat_t = tuple(cum)  # seconds from the start of segment 0 to the start of segment k

    def crossing_speed(self, x_m: float, wait_s: float) -> float:
        """How fast the EV crosses a stop line at ``x_m`` that it must wait ``wait_s`` for: it slows
        down to cross when it may, and stops for a wait as long as a stop and start cost at its
        speed there (braking to rest and accelerating back, against driving on): linearly from
        its free-flow speed for no wait to rest for that long a wait."""
        v = self.speed_cap_at(x_m)
        stop_cost_s = v / (2 * self.b) + v / (2 * self.a)
        return v * max(0.0, 1.0 - wait_s / stop_cost_s) if stop_cost_s > 0 else 0.0

    def speed_cap_at(self, x_m: float) -> float:
        """The highest speed the EV may have at ``x_m``: its limit there, and braking in time for
        slower segments ahead (what it crosses a stop line at in free flow)."""
        k = min(max(bisect.bisect_right(self.starts, x_m) - 1, 0), len(self.limits) - 1)
        reach = math.sqrt(math.pow(self.entry_cap[k + 1], 2.0) + 2 * self.b * max(self.ends[k] - x_m, 0.0))
        return min(self.limits[k], reach)

    def times(
        self,
        from_m: float,
        speed_mps: float,
        targets_m: Sequence[float],
        end_speed_mps: float | None = None,
        max_time_s: float = math.inf,
    ) -> list[float]:
        """Seconds from ``from_m`` to each target; with ``end_speed_mps``, reaching the last one at
        most that fast. With ``max_time_s``, stop at the first target reached later than that (the
        list is then shorter than the targets)."""
        if not targets_m:
            return []
        if not (math.isfinite(speed_mps) and speed_mps >= 0):
            raise ValueError(f"speed must be a finite number >= 0, not {speed_mps!r}")
        if not math.isfinite(from_m) or from_m < self.starts[0] - _EPS_M:
            raise ValueError(f"position {from_m} m is outside the profile [{self.starts[0]}, {self.ends[-1]}]")
        prev = from_m
        for x in targets_m:
            if x < prev - _EPS_M:
                if prev == from_m:
                    raise ValueError(f"target {x} m is behind the vehicle at {from_m} m")
                raise ValueError(f"targets must be sorted ascending: {list(targets_m)}")
            prev = x
        if targets_m[-1] > self.ends[-1] + _EPS_M:
            raise ValueError(f"target {targets_m[-1]} m is beyond the end of the profile at {self.ends[-1]} m")
        return self.times_unchecked(from_m, speed_mps, targets_m, end_speed_mps, max_time_s)

    def times_unchecked(
        self,
        from_m: float,
        speed_mps: float,
        targets_m: Sequence[float],
        end_speed_mps: float | None = None,
        max_time_s: float = math.inf,
    ) -> list[float]:
        """:meth:`times` for arguments known to be valid (the predictor's own, every tick)."""
        a, b = self.a, self.b
        terminal = targets_m[-1] if end_speed_mps is not None else math.inf
        end_v = max(end_speed_mps, 0.0) if end_speed_mps is not None else math.inf
        n_seg, n_tgt = len(self.limits), len(targets_m)
        k = min(max(bisect.bisect_right(self.starts, from_m) - 1, 0), n_seg - 1)
        x, u, t = from_m, speed_mps, 0.0
        out: list[float] = []
        i = 0
        while i < n_tgt and k < n_seg:
            if terminal <= self.ends[k]:
                x_end, w = terminal, end_v
            else:
                x_end, w = self.ends[k], self.entry_cap[k + 1]
                if end_speed_mps is not None:
                    w = min(w, math.sqrt(math.pow(end_v, 2.0) + 2 * b * (terminal - x_end)))
            dist = max(x_end - x, 0.0)
            u, vc, p1, p2 = _segment(u, self.limits[k], w, dist, a, b)
            if end_speed_mps is None and u == self._sat_u[k] and x == self.starts[k]:
                return self._saturated(k, t, targets_m, i, out, max_time_s)
            while i < n_tgt and targets_m[i] <= x_end + _EPS_M:
                out.append(t + _time_in(min(max(targets_m[i] - x, 0.0), dist), u, vc, p1, p2, a, b))
                i += 1
                if out[-1] > max_time_s:
                    return out
            t += _time_in(dist, u, vc, p1, p2, a, b)
            u = math.sqrt(max(math.pow(vc, 2.0) - 2 * b * (dist - p2), 0.0))
            x = x_end
            k += 1
        out.extend([t] * (n_tgt - i))  # targets within _EPS_M past the end
        return out

    def _saturated(
        self, k: int, t: float, targets_m: Sequence[float], i: int, out: list[float], max_time_s: float
    ) -> list[float]:
        """The rest of :meth:`times_unchecked` from the start of segment ``k``, reached after ``t``
        s at the saturated run's speed: the targets' times from the saturated run's table."""
        base = t - self._sat_t[k]
        n_seg = len(self.limits)
        a, b = self.a, self.b
        for x_t in targets_m[i:]:
            m = bisect.bisect_left(self._ends_eps, x_t, lo=k)
            if m >= n_seg:
                out.append(base + self._sat_t[n_seg])  # within _EPS_M past the end
                continue
            start = self.starts[m]
            u, vc, p1, p2 = self._sat[m]
            d = min(max(x_t - start, 0.0), self.ends[m] - start)
            out.append(base + self._sat_t[m] + _time_in(d, u, vc, p1, p2, a, b))
            if out[-1] > max_time_s:
                return out
        return out


# Squares are written math.pow(x, 2.0) in the kinematics: the same C pow() as x ** 2 (so the same
# results to the bit, which x * x is not), called directly by the compiled core, where x ** 2 goes
# through Python's generic power on boxed numbers.


def _segment(u: float, limit: float, w: float, dist: float, a: float, b: float) -> tuple[float, float, float, float]:
    """Crossing ``dist`` m under ``limit`` to leave at most at ``w``, entering at most at ``u``: the
    entry speed (within the limit and the braking envelope), the top speed ``vc``, and where the
    acceleration ends (``p1``) and the braking starts (``p2``)."""
    u = min(min(u, limit), math.sqrt(math.pow(w, 2.0) + 2 * b * dist))  # (two-argument min: native when compiled)
    w_eff = min(w, limit)
    # phases: accelerate over [0, p1] to vc, cruise at vc over [p1, p2], brake over [p2, dist]
    s_acc = (math.pow(limit, 2.0) - math.pow(u, 2.0)) / (2 * a)
    s_brk = (math.pow(limit, 2.0) - math.pow(w_eff, 2.0)) / (2 * b)
    if s_acc + s_brk <= dist:
        return u, limit, s_acc, dist - s_brk
    meet = (math.pow(w, 2.0) - math.pow(u, 2.0) + 2 * b * dist) / (2 * (a + b)) if w < math.inf else math.inf
    if meet >= dist:
        return u, math.sqrt(math.pow(u, 2.0) + 2 * a * dist), dist, dist
    p = max(meet, 0.0)
    return u, math.sqrt(math.pow(u, 2.0) + 2 * a * p), p, p


def _time_in(d: float, u: float, vc: float, p1: float, p2: float, a: float, b: float) -> float:
    """Seconds to cover ``d`` m of a segment: accelerate from ``u`` over [0, p1] to ``vc``, cruise to p2, brake."""
    if d <= p1:
        return (math.sqrt(u * u + 2 * a * d) - u) / a
    t = (vc - u) / a
    if d <= p2:
        return t + (d - p1) / vc
    return t + (p2 - p1) / vc + (vc - math.sqrt(max(vc * vc - 2 * b * (d - p2), 0.0))) / b


@functools.lru_cache(maxsize=64)
def _kinematics(profile: SpeedProfile, dyn: EvDynamics) -> _Kinematics:
    return _Kinematics(profile, dyn)


def arrival_times_s(
    profile: SpeedProfile,
    dyn: EvDynamics,
    from_m: float,
    speed_mps: float,
    targets_m: Sequence[float],
) -> list[float]:
    """Free-flow seconds from ``from_m`` at ``speed_mps`` to each of ``targets_m`` (sorted ascending).

    Raises ValueError for a target behind ``from_m``, beyond the profile, or out of order.
    """
    return _kinematics(profile, dyn).times(from_m, speed_mps, targets_m)


def travel_time_s(profile: SpeedProfile, dyn: EvDynamics, from_m: float, speed_mps: float, to_m: float) -> float:
    """Free-flow seconds from ``from_m`` at ``speed_mps`` to ``to_m``."""
    return arrival_times_s(profile, dyn, from_m, speed_mps, (to_m,))[0]


# ----------------------------------------------------------------------------------------------
# prediction


@dataclass(frozen=True)
class EtaConfig:
    correction_window_s: float = 30.0  # online correction from recent progress
    min_factor: float = 1.0
    max_factor: float = 4.0
    band_base_s: float = 1.0  # band half-width = base + max(per_s, spread_z × learned spread) × horizon
    band_per_s: float = 0.08
    saturation_headway_s: float = 2.0  # queue discharge: count × headway + lost time
    startup_lost_s: float = 2.0
    # Where an EV first in line waits at a red: SUMO stops a vehicle about this far before the
    # stop line; it crosses once it has driven that from rest after the green (no start-up lost
    # time of its own: that is the queue's ahead of it)
    stop_gap_m: float = 1.0
    smoothing_s: float = 10.0  # time constant of the factor's exponential smoothing
    band_spread_z: float = 1.5  # multiple of the RMS relative error of past predictions
    min_moving_s: float = 3.0  # less moving time than this in the window: the factor is not updated
    # Count the time the EV stood still in the window too (a jam lasts, a red does not). Measured
    # on Bologna it made ETAs no better, so it is off by default.
    include_stops: bool = False
    # Learn the signed error per second of horizon from the stop lines already crossed, and take
    # it out of later predictions (in congestion far ETAs run early, near ones less so). With
    # the trip's factor beyond ``recent_horizon_s`` (then 20 s) it made ETAs worse (replayed on the
    # bench's recorded trajectories, pooled p90 at 60 s ahead 11.4 s without, 16.2 s with), so it
    # is off.
    bias_correction: bool = False
    bias_min_samples: int = 20
    bias_max_per_s: float = 0.5
    # The recent factor applies to the next this many seconds of kinematic time, the whole
    # trip's beyond (None: the recent factor throughout). Replayed on the bench's recorded EV
    # trajectories (60 greenwave runs), with the bias correction off, the pooled p90 of the
    # error 60 s ahead went from 16.6 s to 11.4 s and at entry from 15.2 s to 11.8 s. 5 s rather
    # than 20 s: the recent factor stays high for a while after the EV crawled through a queue it
    # has left behind (its window still holds the crawl), and the bench (10 seeds, 6 scenarios)
    # gave a pooled p90 60 s ahead of 6.8 s instead of 7.6 s, at entry 7.7 s instead of 8.4 s;
    # 0 s (with ``trip_factor_min_s`` 10 s) gave 6.6 s and 7.3 s but put the moderate
    # arterial's EV 7.1 s over the oracle (4.6 s).
    recent_horizon_s: float | None = 5.0
    trip_factor_min_s: float = 20.0  # kinematic seconds observed before the trip's factor is used


@dataclass(frozen=True)
class QueueAhead:
    """Vehicles that must discharge before the EV can pass junction ``junction_index``."""

    junction_index: int
    vehicles: int  # on the EV's approach lanes ahead of it (max over lanes)
    # how long, from now, the EV's movement stays red (0 if green now and kept green): until the
    # green is in force, i.e. a step before it is first read (the vehicles move under a state
    # in the step after it is set, and it is read at that step's end)
    red_for_s: float


class Eta:
    """A predicted arrival at one junction (immutable by convention: made several times per EV
    and tick, so a plain class with slots, which the compiled core builds natively)."""

    __slots__ = ("eta_s", "free_flow_s", "high_s", "junction_index", "low_s")

    def __init__(self, junction_index: int, eta_s: float, low_s: float, high_s: float, free_flow_s: float) -> None:
        self.junction_index = junction_index
        self.eta_s = eta_s  # absolute time
        self.low_s = low_s
        self.high_s = high_s
        self.free_flow_s = free_flow_s  # the kinematic part alone (absolute), for diagnostics

    def _fields(self) -> tuple[int, float, float, float, float]:
        return (self.junction_index, self.eta_s, self.low_s, self.high_s, self.free_flow_s)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Eta) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (f"Eta(junction_index={self.junction_index}, eta_s={self.eta_s!r}, low_s={self.low_s!r}, "
                f"high_s={self.high_s!r}, free_flow_s={self.free_flow_s!r})")


class EtaPredictor:
    """ETAs of one EV on one corridor; feed :meth:`observe` every tick, ask :meth:`predict`."""

    def __init__(
        self,
        corridor: Corridor,
        profile: SpeedProfile,
        dyn: EvDynamics,
        config: EtaConfig | None = None,
    ) -> None:
        self._corridor = corridor
        self._distances = [j.distance_m for j in corridor.junctions]  # ascending along the route
        self._indices = [j.index for j in corridor.junctions]
        self._kin = _kinematics(profile, dyn)
        self._config = config if config is not None else EtaConfig()
        if self._config.min_factor > self._config.max_factor:
            raise ValueError("EtaConfig.min_factor must not exceed max_factor")
        self._samples: deque[tuple[float, float, float]] = deque()  # (t, position, speed)
        self._stopped_pairs = 0  # consecutive samples in the window both below STOP_SPEED_MPS
        self._factor = min(max(1.0, self._config.min_factor), self._config.max_factor)
        # the trip's runs of movement so far: moving time and kinematic time of those ended,
        # and the first sample of the current one
        self._trip_moving_s = 0.0
        self._trip_kinematic_s = 0.0
        self._run_start: tuple[float, float, float] | None = None
        self._trip_cache: float | None = None
        self._predictions: dict[int, deque[tuple[float, float]]] = {}  # junction -> (t made, eta)
        self._rel_errors: deque[float] = deque(maxlen=_ERRORS_KEPT)
        self._mean_cache: float | None = None  # of _rel_errors, until it changes
        self._rms_cache: float | None = None

    @property
    def factor(self) -> float:
        """The current online correction: actual / free-flow time of recent movement."""
        return self._factor

    @property
    def trip_factor(self) -> float:
        """Moving time / kinematic time over the whole trip so far (the recent factor until
        ``trip_factor_min_s`` of kinematic time has been observed)."""
        if self._trip_cache is None:
            cfg = self._config
            moving, kinematic = self._trip_moving_s, self._trip_kinematic_s
            if self._run_start is not None and self._samples:
                m, k = self._run_times(self._run_start, self._samples[-1])
                moving, kinematic = moving + m, kinematic + k
            self._trip_cache = (
                self._factor if kinematic < cfg.trip_factor_min_s
                else min(max(moving / kinematic, cfg.min_factor), cfg.max_factor)
            )
        return self._trip_cache

    def _run_times(self, a: tuple[float, float, float], b: tuple[float, float, float]) -> tuple[float, float]:
        """Moving time and kinematic time of a run of movement from sample ``a`` to ``b`` (one
        that ends in a stop is compared with a kinematic run that also ends in a stop)."""
        (t_a, x_a, v_a), (t_b, x_b, v_b) = a, b
        if x_b <= x_a:
            return 0.0, 0.0
        end_cap = v_b if v_b < STOP_SPEED_MPS else None
        x_b = min(x_b, self._kin.ends[-1])
        x_a = min(x_a, x_b)
        return t_b - t_a, self._kin.times_unchecked(x_a, v_a, (x_b,), end_cap)[0]

    @property
    def bias_per_s(self) -> float:
        """Mean signed (predicted − actual) / horizon of the predictions scored so far, clipped;
        0 until enough are scored or when the correction is off."""
        cfg = self._config
        if not cfg.bias_correction or len(self._rel_errors) < cfg.bias_min_samples:
            return 0.0
        if self._mean_cache is None:
            self._mean_cache = sum(self._rel_errors) / len(self._rel_errors)
        return min(max(self._mean_cache, -cfg.bias_max_per_s), cfg.bias_max_per_s)

    @property
    def spread_per_s(self) -> float:
        """RMS of (predicted − actual) / horizon of the predictions scored so far (0 before any)."""
        if not self._rel_errors:
            return 0.0
        if self._rms_cache is None:
            self._rms_cache = math.sqrt(sum(r * r for r in self._rel_errors) / len(self._rel_errors))
        return self._rms_cache

    def observe(self, t_s: float, position_m: float, speed_mps: float) -> None:
        """The EV's position along the corridor and speed at ``t_s``.

        Ignored when not after the last observation or not finite.
        """
        inf = math.inf
        if not (-inf < t_s < inf and -inf < position_m < inf and -inf < speed_mps < inf):  # finite (not NaN)
            return
        if self._samples and t_s <= self._samples[-1][0]:
            return
        position_m = max(position_m, self._kin.starts[0])
        samples = self._samples
        prev = samples[-1] if samples else None
        speed_mps = max(speed_mps, 0.0)
        if prev is not None and prev[2] < STOP_SPEED_MPS and speed_mps < STOP_SPEED_MPS:
            self._stopped_pairs += 1
        samples.append((t_s, position_m, speed_mps))
        horizon = t_s - self._config.correction_window_s - 1e-9
        while samples[0][0] < horizon:
            gone = samples.popleft()
            if gone[2] < STOP_SPEED_MPS and samples[0][2] < STOP_SPEED_MPS:
                self._stopped_pairs -= 1
        if prev is not None:
            cur = samples[-1]
            self._score_crossings(prev, cur)
            if prev[2] < STOP_SPEED_MPS and cur[2] < STOP_SPEED_MPS:  # stopped: a run ends
                if self._run_start is not None:
                    m, k = self._run_times(self._run_start, prev)
                    self._trip_moving_s += m
                    self._trip_kinematic_s += k
                self._run_start = None
            elif self._run_start is None:
                self._run_start = prev
            self._trip_cache = None
            self._update_factor(t_s - prev[0])

    def predict(
        self,
        t_s: float,
        queues: Sequence[QueueAhead] = (),
        *,
        max_ahead_s: float | None = None,
        at_least: int = -1,
        learn: bool = True,
    ) -> list[Eta]:
        """ETAs at every junction still ahead (position < stop line), in corridor order; with
        ``max_ahead_s``, only up to the last one predicted within that many seconds (and at least
        up to junction index ``at_least``): what a tick needs, at a cost that does not grow with
        the length of the route. ``learn=False``: a look only, not kept to learn the error from.

        Made from the last observed state (the route start at rest, at ``t_s``, before any).
        """
        cfg = self._config
        t0, x0, v0 = self._samples[-1] if self._samples else (t_s, self._kin.starts[0], 0.0)
        distances = self._distances
        first = bisect.bisect_right(distances, x0)  # the junctions ahead: position < stop line
        must = bisect.bisect_right(self._indices, at_least, lo=first) - first  # engaged, predicted however far
        last = len(distances)
        max_kin_s = math.inf
        recent = self._factor
        trip = self.trip_factor if cfg.recent_horizon_s is not None else recent
        bias = self.bias_per_s
        if max_ahead_s is not None:
            # a prediction's horizon is at least factor × kinematic time × (1 - bias): beyond
            # this kinematic time every one is over max_ahead_s, so the forward pass may stop
            # there, and no junction further than the EV gets in it at its top speed is needed
            shrink = min(recent, trip) * (1.0 - max(bias, 0.0))
            max_kin_s = (max_ahead_s + (t_s - t0)) / shrink + 1.0 if shrink > 0 else math.inf
            reach = x0 + self._kin.top_speed * max_kin_s
            last = max(bisect.bisect_right(distances, reach, lo=first), first + must, min(first + 1, last))
        if first >= last:
            return []
        kin = self._kin.times_unchecked(x0, v0, distances[first:last], max_time_s=max_kin_s)
        if len(kin) < must:
            kin = self._kin.times_unchecked(x0, v0, distances[first:first + must])
        ahead = self._corridor.junctions[first:first + len(kin)]
        bound: dict[int, float] = {}
        for q in queues:
            if q.vehicles > 0:
                lost = cfg.startup_lost_s if q.red_for_s > 0 else 0.0
                earliest = t_s + max(q.red_for_s, 0.0) + lost + q.vehicles * cfg.saturation_headway_s
            elif q.red_for_s > 0 and 0 <= q.junction_index < len(distances):
                # first in line: from where it waits (or nearer, where it is nearer now), from rest
                line = distances[q.junction_index]
                gap = min(max(line - x0, 0.0), cfg.stop_gap_m)
                pull = self._kin.times_unchecked(line - gap, 0.0, [line])[0] if gap > 0 else 0.0
                earliest = t_s + q.red_for_s + pull
            else:
                continue
            bound[q.junction_index] = max(earliest, bound.get(q.junction_index, -math.inf))
        per_s = max(cfg.band_per_s, cfg.band_spread_z * self.spread_per_s)
        horizon = cfg.recent_horizon_s if cfg.recent_horizon_s is not None else math.inf
        shift = 0.0
        out: list[Eta] = []
        predictions = self._predictions
        drive = kin  # kinematic times as driven: slower on beyond a stop line the EV waits at
        for m, j in enumerate(ahead):
            free = t0 + kin[m]
            k = drive[m]
            eta = t0 + (recent * k if k <= horizon else recent * horizon + trip * (k - horizon)) + shift
            floor_s = bound.get(j.index)
            if floor_s is not None and floor_s > eta:
                wait = floor_s - eta
                shift += wait
                eta = floor_s
                if m + 1 < len(kin):
                    beyond = distances[first + m + 1:first + len(kin)]
                    x = distances[first + m]
                    rest = self._kin.times_unchecked(x, self._kin.crossing_speed(x, wait), beyond)
                    drive = [*drive[:m + 1], *(k + r for r in rest)]
            raw = eta  # the model's own prediction: what the bias and spread are learned from
            if bias:
                eta = max(eta - bias * max(eta - t_s, _SPREAD_MIN_HORIZON_S), t_s)
            if max_ahead_s is not None and j.index > at_least and eta - t_s > max_ahead_s:
                break
            half = cfg.band_base_s + per_s * max(eta - t_s, 0.0)
            low = max(eta - half, min(free, eta) - cfg.band_base_s)
            out.append(Eta(j.index, eta, low, eta + half, free))
            if not learn:
                continue
            made = predictions.get(j.index)
            if made is None:
                made = predictions[j.index] = deque(maxlen=_PREDICTIONS_KEPT)
            if made and made[-1][0] == t_s:  # asked again in the same tick: keep the latest
                made[-1] = (t_s, raw)
            else:
                made.append((t_s, raw))
        return out

    def _update_factor(self, dt_s: float) -> None:
        """Smooth toward the moving-time / kinematic-time ratio of the runs of movement in the window."""
        cfg = self._config
        samples = self._samples
        if cfg.include_stops:
            self._update_factor_with_stops(dt_s)
            return
        moving_s = 0.0
        kinematic_s = 0.0
        start = 0
        n = len(samples)
        if not self._stopped_pairs:  # one run of movement over the whole window (the common case)
            if n > 1:
                moving_s, kinematic_s = self._run_times(samples[0], samples[-1])
            n = 0  # (skip the general case below)
        for k in range(1, n + 1):
            run_ends = k == n or (samples[k - 1][2] < STOP_SPEED_MPS and samples[k][2] < STOP_SPEED_MPS)
            if not run_ends:
                continue
            end = k - 1
            if end > start:
                m, kin = self._run_times(samples[start], samples[end])
                moving_s += m
                kinematic_s += kin
            start = k
        if moving_s < cfg.min_moving_s or kinematic_s <= 0:
            return
        raw = min(max(moving_s / kinematic_s, cfg.min_factor), cfg.max_factor)
        weight = min(1.0, dt_s / cfg.smoothing_s) * min(1.0, moving_s / (0.5 * cfg.correction_window_s))
        self._factor += weight * (raw - self._factor)

    def _update_factor_with_stops(self, dt_s: float) -> None:
        """Smooth toward elapsed / kinematic time over the whole window, stops included."""
        cfg = self._config
        t_a, x_a, v_a = self._samples[0]
        t_b, x_b, v_b = self._samples[-1]
        span_s = t_b - t_a
        if span_s < cfg.min_moving_s:
            return
        x_b = min(x_b, self._kin.ends[-1])
        x_a = min(x_a, x_b)
        if x_b - x_a < 1.0:
            raw = cfg.max_factor
        else:
            end_cap = v_b if v_b < STOP_SPEED_MPS else None
            kinematic_s = self._kin.times(x_a, v_a, (x_b,), end_cap)[0]
            raw = cfg.max_factor if kinematic_s <= 0 else span_s / kinematic_s
        raw = min(max(raw, cfg.min_factor), cfg.max_factor)
        weight = min(1.0, dt_s / cfg.smoothing_s) * min(1.0, span_s / (0.5 * cfg.correction_window_s))
        self._factor += weight * (raw - self._factor)

    def _score_crossings(self, prev: tuple[float, float, float], cur: tuple[float, float, float]) -> None:
        (t_a, x_a, _), (t_b, x_b, _) = prev, cur
        if x_b <= x_a:
            return
        distances = self._distances
        junctions = self._corridor.junctions
        for k in range(bisect.bisect_right(distances, x_a), bisect.bisect_right(distances, x_b)):
            j = junctions[k]
            made = self._predictions.pop(j.index, None)
            if not made:
                continue
            actual = t_a + (j.distance_m - x_a) / (x_b - x_a) * (t_b - t_a)
            for t_made, eta in made:
                horizon = actual - t_made
                if 0 < horizon <= _SPREAD_MAX_HORIZON_S:
                    self._rel_errors.append((eta - actual) / max(horizon, _SPREAD_MIN_HORIZON_S))
                    self._mean_cache = self._rms_cache = None


# ----------------------------------------------------------------------------------------------
# evaluation


class EtaRecord(NamedTuple):  # a tuple: made several times per EV and tick, cheaply
    ev_id: str
    junction_index: int
    t_s: float  # when the prediction was made
    eta_s: float
    low_s: float
    high_s: float
    tag: str = ""  # e.g. "entry": the prediction used at the start of a junction's preemption


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def _abs_stats(errors: Sequence[float]) -> dict[str, object]:
    if not errors:
        return {"n": 0, "abs_error_p50": None, "abs_error_p90": None}
    a = sorted(abs(e) for e in errors)
    return {"n": len(a), "abs_error_p50": _round(_percentile(a, 0.5)), "abs_error_p90": _round(_percentile(a, 0.9))}


def _horizon_key(h: float) -> str:
    return f"{h:g}"


class EtaLog:
    """Every prediction made, and their errors against the actual arrivals."""

    OVERALL_MAX_HORIZON_S = 120.0
    MATCH_TOLERANCE_S = 1.0

    def __init__(self) -> None:
        # one entry per EV and tick, as predicted (a tick's cost stays per EV, not per ETA)
        self._batches: list[tuple[str, float, Sequence[Eta], Mapping[int, str] | None]] = []
        # the arrivals of retired corridors (:meth:`retire`): (label, junction index) -> time
        self._retired_actual: dict[tuple[str, int], float] = {}

    @property
    def records(self) -> tuple[EtaRecord, ...]:
        return tuple(
            EtaRecord(ev_id, e.junction_index, t_s, e.eta_s, e.low_s, e.high_s,
                      tags.get(e.junction_index, "") if tags else "")
            for ev_id, t_s, etas, tags in self._batches
            for e in etas
        )

    def retire(self, ev_id: str, label: str, crossed_s: Mapping[int, float] | None = None) -> None:
        """Relabel an EV's records (its corridor changed: their junction indices refer to the
        old one and must not be matched with arrivals on the new one). ``crossed_s``: the old
        corridor's junctions the EV had crossed, and when: their records are scored against
        these (they were dropped from every figure)."""
        self._batches = [(label if e == ev_id else e, t, etas, tags) for e, t, etas, tags in self._batches]
        for j, t_s in (crossed_s or {}).items():
            self._retired_actual[(label, j)] = t_s

    def record(self, ev_id: str, t_s: float, etas: Sequence[Eta], tag_for: Mapping[int, str] | None = None) -> None:
        """Keep ``etas`` (not copied: the caller hands them over) as predicted at ``t_s``."""
        if etas:
            self._batches.append((ev_id, t_s, etas, tag_for or None))

    def evaluate(
        self,
        actual_s: Mapping[tuple[str, int], float],
        horizons_s: Sequence[float] = (10, 30, 60),
    ) -> dict[str, object]:
        """JSON-ready errors (predicted − actual) overall, per horizon and at entry; None where n == 0.

        Overall: every prediction made 0 < actual − t ≤ 120 s ahead. Horizon h: per (ev,
        junction) the prediction whose actual − t is closest to h, within ±1 s. Entry: the
        records tagged "entry".
        """
        if self._retired_actual:
            actual_s = {**self._retired_actual, **actual_s}
        scored: list[tuple[EtaRecord, float, float]] = []  # record, actual, horizon
        for r in self.records:
            actual = actual_s.get((r.ev_id, r.junction_index))
            if actual is not None:
                scored.append((r, actual, actual - r.t_s))

        overall = [(r, a) for r, a, h in scored if 0 < h <= self.OVERALL_MAX_HORIZON_S]
        errors = [r.eta_s - a for r, a in overall]
        result: dict[str, object] = dict(_abs_stats(errors))
        result["bias_s"] = _round(sum(errors) / len(errors)) if errors else None
        covered = sum(1 for r, a in overall if r.low_s <= a <= r.high_s)
        result["band_coverage"] = _round(covered / len(overall)) if overall else None

        groups: dict[tuple[str, int], list[tuple[EtaRecord, float, float]]] = {}
        for item in scored:
            groups.setdefault((item[0].ev_id, item[0].junction_index), []).append(item)
        def at_horizon(items: list[tuple[EtaRecord, float, float]], h: float) -> float | None:
            """The error of the prediction made closest to ``h`` s before the arrival (±1 s)."""
            r, a, hz = min(items, key=lambda item: (abs(item[2] - h), item[0].t_s))
            return r.eta_s - a if abs(hz - h) <= self.MATCH_TOLERANCE_S + 1e-9 else None

        by_horizon: dict[str, object] = {}
        error_lists: dict[str, list[float | None]] = {}
        for h in horizons_s:
            errs = [e for key in sorted(groups) if (e := at_horizon(groups[key], h)) is not None]
            by_horizon[_horizon_key(h)] = _abs_stats(errs)
            error_lists[_horizon_key(h)] = [_round(e) for e in errs]
        result["by_horizon"] = by_horizon
        by_junction: dict[str, object] = {}
        for ev_id, j in sorted(groups):
            items = groups[(ev_id, j)]
            errs = [r.eta_s - a for r, a, hz in items if 0 < hz <= self.OVERALL_MAX_HORIZON_S]
            entry_errs = [r.eta_s - a for r, a, _ in items if r.tag == "entry"]
            by_junction[f"{ev_id}#{j}"] = {
                **_abs_stats(errs),
                "entry_error_s": _round(entry_errs[-1]) if entry_errs else None,
                **{f"error_{_horizon_key(h)}_s": _round(at_horizon(items, h)) for h in horizons_s},
            }
        result["by_junction"] = by_junction
        entry = [r.eta_s - a for r, a, _ in scored if r.tag == "entry"]
        result["at_entry"] = _abs_stats(entry)
        error_lists["entry"] = [_round(e) for e in entry]
        result["errors"] = error_lists
        return result
