"""The independent safety monitor: pure rules judged against each signal's own program.

Each simulation tick the runtime hands the monitor, per watched traffic light, the signal
state string SUMO shows and the id of the program running. The monitor counts violations of
five rules. It must not cry wolf: a signal simply running its own program (static, or actuated
with any durations between ``minDur`` and ``maxDur``) gives zero violations. So every
requirement below is derived from the program, with the shortest duration the program itself
may use for a phase, ``lo = min(minDur, duration)``.

S1  A link that loses green shows yellow for at least the program's yellow time for that link
    before red. The yellow time is the shortest run of consecutive yellow of that link in the
    program that follows green and ends in red (``default_yellow_s`` where there is none).
    Green→red directly is a violation unless the program itself has green→red for that link
    between consecutive phases.
S2  No yellow→green for a link unless the program has it. When link L turns green, every other
    link M that is not compatible with L (no program phase has both green) and is red must have
    turned red at least ``R(M, L)`` earlier; an incompatible M still yellow is a violation unless
    the program itself turns L green while M is yellow. ``R(M, L)`` is the smallest time, over
    the program's cycle and summing ``lo`` of the phases in between, from M turning red to L
    turning green (M staying red in between), each capped at the program's longest all-red run
    where a link that crosses M or L (is never green with it) is green in between, or any
    link's green starts (the red is then a service, not M's clearance), uncapped where not (on
    a joined signal one junction's all-red is not the signal's); where the program never does
    that, the program's shortest all-red run (0 if none). The same for a link and itself: a
    link whose yellow ended is red at least ``R(L, L)`` (from its yellow's end to its next green
    in the program, always capped at the longest all-red run: no other movement is cleared for)
    before it is green again.
S3  A green run (G and g both count; G↔g continues a run) that ends is at least its minimum.
    For a run that was shown, even for one tick, under a program other than the original, the
    minimum is ``min(max(min_green_floor_s, minDur-run), duration-run)`` of the program's green
    run of that link it is taken for, computed with minDur and with duration: the run told by the
    state shown at its start (the phases showing exactly its greens, else those whose greens hold
    them; of several, the smallest; of none, the smallest over the link's runs). (With the
    smallest always, a run whose minDur is longer could be cut at a shorter run's.) For a run shown
    entirely under the original program it is the lo-run: what SUMO itself may do with that
    program (judgment call: the floor must not flag an actuated program's own minDur).
S4  The greens shown are a subset of one phase's greens ('G' ⊆ the phase's 'G', 'g' ⊆ the same
    phase's 'G' or 'g'), the state string has the program's link count and only SUMO's signal
    characters. One violation per tick on which this fails.
S5  Preempted (running another program than the original) longer than ``max_presence_s`` in
    one episode: one violation per episode; still preempted at :meth:`SignalWatch.finish`: one.
    An episode ends once the original program has run ``reservice_gap_s``: a shorter return
    belongs to it (a one-second hand-back must not restart the maximum presence).

Characters: G/g green; y/Y yellow; r/u red (as in :mod:`controller.core.states`); s (stop,
then go) and o/O (off) count as red, and S4 allows them only on a link the program shows them
on (vehicles may pass on them). An off state (o/O) ended by a red (r, u, s) that the program
never follows it with on that link is S1 (an uncontrolled right of way taken away without
yellow). Time is only ever an argument. A run's length is the time of the tick showing
the change minus the time of the tick that first showed the run, i.e. ``(k+1)*dt`` for a
state seen on ``k+1`` ticks; this works for any step length. The first run of every link
(started before observation began, or after a state of the wrong length) is not judged.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from controller.core.network import Program
from controller.core.states import GREEN_CHARS, RED_CHARS, YELLOW_CHARS

EPS_S = 1e-6
RULES: tuple[str, ...] = ("S1", "S2", "S3", "S4", "S5")
MIN_GREEN_FLOOR_S = 5.0

# Link classes.
RED = 0
YELLOW = 1
GREEN = 2
_CLASS_NAMES = ("red", "yellow", "green")
OFF_CHARS = frozenset("oO")
PASSABLE_CHARS = frozenset("soO")  # not green, yet vehicles may pass (after a stop, or the signal off)
SIGNAL_CHARS = GREEN_CHARS | YELLOW_CHARS | RED_CHARS | OFF_CHARS

_CHAR_CLASS: dict[str, int] = {}
for _c in GREEN_CHARS:
    _CHAR_CLASS[_c] = GREEN
for _c in YELLOW_CHARS:
    _CHAR_CLASS[_c] = YELLOW
for _c in RED_CHARS | OFF_CHARS:
    _CHAR_CLASS[_c] = RED


def char_class(c: str) -> int:
    """RED, YELLOW or GREEN; unknown characters count as red (and fail S4)."""
    return _CHAR_CLASS.get(c, RED)


@dataclass(frozen=True)
class SafetyConfig:
    min_green_floor_s: float = MIN_GREEN_FLOOR_S
    default_yellow_s: float = 3.0
    max_presence_s: float = 180.0
    # S5: a return to the program shorter than this does not end the episode (the planner's
    # ``reservice_gap_s`` is the same)
    reservice_gap_s: float = 20.0
    # The simulation's step: a duration the program gives is required as SUMO can show it, in
    # whole steps rounded down (at 0.7 s SUMO itself shows a 2 s clearance as 1.4 s, under every
    # controller; the planner counts in steps rounded up, so it never shows less than the program).
    step_s: float = 1.0

    def __post_init__(self) -> None:
        if not self.min_green_floor_s >= MIN_GREEN_FLOOR_S:
            raise ValueError(f"min_green_floor_s must be at least {MIN_GREEN_FLOOR_S} s, got {self.min_green_floor_s}")
        if not self.default_yellow_s >= 0.0:
            raise ValueError(f"default_yellow_s must be >= 0 s, got {self.default_yellow_s}")
        if not self.max_presence_s > 0.0:
            raise ValueError(f"max_presence_s must be > 0 s, got {self.max_presence_s}")
        if not self.reservice_gap_s >= 0.0:
            raise ValueError(f"reservice_gap_s must be >= 0 s, got {self.reservice_gap_s}")
        if not self.step_s > 0.0:
            raise ValueError(f"step_s must be > 0 s, got {self.step_s}")

    def shown_s(self, duration_s: float) -> float:
        """``duration_s`` as SUMO shows it at this step: whole steps, rounded down."""
        return math.floor(duration_s / self.step_s + 1e-6) * self.step_s


@dataclass(frozen=True)
class Violation:
    rule: str  # "S1".."S5"
    tls_id: str
    t_s: float
    link_index: int | None
    detail: str


@dataclass(frozen=True)
class _Run:
    """A maximal run of one class of one link in the cyclic program."""

    cls: int
    prev_cls: int
    next_cls: int
    lo_s: float  # summed min(minDur, duration)
    min_dur_s: float  # summed minDur
    duration_s: float  # summed duration


def _phase_lo_s(min_dur_s: float, duration_s: float) -> float:
    return max(0.0, min(min_dur_s, duration_s))


def _runs(classes: list[int], lo: list[float], md: list[float], dur: list[float]) -> list[_Run]:
    """The maximal runs of a cyclic class sequence; empty if the class never changes."""
    n = len(classes)
    start = next((p for p in range(n) if classes[p] != classes[p - 1]), None)
    if start is None:
        return []
    runs: list[_Run] = []
    p = start
    end = start + n
    while p < end:
        c = classes[p % n]
        q = p
        lo_s = md_s = dur_s = 0.0
        while q < end and classes[q % n] == c:
            lo_s += lo[q % n]
            md_s += md[q % n]
            dur_s += dur[q % n]
            q += 1
        runs.append(_Run(c, classes[(p - 1) % n], classes[q % n], lo_s, md_s, dur_s))
        p = q
    return runs


def _run_minimums(classes: list[int], md: list[float], dur: list[float], floor_s: float,
                  shown: Callable[[float], float]) -> tuple[float | None, ...]:
    """Per phase, the minimum green of the link's green run the phase belongs to (``min(max(floor,
    minDur-run), duration-run)``, as shown), None where the link is not green in it."""
    n = len(classes)
    out: list[float | None] = [None] * n
    start = next((p for p in range(n) if classes[p] != classes[p - 1]), None)
    if start is None:
        return tuple(out)  # never or always green: ``min_green_s`` (the floor) applies
    p = start
    while p < start + n:
        q = p
        while q < start + n and classes[q % n] == classes[p % n]:
            q += 1
        if classes[p % n] == GREEN:
            run = shown(min(max(floor_s, sum(md[k % n] for k in range(p, q))), sum(dur[k % n] for k in range(p, q))))
            for k in range(p, q):
                out[k % n] = run
        p = q
    return tuple(out)


def _nothing_served(cls_: list[list[int]], compatible: list[int], m: int, link: int, j: int) -> bool:
    """In the phases in which ``m`` is red just before phase ``j``, is no link that crosses
    ``m`` or ``link`` (is never green with it) green, and no link's green starting?"""
    n_ph = len(cls_)
    for back in range(1, n_ph):
        row = cls_[(j - back) % n_ph]
        if row[m] != RED:
            return True
        previous = cls_[(j - back - 1) % n_ph]
        for i, c in enumerate(row):
            if c == GREEN and (previous[i] != GREEN
                               or not ((compatible[m] >> i) & 1 and (compatible[link] >> i) & 1)):
                return False
    return True


