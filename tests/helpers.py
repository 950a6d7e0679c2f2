"""Helpers shared by tests."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from controller.cli import main


def run_ok(args: list[str]) -> dict[str, Any]:
    """Run the CLI in-process; it must succeed; return the summary.json it wrote to --out."""
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    out = Path(args[args.index("--out") + 1])
    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    return summary


def write_scenario(path: Path, net: Path, *, ev: str = 'from = "left1A1"\nto = "C1right1"', end_s: float = 200,
                   extra: str = "", additional: str = "[]", demand: str = "") -> Path:
    """A minimal scenario file on ``net`` (an absolute path) with one EV."""
    path.write_text(
        f'name = "tiny"\n\n[network]\nnet = "{net}"\nadditional = {additional}\n\n{demand}\n'
        f"[simulation]\nbegin_s = 0\nend_s = {end_s}\n\n[[ev]]\nid = \"amb\"\n{ev}\ndepart_s = 10\n{extra}",
        encoding="utf-8",
    )
    return path


def long_teleport_sumocfg(folder: Path, net: Path, *, end_s: float | None = None) -> Path:
    """A SUMO configuration on the tiny grid (``net``) where an EV coming along the middle row is
    carried off the road by SUMO for about three minutes: a car stopped on A1B1 for good holds it
    up (``time-to-teleport`` 15 s), and B1C1 is filled by a long stopped vehicle, so the teleport
    finds no room until C1C2. ``end_s``: the configuration's end (none where not given)."""
    (folder / "block.rou.xml").write_text(
        '<routes><vType id="blk"/><vType id="long" length="182" minGap="1"/>'
        '<route id="rb" edges="A1B1 B1C1"/><route id="rc" edges="B1C1 C1right1"/>'
        '<vehicle id="blk0" type="blk" route="rb" depart="0" departPos="100">'
        '<stop lane="A1B1_0" endPos="120" duration="1000"/></vehicle>'
        '<vehicle id="blk1" type="long" route="rc" depart="0" departPos="184">'
        '<stop lane="B1C1_0" endPos="185" duration="1000"/></vehicle></routes>')
    end = f'<time><begin value="0"/><end value="{end_s:g}"/></time>' if end_s is not None else ""
    cfg = folder / "run.sumocfg"
    cfg.write_text(f'<configuration><input><net-file value="{net}"/><route-files value="block.rou.xml"/></input>'
                   f'{end}<processing><time-to-teleport value="15"/></processing></configuration>')
    return cfg


def interrupt_mid_run(args: list[str], sig: int, cwd: Path, *, after: str = "25% simulated",
                      again_after_s: float | None = None, to_group: bool = False) -> tuple[int, str]:
    """``greenwave ARGS`` as a process of its own, sent ``sig`` once it has printed ``after`` (a
    progress line: SUMO busy stepping), and again ``again_after_s`` later if given; its exit code
    and output (stdout and stderr). ``to_group``: sent to its whole process group, as a terminal
    sends Ctrl-C or a hang-up (the process leads a group of its own)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # (SIGINT as at a terminal: a shell's background job, pytest started with '&' among them,
    # ignores it, and so would the child, running on to its end)
    proc = subprocess.Popen([sys.executable, "-m", "controller", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=to_group,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def send() -> None:
        if to_group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)

    assert proc.stdout is not None
    said = []
    for line in proc.stdout:
        said.append(line)
        if after in line:
            send()
            if again_after_s is not None:
                time.sleep(again_after_s)
                send()
            break
    try:
        rest, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        rest, _ = proc.communicate()
        raise AssertionError("still running 120 s after the signal:\n" + "".join(said) + rest) from None
    return proc.returncode, "".join(said) + rest


def no_left_at_b1(tiny_net: Path, out: Path, shown: str = "r") -> Path:
    """The tiny grid (tests/conftest.py) with B1's left turn from A1B1 onto B1B2 red in every
    phase (a movement greenwave cannot give green to), written to ``out``; ``shown`` "s": a
    stop sign instead, which SUMO lets vehicles cross (it never shows green either)."""
    root = ET.parse(tiny_net).getroot()
    link = int(next(c.get("linkIndex", "") for c in root.iter("connection")
                    if c.get("from") == "A1B1" and c.get("to") == "B1B2" and c.get("tl") == "B1"))
    for phase in next(t for t in root.iter("tlLogic") if t.get("id") == "B1").iter("phase"):
        state = phase.get("state", "")
        phase.set("state", state[:link] + shown + state[link + 1:])
    ET.ElementTree(root).write(out)
    return out
