"""Safe signal transitions, built from each signal's own program.

The generator is reactive: every tick it is given what the signal showed (a
:class:`DisplayClock` fed with the observed states) and the state it should reach, and answers
the one state to command now (shown from the next step on), or ``None`` to leave the display
as it is. Per link:

- a green that must end stays green until it has run its minimum (the program's explicit
  minDur, never below the 5 s floor; a link green in several runs of the cycle has the longest
  run's: which run a green shown belongs to is not known), then shows yellow for the program's yellow
  time for that link (the longest it shows, at least 3 s), then red: never shortened (S1, S3);
- a yellow always runs to its full time and then turns red: never back to green (S2);
- the target's new greens turn on together, and only once every link that is not green in the
  target is red and has been red for the program's red clearance (its longest all-red run) (S2),
  and a link that is never green with a new green for as long as the program keeps the two
  apart where it serves nothing in between (:func:`_pair_clearances`: on a joined signal one
  junction's all-red is not the whole signal's, which may have none);
- all-red extension: where a vehicle of a link that is not green in the target is still on the
  crossing when that clearance has run (a left turner that waited inside the junction for a gap,
  one that entered on the yellow and crawls), and its path crosses one of the new greens', those
  wait for it to leave, for at most ``extension_s`` more (a red clearance is lengthened, never
  shortened);
- every state shown on the way keeps only greens of the state before, until the target itself
  is shown; the target is a program phase or a subset of one's greens (S4).

Timing convention: a state commanded at an observation at ``t`` is displayed from ``t + dt``.
A run that started being displayed at ``since`` has therefore lasted ``t + dt - since`` when
the next command takes effect.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from controller.core.network import Phase, Program
from controller.core.states import is_green, is_yellow

EPS_S = 1e-6
GREEN, YELLOW, RED = 0, 1, 2


def link_class(c: str) -> int:
    if is_green(c):
        return GREEN
    if is_yellow(c):
        return YELLOW
    return RED


@dataclass(frozen=True)
class SignalTiming:
    """What the program says about safe switching, per link; conservative by construction."""

    tls_id: str
    program: Program
    yellow_s: tuple[float, ...]
    min_green_s: tuple[float, ...]
    clearance_s: float
    phase_greens: tuple[frozenset[int], ...]  # per phase: links green ('G' or 'g')
    # [M][L]: how long link M must have been red before link L turns green, where the program
    # keeps the two apart longer than ``clearance_s`` (:func:`_pair_clearances`); else absent
    pair_clearance_s: tuple[dict[int, float], ...]
    max_clearance_s: float  # the longest red clearance any switch of this signal can need
    # The longest minimum green, yellow and red clearance together: with three steps added, an
    # upper bound of the time any target takes to show from any display (:func:`time_to_show_s`).
    switch_bound_s: float
    # per link, the links whose connections cross or merge with its own at the junction (the
    # net's right-of-way foes; empty where not known): a permissive green ('g') yields to a foe
    # shown 'G'
    foes: tuple[frozenset[int], ...] = ()
    # (permissive link, foe) pairs whose 'g' the program itself ends with the foe going on 'G'
    trap_shown: frozenset[tuple[int, int]] = frozenset()

    @classmethod
    def from_program(
        cls, program: Program, *, min_green_floor_s: float = 5.0, default_yellow_s: float = 3.0,
        foes: Sequence[Collection[int]] | None = None,
    ) -> SignalTiming:
        if min_green_floor_s < 5.0:
            raise ValueError("the minimum green floor is at least 5 s")
        phases = program.phases
        n = program.link_count
        n_ph = len(phases)
        classes = [[link_class(c) for c in p.state] for p in phases]
        yellow: list[float] = []
        min_green: list[float] = []
        for i in range(n):
            seq = [classes[p][i] for p in range(n_ph)]
            yellow.append(max([*_runs(seq, phases, YELLOW, use_min_dur=False), default_yellow_s]))
            # each green run counted with explicit minDur only (0 where none is given), at most as
            # counted with the durations (SUMO takes a minDur over the duration silently; the
            # monitor caps it so, and a longer one held preemptions on); the longest of the runs:
            # which run a green shown belongs to is not known from the display, and the shortest's
            # cut a run whose minDur is longer (Ingolstadt 21's 1863241632 and 2330725114: link 2
            # green in runs of 7 s and 10 s minimum, cut at 7 s)
            green_min_runs = _runs(seq, phases, GREEN, use_min_dur=True)
            green_runs = _runs(seq, phases, GREEN, use_min_dur=False)
            longest_min = max((min(m, d) for m, d in zip(green_min_runs, green_runs, strict=True)), default=0.0)
            min_green.append(max(longest_min, min_green_floor_s))
        clearance = max(_all_red_runs(classes, phases), default=0.0)
        pairs = _pair_clearances(classes, phases, clearance)
        longest = max((c for row in pairs for c in row.values()), default=clearance)  # (each pair's > clearance)
        return cls(
            tls_id=program.tls_id,
            program=program,
            yellow_s=tuple(yellow),
            min_green_s=tuple(min_green),
            clearance_s=clearance,
            phase_greens=tuple(frozenset(i for i in range(n) if classes[p][i] == GREEN) for p in range(n_ph)),
            pair_clearance_s=pairs,
            max_clearance_s=longest,
            switch_bound_s=max(min_green, default=0.0) + max(yellow, default=0.0) + longest,
            foes=tuple(frozenset(f) for f in foes) if foes is not None and len(foes) == n else (),
            trap_shown=frozenset(
                (i, f)
                for a, b in zip(phases, (*phases[1:], phases[0]), strict=True)
                for i in range(n) if a.state[i] == "g" and not is_green(b.state[i])
                for f in (foes[i] if foes is not None and len(foes) == n else ())
                if a.state[f] == "G" and is_green(b.state[f])
            ),
        )

    def clearance_before_s(self, link: int, new_greens: Sequence[int]) -> float:
        """How long ``link`` must have been red before the greens ``new_greens`` turn on."""
        row = self.pair_clearance_s[link]
        if not row:
            return self.clearance_s
        return max((row.get(g, self.clearance_s) for g in new_greens), default=self.clearance_s)

    def restore_shortfall_s(self, clock: DisplayClock, phase: int, remaining_s: float, t_s: float,
                            dt_s: float) -> float:
        """How much longer than ``remaining_s`` the program's ``phase``, restored at ``t_s``
        (shown from ``t_s + dt_s``), must run so that every link red now stays red for its pair
        clearance before each green the program then starts (its phases at their shortest: an
        actuated one may end them at minDur), its own next green included; 0 where none is
        owed. The program's own transitions keep the clearances between its phases, but not
        from a red the preemption began: a hand-back into the middle of a joined signal's red
        would cut it, and so would one into a short phase before the one that greens again
        what the exit has just turned red."""
        phases = self.program.phases
        n = len(phases)
        onsets: dict[int, float] = {}  # link -> seconds after the restore shows when the program greens it
        at, before = remaining_s, phases[phase].state
        for k in range(1, n + 1):
            ph = phases[(phase + k) % n]
            for i, c in enumerate(ph.state):
                if is_green(c) and not is_green(before[i]) and i not in onsets:
                    onsets[i] = at
            at += min(ph.min_dur_s, ph.duration_s) if ph.min_dur_given else ph.duration_s
            before = ph.state
        short = 0.0
        for m, row in enumerate(self.pair_clearance_s):
            if clock.classes[m] != RED:
                continue
            red_s = t_s + dt_s - clock.since_s[m]  # when the restore shows
            if red_s >= self.max_clearance_s:
                continue
            for link, at in onsets.items():  # (as a switch of the preemption's own would wait)
                short = max(short, row.get(link, self.clearance_s) - (red_s + at))
        return short if short > EPS_S else 0.0

    @property
    def link_count(self) -> int:
        return self.program.link_count

    def green_left_s(self, phase: int, link: int) -> float:
        """How long the program keeps ``link`` green if it starts ``phase`` now (its minimum:
        explicit minDur where given, else the duration)."""
        phases = self.program.phases
        total = 0.0
        for k in range(len(phases)):
            ph = phases[(phase + k) % len(phases)]
            if not is_green(ph.state[link]):
                break
            total += min(ph.min_dur_s, ph.duration_s) if ph.min_dur_given else ph.duration_s
        return total

    def handback_ready(self, clock: DisplayClock, phase: int, t_s: float, dt_s: float) -> bool:
        """Can the program take over at ``phase`` now without cutting any green it shows below
        its minimum? Every green of that phase has run, with what the program will still show
        of it, at least its minimum green."""
        state = self.program.phases[phase].state
        return all(
            clock.elapsed_s(i, t_s, dt_s) - dt_s + self.green_left_s(phase, i) >= self.min_green_s[i] - EPS_S
            for i, c in enumerate(state)
            if is_green(c)
        )

    def is_program_subset(self, state: str) -> bool:
        """True when the state's greens are a subset of one phase's greens (with G only where G)."""
        if len(state) != self.link_count:
            return False
        return any(
            all(_green_within(c, p) for c, p in zip(state, phase.state, strict=True)) for phase in self.program.phases
        )


def _green_within(shown: str, program: str) -> bool:
    """A shown link is allowed by a phase's link: not green, or green where the phase is (G only on G)."""
    return not is_green(shown) or (is_green(program) and (shown != "G" or program == "G"))