def _red_before(cls_: list[list[int]], lo: list[float], link: int, j: int) -> tuple[float, int] | None:
    """How long ``link`` has been red when phase ``j`` starts (``lo`` of the red phases just
    before it, 0 if the phase before is not red) and the class it showed before that red run;
    None when it is red the whole cycle."""
    n_ph = len(cls_)
    gap_s = 0.0
    k = j
    for _ in range(n_ph):
        pk = (k - 1) % n_ph
        if cls_[pk][link] != RED:  # the link turned red at the start of phase k
            return gap_s, cls_[pk][link]
        gap_s += lo[pk]
        k = pk
    return None


@dataclass(frozen=True)
class Conflict:
    """A link M that must be cleared before link L turns green."""

    other: int  # M
    clearance_s: float  # R(M, L)
    yellow_ok: bool  # the program itself turns L green while M is yellow


@dataclass(frozen=True)
class ProgramRules:
    """What a program allows, precomputed once per program (indices are link indices)."""

    tls_id: str
    program_id: str
    link_count: int
    required_yellow_s: tuple[float, ...]
    min_green_s: tuple[float, ...]  # S3 when a run was touched by another program
    own_min_green_s: tuple[float, ...]  # S3 for a run shown entirely by the original program
    transitions: tuple[frozenset[tuple[int, int]], ...]  # (from class, to class) between phases
    green_sets: tuple[tuple[int, int], ...]  # per distinct phase: (mask of 'G', mask of 'G' or 'g')
    compatible: tuple[int, ...]  # per link L: mask of links green with L in some phase
    clearance_s: tuple[tuple[float, ...], ...]  # [M][L] = R(M, L)
    all_red_s: float
    conflicts: tuple[tuple[Conflict, ...], ...] = field(repr=False)  # per L: incompatible links
    own_clearance_s: tuple[float, ...] = ()  # per L: R(L, L), its own red after its yellow
    # per link: which of SUMO's states that let vehicles pass without a green ('s': stop, then
    # go; 'o', 'O': off, blinking or not) the program shows on it (S4 allows those only)
    passable: tuple[frozenset[str], ...] = ()
    # per link: the characters the program follows an off state ('o', 'O') with, itself
    # included (an off state ended with no yellow takes an uncontrolled right of way away at once:
    # S1 where the program never does so on that link)
    off_ends: tuple[frozenset[str], ...] = ()
    # per link, per phase: the minimum of the link's green run that phase belongs to (as
    # ``min_green_s``, of that run alone; None where the link is not green in the phase), and per
    # phase the mask of its greens: a green's run is told by the state shown at its start
    run_min_green_s: tuple[tuple[float | None, ...], ...] = ()
    phase_masks: tuple[int, ...] = ()

    @classmethod
    def from_program(cls, program: Program, config: SafetyConfig) -> ProgramRules:
        phases = program.phases
        n_ph = len(phases)
        n = program.link_count
        lo = [_phase_lo_s(p.min_dur_s, p.duration_s) for p in phases]
        md = [max(0.0, p.min_dur_s) if p.min_dur_given else 0.0 for p in phases]  # explicit minDur only
        dur = [max(0.0, p.duration_s) for p in phases]
        cls_ = [[char_class(c) for c in p.state] for p in phases]  # [phase][link]
        floor_s = config.min_green_floor_s

        required_yellow: list[float] = []
        min_green: list[float] = []
        own_min_green: list[float] = []
        transitions: list[frozenset[tuple[int, int]]] = []
        for link in range(n):
            seq = [cls_[p][link] for p in range(n_ph)]
            runs = _runs(seq, lo, md, dur)
            yellows = [r.lo_s for r in runs if r.cls == YELLOW and r.prev_cls == GREEN and r.next_cls == RED]
            required_yellow.append(min(yellows) if yellows else config.default_yellow_s)
            greens = [r for r in runs if r.cls == GREEN]
            if greens:
                min_green.append(min(min(max(floor_s, r.min_dur_s), r.duration_s) for r in greens))
                own_min_green.append(min(r.lo_s for r in greens))
            else:  # never green, or always green: nothing to learn from the program
                min_green.append(floor_s)
                own_min_green.append(floor_s)
            transitions.append(frozenset((seq[p - 1], seq[p]) for p in range(n_ph) if seq[p - 1] != seq[p]))

        masks: dict[tuple[int, int], None] = {}
        for phase in phases:
            big = sum(1 << i for i, c in enumerate(phase.state) if c == "G")
            any_green = sum(1 << i for i, c in enumerate(phase.state) if c in GREEN_CHARS)
            masks[(big, any_green)] = None
        green_sets = tuple(masks)
        compatible = [0] * n
        for p in range(n_ph):
            any_green = sum(1 << i for i in range(n) if cls_[p][i] == GREEN)
            for i in range(n):
                if cls_[p][i] == GREEN:
                    compatible[i] |= any_green

        all_red_flags = [all(c == RED for c in cls_[p]) for p in range(n_ph)]
        if all(all_red_flags):
            all_red_s = sum(lo)
        else:
            red_runs = _runs([int(f) for f in all_red_flags], lo, md, dur)
            all_red = [r.lo_s for r in red_runs if r.cls == 1]
            all_red_s = min(all_red) if all_red else 0.0
        # The red clearance a program "has" is its all-red interval: a gap the program leaves
        # between M and L because other phases run in between is not clearance, so it is capped
        # at the program's longest all-red run (DESIGN S2).
        max_all_red_s = max(all_red) if not all(all_red_flags) and all_red else all_red_s

        # ... unless nothing else is served in between: where no link crossing M or L (never
        # green with it) is green from M's red to L's green, that red is M's clearance before L,
        # however long (on a joined signal one junction's all-red is not the signal's: another
        # junction shows green through it, and the signal may have no all-red run at all)
        inf = math.inf
        found = [[inf] * n for _ in range(n)]  # [M][L]
        yellow_ok = [[False] * n for _ in range(n)]
        for j in range(n_ph if n_ph > 1 else 0):
            for L in range(n):
                if not (cls_[j][L] == GREEN and cls_[j - 1][L] != GREEN):
                    continue
                for M in range(n):
                    if M == L:  # L itself, red after its own yellow (yellow→green: S2 judges that itself)
                        before = _red_before(cls_, lo, L, j)
                        if before is not None and before[1] == YELLOW:
                            found[L][L] = min(found[L][L], min(before[0], max_all_red_s))
                        continue
                    c = cls_[j][M]
                    if c == YELLOW:
                        yellow_ok[M][L] = True
                    elif c == RED:
                        before = _red_before(cls_, lo, M, j)
                        if before is not None:
                            gap = before[0] if _nothing_served(cls_, compatible, M, L, j) else min(before[0],
                                                                                                 max_all_red_s)
                            found[M][L] = min(found[M][L], gap)
        shown = config.shown_s
        clearance = tuple(tuple(shown(found[M][L]) if found[M][L] != inf else all_red_s for L in range(n))
                          for M in range(n))
        # a link's own red after its yellow, before it is green again: R(L, L) as above
        own_clearance = tuple(clearance[L][L] for L in range(n))
        conflicts = tuple(
            tuple(
                Conflict(M, clearance[M][L], yellow_ok[M][L])
                for M in range(n)
                if M != L and not (compatible[L] >> M) & 1
            )
            for L in range(n)
        )
        return cls(
            tls_id=program.tls_id,
            program_id=program.program_id,
            link_count=n,
            required_yellow_s=tuple(shown(x) for x in required_yellow),
            min_green_s=tuple(shown(x) for x in min_green),
            own_min_green_s=tuple(shown(x) for x in own_min_green),
            transitions=tuple(transitions),
            green_sets=green_sets,
            passable=tuple(frozenset(p.state[i] for p in phases if p.state[i] in PASSABLE_CHARS) for i in range(n)),
            off_ends=tuple(frozenset(phases[(k + 1) % n_ph].state[i] for k in range(n_ph)
                                     if phases[k].state[i] in OFF_CHARS) for i in range(n)),
            run_min_green_s=tuple(_run_minimums([cls_[k][i] for k in range(n_ph)], md, dur, floor_s, shown)
                                  for i in range(n)),
            phase_masks=tuple(sum(1 << i for i in range(n) if cls_[k][i] == GREEN) for k in range(n_ph)),
            compatible=tuple(compatible),
            clearance_s=clearance,
            all_red_s=all_red_s,
            conflicts=conflicts,
            own_clearance_s=own_clearance,
        )

    def check_greens(self, state: str) -> str | None:
        """S4 for one state string: None if allowed, else why not."""
        if len(state) != self.link_count:
            return f"state {state!r} has {len(state)} links, the program has {self.link_count}"
        bad = sorted({c for c in state if c not in SIGNAL_CHARS})
        if bad:
            return f"state {state!r} has unknown signal characters {''.join(bad)!r}"
        for i, c in enumerate(state):
            if c in PASSABLE_CHARS and c not in self.passable[i]:
                return (f"state {state!r}: link {i} shows {c!r}, which lets vehicles pass without a green and the "
                        "program never shows on that link")
        big = 0
        small = 0
        for i, c in enumerate(state):
            if c == "G":
                big |= 1 << i
            elif c == "g":
                small |= 1 << i
        if not big and not small:
            return None
        for phase_big, phase_any in self.green_sets:
            if big & ~phase_big == 0 and small & ~phase_any == 0:
                return None
        return f"state {state!r}: its greens are not a subset of the greens of any phase of the program"


