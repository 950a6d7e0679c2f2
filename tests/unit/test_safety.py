"""The safety monitor's rules S1..S5, without SUMO.

Sequences are written as segments ``(state, duration_s)`` and replayed tick by tick with a
step length ``dt``; a segment of ``d`` seconds is shown on ``d / dt`` ticks.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.core.network import Phase, Program
from controller.core.safety import (
    RULES,
    ProgramRules,
    SafetyConfig,
    SafetyMonitor,
    SignalWatch,
    Violation,
)

ORIGINAL = "0"
ONLINE = "online"

Segment = tuple[str, float]


def program(phases: Sequence[tuple[str, float] | tuple[str, float, float, float]], tls_id: str = "J") -> Program:
    built = []
    for p in phases:
        if len(p) == 2:
            built.append(Phase(p[0], p[1], p[1], p[1]))
        else:
            built.append(Phase(p[0], p[1], p[2], p[3]))
    kind = "actuated" if any(ph.min_dur_s != ph.max_dur_s for ph in built) else "static"
    return Program(tls_id, ORIGINAL, kind, 0.0, tuple(built))


# Two links, one per approach: green, yellow 3 s, all-red 2 s.
P2 = program([("Gr", 10), ("yr", 3), ("rr", 2), ("rG", 10), ("ry", 3), ("rr", 2)])

# Bologna-like: consecutive identical phases, link 1 goes green→red without yellow,
# link 4 has a 3 s green.
BOLOGNA = program(
    [
        ("GGrrr", 10),
        ("GGrrr", 5),
        ("yGrrr", 3),
        ("rrrrr", 2),
        ("rrGGG", 3),
        ("rrGGy", 3),
        ("rrGGr", 20),
        ("rryyr", 3),
        ("rrrrr", 2),
    ]
)

# Actuated: green minDur 3 s (below the 5 s floor), duration 20 s, maxDur 40 s.
ACTUATED = program(
    [
        ("Gr", 20, 3, 40),
        ("yr", 3, 3, 3),
        ("rr", 2, 2, 2),
        ("rG", 15, 6, 30),
        ("ry", 4, 4, 4),
        ("rr", 1, 1, 1),
    ]
)


def ticks(segments: Sequence[Segment], dt: float = 1.0, t0: float = 0.0) -> list[tuple[float, str]]:
    out: list[tuple[float, str]] = []
    k = 0
    for state, duration_s in segments:
        n = round(duration_s / dt)
        assert abs(n * dt - duration_s) < 1e-9, "segment durations must be multiples of dt"
        for _ in range(n):
            out.append((t0 + k * dt, state))
            k += 1
    return out


def feed(
    watch: SignalWatch,
    segments: Sequence[Segment],
    dt: float = 1.0,
    program_id: str | Sequence[str] = ORIGINAL,
    t0: float = 0.0,
) -> list[Violation]:
    found: list[Violation] = []
    seq = ticks(segments, dt, t0)
    ids = [program_id] * len(seq) if isinstance(program_id, str) else list(program_id)
    for (t, state), pid in zip(seq, ids, strict=True):
        found.extend(watch.observe(t, state, pid))
    return found


def count(found: Sequence[Violation]) -> dict[str, int]:
    out = dict.fromkeys(RULES, 0)
    for v in found:
        out[v.rule] += 1
    return out


def only(rule: str, n: int = 1) -> dict[str, int]:
    out = dict.fromkeys(RULES, 0)
    out[rule] = n
    return out


def own_segments(
    prog: Program, cycles: int, start_phase: int = 0, durations: Sequence[float] | None = None
) -> list[Segment]:
    phases = prog.phases
    segs: list[Segment] = []
    for k in range(cycles * len(phases)):
        i = (start_phase + k) % len(phases)
        d = phases[i].duration_s if durations is None else durations[k]
        segs.append((phases[i].state, d))
    return segs


# --- ProgramRules ---------------------------------------------------------------------------


def test_rules_of_a_static_program() -> None:
    rules = ProgramRules.from_program(P2, SafetyConfig())
    assert rules.required_yellow_s == (3.0, 3.0)
    assert rules.min_green_s == (10.0, 10.0)
    assert rules.own_min_green_s == (10.0, 10.0)
    assert rules.clearance_s[0][1] == 2.0 and rules.clearance_s[1][0] == 2.0
    assert rules.all_red_s == 2.0
    assert rules.check_greens("Gr") is None
    assert rules.check_greens("GG") is not None
    assert rules.check_greens("Grr") is not None
    assert rules.check_greens("Gx") is not None


def test_rules_of_bologna_like_program() -> None:
    rules = ProgramRules.from_program(BOLOGNA, SafetyConfig())
    assert rules.own_min_green_s[0] == 15.0  # identical consecutive phases sum up
    assert rules.own_min_green_s[4] == 3.0
    assert rules.min_green_s[4] == 3.0  # never stricter than the program itself
    assert rules.min_green_s[0] == 15.0
    assert rules.required_yellow_s[1] == 3.0  # never yellow before red: the default
    assert rules.required_yellow_s[4] == 3.0


def test_rules_of_actuated_program_use_min_dur() -> None:
    rules = ProgramRules.from_program(ACTUATED, SafetyConfig())
    assert rules.own_min_green_s == (3.0, 6.0)
    assert rules.min_green_s == (5.0, 6.0)  # the floor lifts minDur 3 s, duration 20 s allows it
    assert rules.required_yellow_s == (3.0, 4.0)


def test_config_floor_never_below_5() -> None:
    with pytest.raises(ValueError, match="min_green_floor_s"):
        SafetyConfig(min_green_floor_s=4.0)
    with pytest.raises(ValueError, match="max_presence_s"):
        SafetyConfig(max_presence_s=0.0)


# --- no crying wolf -------------------------------------------------------------------------


@pytest.mark.parametrize("dt", [1.0, 0.5])
@pytest.mark.parametrize("prog", [P2, BOLOGNA, ACTUATED], ids=["static", "bologna", "actuated"])
@pytest.mark.parametrize("start_phase", [0, 1, 3])
def test_own_program_gives_no_violation(dt: float, prog: Program, start_phase: int) -> None:
    watch = SignalWatch(prog)
    found = feed(watch, own_segments(prog, 5, start_phase), dt)
    found += watch.finish(1000.0)
    assert found == []
    assert not watch.touched


def test_actuated_program_at_min_and_max_durations_gives_no_violation() -> None:
    for use_min in (True, False):
        watch = SignalWatch(ACTUATED)
        phases = [ACTUATED.phases[k % 6] for k in range(30)]
        durations = [p.min_dur_s if use_min else p.max_dur_s for p in phases]
        assert feed(watch, own_segments(ACTUATED, 5, durations=durations), 0.5) == []


def test_own_static_program_under_online_id_gives_no_violation() -> None:
    watch = SignalWatch(BOLOGNA, SafetyConfig(max_presence_s=1e9))
    assert feed(watch, own_segments(BOLOGNA, 4, 2), 0.5, program_id=ONLINE) == []
    assert watch.touched


# --- S1 -------------------------------------------------------------------------------------


def test_s1_yellow_cut_short() -> None:
    watch = SignalWatch(P2)
    segs = [("rG", 5), ("ry", 3), ("rr", 2), ("Gr", 10), ("yr", 1), ("rr", 2), ("rG", 10)]
    found = feed(watch, segs)
    assert count(found) == only("S1")
    assert found[0].link_index == 0 and "1 s" in found[0].detail and "3 s" in found[0].detail


def test_s1_yellow_cut_short_at_half_second_steps() -> None:
    watch = SignalWatch(P2)
    segs = [("rG", 5), ("ry", 3), ("rr", 2), ("Gr", 10), ("yr", 2.5), ("rr", 2), ("rG", 10)]
    assert count(feed(watch, segs, 0.5)) == only("S1")
    watch = SignalWatch(P2)
    segs = [("rG", 5), ("ry", 3), ("rr", 2), ("Gr", 10), ("yr", 3), ("rr", 2), ("rG", 10)]
    assert feed(watch, segs, 0.5) == []


def test_durations_are_required_as_sumo_shows_them_at_the_step() -> None:
    # At 0.7 s steps SUMO itself shows P2's 3 s yellow as 2.8 s and its 2 s all-red as 1.4 s (whole
    # steps, rounded down): that is the program running, not a violation; one step less is.
    assert SafetyConfig(step_s=0.7).shown_s(3.0) == pytest.approx(2.8)
    assert SafetyConfig(step_s=0.7).shown_s(2.0) == pytest.approx(1.4)
    assert SafetyConfig(step_s=0.5).shown_s(3.0) == 3.0 and SafetyConfig().shown_s(2.5) == 2.0

    def run(yellow_steps: int, red_steps: int) -> list[Violation]:
        watch = SignalWatch(P2, SafetyConfig(step_s=0.7))
        states = ["rG"] * 10 + ["ry"] * 4 + ["rr"] * 2 + ["Gr"] * 15 + ["yr"] * yellow_steps + ["rr"] * red_steps \
            + ["rG"] * 15
        found: list[Violation] = []
        for k, state in enumerate(states):
            found += watch.observe(k * 0.7, state, ORIGINAL)
        return found

    assert run(4, 2) == []
    assert count(run(3, 2)) == only("S1") and count(run(4, 1)) == only("S2")
    with pytest.raises(ValueError, match="step_s"):
        SafetyConfig(step_s=0.0)


def test_s1_green_to_red_without_yellow() -> None:
    watch = SignalWatch(P2)
    found = feed(watch, [("rr", 2), ("Gr", 10), ("rr", 3), ("rG", 10)])
    assert count(found) == only("S1")
    assert "without yellow" in found[0].detail


def test_s1_green_to_red_allowed_where_the_program_does_it() -> None:
    watch = SignalWatch(BOLOGNA)
    # link 1 loses green without yellow, as the program does; link 0 shows its yellow.
    segs = [("rrrrr", 2), ("GGrrr", 15), ("yGrrr", 3), ("rrrrr", 2), ("rrGGG", 3)]
    assert feed(watch, segs) == []


# --- S2 -------------------------------------------------------------------------------------


def test_s2_yellow_to_green() -> None:
    watch = SignalWatch(P2)
    found = feed(watch, [("rr", 2), ("Gr", 10), ("yr", 2), ("Gr", 10)])
    assert count(found) == only("S2")
    assert found[0].link_index == 0


def test_red_yellow_u_is_a_red_not_a_yellow() -> None:
    # SUMO's 'u' (red and yellow together, shown before green in some countries) means stop:
    # a program's u -> G is a red -> green and allows no yellow -> green, nor a green -> u
    # without yellow; the program itself runs clean
    prog = program([("Gr", 10), ("yr", 3), ("rr", 1), ("ru", 1), ("rG", 10), ("ry", 3), ("rr", 1), ("ur", 1)])
    assert feed(SignalWatch(prog), own_segments(prog, 3)) == []
    found = feed(SignalWatch(prog), [("rr", 2), ("Gr", 10), ("yr", 2), ("Gr", 10)])
    assert count(found) == only("S2") and "yellow to green" in found[0].detail
    found = feed(SignalWatch(prog), [("rr", 2), ("Gr", 10), ("ur", 2)])
    assert count(found) == only("S1") and "without yellow" in found[0].detail


def test_states_that_let_vehicles_pass_without_a_green_are_allowed_only_where_the_program_shows_them() -> None:
    # 'O' (off: no signal), 'o' (off, blinking) and 's' (stop, then go) were red to the
    # monitor: a signal switched off on every link passed S4
    prog = program([("Grs", 10), ("yrs", 3), ("rrs", 2), ("rGs", 10), ("rys", 3), ("rrs", 2)])
    assert feed(SignalWatch(prog), own_segments(prog, 2)) == []
    for shown in ("OOO", "ooo", "srr"):
        found = feed(SignalWatch(prog), [("Grs", 10), ("yrs", 3), ("rrs", 2), (shown, 5)], program_id=ONLINE)
        assert count(found) == only("S4", 5) and "without a green" in found[0].detail, (shown, found)
    # the program's own 's' on link 2, shown with a switch's red, is the program's
    assert feed(SignalWatch(prog), [("Grs", 10), ("yrs", 3), ("rrs", 2), ("rGs", 5)], program_id=ONLINE) == []


def test_an_off_state_ended_without_yellow_is_s1_unless_the_program_does_so() -> None:
    # link 2 off ('O': vehicles pass by the junction's right of way) in every phase: taken to 'r'
    # at a preemption's entry it was red to red for the monitor, and nothing was counted
    prog = program([("GrO", 10), ("yrO", 3), ("rrO", 2), ("rGO", 10), ("ryO", 3), ("rrO", 2)])
    assert feed(SignalWatch(prog), own_segments(prog, 2)) == []
    for cut in ("Grr", "Grs", "Gru"):
        found = feed(SignalWatch(prog), [("GrO", 10), (cut, 3), ("yrr", 3)], program_id=ONLINE)
        s1 = [v for v in found if v.rule == "S1"]  # ('s' there is S4 too: the program never shows it)
        assert len(s1) == 1 and s1[0].link_index == 2 and "off state" in s1[0].detail, (cut, found)
    # through a yellow, or where the program itself ends it so ('o' then 'r' on link 1): not S1
    assert count(feed(SignalWatch(prog), [("GrO", 10), ("Gry", 3), ("Grr", 3)], program_id=ONLINE))["S1"] == 0
    own = program([("Go", 10), ("yo", 3), ("rr", 2), ("rG", 10), ("ry", 3), ("rr", 2)])
    assert feed(SignalWatch(own), own_segments(own, 2)) == []


def test_s2_all_red_skipped_between_incompatible_links() -> None:
    watch = SignalWatch(P2)
    found = feed(watch, [("rr", 2), ("Gr", 10), ("yr", 3), ("rr", 1), ("rG", 10)])
    assert count(found) == only("S2")
    assert found[0].link_index == 1 and "link 0" in found[0].detail


def test_s2_all_red_may_be_skipped_between_compatible_links() -> None:
    # links 0 and 2 are green together in the first phase: compatible; 1 conflicts with both.
    prog = program([("GrG", 10), ("yry", 3), ("rrr", 2), ("rGr", 10), ("ryr", 3), ("rrr", 2)])
    watch = SignalWatch(prog)
    segs = [("rGr", 10), ("ryr", 3), ("rrr", 2), ("Grr", 10), ("yrr", 3), ("rrG", 10)]
    assert feed(watch, segs) == []
    watch = SignalWatch(prog)
    segs = [("rrG", 10), ("rry", 3), ("rrr", 2), ("Grr", 10), ("yrr", 3), ("rGr", 10)]
    found = feed(watch, segs)
    assert count(found) == only("S2")
    assert found[0].link_index == 1


def test_s2_clearance_is_the_all_red_interval_not_the_phases_in_between() -> None:
    # Three approaches: A (link 0), B (link 1), C (link 2), each with yellow 3 s and all-red 2 s.
    # In the program C follows B, so A turns red 15 s before C turns green; a preemption that
    # goes straight from A to C only owes A's yellow and the 2 s all-red.
    prog = program([("Grr", 10), ("yrr", 3), ("rrr", 2), ("rGr", 10), ("ryr", 3), ("rrr", 2),
                    ("rrG", 10), ("rry", 3), ("rrr", 2)])
    assert ProgramRules.from_program(prog, SafetyConfig()).clearance_s[0][2] == 2.0
    watch = SignalWatch(prog)
    assert feed(watch, [("Grr", 10), ("yrr", 3), ("rrr", 2), ("rrG", 10)], program_id=ONLINE) == []
    watch = SignalWatch(prog)
    found = feed(watch, [("Grr", 10), ("yrr", 3), ("rrr", 1), ("rrG", 10)], program_id=ONLINE)
    assert count(found) == only("S2")


def test_s2_on_a_joined_signal_the_red_between_two_crossing_links_is_their_clearance() -> None:
    # A (link 0) and B (link 1) cross at one junction of the signal; link 2 (another junction)
    # is green throughout, so the signal has no all-red run. The program keeps A and B apart by
    # 4 s of red: that is their clearance (it was capped at the signal's all-red, 0 s, so a 1 s
    # red passed). A red with another movement served in between is still not clearance.
    prog = program([("GrG", 20), ("yrG", 3), ("rrG", 4), ("rGG", 20), ("ryG", 3), ("rrG", 4)])
    rules = ProgramRules.from_program(prog, SafetyConfig())
    assert rules.clearance_s[0][1] == rules.clearance_s[1][0] == 4.0 and rules.own_clearance_s == (0.0, 0.0, 0.0)
    assert feed(SignalWatch(prog), own_segments(prog, 3)) == []
    found = feed(SignalWatch(prog), [("GrG", 20), ("yrG", 3), ("rrG", 1), ("rGG", 10)], program_id=ONLINE)
    assert count(found) == only("S2") and found[0].link_index == 1 and "link 0" in found[0].detail
    assert feed(SignalWatch(prog), [("GrG", 20), ("yrG", 3), ("rrG", 4), ("rGG", 10)], program_id=ONLINE) == []
    # C (link 2) served between A and B: the red A shows before B is C's service, not A's clearance
    prog = program([("Grr", 20), ("yrr", 3), ("rrG", 20), ("rry", 3), ("rGr", 20), ("ryr", 3)])
    assert ProgramRules.from_program(prog, SafetyConfig()).clearance_s[0][1] == 0.0


def test_s2_a_link_green_again_after_its_own_yellow_waits_the_red_clearance() -> None:
    # P2's all-red is 2 s: link 0 back to green 1 s after its own yellow ended is too soon, even
    # with link 1 never green in between (no conflicting link to clear)
    assert ProgramRules.from_program(P2, SafetyConfig()).own_clearance_s == (2.0, 2.0)
    found = feed(SignalWatch(P2), [("Gr", 10), ("yr", 3), ("rr", 1), ("Gr", 10)], program_id=ONLINE)
    assert count(found) == only("S2")
    assert found[0].link_index == 0 and "its own yellow" in found[0].detail
    assert feed(SignalWatch(P2), [("Gr", 10), ("yr", 3), ("rr", 2), ("Gr", 10)], program_id=ONLINE) == []
    # a red that did not follow the link's own yellow (never green before) is not judged this way
    assert feed(SignalWatch(P2), [("rr", 5), ("Gr", 10)], program_id=ONLINE) == []


def test_s2_green_while_conflicting_link_still_yellow() -> None:
    watch = SignalWatch(P2)
    found = feed(watch, [("rr", 2), ("Gr", 10), ("yG", 10)])
    counted = count(found)
    assert counted["S2"] == 1 and "still yellow" in found[0].detail


# --- S3 -------------------------------------------------------------------------------------


def test_s3_green_cut_at_2_s() -> None:
    watch = SignalWatch(P2)
    found = feed(watch, [("rr", 2), ("Gr", 2), ("yr", 3), ("rr", 2), ("rG", 10)], program_id=ONLINE)
    assert count(found) == only("S3")
    assert found[0].link_index == 0 and "2 s" in found[0].detail


def test_s3_floor_applies_to_the_controller_not_to_the_program() -> None:
    segs = [("rr", 2), ("Gr", 3), ("yr", 3), ("rr", 2), ("rG", 10)]
    assert feed(SignalWatch(ACTUATED), segs, program_id=ORIGINAL) == []  # SUMO's own minDur
    assert count(feed(SignalWatch(ACTUATED), segs, program_id=ONLINE)) == only("S3")
    # one tick of another program during the run is enough
    ids = [ORIGINAL] * 3 + [ONLINE] + [ORIGINAL] * 16
    assert count(feed(SignalWatch(ACTUATED), segs, program_id=ids)) == only("S3")
    ok = [("rr", 2), ("Gr", 5), ("yr", 3), ("rr", 2), ("rG", 10)]
    assert feed(SignalWatch(ACTUATED), ok, program_id=ONLINE) == []


def test_s3_run_continues_across_G_and_g() -> None:
    prog = program([("Gr", 10), ("gr", 5), ("yr", 3), ("rr", 2), ("rG", 10), ("ry", 3), ("rr", 2)])
    watch = SignalWatch(prog)
    segs = [("rr", 2), ("Gr", 5), ("gr", 5), ("Gr", 5), ("yr", 3), ("rr", 2), ("rG", 10)]
    assert feed(watch, segs) == []


def test_first_run_is_not_judged() -> None:
    # the lengths of runs that started before observation are unknown ...
    watch = SignalWatch(P2, SafetyConfig(max_presence_s=1e9))
    assert feed(watch, [("Gr", 1), ("yr", 3), ("rr", 2), ("rG", 10)], program_id=ONLINE) == []
    watch = SignalWatch(P2)
    assert feed(watch, [("yr", 1), ("rr", 2), ("rG", 10)]) == []
    watch = SignalWatch(P2)
    assert feed(watch, [("rr", 1), ("rG", 10)]) == []  # red onset unknown: no clearance judged
    # ... but a transition seen in full is judged
    watch = SignalWatch(P2)
    assert count(feed(watch, [("Gr", 1), ("rr", 2), ("rG", 10)])) == only("S1")


# --- S4 -------------------------------------------------------------------------------------


def test_s4_invented_green_combination() -> None:
    prog = program([("Ggr", 10), ("yyr", 3), ("rrr", 2), ("rrG", 10), ("rry", 3), ("rrr", 2)])
    watch = SignalWatch(prog)
    found = feed(watch, [("Ggr", 5), ("GGr", 1), ("Ggr", 4), ("yyr", 3)])
    assert count(found) == only("S4")
    assert "GGr" in found[0].detail


def test_s4_counted_per_tick() -> None:
    watch = SignalWatch(P2)
    found = feed(watch, [("GG", 3)])
    assert count(found) == only("S4", 3)


def test_s4_wrong_length_state() -> None:
    watch = SignalWatch(P2)
    found = feed(watch, [("rr", 2), ("Gr", 3), ("Grr", 1), ("Gr", 1), ("yr", 3), ("rr", 2), ("rG", 10)])
    assert count(found) == only("S4")
    assert "3 links" in found[0].detail


def test_s4_unknown_character_and_sumo_specials() -> None:
    prog = program([("Gro", 10), ("yrO", 3), ("srO", 2), ("rGo", 10), ("ryo", 3), ("rro", 2)])
    assert feed(SignalWatch(prog), own_segments(prog, 3)) == []
    found = feed(SignalWatch(prog), [("Grx", 1)])
    assert count(found) == only("S4")


# --- S5 -------------------------------------------------------------------------------------


def test_s5_preempted_too_long() -> None:
    watch = SignalWatch(P2, SafetyConfig(max_presence_s=180.0))
    segs = own_segments(P2, 12)  # 12 cycles of 30 s
    ids = [ORIGINAL] * 30 + [ONLINE] * 200 + [ORIGINAL] * 130
    found = feed(watch, segs, program_id=ids)
    assert count(found) == only("S5")
    assert found[0].t_s == 30 + 181  # seen at the tick that proves more than 180 s
    assert watch.finish(360.0) == []
    assert watch.touched


def test_s5_exactly_max_presence_is_fine() -> None:
    watch = SignalWatch(P2, SafetyConfig(max_presence_s=180.0))
    ids = [ONLINE] * 180 + [ORIGINAL] * 60
    assert feed(watch, own_segments(P2, 8), program_id=ids) == []


def test_s5_a_short_return_to_the_program_does_not_end_the_episode() -> None:
    # 100 s out, one step of the program, 100 s out again: one episode of 201 s (a one-second
    # hand-back must not restart the maximum presence)
    watch = SignalWatch(P2, SafetyConfig(max_presence_s=180.0))
    ids = [ORIGINAL] * 30 + [ONLINE] * 100 + [ORIGINAL] + [ONLINE] * 100 + [ORIGINAL] * 69
    found = feed(watch, own_segments(P2, 10), program_id=ids)
    assert count(found) == only("S5")
    assert found[0].t_s == 30 + 181 and "since 30 s" in found[0].detail
    assert watch.finish(300.0) == []


def test_s5_a_return_as_long_as_the_reservice_gap_ends_the_episode() -> None:
    watch = SignalWatch(P2, SafetyConfig(max_presence_s=180.0, reservice_gap_s=20.0))
    ids = [ORIGINAL] * 30 + [ONLINE] * 100 + [ORIGINAL] * 20 + [ONLINE] * 100 + [ORIGINAL] * 50
    assert feed(watch, own_segments(P2, 10), program_id=ids) == []
    assert watch.finish(300.0) == []
    # (19 s back is not enough)
    watch = SignalWatch(P2, SafetyConfig(max_presence_s=180.0, reservice_gap_s=20.0))
    ids = [ORIGINAL] * 30 + [ONLINE] * 100 + [ORIGINAL] * 19 + [ONLINE] * 100 + [ORIGINAL] * 51
    assert count(feed(watch, own_segments(P2, 10), program_id=ids)) == only("S5")


def test_s5_left_preempted_at_finish() -> None:
    watch = SignalWatch(P2)
    ids = [ORIGINAL] * 40 + [ONLINE] * 20
    assert feed(watch, own_segments(P2, 2), program_id=ids) == []
    found = watch.finish(60.0)
    assert count(found) == only("S5")
    assert "still preempted" in found[0].detail


def test_time_must_advance() -> None:
    watch = SignalWatch(P2)
    watch.observe(1.0, "Gr", ORIGINAL)
    with pytest.raises(ValueError, match="time went"):
        watch.observe(1.0, "Gr", ORIGINAL)


# --- SafetyMonitor --------------------------------------------------------------------------


def test_monitor_counts_and_touch() -> None:
    monitor = SafetyMonitor({"A": replace(P2, tls_id="A"), "B": replace(P2, tls_id="B")})
    seq_a = ticks([("rr", 2), ("Gr", 2), ("yr", 3), ("rr", 2), ("rG", 10)])  # S3 under online
    seq_b = ticks([("rr", 2), ("Gr", 10), ("rr", 7)])  # S1 under its own program
    for (t, a), (_, b) in zip(seq_a, seq_b, strict=True):
        monitor.observe(t, {"A": (a, ONLINE), "B": (b, ORIGINAL), "not-watched": ("G", ORIGINAL)})
    monitor.finish(19.0)
    assert monitor.counts() == {"S1": 1, "S2": 0, "S3": 1, "S4": 0, "S5": 1}
    assert monitor.counts_by_touch() == {
        "touched": {"S1": 0, "S2": 0, "S3": 1, "S4": 0, "S5": 1},
        "untouched": {"S1": 1, "S2": 0, "S3": 0, "S4": 0, "S5": 0},
    }
    assert {v.tls_id for v in monitor.violations} == {"A", "B"}


# --- property: random valid programs replayed give no violation -----------------------------


@st.composite
def programs(draw: st.DrawFn) -> tuple[Program, float]:
    dt = draw(st.sampled_from([1.0, 0.5]))
    n_links = draw(st.integers(2, 6))
    n_stages = draw(st.integers(1, 4))
    stages = [draw(st.sets(st.integers(0, n_links - 1), min_size=1, max_size=n_links)) for _ in range(n_stages)]
    chars = {link: draw(st.sampled_from("Gg")) for link in range(n_links)}

    def dur(lo: int, hi: int, fixed: bool = False) -> tuple[float, float, float]:
        min_d = draw(st.integers(lo, hi))
        if fixed:
            return (min_d * dt, min_d * dt, min_d * dt)
        d = min_d + draw(st.integers(0, 10))
        max_d = d + draw(st.integers(0, 10))
        return (d * dt, min_d * dt, max_d * dt)

    phases: list[Phase] = []
    for k, greens in enumerate(stages):
        nxt = stages[(k + 1) % n_stages]
        green = "".join(chars[i] if i in greens else "r" for i in range(n_links))
        for _ in range(draw(st.integers(1, 2))):  # identical consecutive phases
            phases.append(Phase(green, *dur(1, 12)))
        ending = greens - nxt
        if not ending:
            continue
        direct = {i for i in ending if draw(st.booleans())}  # green→red without yellow
        yellow = "".join(("r" if i in direct else "y") if i in ending else green[i] for i in range(n_links))
        phases.append(Phase(yellow, *dur(1, 6, fixed=draw(st.booleans()))))
        if draw(st.booleans()):
            red = "".join("r" if i in ending else green[i] for i in range(n_links))
            phases.append(Phase(red, *dur(1, 4)))
    prog = Program("J", ORIGINAL, "actuated", 0.0, tuple(phases))
    return prog, dt


@settings(max_examples=300, deadline=None)
@given(programs(), st.integers(0, 2**32 - 1), st.data())
def test_replaying_a_valid_program_gives_no_violation(
    case: tuple[Program, float], seed: int, data: st.DataObject
) -> None:
    prog, dt = case
    rng = random.Random(seed)
    n = len(prog.phases)
    start = data.draw(st.integers(0, n - 1))
    segs: list[Segment] = []
    for k in range(4 * n):
        ph = prog.phases[(start + k) % n]
        lo, hi = round(ph.min_dur_s / dt), round(ph.max_dur_s / dt)
        segs.append((ph.state, rng.randint(lo, hi) * dt))
    cut = rng.randint(1, round(segs[0][1] / dt))  # observation starts inside the first phase
    segs[0] = (segs[0][0], cut * dt)

    watch = SignalWatch(prog)
    found = feed(watch, segs, dt)
    assert found == [], found[:3]

    # the program's own static durations, shown by the controller, are fine too
    static = [(s, prog.phases[(start + k) % n].duration_s) for k, (s, _) in enumerate(segs)]
    watch = SignalWatch(prog, SafetyConfig(max_presence_s=1e9))
    assert feed(watch, static, dt, program_id=ONLINE) == []


def test_static_program_without_min_dur_has_the_floor_as_minimum_green() -> None:
    phases = tuple(replace(p, min_dur_given=False) for p in P2.phases)
    rules = ProgramRules.from_program(replace(P2, phases=phases), SafetyConfig())
    assert rules.min_green_s == (5.0, 5.0)
    watch = SignalWatch(replace(P2, phases=phases))
    ok = [("Gr", 10), ("yr", 3), ("rr", 2), ("rG", 5), ("ry", 3), ("rr", 2), ("Gr", 4), ("yr", 3)]
    found = feed(watch, ok, program_id=[ORIGINAL] * 15 + [ONLINE] * 17)
    assert count(found) == only("S3")  # the 4 s green is below the 5 s floor; the 5 s one is not
