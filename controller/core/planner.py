"""Preemption planning: one state machine per traffic light, in NTCIP 1202 terms.

    idle → armed → entry → dwell → exit → idle

- **armed**: an emergency vehicle (EV) is approaching; nothing switched yet.
- **entry**: the running phase ends safely (minimum green, yellow, red clearance from the
  program, see :mod:`controller.core.transitions`) and the EV's approach turns green. It starts
  as late as possible: when the time needed to show the target is about to exceed the time left
  before the approach must be green (``need_green_by_s``: the EV's arrival less the time its
  queue needs to discharge and a margin; while armed, the median of the last few ticks' needs,
  since a far need jumps from tick to tick). If the approach is already green, it is held; so is
  the EV's movement green in another phase than the target's, on the program's last step of
  that green. On the program's last step before a green that must run its minimum, the entry
  starts at once where waiting through that green would be too late.
- **dwell**: the approach is green for as long as the EV's request lasts: the controller asks
  until the EV has crossed the stop line, or, where its movement is permissive and a hand-back
  would at once green what it yields to (:meth:`Planner.handback_strands`), until it has left
  the junction (or until the maximum presence time has passed).
- **exit**: hand-back: the signal goes, again through safe transitions, back to its program. A
  static (fixed-time) program is re-entered in step with its own schedule (learned from the
  phase changes seen before the first takeover), at the phase the schedule shows by then and for
  what the schedule leaves of it, so that the signal is coordinated with its neighbours again at
  once (where that phase greens only what the preemption kept green, at the next one, early, if it
  still ends on its schedule: what was held red is served first); otherwise (actuated programs,
  a schedule not yet seen, ``handback_sync=False``) at the phase that serves what was skipped,
  and the program resumes there.

Requests are data (:class:`ServiceRequest`), computed by the controller from ETAs; several EVs
are arbitrated per signal by priority class then ETA, and compatible movements (subsets of the
same program phase) are served together. Pure: time is an argument, commands are returned.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from controller.core.network import Program
from controller.core.snapshot import SignalCommand, SignalState
from controller.core.states import KEPT_AS_SHOWN, is_green, is_yellow
from controller.core.transitions import (
    DisplayClock,
    SignalTiming,
    may_extend_all_red,
    next_state,
    time_to_show_s,
    trapping,
)

Stage = Literal["idle", "armed", "entry", "dwell", "exit"]


@dataclass(frozen=True)
class PlannerConfig:
    step_s: float = 1.0
    arm_horizon_s: float = 150.0  # arm when the EV's ETA is this close
    # Then the signal is handed back (but see max_presence_grace_s). 150 s, not 120: entries start
    # up to max_lead_s (100 s) before the ETA, and in heavy traffic the EV can arrive 30-50 s later
    # than predicted that far ahead; handed back first, the signal stops it at the line for a
    # cycle (heavy arterial, seeds 1-30: 8 such hand-backs at 120 s, none at 150 s, EV mean
    # 350.3 -> 346.3 s, other traffic's time loss +0.1 %).
    max_presence_s: float = 150.0
    # At the maximum presence time an EV the signal serves that is predicted to cross within
    # this many seconds is still waited for, at most this long: a hand-back as it reaches the
    # stop line would stop it there after the whole preemption (heavy arterial, seed 8: J9
    # handed back at 926 s with the EV 31 m away; it stood 39 s). The presence limit below
    # still bounds the hand-back. 0: hand back at max_presence_s whatever happens.
    max_presence_grace_s: float = 10.0
    # The signal is back in its program by entry + presence_limit_s (the safety monitor's S5
    # limit): the exit starts earlier than max_presence_s where the hand-back (the EV's green to
    # its minimum, yellow, red clearance, the re-entry phase held to its minimum) would not fit
    # after it, and a switch to another target (a higher-priority EV) that would leave no room
    # for its hand-back is not made: the signal is handed back and the new request served afresh.
    presence_limit_s: float = 180.0
    # The re-service lockout: after a max-presence hand-back the signal runs its program this
    # long whatever is asked of it (any EV).
    lockout_s: float = 30.0
    # An entry less than this after a hand-back (the program has run less) continues the episode
    # before it as the safety monitor counts it (its S5 ``reservice_gap_s``, the same 20 s): its
    # hand-back must fit within ``presence_limit_s`` of that episode's entry. A return to the
    # program for a second must not restart the limit (a stream of EVs, or one that lost the
    # signal to another, held a grid signal out of its program 313 s with one-second returns).
    reservice_gap_s: float = 20.0
    presence_reserve_s: float = 20.0  # entry never so early that the EV would cross later than
    # max_presence_s − presence_reserve_s after it
    max_lead_s: float = 100.0  # an entry starts at most this long before the EV's ETA
    # An EV's next crossing of the same signal is served with the one before (the junctions of one
    # signal in a row) where it is predicted there within this of it; a later pass (a route
    # looping back through the signal) gets its own entry: chained, its ETA held back the first's.
    chain_within_s: float = 30.0
    slack_s: float = 1.0  # start entry this much before the last safe moment (re-planning granularity)
    # On the last step before the program shows a green that must run its minimum (the cross
    # street's), an entry starts at once, skipping that green, only where waiting for it would
    # show the EV's approach green more than this after its need (the controller's margin: the
    # EV would then meet the queue ahead of it still discharging). A green a second or two late
    # costs the EV nothing; one 10 s early costs the cross street its turn.
    late_entry_tolerance_s: float = 3.0
    # An armed signal plans with the median of each request's need over its last
    # ``need_median_ticks`` ticks (1: the latest need; None: the ticks of ``need_median_s``, 5 at
    # 1 s steps, 50 at 0.1 s). A need far ahead moves by tens of seconds from tick to tick (a
    # progression term switching on and off, moving vehicles counted in and out of a queue);
    # without it an entry starts on the first tick whose need happens to be early, and a cross
    # street loses its green for nothing.
    need_median_ticks: int | None = None
    need_median_s: float = 5.0

    @property
    def median_ticks(self) -> int:
        """The ticks an armed signal's median need spans."""
        if self.need_median_ticks is not None:
            return self.need_median_ticks
        return max(1, round(self.need_median_s / self.step_s))
    min_green_floor_s: float = 5.0
    # All-red extension: the greens a switch turns on wait, after the program's red clearance,
    # for the vehicles of the links that turned red to leave the crossing where their paths
    # cross (SUMO's internal foes), for at most this long (0: never). In Bologna the first
    # vehicles of the EV's approach, let go by an entry from the cross street's yellow, ran
    # into a left turner that had waited inside junction b4 and was still crossing when the
    # program's 3 s of red had run.
    red_extension_s: float = 4.0
    # Several EVs at one signal: one of a lower class (or a later ETA) whose junctions here are
    # all predicted crossed this long, plus the longest switch-over and the all-red extension,
    # before every EV ranked above it needs its green is served first; once served, it keeps
    # going while it fits with the extension alone (needs move from tick to tick). None: class,
    # then ETA, always. In the NDS city a police car stood 75 s at the stop line of a signal
    # held for an ambulance whose green was due 70 s later.
    serve_first_s: float | None = 10.0
    # Several EVs at one signal: the EV the signal serves keeps going first against one ranked
    # above it (or of its class with an earlier ETA) by this much (two ambulances 0.3 s apart,
    # their ETAs swapping, flipped a crossing's signal through yellow and red before either came;
    # it was the all-red extension's setting, so that turning that off turned this off too).
    keep_first_s: float = 4.0
    # Hand a static (fixed-time) program back in step with its own schedule, so the signal is
    # coordinated with its neighbours again at once instead of running shifted by the preemption
    # for the rest of the day: re-enter at the phase the schedule shows when the hand-back can
    # show it (or the next one with greens), for what the schedule leaves of it; a phase with
    # less than ``sync_min_share`` of its duration (or its minimum green) left is passed over.
    # False: re-enter at the phase serving the skipped cross street, for its full duration.
    handback_sync: bool = True
    sync_min_share: float = 0.5
    # an in-step re-entry phase that greens only what the preemption kept green is passed over
    # for the next one, entered early, where that one still ends on its schedule
    reentry_starved: bool = True


class ServiceRequest:
    """One EV asking one signal to serve its approach (immutable by convention: made several
    times per EV and tick, so a plain class with slots, which the compiled core builds natively)."""

    __slots__ = ("eta_s", "ev_id", "junction_index", "links", "need_green_by_s", "phase", "priority", "start_now",
                 "target", "tls_id")

    def __init__(
        self,
        ev_id: str,
        priority: int,  # 1 fire/ambulance, 2 police, 3 transit
        tls_id: str,
        junction_index: int,  # in the EV's corridor
        target: str,  # state serving the approach: a program phase's greens or a subset of them
        phase: int,  # the program phase the target comes from
        eta_s: float,
        need_green_by_s: float,  # when the approach must show green
        start_now: bool = False,  # local (detector) preemption: switch as soon as detected
        links: tuple[int, ...] = (),  # the EV's own link indices at the junction (); the target's greens
    ) -> None:
        self.ev_id = ev_id
        self.priority = priority
        self.tls_id = tls_id
        self.junction_index = junction_index
        self.target = target
        self.phase = phase
        self.eta_s = eta_s
        self.need_green_by_s = need_green_by_s
        self.start_now = start_now
        self.links = links

    @property
    def key(self) -> tuple[str, int]:
        return (self.ev_id, self.junction_index)

    def _fields(self) -> tuple[str, int, str, int, str, int, float, float, bool, tuple[int, ...]]:
        return (self.ev_id, self.priority, self.tls_id, self.junction_index, self.target, self.phase, self.eta_s,
                self.need_green_by_s, self.start_now, self.links)

    def with_need(self, need_green_by_s: float) -> ServiceRequest:
        return ServiceRequest(self.ev_id, self.priority, self.tls_id, self.junction_index, self.target, self.phase,
                              self.eta_s, need_green_by_s, self.start_now, self.links)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ServiceRequest) and self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (f"ServiceRequest(ev_id={self.ev_id!r}, priority={self.priority}, tls_id={self.tls_id!r}, "
                f"junction_index={self.junction_index}, target={self.target!r}, phase={self.phase}, "
                f"eta_s={self.eta_s!r}, need_green_by_s={self.need_green_by_s!r}, start_now={self.start_now}, "
                f"links={self.links!r})")