def _fmt(t_s: float) -> str:
    return f"{t_s:g} s"


class SignalWatch:
    """Watches one traffic light; :meth:`observe` once per tick, :meth:`finish` at the end."""

    def __init__(
        self,
        program: Program,
        config: SafetyConfig = SafetyConfig(),
        tls_id: str | None = None,
        rules: ProgramRules | None = None,  # the program's, already derived (with this config)
    ) -> None:
        self.program = program
        self.config = config
        self.rules = rules if rules is not None else ProgramRules.from_program(program, config)
        self.touched = False
        n = self.rules.link_count
        self._tls_id = program.tls_id if tls_id is None else tls_id
        self._last_t: float | None = None
        self._prev_state: str | None = None
        self._prev_s4: str | None = None
        self._s4_cache: dict[str, str | None] = {}
        self._cls = [RED] * n
        self._green_start: list[float | None] = [None] * n
        self._green_need: list[float | None] = [None] * n  # a green's minimum if touched by another program: its run's
        self._yellow_start: list[float | None] = [None] * n  # only for yellow that followed green
        self._red_onset: list[float | None] = [None] * n
        self._red_after_yellow = [False] * n  # the red run began with the end of a yellow
        self._last_foreign_t: float | None = None
        self._episode_start: float | None = None
        self._episode_reported = False
        self._returned_t: float | None = None  # back in the program since (within an episode)

    @property
    def preempted(self) -> bool:
        """Last seen outside its own program (in an episode of preemption)."""
        return self._episode_start is not None and self._returned_t is None

    def carry_episode(self, old: SignalWatch) -> None:
        """Take over ``old``'s episode (a watch started afresh within its re-service gap)."""
        self._episode_start, self._episode_reported = old._episode_start, old._episode_reported
        self._returned_t = old._returned_t

    # -- S5 ---------------------------------------------------------------------------------
    def _presence(self, t_s: float, preempted: bool, out: list[Violation]) -> None:
        start = self._episode_start
        if preempted:
            self.touched = True
            self._last_foreign_t = t_s
            if self._returned_t is not None and t_s - self._returned_t >= self.config.reservice_gap_s - EPS_S:
                start = None  # the program ran the gap: a new episode
            if start is None:
                self._episode_start = start = t_s
                self._episode_reported = False
            self._returned_t = None  # (back within the gap: the same episode goes on)
            self._check_presence(t_s, start, "so far", out)
        elif start is not None:
            if self._returned_t is None:  # back in the program now: the episode's length so far
                self._returned_t = t_s
                self._check_presence(t_s, start, "so far", out)
            if t_s - self._returned_t >= self.config.reservice_gap_s - EPS_S:
                self._episode_start = self._returned_t = None

    # -- per tick ----------------------------------------------------------------------------
    def observe(self, t_s: float, state: str, program_id: str) -> list[Violation]:
        if self._last_t is not None and t_s <= self._last_t:
            raise ValueError(f"traffic light {self._tls_id!r}: time went from {self._last_t} s to {t_s} s")
        self._last_t = t_s
        out: list[Violation] = []
        self._presence(t_s, program_id != self.rules.program_id, out)

        if state == self._prev_state:  # the common case: nothing changed
            if self._prev_s4 is not None:
                out.append(Violation("S4", self._tls_id, t_s, None, self._prev_s4))
            return out

        s4 = self._s4_cache.get(state, "")
        if s4 == "":
            s4 = self.rules.check_greens(state)
            if len(self._s4_cache) < 1024:
                self._s4_cache[state] = s4
        self._prev_s4 = s4
        if s4 is not None:
            out.append(Violation("S4", self._tls_id, t_s, None, s4))
        if len(state) != self.rules.link_count:  # cannot be read link by link: forget the runs
            self._prev_state = None
            return out

        prev = self._prev_state
        self._prev_state = state
        if prev is None:
            self._start(state)
            return out

        onsets: list[int] = []
        for i in range(len(state)):
            if state[i] != prev[i]:
                new = char_class(state[i])
                if prev[i] in OFF_CHARS and new == RED and state[i] not in OFF_CHARS and self.rules.off_ends \
                        and state[i] not in self.rules.off_ends[i]:
                    out.append(Violation("S1", self._tls_id, t_s, i,
                                         f"link {i} {prev[i]!r}→{state[i]!r}: the signal's off state (vehicles pass "
                                         "by the junction's right of way) ended without yellow; the program never "
                                         "does so"))
                if new != self._cls[i]:
                    self._change(t_s, i, prev[i], state[i], new, out)
                    if new == GREEN:
                        onsets.append(i)
        for L in onsets:
            self._clearance(t_s, L, state, out)
            self._green_need[L] = self._run_need(L, state)
        return out

    def _run_need(self, link: int, state: str) -> float:
        """The minimum of a green of ``link`` that starts with ``state`` shown: its run's, the run
        told by the phases showing the state's greens (exactly those; else the phases whose greens
        hold them); of several, the smallest; of none, the smallest over the link's runs
        (``min_green_s``)."""
        rules = self.rules
        if not rules.run_min_green_s:
            return rules.min_green_s[link]
        mask = sum(1 << i for i, c in enumerate(state) if char_class(c) == GREEN)
        runs, masks = rules.run_min_green_s[link], rules.phase_masks
        needs = [need for k, need in enumerate(runs) if need is not None and masks[k] == mask] or \
            [need for k, need in enumerate(runs) if need is not None and mask & ~masks[k] == 0]
        return min(needs) if needs else rules.min_green_s[link]

    def _start(self, state: str) -> None:
        n = self.rules.link_count
        self._cls = [char_class(c) for c in state]
        self._green_start = [None] * n
        self._green_need = [None] * n
        self._yellow_start = [None] * n
        self._red_onset = [None] * n
        self._red_after_yellow = [False] * n

    def _change(self, t_s: float, i: int, old_c: str, new_c: str, new: int, out: list[Violation]) -> None:
        rules = self.rules
        old = self._cls[i]
        self._cls[i] = new
        what = f"link {i} {old_c!r}→{new_c!r} ({_CLASS_NAMES[old]}→{_CLASS_NAMES[new]})"
        if old == GREEN:
            start, run_need = self._green_start[i], self._green_need[i]
            self._green_start[i] = self._green_need[i] = None
            if start is not None:
                length = t_s - start
                foreign = self._last_foreign_t is not None and self._last_foreign_t >= start - EPS_S
                need = (run_need if run_need is not None else rules.min_green_s[i]) if foreign \
                    else rules.own_min_green_s[i]
                if length < need - EPS_S:
                    out.append(
                        Violation(
                            "S3",
                            self._tls_id,
                            t_s,
                            i,
                            f"{what}: green cut after {_fmt(length)}, minimum {_fmt(need)}"
                            f"{' (another program ran)' if foreign else ''}",
                        )
                    )
            if new == RED and (GREEN, RED) not in rules.transitions[i]:
                out.append(
                    Violation(
                        "S1",
                        self._tls_id,
                        t_s,
                        i,
                        f"{what}: green to red without yellow, required yellow {_fmt(rules.required_yellow_s[i])}",
                    )
                )
            if new == YELLOW:
                self._yellow_start[i] = t_s
        elif old == YELLOW:
            start = self._yellow_start[i]
            self._yellow_start[i] = None
            if new == RED and start is not None:
                length = t_s - start
                need = rules.required_yellow_s[i]
                if length < need - EPS_S:
                    out.append(
                        Violation(
                            "S1",
                            self._tls_id,
                            t_s,
                            i,
                            f"{what}: yellow lasted {_fmt(length)}, required {_fmt(need)}",
                        )
                    )
            if new == GREEN and (YELLOW, GREEN) not in rules.transitions[i]:
                out.append(Violation("S2", self._tls_id, t_s, i, f"{what}: yellow to green, the program never does"))
        elif old == RED and new == GREEN:
            onset, after_yellow = self._red_onset[i], self._red_after_yellow[i]
            need = rules.own_clearance_s[i] if rules.own_clearance_s else 0.0
            if onset is not None and after_yellow and t_s - onset < need - EPS_S:
                out.append(
                    Violation(
                        "S2",
                        self._tls_id,
                        t_s,
                        i,
                        f"{what}: green again {_fmt(t_s - onset)} after its own yellow ended; "
                        f"required red clearance {_fmt(need)}",
                    )
                )
        self._red_onset[i] = t_s if new == RED else None
        self._red_after_yellow[i] = new == RED and old == YELLOW
        if new == GREEN:
            self._green_start[i] = t_s

    def _clearance(self, t_s: float, L: int, state: str, out: list[Violation]) -> None:
        for conflict in self.rules.conflicts[L]:
            M = conflict.other
            c = self._cls[M]
            if c == RED:
                onset = self._red_onset[M]
                if onset is not None and t_s - onset < conflict.clearance_s - EPS_S:
                    out.append(
                        Violation(
                            "S2",
                            self._tls_id,
                            t_s,
                            L,
                            f"link {L} turned green {_fmt(t_s - onset)} after conflicting link {M} "
                            f"turned red ({state!r}); required clearance {_fmt(conflict.clearance_s)}",
                        )
                    )
            elif c == YELLOW and not conflict.yellow_ok:
                out.append(
                    Violation(
                        "S2",
                        self._tls_id,
                        t_s,
                        L,
                        f"link {L} turned green while conflicting link {M} is still yellow ({state!r})",
                    )
                )

    def _check_presence(self, t_s: float, start: float, so_far: str, out: list[Violation]) -> None:
        """S5: one violation per episode preempted longer than the maximum presence time."""
        if self._episode_reported or t_s - start <= self.config.max_presence_s + EPS_S:
            return
        self._episode_reported = True
        out.append(
            Violation(
                "S5",
                self._tls_id,
                t_s,
                None,
                f"preempted since {_fmt(start)}: {_fmt(t_s - start)}{' ' + so_far if so_far else ''}, "
                f"longer than max_presence_s {_fmt(self.config.max_presence_s)}",
            )
        )

    def finish(self, t_s: float) -> list[Violation]:
        """The run ends at ``t_s``: an S5 violation if the signal is still preempted."""
        out: list[Violation] = []
        start = self._episode_start
        if start is None or self._returned_t is not None:
            self._episode_start = self._returned_t = None
            return out
        self._check_presence(t_s, start, "", out)
        out.append(
            Violation(
                "S5",
                self._tls_id,
                t_s,
                None,
                f"still preempted at the end ({_fmt(t_s)}), since {_fmt(start)}",
            )
        )
        self._episode_start = None
        return out


