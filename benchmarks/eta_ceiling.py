"""How well could an ETA of the form "kinematic time x one factor" do on a bench's runs?

greenwave's published ETA is the EV's kinematic time to each stop line (speed limits, its
acceleration and braking) scaled by a factor learned online from its progress, plus the wait for a
switch-over under way. This script measures the ceiling of that model class on the recorded
trajectories of a bench's greenwave runs (each run's ``trace.json``): for every junction, at the
moment its preemption's entry started and 60 s before the EV crossed, the error of

- ``kinematic``: the kinematic time alone (factor 1);
- ``hindsight``: the kinematic time × the factor the whole trip turned out to have (its travel time
  over its kinematic time from the start), a constant no online predictor knows in advance;
- ``published``: what greenwave published (the runs' ``summary.json``, ``eta.errors``).

Usage: ``python benchmarks/eta_ceiling.py BENCH_DIR`` (a ``greenwave bench --out`` folder). Needs
only the runs' files and the scenarios' networks; it runs no simulation.
"""

from __future__ import annotations

import functools
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from controller.core.corridor import build_corridor  # noqa: E402
from controller.core.eta import EvDynamics, SpeedProfile, arrival_times_s, build_profile  # noqa: E402
from controller.core.network import Network  # noqa: E402

# SUMO's defaults for vClass "emergency" (greenwave's EV types set no dynamics of their own)
DYNAMICS = EvDynamics(max_speed_mps=41.67, accel_mps2=2.6, decel_mps2=4.5, speed_factor=1.0, length_m=6.5)
LIMITS = {"entry": 2.0, "60": 6.0}  # issue 3's targets for the p90 of |error|


@functools.cache
def network(scenario: str) -> Network:
    """The scenario's network as its runs read it (its programs included), from the bundled file."""
    from controller.runtime.setup import prepare_scenario
    from controller.scenario import load_scenario

    with tempfile.TemporaryDirectory(prefix="eta-ceiling-") as out:
        return prepare_scenario(load_scenario(REPO / "scenarios" / f"{scenario}.toml"), seed=1,
                                out_dir=Path(out)).network


def p90(errors: Sequence[float]) -> float:
    """p90 of |error|, interpolated as the bench's figures are (numpy's default)."""
    return float(np.percentile(np.abs(np.asarray(errors, dtype=float)), 90))


def _kinematic(profile: SpeedProfile, x_m: float, v_mps: float, to_m: float) -> float:
    return arrival_times_s(profile, DYNAMICS, max(x_m, profile.start_m), max(v_mps, 0.0), (to_m,))[0]


def run_errors(trace_file: Path) -> dict[str, dict[str, list[float]]]:
    """{"entry"|"60": {"kinematic"|"hindsight": [predicted − actual, ...]}} of one run's EVs (on
    the route each was dispatched with: a re-routed EV's later legs are left out)."""
    trace = json.loads(trace_file.read_text(encoding="utf-8"))
    summary = json.loads((trace_file.parent / "summary.json").read_text(encoding="utf-8"))
    net = network(str(trace["scenario"]))
    out: dict[str, dict[str, list[float]]] = {h: {"kinematic": [], "hindsight": []} for h in LIMITS}
    for ev in trace["evs"]:
        entries = {int(p["junction_index"]): float(p["entry"]) for p in summary["preemptions"]
                   if p["ev"] == ev["id"] and p["entry"] is not None}
        for h, kinds in _leg_errors(net, ev["legs"][0], entries).items():
            for kind, values in kinds.items():
                out[h][kind] += values
    return out


def _leg_errors(net: Network, leg: dict[str, Any], entries: dict[int, float]) -> dict[str, dict[str, list[float]]]:
    corridor = build_corridor(net, leg["route"])
    profile = build_profile(net, corridor)
    t, pos, speed = leg["t"], leg["pos"], leg["speed"]
    end_m = min(pos[-1], profile.end_m - 0.01)
    factor = (t[-1] - t[0]) / _kinematic(profile, pos[0], 0.0, end_m)
    out: dict[str, dict[str, list[float]]] = {h: {"kinematic": [], "hindsight": []} for h in LIMITS}
    for j in leg["junctions"]:
        d = float(j["distance_m"])
        k = next((k for k in range(1, len(t)) if pos[k - 1] < d <= pos[k]), None)
        if k is None:
            continue  # not crossed
        crossed = t[k - 1] + (d - pos[k - 1]) / (pos[k] - pos[k - 1]) * (t[k] - t[k - 1])
        moments = {"60": crossed - 60.0, "entry": entries.get(int(j["index"]))}
        for h, at in moments.items():
            if at is None:
                continue
            m = min(range(len(t)), key=lambda i: abs(t[i] - at))
            if abs(t[m] - at) > 1.0 or pos[m] >= d:
                continue
            kin = _kinematic(profile, pos[m], speed[m], d)
            out[h]["kinematic"].append(t[m] + kin - crossed)
            out[h]["hindsight"].append(t[m] + factor * kin - crossed)
    return out


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: python benchmarks/eta_ceiling.py BENCH_DIR (a `greenwave bench --out` folder)",
              file=sys.stderr)
        return 2
    bench = Path(argv[0])
    pooled: dict[str, dict[str, list[float]]] = {h: {"kinematic": [], "hindsight": [], "published": []}
                                                  for h in LIMITS}
    traces = sorted(bench.glob("runs/*/greenwave-s*/trace.json"))
    if not traces:
        print(f"{bench}: no greenwave runs with a trace.json under runs/", file=sys.stderr)
        return 2
    by_scenario: dict[str, dict[str, dict[str, list[float]]]] = {}
    for f in traces:
        scenario = f.parent.parent.name
        errors = run_errors(f)
        published = json.loads((f.parent / "summary.json").read_text(encoding="utf-8"))["eta"]["errors"]
        errors["entry"]["published"] = [e for e in published["entry"] if e is not None]
        errors["60"]["published"] = [e for e in published["60"] if e is not None]
        mine = by_scenario.setdefault(scenario, {h: {"kinematic": [], "hindsight": [], "published": []}
                                                 for h in LIMITS})
        for h, kinds in errors.items():
            for kind, values in kinds.items():
                mine[h][kind] += values
                pooled[h][kind] += values
    for name, table in [*sorted(by_scenario.items()), ("POOLED", pooled)]:
        cells = []
        for h, limit in LIMITS.items():
            for kind in ("published", "hindsight", "kinematic"):
                e = table[h][kind]
                over = sum(1 for x in e if abs(x) > limit)
                cells.append(f"{h} {kind} p90 {p90(e):5.1f} ({over}/{len(e)} > {limit:g} s)" if e else f"{h} {kind} -")
        print(f"{name:18s} " + " | ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
