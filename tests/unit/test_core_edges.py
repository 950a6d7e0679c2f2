"""Edge cases of the safety monitor, the transitions and the planner that no other test reached:
each kills a defect a mutation test of the pure core showed would have gone unnoticed (a flipped
comparison, a dropped condition, a minimum taken for a maximum). The comment says which."""

from __future__ import annotations

from collections.abc import Sequence

from controller.core.network import Phase, Program
from controller.core.planner import Planner, PlannerConfig, reentry_phase
from controller.core.safety import SafetyConfig, SignalWatch, Violation
from controller.core.transitions import DisplayClock, SignalTiming
from tests.unit.test_planner import FakeSignal, Rig, req, until


def _phase(state: str, duration_s: float, min_s: float | None = None, max_s: float | None = None) -> Phase:
    """A phase; with ``min_s`` an actuated one (``max_s``: 30 s by default)."""
    if min_s is None:
        return Phase(state, duration_s, duration_s, duration_s, min_dur_given=False)
    return Phase(state, duration_s, min_s, max_s if max_s is not None else 30.0)


def _program(*phases: Phase, kind: str = "static") -> Program:
    return Program("J", "0", kind, 0.0, tuple(phases))


def _shown(watch: SignalWatch, runs: Sequence[tuple[str, int, str]]) -> list[Violation]:
    """Show each (state, seconds, program id) in turn from 0 s, one reading a second."""
    out: list[Violation] = []
    t = 0.0
    for state, seconds, program_id in runs:
        for _ in range(seconds):
            out += watch.observe(t, state, program_id)
            t += 1.0
    return out


TWO_WAY = _program(_phase("Ggrr", 30), _phase("yyrr", 3), _phase("rrrr", 2),
                   _phase("rrGg", 30), _phase("rryy", 4), _phase("rrrr", 2))


# --- the safety monitor ----------------------------------------------------------------------


def test_s2_a_link_turning_red_above_the_one_turning_green_needs_its_clearance() -> None:
    # (every S2 test went from a lower link index to a higher one: a check of the pairs (M, L)
    # with M < L only went unnoticed) C and D red after their yellow, A and B green at once
    w = SignalWatch(TWO_WAY, SafetyConfig())
    violations = _shown(w, [("rrGg", 40, "0"), ("rryy", 4, "x"), ("Ggrr", 10, "x")])
    assert any(v.rule == "S2" for v in violations), violations


def test_s4_a_state_of_permissive_greens_alone_is_checked() -> None:
    # (a state without a 'G' skipped the check: the two opposing permissive lefts never show together)
    assert SignalWatch(TWO_WAY, SafetyConfig()).rules.check_greens("rgrg") is not None


def test_s5_a_second_episode_past_the_maximum_presence_is_counted_again() -> None:
    prog = _program(_phase("Gr", 15), _phase("yr", 3), _phase("rr", 2), _phase("rG", 15), _phase("ry", 3),
                    _phase("rr", 2))
    w = SignalWatch(prog, SafetyConfig(max_presence_s=180.0, reservice_gap_s=20.0))
    violations = _shown(w, [("rr", 10, "0"), ("rr", 200, "x"), ("rr", 30, "0"), ("rr", 200, "x"), ("rr", 10, "0")])
    assert [v.rule for v in violations].count("S5") == 2, violations


def test_a_clearance_with_a_movement_served_between_is_capped_at_the_longest_all_red() -> None:
    # A and B cross, C crosses B only: A's yellow, 4 s of all-red, C, then B; B's yellow, 1 s of
    # all-red, then A. A's red comes 18 s before B's green (C served between): capped at the
    # longest all-red, 4 s (the shortest, 1 s, let B go green 1 s after A's red)
    prog = _program(_phase("Grr", 20), _phase("yrr", 3), _phase("rrr", 4), _phase("rrG", 10), _phase("rry", 3),
                    _phase("rrr", 1), _phase("rGr", 20), _phase("ryr", 3), _phase("rrr", 1))
    assert SignalWatch(prog, SafetyConfig()).rules.clearance_s[0][1] == 4.0