def _runs(seq: Sequence[int], phases: Sequence[Phase], cls: int, *, use_min_dur: bool) -> list[float]:
    """Durations of the cyclic runs of consecutive phases where the link has class ``cls``."""
    n = len(seq)
    if all(c == cls for c in seq) or cls not in seq:
        return []
    start = next(k for k in range(n) if seq[k] != cls)  # begin scanning just after a change
    out: list[float] = []
    acc: float | None = None
    for step in range(1, n + 1):
        k = (start + step) % n
        phase = phases[k]
        if seq[k] == cls:
            d = (phase.min_dur_s if phase.min_dur_given else 0.0) if use_min_dur else phase.duration_s
            acc = d if acc is None else acc + d
        elif acc is not None:
            out.append(acc)
            acc = None
    if acc is not None:
        out.append(acc)
    return out


def _pair_clearances(classes: Sequence[Sequence[int]], phases: Sequence[Phase],
                     clearance_s: float) -> tuple[dict[int, float], ...]:
    """Per link M, the links L whose green the program keeps further from M's red than the
    signal's red clearance, and how far: the shortest time M is red before L turns green,
    over the phases where L does so with M red, no link crossing M or L (never green with it)
    green in between and no link's green starting (where one is, the red between is not M's
    clearance but a service, and M's clearance is the signal's). On a signal that joins
    several junctions one junction's all-red is not the whole signal's (another junction
    shows green through it): the signal's clearance, its longest all-red run, may be none. A
    link's own red after its yellow is the signal's clearance (no other movement is cleared)."""
    n_ph = len(phases)
    n = len(classes[0]) if classes else 0
    out: list[dict[int, float]] = [{} for _ in range(n)]
    if n_ph < 2:
        return tuple(out)
    together = [0] * n  # per link: mask of the links green with it in some phase
    for row in classes:
        mask = sum(1 << i for i in range(n) if row[i] == GREEN)
        for i in range(n):
            if row[i] == GREEN:
                together[i] |= mask
    every = (1 << n) - 1
    greens = [sum(1 << i for i in range(n) if row[i] == GREEN) for row in classes]
    found: dict[tuple[int, int], float] = {}
    for j in range(n_ph):
        for L in range(n):
            if not (classes[j][L] == GREEN and classes[j - 1][L] != GREEN):
                continue
            for M in range(n):
                if M == L or classes[j][M] != RED or (together[L] >> M) & 1:
                    continue  # (a link's own red after its yellow is the signal's clearance)
                crossing = every & ~(together[L] & together[M])  # (a link never green is in it)
                red_s, served, before = 0.0, False, None
                for back in range(1, n_ph):
                    k = (j - back) % n_ph
                    if classes[k][M] != RED:
                        before = classes[k][M]
                        break
                    red_s += phases[k].duration_s
                    # (a green of a link crossing M or L, or any link's green starting)
                    served = served or bool(greens[k] & (crossing | ~greens[k - 1]))
                if before is None:
                    continue  # red the whole cycle
                need = min(red_s, clearance_s) if served else red_s
                found[(M, L)] = min(found.get((M, L), need), need)
    for (M, L), need in found.items():
        if need > clearance_s + EPS_S:
            out[M][L] = need
    return tuple(out)


