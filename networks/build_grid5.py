"""Build ``networks/grid5/grid5.net.xml``: a 5x5 signalized grid made with SUMO's netgenerate.

5x5 junctions (A0..E4), 250 m blocks, 2 lanes each way at 13.89 m/s, a 250 m street attached to
every fringe junction (so all 25 junctions have 4 arms and traffic enters from outside), and a
fixed-time (static) 90 s program at every junction:

    40 s N-S through + permissive left | 3 s yellow | 2 s all-red |
    40 s E-W through + permissive left | 3 s yellow | 2 s all-red

Deterministic: re-running rewrites the same file (the timestamp netgenerate puts in the header
comment is removed). Run from anywhere: ``python networks/build_grid5.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from netbuild import binary, build, static_tls_options

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "grid5"
NET_NAME = "grid5.net.xml"

CYCLE_S = 90
YELLOW_S = 3
ALLRED_S = 2
GRID_IDS = [f"{col}{row}" for col in "ABCDE" for row in range(5)]








def main() -> int:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    cmd = [
        binary("netgenerate"),
        "--grid",
        "--grid.number", "5",
        "--grid.length", "250",
        "--grid.attach-length", "250",
        "--default.lanenumber", "2",
        "--default.speed", "13.89",
        "--no-turnarounds", "true",
        "--tls.set", ",".join(GRID_IDS),
        *static_tls_options(CYCLE_S, YELLOW_S, ALLRED_S),
        "--output-file", NET_NAME,
    ]  # fmt: skip
    build(cmd, OUT_DIR, NET_NAME, GRID_IDS, CYCLE_S)
    return 0


if __name__ == "__main__":
    sys.exit(main())