def test_a_pair_the_program_never_clears_one_for_the_other_still_needs_an_all_red() -> None:
    # the program never greens link 1 right after link 0's red (it shows 'yGr' instead): the
    # pair's clearance is the program's all-red, not 0 (A red 1 s, then B green: S2)
    prog = _program(_phase("Grr", 20), _phase("yGr", 3), _phase("ryr", 3), _phase("rrr", 2), _phase("rrG", 20),
                    _phase("rry", 3), _phase("rrr", 2))
    w = SignalWatch(prog, SafetyConfig())
    violations = _shown(w, [("rrG", 30, "0"), ("Grr", 30, "x"), ("yrr", 3, "x"), ("rrr", 1, "x"), ("rGr", 10, "x")])
    assert any(v.rule == "S2" and v.link_index == 1 for v in violations), violations


def test_the_yellow_required_is_that_of_a_yellow_ending_in_red() -> None:
    # a 1 s yellow back to green (a short run) does not lower the 3 s before a red (S1)
    prog = _program(_phase("Gr", 20), _phase("yr", 1), _phase("Gr", 10), _phase("yr", 3), _phase("rr", 2),
                    _phase("rG", 20), _phase("ry", 3), _phase("rr", 2))
    assert SignalWatch(prog, SafetyConfig()).rules.required_yellow_s[0] == 3.0


def test_a_red_clearance_across_the_cycles_end_counts() -> None:
    # the program starts with its all-red phase (no test program had its clearance in phase 0)
    rotated = _program(_phase("rrrr", 2), _phase("Ggrr", 30), _phase("yyrr", 3), _phase("rrrr", 2),
                       _phase("rrGg", 30), _phase("rryy", 4))
    rules = SignalWatch(rotated, SafetyConfig()).rules
    plain = SignalWatch(TWO_WAY, SafetyConfig()).rules
    assert rules.clearance_s == plain.clearance_s


def test_a_green_is_judged_by_the_smallest_minimum_of_the_runs_its_state_may_start() -> None:
    prog = _program(_phase("Gr", 20, 7), _phase("yr", 3), _phase("rr", 2), _phase("rG", 20, 10), _phase("ry", 3),
                    _phase("rr", 2), _phase("Gr", 20, 10), _phase("yr", 3), _phase("rr", 2), kind="actuated")
    assert SignalWatch(prog, SafetyConfig())._run_need(0, "Gr") == 7.0


# --- the transitions ------------------------------------------------------------------------------


def test_a_restore_shortfall_counts_a_link_green_twice_a_cycle_from_its_next_onset() -> None:
    # A is green in phases 0 and 6: restored into the all-red phase 5 with 0.5 s left, A goes
    # green (phase 6) 1.5 s after C and D's red, 0.5 s short of the 2 s clearance (the last
    # onset of A in the cycle was taken, and the shortfall read 0)
    prog = _program(_phase("Ggrr", 30), _phase("yyrr", 3), _phase("rrrr", 2), _phase("rrGg", 30), _phase("rryy", 4),
                    _phase("rrrr", 2), _phase("Grrr", 10), _phase("yrrr", 3), _phase("rrrr", 2))
    clock = DisplayClock(4)
    for t, state in ((0.0, "rrGg"), (30.0, "rryy"), (34.0, "rrrr")):
        clock.observe(t, state)
    assert SignalTiming.from_program(prog).restore_shortfall_s(clock, 5, 0.5, 34.0, 1.0) == 0.5