def _all_red_runs(classes: Sequence[Sequence[int]], phases: Sequence[Phase]) -> list[float]:
    flags = [int(all(c == RED for c in row)) for row in classes]
    return _runs(flags, phases, 1, use_min_dur=False)


class DisplayClock:
    """What a signal has shown, per link: its class and since when (from observed states)."""

    def __init__(self, link_count: int) -> None:
        self.state = ""
        self._n = link_count
        self.since_s: list[float] = [float("-inf")] * link_count
        self.classes: list[int] = [RED] * link_count

    def observe(self, t_s: float, state: str) -> None:
        if len(state) != self._n:
            raise ValueError(f"state {state!r} has {len(state)} links, expected {self._n}")
        if state == self.state:
            return
        first = not self.state
        for i, c in enumerate(state):
            cls = link_class(c)
            if first:
                self.classes[i] = cls
                self.since_s[i] = t_s  # conservative: a run seen first now started now
            elif cls != self.classes[i]:
                self.classes[i] = cls
                self.since_s[i] = t_s
        self.state = state

    def copy(self) -> DisplayClock:
        clock = DisplayClock(self._n)
        clock.state = self.state
        clock.since_s = list(self.since_s)
        clock.classes = list(self.classes)
        return clock

    def elapsed_s(self, link: int, t_s: float, dt_s: float) -> float:
        """How long link's current run will have lasted when a command given at ``t_s`` shows."""
        return t_s + dt_s - self.since_s[link]


