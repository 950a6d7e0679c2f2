"""Write scenarios/nds-city.toml: 50 emergency vehicles on the NDS main-roads network with all its
2,024 signals (networks/nds_alltls, see SOURCE.md), dispatched every 36 s from 300 s to 2,064 s so
that several are on the road at once, over the synthetic background demand of that scenario.

Each EV gets a random origin edge, and a destination among the edges 3-8 km of fastest route
away, whose route crosses at least 8 signals (chosen with a fixed seed, so the file is
reproducible: ``python networks/build_nds_evs.py``).
"""

from __future__ import annotations

import heapq
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from controller.core.corridor import build_corridor  # noqa: E402
from controller.core.routing import fastest_route  # noqa: E402
from controller.errors import GreenwaveError  # noqa: E402
from controller.sim.netload import load_network  # noqa: E402

N_EVS = 50
FIRST_DEPART_S, EVERY_S = 300, 36
TYPES = ("ambulance", "fire", "ambulance", "police", "ambulance")


def main() -> None:
    net = load_network(HERE / "nds_alltls" / "nds_main_alltls.net.xml.gz")
    rng = random.Random(2024)
    out_edges: dict[str, list[tuple[str, float]]] = {}
    for c in net.connections:
        e = net.edges[c.to_edge]
        out_edges.setdefault(c.from_edge, []).append((c.to_edge, e.length_m))
    candidates = sorted(
        e.edge_id for e in net.edges.values()
        if not e.is_internal and e.length_m >= 50 and all(ln.allows_emergency for ln in e.lanes)
    )  # fmt: skip
    evs: list[tuple[str, str, int, str, int, float]] = []
    while len(evs) < N_EVS:
        origin = rng.choice(candidates)
        # edges 3-8 km along the road from the origin (Dijkstra on length)
        dist = {origin: 0.0}
        heap = [(0.0, origin)]
        reach: list[str] = []
        while heap:
            d, edge = heapq.heappop(heap)
            if d > dist.get(edge, float("inf")) or d > 8000:
                continue
            if d >= 3000:
                reach.append(edge)
            for nxt, length in out_edges.get(edge, ()):
                nd = d + length
                if nd < dist.get(nxt, float("inf")):
                    dist[nxt] = nd
                    heapq.heappush(heap, (nd, nxt))
        reach = [e for e in reach if e in set(candidates)]
        if not reach:
            continue
        dest = rng.choice(sorted(reach))
        try:
            route = fastest_route(net, origin, dest)
            corridor = build_corridor(net, route)
        except GreenwaveError:
            continue
        if len(corridor.junctions) < 8 or not 3000 <= corridor.length_m <= 9000:
            continue
        k = len(evs)
        evs.append((origin, dest, FIRST_DEPART_S + EVERY_S * k, TYPES[k % len(TYPES)], len(corridor.junctions),
                    corridor.length_m))
        print(f"ev{k + 1:02d}: {origin} -> {dest}: {corridor.length_m:.0f} m, {len(corridor.junctions)} signals",
              file=sys.stderr)

    lines = [
        'name = "nds-city"',
        'description = "Lower Saxony main roads (DLR TestfeldNDS, OSM) with all 2,024 signals kept, synthetic '
        'demand; 50 emergency vehicles dispatched every 36 s from 300 s, several at once. Made by '
        'networks/build_nds_evs.py."',
        "",
        "[network]",
        'net = "../networks/nds_alltls/nds_main_alltls.net.xml.gz"',
        "additional = []",
        "",
        "[demand]",
        'level = "synthetic"',
        'routes = ["../networks/nds_alltls/nds_alltls.rou.xml.gz"]',
        "",
        "[simulation]",
        "begin_s = 0",
        f"end_s = {FIRST_DEPART_S + EVERY_S * N_EVS + 600}",
        "step_length_s = 1.0",
    ]
    for k, (origin, dest, depart, ev_type, n_tls, length) in enumerate(evs):
        lines += ["", f"[[ev]]  # {length / 1000:.1f} km, {n_tls} signals", f'id = "ev{k + 1:02d}"',
                  f'from = "{origin}"', f'to = "{dest}"', f"depart_s = {depart}", f'type = "{ev_type}"']
    (HERE.parent / "scenarios" / "nds-city.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
