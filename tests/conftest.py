"""Shared fixtures. Integration tests (marked ``sumo``) run real SUMO from the eclipse-sumo package."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
# The tests exercise the Python sources (and some replace a planner method, which a compiled class
# does not allow); tests/unit/test_accel.py checks the compiled core against them.
os.environ["GREENWAVE_PURE"] = "1"


@pytest.fixture(scope="session")
def tiny_net(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3x3 signalized grid (200 m blocks, 1 lane, 100 m arms) made with netgenerate."""
    from controller.sim.sumo_paths import binary

    out = tmp_path_factory.mktemp("tiny") / "tiny.net.xml"
    subprocess.run(
        [str(binary("netgenerate")), "--grid", "--grid.number", "3", "--grid.length", "200",
         "--grid.attach-length", "100", "--default-junction-type", "traffic_light",
         "--default.lanenumber", "1", "--tls.yellow.time", "3", "--tls.allred.time", "2",
         "--no-turnarounds", "true", "--seed", "1", "-o", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    return out