def next_state(
    timing: SignalTiming,
    clock: DisplayClock,
    target: str,
    t_s: float,
    dt_s: float,
    occupied: Sequence[tuple[int, Sequence[int]]] = (),
    extension_s: float = 0.0,
) -> str | None:
    """The state to command at ``t_s`` on the way to ``target``; None to keep the display.

    ``occupied``: the links with a vehicle on their crossing now, each with the links whose
    crossing conflicts with it; where one of them is not green in the target and conflicts with
    a new green, the target's new greens wait up to ``extension_s`` beyond the red clearance."""
    current = clock.state
    if not current or current == target:
        return None
    if len(target) != len(current):
        raise ValueError(f"target {target!r} has {len(target)} links, the signal {len(current)}")
    new = list(current)
    ready = True  # can the target's new greens turn on now?
    new_greens = _new_greens(timing, clock, target)
    ties = _trap_ties(timing, clock, target)
    cycled = _cycled(ties, target)
    ending: set[int] | None = None
    if ties:
        # the greens that may end now (their minimum green run), less those whose end is tied to
        # one that may not: a permissive link ends no earlier than the foes it yields to, a cycled
        # foe only with a permissive link it is cycled for
        ending = {i for i in range(len(current)) if clock.classes[i] == GREEN
                  and (i in cycled or not is_green(target[i]))
                  and clock.elapsed_s(i, t_s, dt_s) >= timing.min_green_s[i] - EPS_S}
        changed = True
        while changed:
            changed = False
            for i in [k for k in ending if k in ties]:
                held = not (ties[i] & ending) if i in cycled else not ties[i] <= ending
                if held:
                    ending.discard(i)
                    changed = True
    for i, (c, want) in enumerate(zip(current, target, strict=True)):
        cls = clock.classes[i]
        want_green = is_green(want) and i not in cycled
        if cls == GREEN:
            if want_green:
                continue  # kept green (its character is set when the target is shown)
            ready = False
            if (clock.elapsed_s(i, t_s, dt_s) >= timing.min_green_s[i] - EPS_S) if ending is None else i in ending:
                new[i] = "y"
        elif cls == YELLOW:
            ready = False
            if clock.elapsed_s(i, t_s, dt_s) >= timing.yellow_s[i] - EPS_S:
                new[i] = "r"
        else:
            new[i] = c if c in "rs" or c == want else "r"  # (a link kept as shown: 's', 'o', 'O')
            if clock.elapsed_s(i, t_s, dt_s) < timing.clearance_before_s(i, new_greens) - EPS_S:
                # a link that turned red lately: red clearance still running, before the greens
                # of others and before its own green again (a yellow is followed by the full red
                # clearance even where the same movement is served again at once)
                ready = False
    if ready and occupied and extension_s > 0.0 and _extend_all_red(
            clock, target, t_s, dt_s, occupied, _extension_ends_s(timing, clock, target, extension_s)):
        ready = False
    if ready:
        return target
    candidate = "".join(new)
    return None if candidate == current else candidate