@dataclass
class PreemptionRecord:
    tls_id: str
    ev_id: str
    junction_index: int
    armed_s: float
    eta_at_entry_s: float | None = None
    entry_s: float | None = None
    dwell_s: float | None = None
    exit_s: float | None = None
    restored_s: float | None = None
    in_step_s: float | None = None  # the program back in step with its schedule (synced hand-back)
    # how much later than its schedule a fixed-time program goes on after the hand-back (None
    # where its schedule is not known or it has none: actuated programs)
    schedule_offset_s: float | None = None
    exit_reason: str = ""

    def as_dict(self) -> dict[str, object]:
        return {
            "tls": self.tls_id,
            "ev": self.ev_id,
            "junction_index": self.junction_index,
            "armed": self.armed_s,
            "entry": self.entry_s,
            "eta_at_entry": None if self.eta_at_entry_s is None else round(self.eta_at_entry_s, 2),
            "dwell": self.dwell_s,
            "exit": self.exit_s,
            "restored": self.restored_s,
            "in_step": None if self.in_step_s is None else round(self.in_step_s, 2),
            "schedule_offset_s": self.schedule_offset_s,
            "preempted_s": None if self.entry_s is None or self.restored_s is None
            else round(self.restored_s - self.entry_s, 2),
            "recovery_s": None if self.exit_s is None or self.restored_s is None
            else round(self.restored_s - self.exit_s, 2),
            "exit_reason": self.exit_reason,
        }


@dataclass
class JunctionControl:
    """The state machine of one traffic light."""

    timing: SignalTiming
    clock: DisplayClock
    stage: Stage = "idle"
    target: str = ""
    serving: tuple[tuple[str, int], ...] = ()
    phase: int = -1
    entry_s: float | None = None
    dwell_from_s: float | None = None  # when the signal last reached its target (entered dwell)
    holding: bool = False  # we have switched it to our own states
    in_program: bool = False  # SUMO reports it running its own program
    program_phase: int = -1
    program_phase_since: float = 0.0
    # the phase a hand-back re-entered and when it ends (shown from the restore's next step for the
    # remaining time given: in step with the schedule, or lengthened, not its full duration)
    restored_phase: int = -1
    restored_end_s: float = -math.inf
    cycle_start_s: float | None = None  # when a cycle of the program began, as scheduled (static only)
    taken_over: bool = False  # ever switched by us: the schedule is no longer learned from what runs
    reentry_phase: int = -1
    lockout: dict[str, float] = field(default_factory=dict)  # ev_id -> until
    locked_until: float = -math.inf  # no entry before (after a max-presence hand-back)
    handed_back_s: float | None = None  # the last hand-back (the restore's tick)
    episode_entry_s: float | None = None  # the presence start of the episode that hand-back ended
    presence_from_s: float | None = None  # this episode's, for presence_limit_s (entry_s, or carried)
    records: list[PreemptionRecord] = field(default_factory=list)
    last_exits: dict[str, str] = field(default_factory=dict)  # ev_id -> its exit's reason, the last hand-back
    current: dict[tuple[str, int], PreemptionRecord] = field(default_factory=dict)
    # switched for requests that have ended while the signal stays held for others: their exit
    # is known, their restore comes with the signal's
    ended: list[PreemptionRecord] = field(default_factory=list)
    # exits taken back (an EV asked for the signal again before it was back in its program): their
    # exit and reason are known, their restore comes with the signal's, and the hand-back's
    # reasons are those of the requests that ended after
    taken_back: list[PreemptionRecord] = field(default_factory=list)
    last_signal: SignalState | None = None  # the last observed state object
    # links with a vehicle on their crossing, with their foe links (as last observed)
    occupied: tuple[tuple[int, tuple[int, ...]], ...] = ()
    # armed: each request's latest needs (``PlannerConfig.need_median_ticks``), as of ``needs_s``
    needs: dict[tuple[str, int], deque[float]] = field(default_factory=dict)
    needs_s: float = -math.inf
    # EVs predicted to cross within their links' yellow on the green shown: since when (see _crossing_now)
    crossing_since: dict[str, float] = field(default_factory=dict)

    @property
    def tls_id(self) -> str:
        return self.timing.tls_id

    @property
    def program(self) -> Program:
        return self.timing.program


def merge_targets(
    timing: SignalTiming,
    reqs: Sequence[ServiceRequest],
    serve_first_s: float | None = None,
    keep_first_s: float = 0.0,
    serving: Collection[str] = (),
    crossing: Collection[str] = (),
) -> tuple[str, int, tuple[ServiceRequest, ...]]:
    """One program phase's greens serving the winner and every request compatible with it.

    - **Winner.** EVs go by priority class, then by ETA (their earliest here); an EV's own
      requests by the order it reaches them: with two junctions of one signal in a row, the EV
      cannot use the second's green before it has crossed the first. The winner is the first
      junction of the first EV.
    - **Served first** (``serve_first_s`` not None): an EV ranked lower whose every junction
      here is predicted crossed ``timing.switch_bound_s + serve_first_s`` before every EV ranked
      above it needs its green goes first (the earliest such): a police car at the stop line
      does not wait for an ambulance a minute away, which still gets its green by its need. An
      EV the signal already serves (``serving``) keeps going first with ``keep_first_s`` instead
      of ``serve_first_s``: needs that move from tick to tick do not flip the signal. Nor do
      ETAs: against an EV of its own class, one served ranks as if ``keep_first_s`` earlier.
    - **Crossing** (``crossing``): an EV about to cross on the green shown for it (too close to
      stop for a yellow) goes first of all, whatever its class: its green is not ended under it.
    - **Served.** A request whose EV movement (``links``; the target's greens where it names
      none) the phase shows green, protected ('G') wherever the request's target is, and that
      neither yields to another EV's movement served before it (in rank order) nor is yielded to
      by one (a permissive 'g' crossing a 'G': the net's foes). The state shows the served
      requests' target greens that the phase has.
    - **Phase.** Among those the requests ask for, one that shows the winner's movement and
      serves the most requests (ties: the winner's own, then the next request's): a lower class
      served first keeps a phase that serves the higher one too.

    Taking the more urgent request's phase alone flipped a signal of two junctions in a row
    between their phases, through yellow and red for the EV's own movement, each time their
    needs crossed (Bologna's 235: a204c then a78; two joined clusters of the NDS city)."""
    if len(reqs) == 1:  # the common case: the request's target is its phase's state restricted to its greens
        return reqs[0].target, reqs[0].phase, (reqs[0],)
    first_eta: dict[str, float] = {}
    last_eta: dict[str, float] = {}
    need: dict[str, float] = {}
    priority: dict[str, int] = {}
    for r in reqs:
        ev = r.ev_id
        if ev not in first_eta:
            first_eta[ev], last_eta[ev], need[ev], priority[ev] = r.eta_s, r.eta_s, r.need_green_by_s, r.priority
            continue
        first_eta[ev] = min(first_eta[ev], r.eta_s)
        last_eta[ev] = max(last_eta[ev], r.eta_s)
        need[ev] = min(need[ev], r.need_green_by_s)
        priority[ev] = min(priority[ev], r.priority)
    # (an EV the signal serves keeps its place against one of its class predicted up to
    # ``keep_first_s`` earlier: two ETAs within a second of each other at a crossing swapped
    # places from tick to tick, and the signal switched back and forth between their approaches)
    evs = sorted(first_eta, key=lambda e: (priority[e], first_eta[e] - (keep_first_s if e in serving else 0.0), e))
    if serve_first_s is not None and len(evs) > 1:
        early: list[str] = []
        needed = need[evs[0]]  # the earliest need of the EVs ranked above the one looked at
        for e in evs[1:]:
            margin = keep_first_s if e in serving else serve_first_s
            if last_eta[e] + timing.switch_bound_s + margin <= needed:
                early.append(e)
            needed = min(needed, need[e])
        if early:
            go = min(early, key=lambda e: (first_eta[e], e))
            evs.remove(go)
            evs.insert(0, go)
    if crossing:
        first = sorted((e for e in evs if e in crossing), key=lambda e: (first_eta[e], e))
        evs = first + [e for e in evs if e not in crossing]
    rank = {e: k for k, e in enumerate(evs)}
    ordered = sorted(reqs, key=lambda r: (rank[r.ev_id], r.junction_index))
    winner = ordered[0]
    phases = timing.program.phases
    targets = [{i for i, c in enumerate(r.target) if is_green(c)} for r in ordered]
    needs = [set(r.links) if r.links else targets[k] for k, r in enumerate(ordered)]
    protected = [{i for i in needs[k] if r.target[i] == "G"} for k, r in enumerate(ordered)]
    best_phase, best_served, best_score = winner.phase, [0], (-1, -1)
    tried: set[int] = set()
    for base in ordered:
        if base.phase in tried:
            continue
        tried.add(base.phase)
        shown = timing.phase_greens[base.phase]
        state = phases[base.phase].state
        served: list[int] = []
        for k, wanted in enumerate(needs):
            if wanted <= shown and all(state[i] == "G" for i in protected[k]) and not any(
                    _yields_to(timing, state, wanted, needs[m]) or _yields_to(timing, state, needs[m], wanted)
                    for m in served if ordered[m].ev_id != ordered[k].ev_id):
                served.append(k)
        if not served or served[0] != 0:
            continue  # it does not show the winner's movement (protected where it asks so)
        score = (len(served), len(targets[0] & shown))
        if score > best_score:
            best_phase, best_served, best_score = base.phase, served, score
    shown = timing.phase_greens[best_phase]
    greens = {i for k in best_served for i in targets[k] & shown}
    # (an off state as the phase shows it; a stop-then-go 's' where every request served keeps it:
    # served alone, an approach's target holds the others' red)
    stops = {i for i, c in enumerate(phases[best_phase].state) if c == "s"
             and all(ordered[k].target[i] == "s" for k in best_served)}
    state = "".join(c if i in greens or i in stops or c in KEPT_AS_SHOWN else "r"
                    for i, c in enumerate(phases[best_phase].state))
    return state, best_phase, tuple(ordered[k] for k in best_served)


