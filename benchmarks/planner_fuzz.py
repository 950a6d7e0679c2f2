"""Fuzz the pure planner with random programs and requests, seed by seed: no SUMO, no hypothesis.

    python benchmarks/planner_fuzz.py --seeds 1-2000          # every seed's case; exit 1 on a violation
    python benchmarks/planner_fuzz.py --show 2880             # one seed's case: program, config, EVs

Each seed draws a signal program (phases of their own greens, or greens running on over
several phases), the planner's step (1 s or 0.5 s), its presence times and all-red extension,
one to three EVs (mostly local, start-now; requests that drop out for 4-25 s and come back;
ETAs drifting away) and the vehicles on the crossings (every link, or half at random). The
planner drives the fake signal of ``tests/unit/test_planner.py`` for 400-700 s, then stops;
the safety monitor watches every displayed state. A seed fails on any S1-S5 violation, a
signal back in its program more than 180 s after an entry, a signal left switched, or (in the
half of the cases with the net's foes drawn: which links cross) a permissive green ended while a
foe it yields to goes on, as the program itself never does (the yellow trap).

The property tests draw such cases with hypothesis, a few hundred per run; this goes through
thousands, reproducibly by seed (stop 42 found three causes of S5 overruns so, in 4 of ~4,000).
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.core.network import Phase, Program
from controller.core.planner import Planner, PlannerConfig, ServiceRequest
from controller.core.states import is_green
from controller.core.transitions import SignalTiming
from tests.unit.test_planner import EvPlan, FakeSignal, Rig

PRESENCE_LIMIT_S = 180.0


def draw_program(rng: random.Random) -> Program:
    n = rng.randint(2, 7)
    phases: list[Phase] = []
    if rng.random() < 2 / 3:  # groups of greens of their own, each ending with yellow (and all-red)
        for _ in range(rng.randint(2, 4)):
            chars = [rng.choice("Gg") if rng.random() < 0.5 else "r" for _ in range(n)]
            if all(c == "r" for c in chars):
                chars[rng.randrange(n)] = "G"
            g = rng.randint(6, 60)
            given = rng.random() < 0.5
            phases.append(Phase("".join(chars), g, rng.randint(5, g) if given else g, g, min_dur_given=given))
            y = rng.randint(3, 6)
            phases.append(Phase("".join("y" if c in "Gg" else "r" for c in chars), y, y, y))
            if rng.random() < 0.6:
                ar = rng.randint(1, 5)
                phases.append(Phase("r" * n, ar, ar, ar))
    else:  # movements staying green from one phase to the next: only those ending get yellow
        sets = [{i: rng.choice("GGg") for i in range(n) if rng.random() < 0.5} or {0: "G"}
                for _ in range(rng.randint(2, 5))]
        for k, cur in enumerate(sets):
            nxt = sets[(k + 1) % len(sets)]
            g = rng.randint(6, 50)
            given = rng.random() < 0.5
            state = "".join(cur.get(i, "r") for i in range(n))
            phases.append(Phase(state, g, rng.randint(5, g) if given else g, g, min_dur_given=given))
            ending = [i for i in cur if i not in nxt]
            if ending:
                y = rng.randint(3, 6)
                phases.append(Phase("".join("y" if i in ending else cur.get(i, "r") for i in range(n)), y, y, y))
                if rng.random() < 0.5:
                    ar = rng.randint(1, 4)
                    phases.append(Phase("".join("r" if i in ending else cur.get(i, "r") for i in range(n)),
                                        ar, ar, ar))
    return Program("P", "0", rng.choice(["static", "static", "actuated"]), 0.0, tuple(phases))


def draw_plans(rng: random.Random, prog: Program, n: int) -> list[EvPlan]:
    green = [i for i, p in enumerate(prog.phases) if any(is_green(c) for c in p.state)]
    plans = []
    for k in range(n):
        phase = rng.choice(green)
        state = prog.phases[phase].state
        target = "".join(c if is_green(c) and rng.random() < 0.6 else "r" for c in state)
        if not any(is_green(c) for c in target):
            target = "".join(c if is_green(c) else "r" for c in state)
        appear = rng.randint(0, 200)
        links = tuple(i for i, c in enumerate(target) if is_green(c) and rng.random() < 0.5)
        plans.append(EvPlan(ev_id=f"ev{k}", priority=rng.randint(1, 3), target=target, phase=phase, appear=appear,
                            vanish=appear + rng.randint(100, 400), eta=appear + rng.randint(-10, 200),
                            need_before_eta=rng.randint(0, 30), eta_drift=rng.choice([0.0, 0.5, 1.0, 1.0]),
                            start_now=rng.random() < 0.6, links=links, gap_at=rng.randint(0, 200),
                            gap=rng.choice([0, 4, 8, 12, 15, 15, 18, 22, 25])))
    return plans


class Case:
    """One seed's draw."""

    def __init__(self, seed: int, foes: bool = True) -> None:
        rng = random.Random(seed)
        self.seed = seed
        self.program = draw_program(rng)
        dt = rng.choice([1.0, 0.5, 0.5])
        self.config = PlannerConfig(step_s=dt, handback_sync=rng.random() < 0.6,
                                    max_presence_s=rng.choice([120.0, 150.0, 150.0, 170.0]),
                                    max_presence_grace_s=rng.choice([0.0, 10.0, 10.0, 20.0]),
                                    red_extension_s=rng.choice([0.0, 2.0, 4.0, 4.0, 6.0]))
        self.plans = draw_plans(rng, self.program, rng.randint(1, 3))
        self.start_phase = rng.randrange(len(self.program.phases))
        self.left_s = float(rng.randint(1, int(self.program.phases[self.start_phase].duration_s)))
        self.occupancy = rng.choice(["all", "all", "half"])
        self.run_s = float(rng.randint(400, 700))
        # the net's foes (which links cross), drawn apart so that a seed's case is the same
        # without them (--no-foes): in half the cases, none known
        frng = random.Random(seed * 7919 + 1)
        n = self.program.link_count
        self.foes: list[set[int]] | None = None
        if foes and frng.random() < 0.5:
            self.foes = [set() for _ in range(n)]
            for _ in range(frng.randint(1, 2 * n)):
                a, b = frng.randrange(n), frng.randrange(n)
                if a != b:
                    self.foes[a].add(b)
                    self.foes[b].add(a)

    def requests(self, t: float) -> list[ServiceRequest]:
        return [q for p in self.plans if (q := p.request(t)) is not None]

    def run(self) -> list[str]:
        """What went wrong: the monitor's violations, hand-backs past the limit, a signal left switched."""
        dt = self.config.step_s
        foes = self.foes
        r = Rig(Planner({"P": self.program}, self.config, lambda tls_id: foes),
                {"P": FakeSignal(self.program, self.start_phase, self.left_s)}, dt=dt)
        everyone = tuple(range(self.program.link_count))
        if self.occupancy == "all":
            r.signals["P"].occupied = lambda t: tuple((i, everyone) for i in everyone)
        else:
            rng = random.Random(self.seed + 1)
            r.signals["P"].occupied = lambda t: tuple((i, tuple(k for k in everyone if rng.random() < 0.5))
                                                      for i in everyone if rng.random() < 0.3)
        for _ in range(round(self.run_s / dt)):
            r.step(self.requests(r.t))
        r.planner.stop()
        for _ in range(round(300 / dt)):  # the hand-back after the stop
            r.step(self.requests(r.t))
            if not r.planner.busy and r.signals["P"].online is None:
                break
        r.step()
        found = [f"{v.rule} at {v.t_s:g} s: {v.detail}" for v in (*r.violations, *r.finish())]
        found += [f"{rec.ev_id} entry {rec.entry_s:g} s, back in the program at {rec.restored_s:g} s"
                  for rec in r.planner.records()
                  if rec.entry_s is not None and rec.restored_s is not None
                  and rec.restored_s - rec.entry_s > PRESENCE_LIMIT_S]
        if r.signals["P"].online is not None:
            found.append("left switched after the stop")
        if foes is not None:  # no permissive green ended while a foe it yields to goes on, but as the program does
            shown_by_program = SignalTiming.from_program(self.program, foes=foes).trap_shown
            states = [s for _, s in sorted(r.shown["P"].items())]
            found += [f"yellow trap: {a} -> {b} (link {i} ended, its foe {f} going on)"
                      for a, b in itertools.pairwise(states) if a != b
                      for i in range(len(a)) if a[i] == "g" and not is_green(b[i])
                      for f in foes[i] if a[f] == "G" and is_green(b[f]) and (i, f) not in shown_by_program][:3]
        return found

    def describe(self) -> str:
        lines = [f"seed {self.seed}: {self.program.kind} program, start phase {self.start_phase} with "
                 f"{self.left_s:g} s left; crossings occupied: {self.occupancy}; {self.run_s:g} s, then stop",
                 f"config: {self.config}"]
        lines += [f"  phase {k}: {ph.state} {ph.duration_s:g} s (minDur {ph.min_dur_s:g}"
                  f"{'' if ph.min_dur_given else ', not given'})" for k, ph in enumerate(self.program.phases)]
        lines += [f"  {p}" for p in self.plans]
        lines.append(f"  foes: {[sorted(f) for f in self.foes] if self.foes is not None else 'not known'}")
        return "\n".join(lines)