class SafetyMonitor:
    """All watched signals. Signals in ``observe`` that are not watched are ignored."""

    def __init__(self, programs: Mapping[str, Program], config: SafetyConfig = SafetyConfig()) -> None:
        self.config = config
        self.watches: dict[str, SignalWatch] = {
            tls_id: SignalWatch(program, config, tls_id) for tls_id, program in programs.items()
        }
        self.violations: list[Violation] = []

    def observe(self, t_s: float, states: Mapping[str, tuple[str, str]]) -> None:
        for tls_id, (state, program_id) in states.items():
            watch = self.watches.get(tls_id)
            if watch is not None:
                self.violations.extend(watch.observe(t_s, state, program_id))

    def watch(self, tls_id: str, program: Program) -> None:
        """Watch one more signal from now on (an EV re-routed onto it, an escort dispatched);
        one watched already goes on as it was."""
        if tls_id not in self.watches:
            self.watches[tls_id] = SignalWatch(program, self.config, tls_id)

    def pause(self, tls_id: str) -> None:
        """Stop watching a signal for a while (it runs its own program and no EV needs it): its
        history is dropped, so that when it is observed again the checks start afresh rather
        than across the gap. Refused while it is preempted."""
        old = self.watches.get(tls_id)
        if old is None:
            return
        if old.preempted:
            raise ValueError(f"traffic light {tls_id!r} is preempted: it cannot stop being watched")
        fresh = SignalWatch(old.program, self.config, tls_id, rules=old.rules)
        fresh.touched = old.touched
        fresh.carry_episode(old)
        self.watches[tls_id] = fresh

    def finish(self, t_s: float) -> None:
        for watch in self.watches.values():
            self.violations.extend(watch.finish(t_s))

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(RULES, 0)
        for v in self.violations:
            out[v.rule] += 1
        return out

    def counts_by_touch(self) -> dict[str, dict[str, int]]:
        out = {"touched": dict.fromkeys(RULES, 0), "untouched": dict.fromkeys(RULES, 0)}
        for v in self.violations:
            watch = self.watches.get(v.tls_id)
            key = "touched" if watch is not None and watch.touched else "untouched"
            out[key][v.rule] += 1
        return out
