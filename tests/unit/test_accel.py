"""The compiled core (``greenwave accel``, mypyc) is the same code: on the same synthetic world it
gives the same commands as the Python sources, and a build is used only for the sources it was
made from."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.conftest import REPO

SCRIPT = r"""
import json, random, sys
from pathlib import Path
import controller.core
from controller.bench.core import DYNAMICS, SyntheticWorld, command_json, random_corridor
from controller.core.greenwave import EvSetup, PreemptionController
from controller.core.progress import EvProgress
from controller.sim.netload import load_network

net = load_network(Path(sys.argv[1]))
rng = random.Random(3)
corridors = {f"ev{k}": random_corridor(net, rng, min_signals=3, min_length_m=600.0, max_length_m=2500.0)
             for k in range(8)}
world = SyntheticWorld(net, corridors, seed=3)
ctl = PreemptionController(net, [EvSetup(ev, "ambulance", c, DYNAMICS, 5.0 * k)
                                 for k, (ev, c) in enumerate(corridors.items())])
progress = {ev: EvProgress(ev, c) for ev, c in corridors.items()}
out = []
for k in range(260):
    snap = world.snapshot(float(k))
    for ev, p in progress.items():
        p.update(snap.t_s, snap.vehicles.get(ev), arrived=ev not in snap.vehicles and p.depart_s is not None)
    cmds = ctl.tick(snap, progress)
    world.apply(cmds)
    out.append([command_json(c) for c in cmds])
etas = [(r.junction_index, round(r.eta_s, 9)) for r in ctl.eta_log.records]
print(json.dumps({"compiled": controller.core.COMPILED, "commands": out, "etas": etas}))
"""


SPAWN = r"""
import multiprocessing as mp
import controller.core

def child(_):
    import controller, controller.core
    return controller.__version__, controller.core.COMPILED

if __name__ == "__main__":
    with mp.get_context("spawn").Pool(1) as pool:
        print(controller.core.COMPILED, *pool.map(child, [0])[0])
"""


def _run(env: dict[str, str]) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(REPO / "networks" / "grid5" / "grid5.net.xml")],
                          env=env, capture_output=True, text=True, check=True, cwd=REPO)
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def test_the_compiled_core_gives_the_same_commands_and_etas(tmp_path: Path) -> None:
    """... and processes it spawns (the bench's workers) still import the package."""
    env = {k: v for k, v in os.environ.items() if k != "GREENWAVE_PURE"}
    build = subprocess.run([sys.executable, "-m", "controller", "accel"], env=env, capture_output=True, text=True,
                           check=False, cwd=REPO)
    assert build.returncode == 0, build.stdout + build.stderr
    compiled = _run(env)
    pure = _run({**env, "GREENWAVE_PURE": "1"})
    assert compiled["compiled"] is True and pure["compiled"] is False
    commands = pure["commands"]
    assert isinstance(commands, list) and sum(len(c) for c in commands) > 20
    assert compiled["commands"] == pure["commands"]
    assert compiled["etas"] == pure["etas"]
    # greenwave bench runs each scenario in a spawned worker, which inherits sys.path
    script = tmp_path / "spawn.py"
    script.write_text(SPAWN)
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, check=True,
                         cwd=tmp_path).stdout.split()
    from controller import __version__

    assert out == ["True", __version__, "True"]


def test_a_build_of_other_sources_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from controller.core import accel

    monkeypatch.setenv("GREENWAVE_CACHE_DIR", str(tmp_path / "greenwave"))
    monkeypatch.delenv("GREENWAVE_PURE")
    suffix = sysconfig.get_config_var("EXT_SUFFIX")
    stale = tmp_path / "greenwave" / "accel" / f"{sys.implementation.cache_tag}-0000000000000000"
    (stale / "core").mkdir(parents=True)
    for m in accel.MODULES:
        (stale / "core" / f"{m}{suffix}").write_bytes(b"")
    (stale / "BUILT").write_text("old sources\n")
    path: list[str] = []
    assert accel.build_dir() != stale and accel.install(path) is False and path == []
    stale.rename(accel.build_dir())  # the same files named for the current sources: used
    assert accel.install(path) is True and path == [str(accel.build_dir() / "core")]
    monkeypatch.setenv("GREENWAVE_PURE", "1")
    assert accel.install([]) is False


