"""The controller's core without SUMO: time per tick against the number of concurrent EVs on the
2,024-signal NDS network, and a recorded run replayed.

    python benchmarks/core_bench.py                       # 1, 10, 50, 100 EVs, 300 ticks each
    python benchmarks/core_bench.py --evs 1,100 --ticks 200
    python benchmarks/core_bench.py --flush-mb 0          # warm caches: no flush before each tick
    python benchmarks/core_bench.py --replay runs/x.jsonl # a recording of `greenwave run --record`

Prints p50/p99/max per tick for each EV count and the growth of the per-tick cost with the EV
count (cost per EV relative to the 10-EV figure: about 1 or less means linear or better; with a
1-EV row, the cost of each EV beyond the first, so that the tick's own cost does not hide growth). Exits 1
when 100 EVs take more than 10 ms at p99 or the per-EV cost at the largest count is more than
1.5 times that at 10 EVs (ratios measured in one run: robust to a noisy machine).

Every tick starts from cold caches by default (32 MB written through, untimed, before it), as a
tick in a run does after SUMO's step. With warm caches (``--flush-mb 0``) a small world keeps the
controller's data in them from tick to tick and a large one does not, so the per-EV time grows
with the EV count (× 1.6-1.8 at 100 EVs) although the work per EV does not (callgrind: × 0.91
in instructions).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from controller import core  # noqa: E402
from controller.bench.core import CoreTiming, random_corridor, replay, time_controller  # noqa: E402
from controller.runtime.run import controller_config  # noqa: E402
from controller.sim.netload import load_network  # noqa: E402

NDS = REPO / "networks" / "nds_alltls" / "nds_main_alltls.net.xml.gz"
P99_TARGET_MS = 10.0


def _recording_header(path: Path) -> dict[str, Any] | str:
    """The first line of a recording of ``greenwave run --record``, or what is wrong with it."""
    try:
        with path.open(encoding="utf-8") as f:
            header = json.loads(f.readline())
    except OSError as e:
        return e.strerror or str(e)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return "not a recording of greenwave run --record (its first line is not JSON)"
    if not isinstance(header, dict) or "net_file" not in header:
        return "not a recording of greenwave run --record (its first line has no 'net_file')"
    return header


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--evs", default="1,10,50,100", help="EV counts, comma-separated")
    ap.add_argument("--ticks", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--net", type=Path, default=NDS)
    ap.add_argument("--replay", type=Path, default=None, help="a recording made with greenwave run --record")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    ap.add_argument("--flush-mb", type=int, default=32,
                    help="write through this many MB before each tick (untimed), evicting the caches as SUMO's "
                         "step does in a run (0: no flush, warm caches)")
    args = ap.parse_args()
    try:
        counts = sorted({int(x) for x in args.evs.split(",")})
    except ValueError:
        ap.error(f"--evs '{args.evs}': expected EV counts separated by commas, such as 1,10,100")
    if counts[0] < 1 or args.ticks < 1:
        ap.error("--evs and --ticks must be at least 1")
    header: dict[str, Any] = {}
    if args.replay is not None:
        read = _recording_header(args.replay)
        if isinstance(read, str):
            ap.error(f"--replay {args.replay}: {read}")
        header = read

    t0 = time.perf_counter()
    print(f"core: {'compiled (greenwave accel)' if core.COMPILED else 'python (greenwave accel compiles it)'}")
    if args.replay is not None:
        network = load_network(Path(header["net_file"]))
        result = replay(network, args.replay, controller_config(header.get("controller_settings", {})))
        print(f"replay of {args.replay} ({header.get('scenario')}, {len(header.get('evs', []))} EVs): "
              f"{result['ticks']} ticks, p50 {result['p50_ms']:.3f} ms, p99 {result['p99_ms']:.3f} ms, "
              f"max {result['max_ms']:.3f} ms; commands differing from the recording: {result['command_mismatches']}")
        if result["first_mismatch"]:
            print(f"  first difference: {result['first_mismatch']}")
        return 1 if result["command_mismatches"] else 0

    network = load_network(args.net)
    rng = random.Random(args.seed)
    corridors = {f"ev{k:03d}": random_corridor(network, rng) for k in range(max(counts))}
    signals = len({t for c in corridors.values() for t in c.tls_ids()})
    print(f"network {args.net.name}: {len(network.programs)} signals; {len(corridors)} synthetic corridors "
          f"({sum(len(c.junctions) for c in corridors.values()) / len(corridors):.1f} signals and "
          f"{sum(c.length_m for c in corridors.values()) / len(corridors) / 1000:.1f} km each on average, "
          f"{signals} distinct signals); set up in {time.perf_counter() - t0:.1f} s")
    rows = []
    for n in counts:
        sub = dict(list(corridors.items())[:n])
        rows.append(time_controller(network, sub, ticks=args.ticks, seed=args.seed, flush_mb=args.flush_mb))
    ref = next((r for r in rows if r.evs == 10), rows[0])
    # the cost of each EV beyond the first (the 1-EV tick's cost is the tick's own: with cold caches
    # mostly refilling them, which would otherwise weigh on the 10-EV figure most and hide growth)
    one = next((r for r in rows if r.evs == 1), None)

    def per_ev(r: CoreTiming) -> float:
        if one is None or r.evs == 1:
            return r.p50_ms / r.evs
        return (r.p50_ms - one.p50_ms) / (r.evs - 1)

    label = "p50/EV ms" if one is None else "p50/EV+ ms"
    print(f"{'EVs':>5} {'signals':>8} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9} {label:>10} {'vs ref/EV':>10}")
    for r in rows:
        print(f"{r.evs:>5} {r.signals:>8} {r.p50_ms:>9.3f} {r.p99_ms:>9.3f} {r.max_ms:>9.3f} {per_ev(r):>10.4f} "
              f"{per_ev(r) / per_ev(ref):>10.2f}")
    biggest = rows[-1]
    growth = per_ev(biggest) / per_ev(ref)
    ok_p99 = biggest.evs < 100 or biggest.p99_ms <= P99_TARGET_MS
    ok_growth = growth <= 1.5
    print(f"p99 at {biggest.evs} EVs: {biggest.p99_ms:.3f} ms (target <= {P99_TARGET_MS:g} ms at 100 EVs): "
          f"{'ok' if ok_p99 else 'FAIL'}; per-EV cost at {biggest.evs} vs {ref.evs} EVs: x{growth:.2f} "
          f"(<= 1.5: no faster than linear): {'ok' if ok_growth else 'FAIL'}")
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": [r.as_dict() for r in rows], "growth_per_ev": round(growth, 3)},
                                        indent=2) + "\n")
    return 0 if ok_p99 and ok_growth else 1


if __name__ == "__main__":
    sys.exit(main())