def _trap_ties(timing: SignalTiming, clock: DisplayClock, target: str) -> dict[int, frozenset[int]]:
    """The yellow trap, kept out: a permissive green ('g') ended while a foe it yields to (shown
    'G') goes on traps its vehicles (a left turner waiting inside the junction, or one entering on
    its yellow, while the through traffic it yields to keeps its green). For each link whose end
    is tied to others: a permissive link the target ends, to the foes shown 'G' it yields to (it
    ends no earlier than every one of them); a foe the target keeps green, to the permissive
    links it must end with (it is "cycled": yellow, red clearance, green again). Where the
    program itself ends that permissive movement with the foe going on, it is the program's own
    practice and left so. Empty where the foes are not known."""
    foes = timing.foes
    if not foes:
        return {}
    current, classes = clock.state, clock.classes
    ties: dict[int, set[int]] = {}
    for i, c in enumerate(current):
        if c != "g" or classes[i] != GREEN or is_green(target[i]):
            continue
        for f in foes[i]:
            if current[f] == "G" and classes[f] == GREEN and (i, f) not in timing.trap_shown:
                ties.setdefault(i, set()).add(f)
                if is_green(target[f]):
                    ties.setdefault(f, set()).add(i)
    return {i: frozenset(t) for i, t in ties.items()}


def trapping(timing: SignalTiming, clock: DisplayClock, target: str) -> list[int]:
    """The permissive links shown that ``target`` ends while a foe they yield to stays green in
    it (:func:`_trap_ties`): ended so, they would trap their vehicles."""
    return [i for i, tied in _trap_ties(timing, clock, target).items()
            if not is_green(target[i]) and any(is_green(target[f]) for f in tied)]


def _cycled(ties: dict[int, frozenset[int]], target: str) -> frozenset[int]:
    """The links the target keeps green that must end and come back (:func:`_trap_ties`)."""
    return frozenset(i for i in ties if is_green(target[i]))


def _new_greens(timing: SignalTiming, clock: DisplayClock, target: str) -> list[int]:
    """The links ``target`` turns green, for :meth:`SignalTiming.clearance_before_s`; none needed
    (not worked out: it runs every switching tick) where the signal has no pair clearance."""
    if timing.max_clearance_s <= timing.clearance_s:
        return []
    return [i for i, want in enumerate(target) if is_green(want) and clock.classes[i] != GREEN]


def may_extend_all_red(timing: SignalTiming, clock: DisplayClock, target: str, t_s: float, dt_s: float,
                       extension_s: float) -> bool:
    """Would a vehicle still on the crossing (of any link not green in the target, in any new
    green's path) hold the target's new greens back now? For a display whose crossings are not
    known yet."""
    classes = clock.classes
    return (
        any(not is_green(c) for c in target)
        and any(classes[i] == RED and is_green(c) for i, c in enumerate(target))
        and t_s + dt_s < _extension_ends_s(timing, clock, target, extension_s) - EPS_S
    )