def _movement(r: ServiceRequest) -> tuple[int, ...]:
    """The links of a request's EV movement (its target's greens where it names none)."""
    return r.links or tuple(i for i, c in enumerate(r.target) if is_green(c))


def _yields_to(timing: SignalTiming, state: str, links: Collection[int], others: Collection[int]) -> bool:
    """Does one of ``links``, permissive ('g') in ``state``, cross (or merge with) one of ``others``
    shown 'G' there (the net's foes)? Two EVs are not served so: an ambulance turning left
    permissively, served with a police car coming straight the other way, stopped for it (in the
    junction, in two of three seeds)."""
    foes = timing.foes
    return bool(foes) and any(state[i] == "g" and any(state[f] == "G" for f in foes[i] & set(others)) for i in links)


def reentry_phase(program: Program, served_phase: int, target: str) -> int:
    """The program phase to hand back at: the next one after ``served_phase`` that starts a
    green the target did not show (the skipped cross street gets its turn first), shows no
    yellow, and begins a run of green so that the program plays that green in full."""
    n = len(program.phases)
    target_greens = {i for i, c in enumerate(target) if is_green(c)}

    def greens(p: int) -> set[int]:
        return {i for i, c in enumerate(program.phases[p].state) if is_green(c)}

    fallback = -1
    for k in range(1, n + 1):
        p = (served_phase + k) % n
        state = program.phases[p].state
        if any(is_yellow(c) for c in state) or not greens(p):
            continue
        if fallback < 0:
            fallback = p
        starts_green = bool(greens(p) - greens((p - 1) % n))
        if starts_green and not greens(p) <= target_greens:
            return p
    return fallback if fallback >= 0 else served_phase


def _reentry_duration_s(program: Program, phase: int) -> float | None:
    """How long the re-entry phase must run once handed back: what ``handback_ready`` counted
    on. A static program runs its phase's duration by itself; an actuated one entered by
    setPhase may end it at once (SUMO's actuated logic then ignores minDur: measured on the NDS
    network, a 5 s minDur phase ended after 2 s), so it is given its minimum explicitly."""
    if program.kind == "static":
        return None
    ph = program.phases[phase]
    return min(ph.min_dur_s, ph.duration_s) if ph.min_dur_given else ph.duration_s


def _phase_start_s(program: Program, phase: int) -> float:
    """Seconds from the start of the program's cycle to the start of ``phase``."""
    return sum(p.duration_s for p in program.phases[:phase])


def reentry_share_s(share: float, duration_s: float, step_s: float) -> float:
    """``share`` of a phase's duration in whole steps (rounded down): what an in-step re-entry
    leaves of the phase at least. SUMO shows a phase set to run 18.5 s at 1 s steps for 18 s,
    so half of a 37 s phase is 18 s: with 18.5, the 18 s the schedule left were taken for out
    of step (Ingolstadt 7)."""
    return math.floor(share * duration_s / step_s + 1e-9) * step_s


def synced_duration_s(program: Program, phase: int, cycle_start_s: float, t_s: float,
                      min_s: float, share: float = 0.5) -> tuple[float, bool]:
    """How long ``phase``, entered at ``t_s``, runs: until the program's own schedule (a cycle
    began at ``cycle_start_s``) next ends it, and whether that keeps it in step. Where that end is
    less than ``min_s`` away, or so far that the phase would run longer than its duration plus
    what an in-step re-entry may pass over before it (``share`` of the longest phase, and the
    phases without a green or with a yellow), ``min_s``: the program then runs out of step by the
    difference. Never until an end a cycle later (that held one phase green, and the others red,
    for a cycle and more: a 30 s phase shown for 98 s, a 6 s one for 93 s), but where no other
    phase greens anything this one does not: then the program's yellow and red phases are
    passed over once, and no movement waits for it (Berlin's J3, green 82 s of its 90 s, went on
    39 s late for the rest of the run)."""
    cycle = program.cycle_s
    duration = program.phases[phase].duration_s
    end = cycle_start_s + _phase_start_s(program, phase) + duration
    end += math.ceil((t_s - end) / cycle + 1e-9) * cycle  # the first end after t_s
    passed = share * max(p.duration_s for p in program.phases) + sum(
        p.duration_s for p in program.phases
        if any(is_yellow(c) for c in p.state) or not any(is_green(c) for c in p.state))
    if end - t_s < min_s - 1e-9 and _greens_all_of(program, phase):
        end += cycle
    if min_s - 1e-9 <= end - t_s <= duration + passed + 1e-9:
        return end - t_s, True
    return min_s, False


def _greens_all_of(program: Program, phase: int) -> bool:
    """Whether ``phase`` shows green every link any phase of the program does."""
    state = program.phases[phase].state
    return all(not is_green(c) or is_green(state[i])
               for p in program.phases for i, c in enumerate(p.state))


def schedule_offset_s(program: Program, phase: int, cycle_start_s: float, end_s: float) -> float:
    """How much later (positive) or earlier than its schedule (a cycle began at ``cycle_start_s``)
    a fixed-time program goes on once ``phase`` ends at ``end_s`` (when the next phase is seen),
    within half a cycle either way: 0 where it is in step."""
    cycle = program.cycle_s
    scheduled = cycle_start_s + _phase_start_s(program, phase) + program.phases[phase].duration_s
    late = round((end_s - scheduled) % cycle, 6)
    return round(late - cycle if late > cycle / 2 or late == cycle else late, 2)


