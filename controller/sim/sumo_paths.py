"""Where the SUMO binaries and tools are: inside the installed ``eclipse-sumo`` package.

No SUMO_HOME and no system install are needed; a user's SUMO_HOME is not consulted, so the
binaries always match the ``libsumo``/``traci`` versions pip installed beside them.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from controller.errors import SimulationError


@cache
def sumo_home() -> Path:
    try:
        import sumo  # the eclipse-sumo wheel
    except ImportError as e:  # pragma: no cover - packaging problem
        raise SimulationError("the 'eclipse-sumo' package is not installed: pip install eclipse-sumo") from e
    return Path(sumo.SUMO_HOME)


def binary(name: str) -> Path:
    """Path of a SUMO binary (``sumo``, ``sumo-gui``, ``netconvert``, ...) from the eclipse-sumo package."""
    path = sumo_home() / "bin" / name
    if os.name == "nt":
        path = path.with_suffix(".exe")
    if not path.exists():
        raise SimulationError(f"SUMO binary '{name}' not found in the eclipse-sumo package ({path})")
    return path
