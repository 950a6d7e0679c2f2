"""libsumo against TraCI on the same scenario and seed, side by side: the KPIs must be identical
(SUMO is deterministic), the speed differs (TraCI talks to SUMO over a socket).

    python benchmarks/backends.py [SCENARIO] [--controller greenwave] [--seed 1]

Runs the two one after the other in this process's children and prints, per backend: wall time,
SUMO's step p50, the controller's tick p50/p99 (which includes reading the watched objects: the
part TraCI makes slower), and whether every EV travel time and the background figures match.
Exits 1 when they do not, 2 when a run fails (its message printed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scenario", nargs="?", default=str(REPO / "scenarios" / "grid5-heavy.toml"))
    ap.add_argument("--controller", default="greenwave", choices=("none", "local", "greenwave", "oracle"))
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="greenwave-backends-") as tmp:
        for backend in ("libsumo", "traci"):
            out = Path(tmp) / backend
            cmd = [sys.executable, "-m", "controller", "run", args.scenario, "--controller", args.controller,
                   "--seed", str(args.seed), "--backend", backend, "--out", str(out)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:  # (greenwave's own message: a scenario not found, ...)
                said = done.stderr.strip() or done.stdout.strip()
                print(f"the {backend} run failed (exit {done.returncode}): {said}", file=sys.stderr)
                return 2
            results[backend] = json.loads((out / "summary.json").read_text())
    print(f"{Path(args.scenario).stem}, controller {args.controller}, seed {args.seed}")
    print(f"{'backend':<8} {'wall s':>8} {'SUMO step p50 ms':>17} {'tick p50 ms':>12} {'tick p99 ms':>12}")
    for backend, s in results.items():
        rt = s["realtime"]
        print(f"{backend:<8} {rt['wall_s']:>8.1f} {rt['sumo_step_ms_p50']:>17.2f} {rt['tick_ms_p50']:>12.3f} "
              f"{rt['tick_ms_p99']:>12.3f}")
    a, b = results["libsumo"], results["traci"]
    same = ([e["travel_time"] for e in a["evs"]] == [e["travel_time"] for e in b["evs"]]
            and a["background"] == b["background"] and a["safety"]["S1"] == b["safety"]["S1"])
    ratio = b["realtime"]["wall_s"] / a["realtime"]["wall_s"]
    print(f"EV travel times {[e['travel_time'] for e in a['evs']]} vs {[e['travel_time'] for e in b['evs']]}: "
          f"{'identical' if same else 'DIFFERENT'}; TraCI / libsumo wall time x{ratio:.2f}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