def seed_range(text: str) -> list[int]:
    """Seeds from ``1-2000``, ``34012`` or a comma list of such (``1-500,8636,34012``)."""
    seeds: list[int] = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        try:
            a, b = int(first), int(last or first)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: expected a seed or a range such as 1-2000") from None
        if b < a:
            raise argparse.ArgumentTypeError(f"{part!r}: the range ends before it starts")
        seeds += range(a, b + 1)
    return seeds


def describe_seeds(seeds: list[int]) -> str:
    """``1-12`` for a run of seeds, else the list (``1..500`` past 12 seeds)."""
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds)) if len(seeds) <= 12 else f"{seeds[0]}..{seeds[-1]}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=seed_range, default=list(range(1, 501)),
                    help="seeds to run, e.g. 1-2000 or 1-500,8636 [1-500]")
    ap.add_argument("--show", type=int, metavar="SEED", help="print one seed's case and what it found, and stop")
    ap.add_argument("--no-foes", action="store_true", help="no foes known (each seed's case as before they were drawn)")
    args = ap.parse_args()
    if args.show is not None:
        case = Case(args.show, foes=not args.no_foes)
        print(case.describe())
        found = case.run()
        print("\n".join(found) if found else "no violation")
        return 1 if found else 0
    failed, t0 = [], time.perf_counter()
    for n, seed in enumerate(args.seeds, 1):
        found = Case(seed, foes=not args.no_foes).run()
        if found:
            failed.append(seed)
            print(f"seed {seed}: " + "; ".join(found[:3]), flush=True)
        if n % 500 == 0:
            print(f"{n} seeds, {len(failed)} failing ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    print(f"{len(args.seeds)} seeds ({describe_seeds(args.seeds)}), {len(failed)} failing"
          + (f": {' '.join(map(str, failed))} (see --show SEED)" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