def _extension_ends_s(timing: SignalTiming, clock: DisplayClock, target: str, extension_s: float) -> float:
    """When an all-red extension before ``target``'s new greens ends: ``extension_s`` after the
    last red clearance a red link owes them has run (each counted from when that link turned
    red: a link red long ago owes nothing now, however long the clearance a joined signal's
    program keeps between it and the new greens)."""
    new_greens = _new_greens(timing, clock, target)
    owed = max((clock.since_s[i] + timing.clearance_before_s(i, new_greens)
                for i in range(len(target)) if clock.classes[i] == RED), default=-float("inf"))
    return owed + extension_s


def _extend_all_red(
    clock: DisplayClock,
    target: str,
    t_s: float,
    dt_s: float,
    occupied: Sequence[tuple[int, Sequence[int]]],
    ends_s: float,
) -> bool:
    """Hold the target's new greens back: a link not green in the target still has a vehicle on
    its crossing, in the path of a new green, and a command given at ``t_s`` would show before
    the extension ends at ``ends_s`` (:func:`_extension_ends_s`)."""
    n = len(target)
    classes = clock.classes
    return t_s + dt_s < ends_s - EPS_S and any(
        0 <= k < n and not is_green(target[k])
        and any(0 <= i < n and classes[i] == RED and is_green(target[i]) for i in foes)
        for k, foes in occupied
    )  # fmt: skip


def time_to_show_s(timing: SignalTiming, clock: DisplayClock, target: str, t_s: float, dt_s: float) -> float:
    """The earliest time after ``t_s`` at which ``target`` can be displayed if switching starts now."""
    current = clock.state
    if not current:
        return float("inf")
    if current == target:
        return 0.0
    red_at = t_s + dt_s  # when every link not green in the target is red
    cleared_at = t_s + dt_s
    any_change = False
    new_greens = _new_greens(timing, clock, target)
    ties = _trap_ties(timing, clock, target)
    cycled = _cycled(ties, target)
    # (tied ends: a permissive link's yellow waits for the foes it yields to, a cycled foe's for
    # the permissive link it is cycled for)
    def own(k: int) -> float:
        return clock.since_s[k] + timing.min_green_s[k]

    tied_from = {i: max([own(i), *(own(f) for f in ties[i])]) for i in ties if i not in cycled}
    tied_from.update({f: max(own(f), min(tied_from.get(i, own(i)) for i in ties[f])) for f in cycled})
    for i, want in enumerate(target):
        clearance_s = timing.clearance_before_s(i, new_greens)
        cls = clock.classes[i]
        want_green = is_green(want)
        if cls == GREEN and want_green and i not in cycled:
            continue
        if cls == GREEN:
            yellow_from = max(t_s + dt_s, clock.since_s[i] + timing.min_green_s[i], tied_from.get(i, -math.inf))
            red_from = yellow_from + timing.yellow_s[i]
            if want_green:  # cycled: yellow, red for its clearance (a step at least), green again
                any_change = True
                cleared_at = max(cleared_at, red_from + max(dt_s, clearance_s))
                continue
        elif cls == YELLOW:
            red_from = max(t_s + dt_s, clock.since_s[i] + timing.yellow_s[i])
            if want_green:  # yellow, then red for the clearance (at least a step), then green again
                any_change = True
                cleared_at = max(cleared_at, red_from + max(dt_s, clearance_s))
                continue
        else:
            red_from = clock.since_s[i]
            if want_green:
                if red_from + clearance_s > t_s + dt_s:  # red lately: its clearance first
                    any_change = True
                    cleared_at = max(cleared_at, red_from + clearance_s)
                continue
        any_change = True
        red_at = max(red_at, red_from)
        cleared_at = max(cleared_at, red_from + clearance_s)
    if not any_change:
        return dt_s
    return max(red_at, cleared_at) - t_s