def test_a_restore_shortfall_counts_actuated_phases_at_their_minimum() -> None:
    # restored into phase 3 with 1 s left, shown from 34: phase 4 may end after its 1 s minimum,
    # B green at 36, 3 s after A's red where the clearance is 4 s (counted at their durations,
    # the phases between read as long enough)
    prog = _program(_phase("Grr", 20, 5), _phase("yrr", 3), _phase("rrr", 4), _phase("rrG", 10, 1),
                    _phase("rrg", 10, 1), _phase("rGG", 20, 5), _phase("ryy", 3), _phase("rrr", 4), kind="actuated")
    timing = SignalTiming.from_program(prog)
    assert timing.clearance_s == 4.0
    clock = DisplayClock(3)
    for t, state in ((0.0, "Grr"), (30.0, "yrr"), (33.0, "rrr")):
        clock.observe(t, state)
    assert timing.restore_shortfall_s(clock, 3, 1.0, 33.0, 1.0) == 1.0


# --- the planner ----------------------------------------------------------------------------------


def test_the_re_entry_phase_shows_no_yellow() -> None:
    # from phase 0 with the target Grr: 'yrG' starts link 2's green but shows a yellow (a hand-back
    # into it restored the program into a yellow); the next phase starting a green the target did
    # not show and showing no yellow is 5
    prog = _program(_phase("Grr", 20), _phase("yrG", 3), _phase("rrG", 20), _phase("rry", 3), _phase("rrr", 2),
                    _phase("rGr", 20), _phase("ryr", 3), _phase("rrr", 2))
    assert reentry_phase(prog, 0, "Grr") == 5


def test_an_actuated_green_the_ev_needs_is_held_on_the_step_it_may_end() -> None:
    # the program may end its actuated green at its 10 s minimum: the EV's approach is held then
    # (taken at its 30 s duration, the green ended at 10 and came back at 31, after the need)
    prog = _program(_phase("Ggrr", 30, 10), _phase("yyrr", 3), _phase("rrrr", 2), _phase("rrGg", 30, 10),
                    _phase("rryy", 4), _phase("rrrr", 2), kind="actuated")
    r = Rig(Planner({"J": prog}, PlannerConfig(need_median_ticks=1)), {"J": FakeSignal(prog, 0, -1.0)})
    r.run_until(40, until(31, req(target="Ggrr", phase=0, eta=31, need=28)))
    assert all(r.shown["J"][float(t)][0] == "G" for t in range(0, 29)), r.changes("J", 0, 40)
    assert r.safety() == []


def test_an_actuated_re_entry_phase_is_restored_with_its_time_left() -> None:
    # (SUMO may end an actuated phase set by setPhase at once: the restore gives its remaining
    # time, else the re-entry green was cut, S3; only the SUMO tests caught it)
    prog = _program(_phase("Ggrr", 30, 10), _phase("yyrr", 3), _phase("rrrr", 2), _phase("rrGg", 30, 10),
                    _phase("rryy", 4), _phase("rrrr", 2), kind="actuated")
    r = Rig(Planner({"J": prog}, PlannerConfig()), {"J": FakeSignal(prog, 0, -1.0)})
    r.run_until(120, until(40, req(target="rrGg", phase=3, eta=25, need=22)))
    restores = [c for _t, c in r.commands if c.kind == "restore"]
    assert restores and all(c.phase_remaining_s is not None for c in restores), restores
    assert r.safety() == []


def test_a_kept_permissive_green_is_kept_only_where_a_phase_shows_it_with_the_target() -> None:
    # (the EV's target 'GGrr' and the permissive 'g' shown on link 3 made 'GGrg', which no
    # phase shows: S4; only the SUMO tests caught it)
    prog = _program(_phase("GgGg", 30), _phase("yyyy", 3), _phase("rrrr", 2), _phase("GGrr", 10), _phase("yyrr", 3),
                    _phase("rrrr", 2))
    foes = [{3}, {2}, {1}, {0}]
    r = Rig(Planner({"J": prog}, PlannerConfig(), foes=lambda tls: foes), {"J": FakeSignal(prog, 0, -1.0)})
    r.run_until(80, until(60, req(target="GGrr", phase=3, eta=25, need=22, links=(0, 1))))
    assert "GGrg" not in r.shown["J"].values()
    assert r.safety() == []
