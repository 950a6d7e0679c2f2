"""Build ``networks/arterial/arterial.net.xml``: a 10-signal arterial made with SUMO's netconvert.

The arterial runs west to east through junctions J0..J9 spaced 300-500 m apart (unequal
spacing on purpose), 2 lanes each way at 13.89 m/s, with a 300 m entry/exit street at each end
(nodes W and E). Every junction has a cross street to the north (N<i>) and to the south (S<i>),
200-300 m long, 1 lane each way at 11.11 m/s, except the three major cross streets at J2, J5 and
J8 which have 2 lanes each way. Every junction J<i> has a fixed-time (static) 90 s program built
by netconvert with 3 s yellow and 2 s all-red clearance after each green.

Edge ids: ``W_J0, J0_J1, ..., J9_E`` (eastbound), ``E_J9, J9_J8, ..., J0_W`` (westbound),
``N<i>_J<i>``/``J<i>_N<i>`` and ``S<i>_J<i>``/``J<i>_S<i>`` (cross streets).

The plain XML inputs (``arterial.nod.xml``, ``arterial.edg.xml``) are written next to the
network. Deterministic: re-running rewrites the same files (the timestamp netconvert puts in the
header comment is removed). Run from anywhere: ``python networks/build_arterial.py``.
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

from netbuild import binary, build, static_tls_options

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "arterial"
NET_NAME = "arterial.net.xml"
NOD_NAME = "arterial.nod.xml"
EDG_NAME = "arterial.edg.xml"

CYCLE_S = 90
YELLOW_S = 3
ALLRED_S = 2
N_JUNCTIONS = 10
SPACING_M = [300, 420, 350, 480, 380, 450, 320, 500, 400]  # between J0..J9
END_STREET_M = 300  # W -> J0 and J9 -> E
NORTH_ARM_M = [250, 220, 280, 200, 260, 300, 230, 270, 210, 250]
SOUTH_ARM_M = [230, 270, 250, 300, 210, 240, 280, 200, 260, 220]
MAJOR_CROSS = {2, 5, 8}  # cross streets with 2 lanes each way
ARTERIAL_SPEED = 13.89
CROSS_SPEED = 11.11




def junction_x() -> list[int]:
    xs = [END_STREET_M]
    for gap in SPACING_M:
        xs.append(xs[-1] + gap)
    return xs


def write_plain(out_dir: Path) -> None:
    xs = junction_x()
    nodes: list[str] = []
    edges: list[str] = []
    nodes.append('    <node id="W" x="0.00" y="0.00" type="priority"/>')
    for i, x in enumerate(xs):
        nodes.append(f'    <node id="J{i}" x="{x:.2f}" y="0.00" type="traffic_light" tlType="static"/>')
        nodes.append(f'    <node id="N{i}" x="{x:.2f}" y="{NORTH_ARM_M[i]:.2f}" type="priority"/>')
        nodes.append(f'    <node id="S{i}" x="{x:.2f}" y="{-SOUTH_ARM_M[i]:.2f}" type="priority"/>')
    nodes.append(f'    <node id="E" x="{xs[-1] + END_STREET_M:.2f}" y="0.00" type="priority"/>')

    chain = ["W", *[f"J{i}" for i in range(N_JUNCTIONS)], "E"]

    def arterial(a: str, b: str) -> str:
        return f'    <edge id="{a}_{b}" from="{a}" to="{b}" priority="3" numLanes="2" speed="{ARTERIAL_SPEED:.2f}"/>'

    for a, b in itertools.pairwise(chain):
        edges.append(arterial(a, b))
    for a, b in itertools.pairwise(chain[::-1]):
        edges.append(arterial(a, b))
    for i in range(N_JUNCTIONS):
        lanes = 2 if i in MAJOR_CROSS else 1
        for side in ("N", "S"):
            for a, b in ((f"{side}{i}", f"J{i}"), (f"J{i}", f"{side}{i}")):
                edges.append(
                    f'    <edge id="{a}_{b}" from="{a}" to="{b}" priority="2" numLanes="{lanes}" '
                    f'speed="{CROSS_SPEED:.2f}"/>'
                )

    (out_dir / NOD_NAME).write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<nodes>\n' + "\n".join(nodes) + "\n</nodes>\n",
        encoding="utf-8",
    )
    (out_dir / EDG_NAME).write_text(
        '<?xml version="1.0" encoding="UTF-8"?>\n<edges>\n' + "\n".join(edges) + "\n</edges>\n",
        encoding="utf-8",
    )






def main() -> int:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    write_plain(OUT_DIR)
    cmd = [
        binary("netconvert"),
        "--node-files", NOD_NAME,
        "--edge-files", EDG_NAME,
        "--no-turnarounds", "true",
        *static_tls_options(CYCLE_S, YELLOW_S, ALLRED_S),
        "--output-file", NET_NAME,
    ]  # fmt: skip
    build(cmd, OUT_DIR, NET_NAME, [f"J{i}" for i in range(N_JUNCTIONS)], CYCLE_S)
    return 0


if __name__ == "__main__":
    sys.exit(main())