class Planner:
    """Plans every signal on the EVs' corridors; fed each tick with the signals' states."""

    def __init__(self, programs: Mapping[str, Program], config: PlannerConfig = PlannerConfig(),
                 foes: Callable[[str], Sequence[Collection[int]] | None] | None = None,
                 keep_yielding: bool = True) -> None:
        """``foes(tls_id)``: per link of the signal, the links whose connections cross or merge with
        its own (:attr:`SignalTiming.foes`: a permissive movement is not ended alone while what it
        yields to goes on); None, or not given: not known. ``keep_yielding``: such a movement is
        kept green, yielding (:meth:`_untrapped`); False (the permissive turns crossing the EV's
        path held red on purpose): it ends, and what it yields to ends with it and comes back."""
        self.config = config
        self._keep_yielding = keep_yielding
        self._median_ticks = config.median_ticks
        self._foes: Callable[[str], Sequence[Collection[int]] | None] = foes or (lambda tls_id: None)
        self.junctions: dict[str, JunctionControl] = {
            tls: JunctionControl(
                SignalTiming.from_program(p, min_green_floor_s=config.min_green_floor_s, foes=self._foes(tls)),
                DisplayClock(p.link_count),
            )
            for tls, p in programs.items()
        }
        self.stop_reason: str | None = None  # set by stop(): every service ends, for this reason
        # merge_targets' margin for serving a lower-class EV first: with the all-red extension
        self._serve_first_s = (None if config.serve_first_s is None
                               else config.serve_first_s + config.red_extension_s)
        self.release_reasons: dict[str, str] = {}  # ev_id -> why its requests ended, when not crossing
        self.last_release_reasons: dict[str, str] = {}  # those of the last tick
        self.end_reasons: dict[tuple[str, int], str] = {}  # (ev_id, junction index) -> why that request ended
        # the signals not idle after the last tick: with this tick's requests, all a tick must visit
        self._active: set[str] = set()
        self._entered: list[str] = []  # the signals whose entry started or grew on the last tick
        self._order: dict[str, int] = {tls: k for k, tls in enumerate(self.junctions)}
        # A request whose target shows a green no phase of the signal's program shows (a fault of
        # whoever made it) is never served: (tls, target) -> how many ticks it was refused. The
        # safety monitor would count the S4 once shown; the planner does not show it.
        self.refused_targets: dict[tuple[str, str], int] = {}
        self._target_ok: dict[tuple[str, str], bool] = {}

    def release(self, ev_id: str, reason: str) -> None:
        """Record why an EV's requests end (cancelled, vanished, re-routed) for the records."""
        self.release_reasons[ev_id] = reason

    def release_request(self, ev_id: str, junction_index: int, reason: str) -> None:
        """Record why one of an EV's requests ends on this tick while its others go on."""
        self.end_reasons[(ev_id, junction_index)] = reason

    def add_signal(self, program: Program) -> None:
        """Plan one more signal (an EV was re-routed onto it)."""
        if program.tls_id not in self.junctions:
            self.junctions[program.tls_id] = JunctionControl(
                SignalTiming.from_program(program, min_green_floor_s=self.config.min_green_floor_s,
                                          foes=self._foes(program.tls_id)),
                DisplayClock(program.link_count),
            )
            self._order[program.tls_id] = len(self._order)

    def reset_signal(self, tls_id: str) -> None:
        """Forget what was seen of an idle signal (it stops being watched for a while): when it is
        watched again its display clock starts afresh instead of spanning the gap. Its records
        and lockouts stay."""
        j = self.junctions.get(tls_id)
        if j is None:
            return
        if j.stage != "idle" or j.holding:
            raise ValueError(f"traffic light {tls_id!r} is {j.stage}: it cannot be forgotten")
        self.junctions[tls_id] = JunctionControl(
            j.timing, DisplayClock(j.program.link_count), lockout=j.lockout, records=j.records,
            locked_until=j.locked_until, handed_back_s=j.handed_back_s, episode_entry_s=j.episode_entry_s,
        )

    # -- queries ------------------------------------------------------------------------------
    def entries_at(self, t_s: float) -> list[tuple[str, int]]:
        """(EV, junction index) whose preemption entry started at ``t_s`` (the last tick's time)."""
        return [key for tls in dict.fromkeys(self._entered) for key, rec in self.junctions[tls].current.items()
                if rec.entry_s == t_s]

    @property
    def busy(self) -> bool:
        return any(j.stage in ("entry", "dwell", "exit") for j in self.junctions.values())

    @property
    def preempted(self) -> set[str]:
        return {tls for tls, j in self.junctions.items() if j.records}

    def stage(self, tls_id: str) -> Stage:
        return self.junctions[tls_id].stage

    def holders(self, tls_id: str) -> tuple[str, ...]:
        """The EVs a signal is armed or switched for (sorted), none when idle."""
        j = self.junctions.get(tls_id)
        return tuple(sorted({ev_id for ev_id, _ in j.current})) if j is not None else ()

    def locked_until(self, tls_id: str, t_s: float, ev_id: str | None = None) -> float | None:
        """Until when the signal takes no request (of ``ev_id``; None: of any EV) after a
        max-presence hand-back, where that is after ``t_s``; else None."""
        j = self.junctions.get(tls_id)
        if j is None:
            return None
        # (the signal's lockout holds while it is idle; an EV's own, whatever the signal does meanwhile)
        until = max(j.locked_until if j.stage == "idle" else -math.inf,
                    j.lockout.get(ev_id, -math.inf) if ev_id is not None else -math.inf)
        if ev_id is None and j.stage == "exit" and math.inf in j.lockout.values():
            until = math.inf  # (the signal's own lockout comes with that hand-back)
        if until == math.inf:
            # (a max-presence exit under way: the lockout runs from its hand-back, not known yet;
            # the earliest it can end, moving on with the exit)
            return t_s + self.config.step_s + self.config.lockout_s
        return until if until > t_s else None

    def green_since(self, tls_id: str, key: tuple[str, int]) -> float | None:
        """Since when the signal, switched for request ``key`` (ev, junction index), has shown
        its movement green (its dwell; since the last re-entry where the signal switched again
        since, for another request), None where it does not now."""
        j = self.junctions.get(tls_id)
        if j is None or j.stage != "dwell" or key not in j.serving:
            return None
        rec = j.current.get(key)
        if rec is None or rec.dwell_s is None:
            return None
        return max(rec.dwell_s, j.dwell_from_s if j.dwell_from_s is not None else rec.dwell_s)

    def exit_reasons(self, tls_id: str) -> dict[str, str]:
        """Why the signal leaves (in exit) or left (at its last hand-back) each EV's service:
        ``crossed``, ``max presence``, ``cancelled``, ``EV stalled``, ... (the preemption
        records' ``exit_reason``); an EV it was armed for but never switched for, why its
        requests there ended (``service stopped``, ``EV stalled``, ``crossed``: the program
        showed its green), where it has no record switched for it."""
        j = self.junctions.get(tls_id)
        if j is None:
            return {}
        if j.stage == "exit":
            reasons: dict[str, str] = {}
            armed: dict[str, str] = {}
            for rec in [*j.ended, *j.current.values()]:  # (each EV's last to end, as at the hand-back)
                if rec.entry_s is not None and rec.exit_reason:
                    reasons[rec.ev_id] = rec.exit_reason
                elif rec.entry_s is None:
                    armed[rec.ev_id] = rec.exit_reason or self._why_armed_ended(rec)
            return {**armed, **reasons}
        return dict(j.last_exits)

    def released_reasons(self, tls_id: str, ev_ids: Iterable[str]) -> dict[str, str]:
        """Why a signal let go of these EVs other than by their crossing: their releases of the
        last tick (cancelled, re-routed, vanished), else the reason their switched records there
        ended with (an exit another EV took back: the cancel a tick before it)."""
        j = self.junctions.get(tls_id)
        records = [] if j is None else [*j.taken_back, *j.ended, *j.current.values()]
        out: dict[str, str] = {}
        for ev_id in ev_ids:
            why = self.last_release_reasons.get(ev_id) or next(
                (r.exit_reason for r in reversed(records) if r.ev_id == ev_id and r.exit_reason), "")
            if why and why != "crossed":
                out[ev_id] = why
        return out

    def served(self, tls_id: str) -> tuple[str, ...]:
        """The EVs a switched signal (entry, dwell) is switched for (sorted): those its target
        serves, not those waiting for it to serve them; otherwise :meth:`holders`."""
        j = self.junctions.get(tls_id)
        if j is None:
            return ()
        if j.stage in ("entry", "dwell") and j.serving:
            return tuple(sorted({key[0] for key in j.serving if key in j.current}))
        return self.holders(tls_id)

    def handback_strands(self, tls_id: str, key: tuple[str, int], links: Sequence[int], t_s: float) -> bool:
        """Is the signal switched (entry or dwell) for request ``key`` (EV, junction index), and
        would a hand-back starting now re-enter a program phase that keeps ``links`` green and
        greens a link that is not green now, with no yellow for ``links`` in between (so what a
        permissive movement on ``links`` yields to can turn green while a vehicle is still in
        the junction)?"""
        j = self.junctions.get(tls_id)
        if j is None or j.stage not in ("entry", "dwell") or not j.holding or not j.clock.state:
            return False
        rec = j.current.get(key)
        if rec is None or rec.entry_s is None:
            return False
        back, now = j.program.phases[self._reentry_now(j, t_s)].state, j.clock.state
        return all(is_green(back[i]) for i in links) and any(
            is_green(b) and not is_green(c) for b, c in zip(back, now, strict=True)
        )

    def engaged(self) -> dict[str, int]:
        """EV -> the furthest junction index along its corridor that a signal is armed or
        switched for (its plan must go on covering it)."""
        out: dict[str, int] = {}
        for tls in self._active:
            for ev_id, index in self.junctions[tls].current:
                if index > out.get(ev_id, -1):
                    out[ev_id] = index
        return out

    def records(self, *, include_open: bool = False) -> list[PreemptionRecord]:
        """The preemptions, in order of entry. ``include_open``: also those of signals not yet
        back in their program (no ``restored_s``; after a run, a signal the drain limit left
        preempted), not those only armed."""
        out = [r for j in self.junctions.values() for r in j.records]
        if include_open:
            out += [r for j in self.junctions.values() for r in (*j.taken_back, *j.ended, *j.current.values())
                    if r.entry_s is not None]
        return sorted(out, key=lambda r: (r.entry_s if r.entry_s is not None else r.armed_s, r.tls_id))

    def green_due(self, t_s: float) -> dict[str, dict[int, float]]:
        """EV -> junction index -> when the signal will show the state serving the EV, where
        its entry for the EV is under way (the running phase's minimum green, yellow and red
        clearance still to come). One pass over the signals not idle, for every EV at once."""
        out: dict[str, dict[int, float]] = {}
        step = self.config.step_s
        for tls in self._active:
            j = self.junctions[tls]
            if j.stage != "entry" or not j.target or not j.serving:
                continue
            due = t_s + time_to_show_s(j.timing, j.clock, j.target, t_s, step)
            for ev_id, index in j.serving:
                out.setdefault(ev_id, {})[index] = due
        return out

    def time_to_show_s(self, tls_id: str, target: str, t_s: float) -> float:
        j = self.junctions[tls_id]
        return time_to_show_s(j.timing, j.clock, target, t_s, self.config.step_s)

    # -- the tick -----------------------------------------------------------------------------
    def observe(self, t_s: float, signals: Mapping[str, SignalState]) -> None:
        for tls, sig in signals.items():
            j = self.junctions.get(tls)
            if j is None or sig is j.last_signal:  # the same state object as last tick: nothing changed
                continue
            j.last_signal = sig
            j.occupied = sig.occupied
            j.clock.observe(t_s, sig.state)
            running_program = sig.program_id == j.program.program_id
            if running_program and (sig.phase != j.program_phase or not j.in_program):
                if j.in_program and not j.taken_over and 0 <= sig.phase < len(j.program.phases):
                    # a phase change seen while the program runs undisturbed: its schedule
                    j.cycle_start_s = t_s - _phase_start_s(j.program, sig.phase)
                j.program_phase, j.program_phase_since = sig.phase, t_s
            j.in_program = running_program

    def tick(self, t_s: float, requests: Iterable[ServiceRequest]) -> list[SignalCommand]:
        by_tls: dict[str, list[ServiceRequest]] = {}
        for r in requests:
            if r.tls_id in self.junctions:
                if not self._valid_target(r.tls_id, r.target):
                    continue
                by_tls.setdefault(r.tls_id, []).append(r)
        commands: list[SignalCommand] = []
        # An idle signal without requests has nothing to do: visit only those with requests and
        # those not idle (the cost follows the EVs, not the number of signals planned).
        todo = self._active.union(by_tls)
        order = self._order
        self._entered = []
        active: set[str] = set()
        for tls in sorted(todo, key=order.__getitem__):  # in the order the signals were added
            j = self.junctions[tls]
            if self.stop_reason is not None:
                reqs = []
            else:
                reqs = by_tls.get(tls, [])
                if j.locked_until > t_s and j.stage == "idle":
                    reqs = []
                elif j.lockout:
                    reqs = [r for r in reqs if j.lockout.get(r.ev_id, -1.0) <= t_s]
            cmd = self._tick_junction(j, t_s, reqs)
            if cmd is not None:
                commands.append(cmd)
            if j.stage != "idle":
                active.add(tls)
        self._active = active
        # the reasons label the exits their releases caused just now (and, for the tick's
        # readers, the signals only armed that those releases let go)
        self.last_release_reasons, self.release_reasons = self.release_reasons, {}
        self.end_reasons.clear()
        return commands

    def _valid_target(self, tls_id: str, target: str) -> bool:
        """Are ``target``'s greens those of a phase of the signal's program (G only where it shows
        G)? Counted in ``refused_targets`` where not."""
        key = (tls_id, target)
        ok = self._target_ok.get(key)
        if ok is None:
            ok = self._target_ok[key] = self.junctions[tls_id].timing.is_program_subset(target)
        if not ok:
            self.refused_targets[key] = self.refused_targets.get(key, 0) + 1
        return ok

    def stop(self, reason: str = "stopped") -> None:
        """Hand every signal back (through safe transitions) on the next ticks, for ``reason``
        (the exit reason of every service it ends)."""
        self.stop_reason = reason

    # -- one signal ---------------------------------------------------------------------------
    def _tick_junction(self, j: JunctionControl, t_s: float, reqs: list[ServiceRequest]) -> SignalCommand | None:
        cfg = self.config
        if not j.clock.state:
            return None  # not observed yet: nothing is known to switch from
        if j.stage == "idle" and reqs:
            # (an EV asking during a hand-back waits for it to finish unless its entry is due
            # before it would: then the exit is taken back, _take_back)
            near = [r for r in reqs if r.eta_s - t_s <= cfg.arm_horizon_s or r.start_now]
            if near:
                j.stage = "armed"
                for r in near:
                    if r.key not in j.current:
                        j.current[r.key] = PreemptionRecord(j.tls_id, r.ev_id, r.junction_index, t_s)
        if j.stage == "armed":
            if not reqs:
                self._close(j, t_s, "cancelled before entry", restored=True)
                j.stage = "idle"
                return None
            self._end_gone(j, t_s, reqs)
            if self._median_ticks > 1:
                reqs = self._median_needs(j, t_s, reqs)
            current = j.current
            for r in reqs:
                key = (r.ev_id, r.junction_index)
                if key not in current:
                    current[key] = PreemptionRecord(j.tls_id, r.ev_id, r.junction_index, t_s)
            if len(reqs) == 1:
                r = reqs[0]
                start_now, eta_s, need_s = r.start_now, r.eta_s, r.need_green_by_s
            else:
                start_now = any(r.start_now for r in reqs)
                eta_s = min(r.eta_s for r in reqs)
                need_s = min(r.need_green_by_s for r in reqs)
            if not start_now and (
                t_s < eta_s - cfg.max_lead_s
                or t_s + j.timing.switch_bound_s + 3 * cfg.step_s + cfg.slack_s < need_s
            ):
                # cheap tests: every EV is further than max_lead_s away, or even the longest
                # switch-over would show green before any request needs it: no entry can be due
                return None
            # (a request further away takes no part: merged, it held back the entry of a nearer
            # compatible one until it came within max_lead_s itself, or won it as the target)
            target, phase, served = self._merge(j, self._joinable(j, t_s, reqs), t_s)
            start = self._episode_start(j, t_s)
            if self._entry_due(j, t_s, target, served, start) and self._fits(j, t_s, start + cfg.presence_limit_s,
                                                                              target, phase):
                # (an entry whose switch-over and hand-back could not be done within the presence
                # limit is not started: long minimum greens, a long all-red extension; counted from
                # the episode before where the program has hardly run since its hand-back)
                self._entered.append(j.tls_id)
                j.stage = "entry"
                j.entry_s = t_s
                j.presence_from_s = start
                for r in served:
                    rec = j.current[r.key]
                    rec.entry_s = t_s
                    rec.eta_at_entry_s = r.eta_s
            else:
                return None
        if j.stage == "exit" and reqs:
            # (with the median need over the ticks it has asked, as an armed signal plans: one tick's
            # early need among later ones takes no exit back; on its first tick it has that one only)
            if self._median_ticks > 1:
                reqs = self._median_needs(j, t_s, reqs)
            if self._take_back(j, t_s, reqs):
                j.stage = "entry"
        if j.stage in ("entry", "dwell"):
            if not reqs:  # (before _end_gone: every record then ends with the exit and its reason)
                return self._begin_exit(j, t_s, self.stop_reason or "")
            self._end_gone(j, t_s, reqs)
            # once what the signal was switched for has ended, the requests further away get their
            # own entry later (an EV crossing the signal again further on, or a second EV 2 minutes
            # away, no longer keeps it held meanwhile)
            reqs = self._joinable(j, t_s, reqs)
            if not reqs:
                return self._begin_exit(j, t_s, self.stop_reason or "")
            assert j.entry_s is not None and j.presence_from_s is not None
            limit = j.presence_from_s + cfg.presence_limit_s
            # (far from the limit every hand-back fits: _handback_s is at most 3 switch bounds,
            # 2 all-red extensions and 6 steps)
            near_limit = t_s + 3.0 * j.timing.switch_bound_s + 2.0 * cfg.red_extension_s + 7.0 * cfg.step_s >= limit
            if (
                t_s - j.entry_s >= cfg.max_presence_s and not self._crossing_soon(j, t_s, reqs)
            ) or (near_limit and not self._fits(j, t_s, limit)):
                for r in reqs:
                    j.lockout[r.ev_id] = math.inf  # from the hand-back on, lockout_s (see _lockouts_from)
                return self._begin_exit(j, t_s, "max presence")
            target, phase, served = self._merge(j, reqs, t_s)
            if near_limit and (target, phase) != (j.target, j.phase) and not self._fits(j, t_s, limit, target, phase):
                # no room for another switch-over and its hand-back: hand back now; the
                # requests not served so far get a fresh entry (and presence) once the program
                # has run ``lockout_s``. A target shown already counts too: its re-entry phase is
                # another's (a served EV gone, the one left served by what the signal shows, whose
                # re-entry phase holds its minimum greens longer)
                for ev_id, _ in j.serving:
                    j.lockout[ev_id] = math.inf
                return self._begin_exit(j, t_s, "max presence")
            for r in served:
                if r.key not in j.current:
                    j.current[r.key] = PreemptionRecord(j.tls_id, r.ev_id, r.junction_index, t_s)
                rec = j.current[r.key]
                if rec.entry_s is None:
                    rec.entry_s = t_s
                    rec.eta_at_entry_s = r.eta_s
                    self._entered.append(j.tls_id)
            keys = tuple(r.key for r in served)
            if target != j.target:
                j.target, j.phase, j.serving = target, phase, keys
                if j.stage == "dwell" and j.clock.state != target:
                    j.stage = "entry"
            elif keys != j.serving:
                # a request the same target serves joined (or one left): it is served, and
                # dwells from now where the signal already shows the target
                j.serving = keys
                if j.stage == "dwell":
                    for key in keys:
                        if j.current[key].dwell_s is None:
                            j.current[key].dwell_s = t_s
            cmd = next_state(j.timing, j.clock, target, t_s, cfg.step_s, j.occupied, cfg.red_extension_s)
            if not j.holding and (cmd is None or (
                    cmd == target and cfg.red_extension_s > 0.0
                    and may_extend_all_red(j.timing, j.clock, target, t_s, cfg.step_s, cfg.red_extension_s))):
                # take the signal over where it is (same display, now held); where the target's
                # greens would come within the all-red extension of a red, first: its crossings
                # are read only once it is switched (the adapter), so they are known next step
                cmd = j.clock.state
            if near_limit and cmd is not None and cmd != j.clock.state \
                    and not self._fits_showing(j, t_s, limit, cmd):
                # a change shown now can lengthen the hand-back: new greens must run their minimum
                # first, and a green the re-entry phase would have kept, ended, must run its
                # yellow, its red clearance and then the phase's whole minimum. Where the hand-back
                # from there would no longer fit, hand back from here instead (the estimate a switch
                # to another target was started on cannot know the re-entry phase and its hold)
                for ev_id, _ in j.serving:
                    j.lockout[ev_id] = math.inf
                return self._begin_exit(j, t_s, "max presence")
            if j.stage == "entry" and (cmd == target or (cmd is None and j.clock.state == target)):
                j.stage, j.dwell_from_s = "dwell", t_s + cfg.step_s
                for key in j.serving:
                    if key in j.current and j.current[key].dwell_s is None:
                        j.current[key].dwell_s = t_s + cfg.step_s
            return self._set(j, cmd, "entry" if j.stage == "entry" else "dwell")
        if j.stage == "exit":
            back = j.program.phases[j.reentry_phase].state
            if not j.holding:  # never switched: the program is still running
                j.stage = "idle"
                self._lockouts_from(j, t_s, switched=False)
                self._close(j, t_s, "", restored=True, offset_s=0.0 if self._schedule_known(j) else None)
                return None
            if j.clock.state == back:
                if not j.timing.handback_ready(j.clock, j.reentry_phase, t_s, cfg.step_s):
                    return None  # hold the re-entry state until the program cannot cut a green short
                j.stage = "idle"
                j.holding = False
                self._lockouts_from(j, t_s)
                remaining, in_step = self._reentry_remaining_s(j, t_s)
                ph = j.program.phases[j.reentry_phase]
                short = j.timing.restore_shortfall_s(j.clock, j.reentry_phase, ph.duration_s if remaining is None
                                                     else remaining, t_s, cfg.step_s)
                if short > 0.0:  # (the phase runs on until a red the preemption began has its clearance)
                    steps = math.ceil(short / cfg.step_s - 1e-9)
                    remaining = (ph.duration_s if remaining is None else remaining) + steps * cfg.step_s
                    in_step = None
                offset = None
                if self._schedule_known(j):  # (handed back out of step on purpose too: handback_sync off)
                    assert j.cycle_start_s is not None
                    shown_for = ph.duration_s if remaining is None else remaining
                    offset = schedule_offset_s(j.program, j.reentry_phase, j.cycle_start_s,
                                               t_s + cfg.step_s + shown_for)
                self._close(j, t_s, "", restored=True, in_step_s=in_step, offset_s=offset)
                j.restored_phase = j.reentry_phase
                j.restored_end_s = -math.inf if remaining is None else t_s + cfg.step_s + remaining
                return SignalCommand(
                    j.tls_id, "restore", program_id=j.program.program_id, phase=j.reentry_phase,
                    phase_remaining_s=remaining,
                    reason=f"hand-back at phase {j.reentry_phase}",
                )
            return self._set(j, next_state(j.timing, j.clock, back, t_s, cfg.step_s, j.occupied, cfg.red_extension_s),
                             "exit")
        return None

    def _reentry_now(self, j: JunctionControl, t_s: float, starved: bool = True) -> int:
        """The program phase a hand-back starting at ``t_s`` re-enters: in step with the schedule
        where it syncs (:meth:`_scheduled_reentry`; ``starved``: see :meth:`_starved_reentry`),
        else the one serving what was skipped."""
        fallback = reentry_phase(j.program, j.phase if j.phase >= 0 else 0, j.target or j.clock.state)
        return self._scheduled_reentry(j, t_s, fallback, starved) if self._syncs(j) else fallback

    def _syncs(self, j: JunctionControl) -> bool:
        return self.config.handback_sync and self._schedule_known(j)

    @staticmethod
    def _schedule_known(j: JunctionControl) -> bool:
        """A fixed-time program whose schedule was learned (a hand-back can be told off it)."""
        return j.program.kind == "static" and j.cycle_start_s is not None and j.program.cycle_s > 0

    def _scheduled_reentry(self, j: JunctionControl, t_s: float, fallback: int, starved: bool = True) -> int:
        """The first phase, in the schedule's order from the one it shows when the hand-back
        could start, that has greens, no yellow, and enough of its scheduled time left (see
        ``_min_reentry_s``): a signal handed back there is in step with its schedule at once."""
        program, ref = j.program, j.cycle_start_s
        assert ref is not None
        n, cycle = len(program.phases), program.cycle_s
        t_b = t_s + time_to_show_s(j.timing, j.clock, program.phases[fallback].state, t_s, self.config.step_s)
        base = t_b - (t_b - ref) % cycle  # when the schedule's current cycle began
        for k in range(2 * n):
            p = k % n
            end = base + (k // n) * cycle + _phase_start_s(program, p) + program.phases[p].duration_s
            if end <= t_b:
                continue
            state = program.phases[p].state
            if any(is_yellow(c) for c in state) or not any(is_green(c) for c in state):
                continue
            if end - t_b >= self._min_reentry_s(j, p, t_b):
                return self._starved_reentry(j, p, t_b) if starved and self.config.reentry_starved else p
        return fallback

    def _starved_reentry(self, j: JunctionControl, p: int, t_b: float) -> int:
        """Where the in-step re-entry phase ``p`` greens only what the preemption kept green, the
        next phase with greens is re-entered instead, early, if it then still ends on its own
        schedule (see :func:`synced_duration_s`; judged at ``t_b``, when the hand-back could show
        the fallback phase, so an estimate, as for ``p``): what the preemption held red gets its
        green now rather than after ``p`` has run out its time (at Bologna's 235, 13 s of a near
        all-red phase before the cross street's only green). Only the first later phase with
        greens is considered; if it greens nothing new either, ``p`` stays. Not after a hand-back
        on the maximum presence time (the EV may still be coming, or another EV takes the
        signal over): there ``p`` keeps the held greens a while longer. An EV that asks for what
        ``p`` would keep green only after the exit has begun is not waited for (an exit is not
        aborted): its green can come later than with ``p``."""
        program = j.program
        shown = j.target or j.clock.state
        state = program.phases[p].state
        if len(shown) != len(state) or any(is_green(c) and not is_green(shown[i]) for i, c in enumerate(state)):
            return p
        n = len(program.phases)
        for k in range(1, n):
            q = (p + k) % n
            ph = program.phases[q]
            if any(is_yellow(c) for c in ph.state) or not any(is_green(c) for c in ph.state):
                continue
            if not any(is_green(c) and not is_green(shown[i]) for i, c in enumerate(ph.state)):
                return p  # it would green nothing new either
            assert j.cycle_start_s is not None
            _, in_step = synced_duration_s(program, q, j.cycle_start_s, t_b, self._min_reentry_s(j, q, t_b),
                                           self.config.sync_min_share)
            return q if in_step else p
        return p

    def _min_reentry_s(self, j: JunctionControl, phase: int, t_s: float) -> float:
        """The shortest the re-entry phase may run: what each of its greens still needs for its
        run to reach its minimum green (``handback_ready`` counted on the phase's full
        duration), and at least ``sync_min_share`` of the phase's duration (:func:`reentry_share_s`)."""
        program, timing, clock, dt = j.program, j.timing, j.clock, self.config.step_s
        ph = program.phases[phase]
        duration = ph.duration_s
        counted = min(ph.min_dur_s, duration) if ph.min_dur_given else duration  # as green_left_s counts it
        state = program.phases[phase].state
        need_s = max(  # green_left_s less this phase: what the phases after it still show of the run
            (timing.min_green_s[i] - (max(clock.elapsed_s(i, t_s, dt) - dt, 0.0) if is_green(clock.state[i]) else 0.0)
             - (timing.green_left_s(phase, i) - counted)
             for i, c in enumerate(state) if is_green(c)),
            default=0.0,
        )
        return max(need_s, reentry_share_s(self.config.sync_min_share, duration, dt), dt)

    def _reentry_remaining_s(self, j: JunctionControl, t_s: float) -> tuple[float | None, float | None]:
        """The re-entry phase's duration from now, and when the program is in step again: in step
        with the schedule when it is known (static programs), else what the program or
        ``_reentry_duration_s`` gives (and None)."""
        program, phase = j.program, j.reentry_phase
        if not self._syncs(j):
            return _reentry_duration_s(program, phase), None
        assert j.cycle_start_s is not None
        # SUMO shows a phase set at t from t + step for its (remaining) duration: the switch is
        # seen at t + step + remaining, where the schedule's own switches are seen
        shown_s = t_s + self.config.step_s
        remaining, in_step = synced_duration_s(program, phase, j.cycle_start_s, shown_s,
                                               self._min_reentry_s(j, phase, t_s), self.config.sync_min_share)
        if not in_step:
            return remaining, None
        # showing what its schedule shows from when the schedule starts that phase: at once where the
        # schedule shows it now, at its scheduled start where it was entered early (_starved_reentry)
        return remaining, max(shown_s, shown_s + remaining - program.phases[phase].duration_s)

    def _median_needs(self, j: JunctionControl, t_s: float, reqs: list[ServiceRequest]) -> list[ServiceRequest]:
        """``reqs`` with each need replaced by the median of its last ``PlannerConfig.median_ticks``
        ticks' needs (the upper one of an even count: the later); a request's history starts
        again after a tick it was not armed on."""
        n = self._median_ticks
        last = j.needs if abs(j.needs_s - (t_s - self.config.step_s)) < 1e-6 else {}
        needs: dict[tuple[str, int], deque[float]] = {}
        out: list[ServiceRequest] = []
        for r in reqs:
            key = (r.ev_id, r.junction_index)
            seen = needs[key] = last.get(key) or deque(maxlen=n)
            seen.append(r.need_green_by_s)
            if len(seen) > 1 and not r.start_now:
                median = sorted(seen)[len(seen) // 2]  # statistics.median_high, without its overhead
                if median != r.need_green_by_s:
                    r = r.with_need(median)
            out.append(r)
        j.needs, j.needs_s = needs, t_s
        return out

    def _joinable(self, j: JunctionControl, t_s: float, reqs: list[ServiceRequest]) -> list[ServiceRequest]:
        """The requests that may take part in the signal's service now: as an entry may start,
        within ``max_lead_s`` of their ETA (or detected: ``start_now``), those it serves, and an
        EV's request for the junction right after one of these on its route, predicted within
        ``chain_within_s`` of it (the signal's next crossing, as at a signal of two or three
        junctions in a row, served as one).

        An EV joining a preemption under way (entry, dwell, or an exit it would take back) that
        is predicted to cross too late for it takes no part (:meth:`_too_late_to_join`): held for
        it, the signal would be handed back on the maximum presence before it came, and locked
        out; it gets an entry of its own after the hand-back instead."""
        cfg = self.config
        if j.stage in ("entry", "dwell", "exit") and j.entry_s is not None and j.presence_from_s is not None:
            late = self._too_late_to_join(j, reqs)
            if late:
                reqs = [r for r in reqs if r.ev_id not in late]
        lead = cfg.max_lead_s
        if all(t_s >= r.eta_s - lead for r in reqs):
            return reqs  # (the common case)
        keys = {r.key for r in reqs if r.start_now or r.key in j.serving or t_s >= r.eta_s - lead}
        eta_at = {r.key: r.eta_s for r in reqs}
        within = cfg.chain_within_s
        for r in sorted(reqs, key=lambda q: q.junction_index):
            before = (r.ev_id, r.junction_index - 1)
            if before in keys and r.eta_s - eta_at[before] <= within:
                keys.add(r.key)
        return [r for r in reqs if r.key in keys]

    def _too_late_to_join(self, j: JunctionControl, reqs: Sequence[ServiceRequest]) -> set[str]:
        """The EVs asking for a signal under preemption that it has not been switched for in
        this episode and that are predicted to cross (their first junction of the signal) later
        than the episode allows: past the maximum presence and its grace, or so late that the
        hand-back would no longer fit the presence limit (``presence_reserve_s`` short of it, as
        an entry's :meth:`_entry_due` and so a take-back's judge: an EV left out here cannot take
        the exit back on the next tick). An EV once switched for stays in whatever its ETA does
        (its junctions further on in a row included), so an EV is left out only until it joins."""
        cfg = self.config
        assert j.entry_s is not None and j.presence_from_s is not None
        latest = min(j.entry_s + cfg.max_presence_s + cfg.max_presence_grace_s,
                     j.presence_from_s + cfg.presence_limit_s - cfg.presence_reserve_s)
        first: dict[str, ServiceRequest] = {}
        for r in reqs:
            if r.ev_id not in first or r.junction_index < first[r.ev_id].junction_index:
                first[r.ev_id] = r
        late = {ev for ev, r in first.items() if r.eta_s > latest and not r.start_now}
        if late:
            late -= {key[0] for key in j.serving}
            late -= {key[0] for key, rec in j.current.items() if rec.entry_s is not None}
        return late

    def _merge(self, j: JunctionControl, reqs: Sequence[ServiceRequest],
               t_s: float | None = None) -> tuple[str, int, tuple[ServiceRequest, ...]]:
        """:func:`merge_targets` for the signal: the EVs its current target serves keep going
        first by ``keep_first_s`` (none before an entry); EVs about to cross on the green shown
        (:meth:`_crossing_now`, at ``t_s``) keep it: the display stays unless the target keeps
        their movements green (where it shows a target or the program's phase), else they go
        first of all. The target keeps a permissive green shown that yields to one of its own
        (:meth:`_untrapped`)."""
        if len(reqs) == 1:  # (the common case, every tick: nothing to arbitrate)
            j.crossing_since.clear()
            merged = merge_targets(j.timing, reqs)
        else:
            serving = frozenset(ev_id for ev_id, _ in j.serving) if j.stage in ("entry", "dwell") else frozenset()
            crossing = self._crossing_now(j, t_s, reqs) if t_s is not None else frozenset()
            shown, phases = j.clock.state, j.timing.program.phases
            now: tuple[str, int] | None = None  # the display as a target: the one switched to, or the program's phase
            if j.stage in ("entry", "dwell") and j.target and shown == j.target:
                now = (j.target, j.phase)
            elif j.in_program and 0 <= j.program_phase < len(phases) and phases[j.program_phase].state == shown \
                    and not any(is_yellow(c) for c in shown):
                now = (shown, j.program_phase)  # (a green phase: one with a yellow is not held)
            if crossing and now is not None:
                # EVs crossing on the display: ranked as ever (class, then ETA), but the target
                # changes only to one that keeps their movements green; else the display stays.
                # (Put first, a bus crossing on a permissive left turn took the protected arrow it
                # asked for, ending the through green of a fire engine 2 s from its line; of two
                # EVs crossing on foe movements shown together, one met yellow.)
                merged = merge_targets(j.timing, reqs, self._serve_first_s, self.config.keep_first_s, serving)
                # (kept as shown: 'G' staying 'G'; a protected arrow turned permissive under an EV
                # crossing on it would let the opposing through on with no yellow)
                if not all(merged[0][i] == shown[i] for r in reqs if r.ev_id in crossing for i in _movement(r)):
                    on = {i for i, c in enumerate(now[0]) if is_green(c)}
                    served = sorted((r for r in reqs if set(_movement(r)) <= on), key=lambda r: (r.priority, r.eta_s))
                    merged = (now[0], now[1], tuple(served))
            else:
                merged = merge_targets(j.timing, reqs, self._serve_first_s, self.config.keep_first_s, serving,
                                       crossing)
            if not self._valid_target(j.tls_id, merged[0]):  # (never, by construction): the winner alone
                merged = merge_targets(j.timing, merged[2][:1])
        return (self._untrapped(j, merged[0]), *merged[1:]) if j.timing.foes and self._keep_yielding else merged

    @staticmethod
    def _untrapped(j: JunctionControl, target: str) -> str:
        """``target`` with the permissive greens shown ('g') that yield to a foe it keeps green
        ('G') kept too, where a program phase shows them so. Ended alone they would trap their
        vehicles (the yellow trap: the opposing left turn ended for the EV's approach served
        alone, its through going on); kept, they go on yielding to the EV's approach. Where no
        phase shows them with the target, the transition ends the foe with them instead and
        greens it again (:func:`~controller.core.transitions.next_state`), as it does at a
        hand-back, whose target is the program's own phase."""
        timing, shown = j.timing, j.clock.state
        if not shown or len(shown) != len(target):
            return target
        keep = trapping(timing, j.clock, target)
        if not keep:
            return target
        kept = "".join("g" if i in keep else c for i, c in enumerate(target))
        return kept if timing.is_program_subset(kept) else target

    def _crossing_now(self, j: JunctionControl, t_s: float, reqs: Sequence[ServiceRequest]) -> frozenset[str]:
        """The EVs whose movement the signal shows green and that are predicted at its stop line
        within that movement's yellow: too close to stop for it (the dilemma zone), so their green
        is not ended under them for another EV (a police car 7 m from the line at 13 m/s met the
        yellow of a fire engine's switch and crossed on it). For two yellows at most from when
        first seen so: an EV standing at the line (a blocked exit) holds no one up for long."""
        shown = j.clock.state
        timing = j.timing
        within: dict[str, float] = {}  # in the zone now: since when
        for r in reqs:
            links = _movement(r)
            if not links or not all(is_green(shown[i]) for i in links):
                continue
            yellow = max(timing.yellow_s[i] for i in links)
            if r.eta_s - t_s <= yellow and r.ev_id not in within:
                within[r.ev_id] = j.crossing_since.get(r.ev_id, t_s)
                if t_s - within[r.ev_id] > 2.0 * yellow:
                    within[r.ev_id] = -math.inf  # (held too long: out until it leaves the zone)
        j.crossing_since = within
        return frozenset(e for e, since in within.items() if since > -math.inf)

    def _crossing_soon(self, j: JunctionControl, t_s: float, reqs: Sequence[ServiceRequest]) -> bool:
        """Past the maximum presence time but within its grace: is an EV the signal serves
        predicted to cross within the grace (and not already overdue)? Then it is waited for."""
        grace = self.config.max_presence_grace_s
        assert j.entry_s is not None
        if t_s - j.entry_s >= self.config.max_presence_s + grace:
            return False
        return any(r.key in j.serving and 0.0 <= r.eta_s - t_s <= grace for r in reqs)

    def _episode_start(self, j: JunctionControl, t_s: float) -> float:
        """When an entry starting at ``t_s`` counts its presence limit from: the episode before's
        start where it was handed back less than ``reservice_gap_s`` ago (the program shows from
        the step after the restore and the entry's first state from the step after it: the
        monitor sees the same gap), else ``t_s``."""
        cfg = self.config
        if j.handed_back_s is not None and j.episode_entry_s is not None \
                and t_s - j.handed_back_s < cfg.reservice_gap_s:
            return j.episode_entry_s
        return t_s

    def _entry_due(self, j: JunctionControl, t_s: float, target: str, served: Sequence[ServiceRequest],
                   presence_from_s: float | None = None) -> bool:
        """Is the entry due at ``t_s`` (``presence_from_s``: where its presence limit counts
        from, the episode before's start within the re-service gap)?"""
        cfg = self.config
        if any(r.start_now for r in served):
            return True
        need = min(r.need_green_by_s for r in served)
        # never so early that the maximum presence time would end before the EV has crossed: a
        # junction handed back on its presence limit just before the EV arrives would stop it;
        # nor, within the re-service gap, where the episode before's presence limit would (the
        # gap's end gives a fresh one)
        latest_eta = max(r.eta_s for r in served)
        if t_s < latest_eta + cfg.presence_reserve_s - cfg.max_presence_s or t_s < latest_eta - cfg.max_lead_s:
            return False
        if presence_from_s is not None and latest_eta + cfg.presence_reserve_s > presence_from_s + cfg.presence_limit_s:
            return False
        state = j.clock.state
        if not state:
            return False
        ends_at = self._program_green_ends_s(j, t_s)
        # getting the EV's movement back once lost: at worst a minimum green, a yellow and the
        # clearance, and the step that shows it
        worst = j.timing.switch_bound_s + cfg.step_s
        if all(is_green(s) for s, want in zip(state, target, strict=True) if is_green(want)):
            # The approach is green now: hold it before the program can end it, i.e. when the
            # time to get it back after losing it would no longer fit.
            if ends_at is not None and ends_at <= t_s + cfg.step_s + 1e-9:
                # last step of the green (an actuated one past its minimum may end on any step)
                return max(ends_at, t_s + cfg.step_s) + worst + cfg.slack_s >= need
            return t_s + worst + cfg.slack_s >= need
        show = time_to_show_s(j.timing, j.clock, target, t_s, cfg.step_s)
        if t_s + show + cfg.slack_s >= need:
            return True
        if ends_at is None or ends_at > t_s + cfg.step_s + 1e-9:
            return False
        # The program's phase ends with this step (an actuated one past its minimum may).
        ends_at = max(ends_at, t_s + cfg.step_s)
        phases = j.program.phases
        after = phases[(j.program_phase + 1) % len(phases)].state
        links = [i for r in served for i in r.links]
        if links and all(is_green(state[i]) for i in links) and not all(is_green(after[i]) for i in links):
            # The EV's movement is green in another phase than the target's, and the program
            # ends it now: hold it (switch to the target) if getting it back would not fit.
            return ends_at + worst + cfg.slack_s >= need
        # Its next phase may be a green that must run its minimum before the switch-over can go
        # on (the cross street's, after a yellow for the EV's approach): now is the last chance
        # if starting from there would show the target too late (late_entry_tolerance_s).
        clock = j.clock.copy()
        clock.observe(ends_at, after)
        shown = ends_at + time_to_show_s(j.timing, clock, target, ends_at, cfg.step_s)
        return shown > need + cfg.late_entry_tolerance_s

    def _program_green_ends_s(self, j: JunctionControl, t_s: float) -> float | None:
        """When the program will end the phase it shows (its last displayed step + 1), if known.
        Actuated phases may end at their minDur: the earliest end is assumed."""
        if not j.in_program or j.program_phase < 0:
            return None
        phase = j.program.phases[j.program_phase]
        length = phase.duration_s if j.program.kind == "static" else min(phase.min_dur_s, phase.duration_s)
        end = j.program_phase_since + length
        if j.program_phase == j.restored_phase and j.program_phase_since < j.restored_end_s:
            # the phase a hand-back re-entered, for the time it gave (an actuated one may still end
            # at its minimum)
            return j.restored_end_s if j.program.kind == "static" else min(end, j.restored_end_s)
        return end

    def _handback_s(self, j: JunctionControl, t_s: float, target: str | None = None, phase: int = -1) -> float:
        """An upper bound of the time from ``t_s`` until the signal is back in its program, with
        the exit starting now (``target`` None) or once a switch to ``target`` (the program's
        ``phase`` serving it) has shown it: what it shows (then ``target``) kept to its minimum
        green, yellow and red clearance, the re-entry phase shown and held until the program
        cannot cut its greens short, and the restore step; each switch to greens with its
        all-red extension at the most. (An exit later than that has its own estimate then:
        each tick's :meth:`_fits`, and :meth:`_fits_showing` before each change shown.)"""
        timing, dt, ext = j.timing, self.config.step_s, self.config.red_extension_s
        if target is not None and target == j.clock.state and (target, phase) != (j.target, j.phase):
            # shown already (an entry holding the display): the re-entry phase still follows
            # the target served, not the one served before (or none)
            return self._handback_as_s(j, t_s, j.clock, target, phase)
        if target is not None and target != j.clock.state:
            # the re-entry phase follows the target (and, handed back in step, the time), and
            # how long it is held, what the target's greens have run: worked out as the signal
            # will be when the target shows, on each step it may (its all-red extension, if any)
            earliest = time_to_show_s(timing, j.clock, target, t_s, dt)
            longest = 0.0
            for k in range(math.ceil(ext / dt - 1e-9) + 1):
                shown_s = t_s + earliest + k * dt
                clock = j.clock.copy()
                clock.observe(shown_s, target)
                longest = max(longest, shown_s - t_s + self._handback_as_s(j, shown_s, clock, target, phase))
            # (two steps more, as ever: the switch's and the exit's commands, each shown a step on)
            return longest + 2 * dt
        longest = 0.0
        # the re-entry phase depends on the exit's reason (see _begin_exit)
        for starved in (True, False) if self.config.reentry_starved else (False,):
            reentry = self._reentry_now(j, t_s, starved)
            back = j.program.phases[reentry].state
            longest = max(longest, time_to_show_s(timing, j.clock, back, t_s, dt) + ext
                          + self._reentry_hold_s(j, reentry) + dt)
        return longest

    def _handback_as_s(self, j: JunctionControl, t_s: float, clock: DisplayClock, target: str, phase: int) -> float:
        """:meth:`_handback_s` for an exit starting at ``t_s`` with the signal as it will be then:
        showing what ``clock`` says, serving ``target`` (the program's ``phase``)."""
        was = j.clock, j.target, j.phase
        j.clock, j.target, j.phase = clock, target, phase
        try:
            return self._handback_s(j, t_s)
        finally:
            j.clock, j.target, j.phase = was

    @staticmethod
    def _reentry_hold_s(j: JunctionControl, phase: int) -> float:
        """How long a hand-back at ``phase`` holds it at most once shown, until the program's own
        phase would not cut a green below its minimum (:meth:`SignalTiming.handback_ready`; where
        that phase runs the minimum, not at all)."""
        timing = j.timing
        return max(0.0, max((timing.min_green_s[i] - timing.green_left_s(phase, i)
                             for i, c in enumerate(j.program.phases[phase].state) if is_green(c)), default=0.0))

    def _fits(self, j: JunctionControl, t_s: float, limit_s: float, target: str | None = None,
              phase: int = -1) -> bool:
        """Would the signal be back in its program before ``limit_s`` with the exit starting on
        the next tick (``target`` None) or after a switch to ``target`` (served by the program's
        ``phase``)? :meth:`_handback_s` for an exit starting now or on the next tick, whichever is
        longer: an in-step re-entry phase can change from one tick to the next (one that keeps
        the current green, then one that needs yellow and clearance first)."""
        dt = self.config.step_s
        longest = max(self._handback_s(j, t_s, target, phase), self._handback_s(j, t_s + dt, target, phase))
        return t_s + dt + longest < limit_s

    def _fits_showing(self, j: JunctionControl, t_s: float, limit_s: float, state: str) -> bool:
        """:meth:`_fits` for an exit starting on the tick after ``state`` is commanded at ``t_s``
        (shown from the next step): as the signal will then be, its new greens just turned on."""
        dt = self.config.step_s
        clock = j.clock.copy()
        clock.observe(t_s + dt, state)
        longest = max(self._handback_as_s(j, t, clock, j.target, j.phase) for t in (t_s + dt, t_s + 2 * dt))
        return t_s + 2 * dt + longest < limit_s  # (as _fits, from the next tick)

    def _lockouts_from(self, j: JunctionControl, t_s: float, switched: bool = True) -> None:
        """The hand-back ends at ``t_s`` (``switched``: the signal goes back to its program now):
        the lockouts of a max-presence exit run from now (from the exit's start they could run out
        before the program is back, and the same EV take the signal again on the next step), and
        where the signal was switched, the signal's for every EV; an entry within
        ``reservice_gap_s`` continues this episode's presence limit (:meth:`_episode_start`)."""
        until_s = t_s + self.config.step_s + self.config.lockout_s
        for ev_id, until in j.lockout.items():
            if until == math.inf:
                j.lockout[ev_id] = until_s
                if switched:
                    j.locked_until = until_s
        if switched:
            j.handed_back_s = t_s
            j.episode_entry_s = j.presence_from_s

    def _take_back(self, j: JunctionControl, t_s: float, reqs: list[ServiceRequest]) -> bool:
        """An exit under way, with EVs asking for the signal (again: an EV re-routed away and
        back, one whose position was lost for a tick; or another EV): is the entry for them due
        now, as from what the signal shows (its yellow, its red clearance, the re-entry phase)?
        Then the exit is taken back (its records kept in ``taken_back``) and the signal switched
        to their target through the same safe transitions: an entry of its own (the maximum
        presence time counts from now, as for an entry within the re-service gap) within the
        episode's presence limit; waiting for the hand-back would show them green late. Never
        after a max-presence exit (its lockout) or a stop."""
        cfg = self.config
        if not j.holding or self.stop_reason is not None or math.inf in j.lockout.values():
            return False
        if j.presence_from_s is None:
            return False
        joinable = self._joinable(j, t_s, reqs)
        if not joinable:
            return False
        j.serving = ()  # (those of the exit's episode go first no more: the same merge as the entry's)
        target, phase, served = self._merge(j, joinable)
        start = j.presence_from_s
        if not (self._entry_due(j, t_s, target, served, start)
                and self._fits(j, t_s, start + cfg.presence_limit_s, target, phase)):
            return False
        # (records only armed, never switched for, have nothing to report: those EVs' are made afresh)
        j.taken_back += [rec for rec in (*j.ended, *j.current.values()) if rec.entry_s is not None]
        j.ended.clear()
        j.current.clear()
        j.entry_s = t_s
        return True

    def _begin_exit(self, j: JunctionControl, t_s: float, reason: str) -> SignalCommand | None:
        j.stage = "exit"
        j.reentry_phase = self._reentry_now(j, t_s, starved=reason != "max presence")
        for rec in j.current.values():
            if rec.exit_s is None:
                rec.exit_s = t_s
                rec.exit_reason = reason or self._why_ended(rec)
        return self._tick_junction(j, t_s, [])

    def _end_gone(self, j: JunctionControl, t_s: float, reqs: Sequence[ServiceRequest]) -> None:
        """An EV with no request left at the signal (it crossed, was cancelled or re-routed) while
        another EV's go on: it no longer holds the signal (:meth:`holders`), and its records that
        were switched for end now, with the reason its requests ended. So does an EV's record for
        a junction of the signal it has left behind while it asks for one further on (a signal
        of two junctions of its route, or a route passing it again): its exit is when its own
        request ended, not the signal's hand-back for the later one (which a time-space diagram
        showed as a dwell over the red of the movement crossed)."""
        furthest: dict[str, int] = {}
        for r in reqs:
            furthest[r.ev_id] = max(furthest.get(r.ev_id, -1), r.junction_index)
        asked = {r.key for r in reqs}
        for key in [k for k in j.current
                    if k[0] not in furthest or (k not in asked and k[1] < furthest[k[0]])]:
            rec = j.current.pop(key)
            if rec.entry_s is not None:  # armed but never switched: nothing to report
                rec.exit_s = t_s
                rec.exit_reason = self._why_ended(rec)
                j.ended.append(rec)

    def _why_ended(self, rec: PreemptionRecord) -> str:
        return self.end_reasons.get((rec.ev_id, rec.junction_index)) or self.release_reasons.get(rec.ev_id, "crossed")

    def _why_armed_ended(self, rec: PreemptionRecord) -> str:
        """Why an EV's request ended at a signal armed, never switched, for it."""
        return self.stop_reason or self._why_ended(rec)

    def _close(
        self, j: JunctionControl, t_s: float, reason: str, *, restored: bool, in_step_s: float | None = None,
        offset_s: float | None = None,
    ) -> None:
        j.last_exits = {}
        armed: dict[str, str] = {}  # EVs it was armed for, never switched for: why their requests ended
        for rec in j.taken_back:  # (their reasons are not the hand-back's)
            if restored:
                rec.restored_s = t_s + self.config.step_s
                rec.in_step_s, rec.schedule_offset_s = in_step_s, offset_s
            j.records.append(rec)
        for rec in [*j.ended, *j.current.values()]:
            if rec.entry_s is None:  # armed but never switched: no record to report, a reason to give
                armed[rec.ev_id] = rec.exit_reason or self._why_armed_ended(rec)
                continue
            if rec.exit_s is None:
                rec.exit_s = t_s
                rec.exit_reason = rec.exit_reason or reason
            j.last_exits[rec.ev_id] = rec.exit_reason  # (its last record's: those ended before come first)
            if restored:
                rec.restored_s = t_s + self.config.step_s
                rec.in_step_s, rec.schedule_offset_s = in_step_s, offset_s
            j.records.append(rec)
        j.last_exits = {**armed, **j.last_exits}
        j.current.clear()
        j.ended.clear()
        j.taken_back.clear()
        j.target, j.phase, j.serving, j.entry_s, j.presence_from_s = "", -1, (), None, None

    def _set(self, j: JunctionControl, state: str | None, why: str) -> SignalCommand | None:
        if state is None:
            return None
        if state == j.clock.state and j.holding:
            return None
        j.holding = True
        j.taken_over = True
        return SignalCommand(j.tls_id, "set_state", state=state, reason=why)
