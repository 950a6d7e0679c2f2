"""Benchmark suite files (TOML), validated like scenario files: every error names the file and
the field. Paths are relative to the suite file::

    name = "greenwave-suite"
    version = 1
    seeds = [1, 2, 3]
    controllers = ["none", "local", "greenwave", "oracle"]
    scenarios = ["../scenarios/grid5-moderate.toml", "../scenarios/bologna.toml"]

A scenario file given where a suite is expected is a suite of that one scenario, with
:data:`SCENARIO_SEEDS` and every controller (``--seeds`` and ``--controllers`` narrow them).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from controller import MAX_SEED
from controller.errors import ScenarioError
from controller.scenario import Scenario, load_scenario, read_toml_model

DEFAULT_SUITE = Path("benchmarks") / "suite.toml"
_CHECKOUT = Path(__file__).resolve().parents[2]  # the folder holding controller/ (a source checkout)
KNOWN_CONTROLLERS = ("none", "local", "greenwave", "oracle")  # names a suite may list
_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
MAX_SEEDS = 10_000  # more runs than any bench here would finish
SCENARIO_SEEDS = tuple(range(1, 11))  # a scenario benched on its own: the suite's 10 seeds


def default_suite() -> Path:
    """``benchmarks/suite.toml`` of the current folder, else of the greenwave checkout the package
    runs from (so ``greenwave bench`` works from any folder); the former where neither has one
    (its error then names it)."""
    if DEFAULT_SUITE.is_file():
        return DEFAULT_SUITE
    installed = _CHECKOUT / DEFAULT_SUITE
    return installed if installed.is_file() else DEFAULT_SUITE


class SuiteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    name: str = Field(pattern=rf"^{_NAME}$")
    version: int = Field(ge=1, strict=True)
    description: str = ""
    seeds: tuple[StrictInt, ...] = Field(min_length=1)
    controllers: tuple[str, ...] = Field(min_length=1)
    scenarios: tuple[Path, ...] = Field(min_length=1)

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        return _check_seeds(v)

    @field_validator("controllers")
    @classmethod
    def _controllers(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return _check_controllers(v)


@dataclass(frozen=True)
class Suite:
    name: str
    version: int
    description: str
    seeds: tuple[int, ...]
    controllers: tuple[str, ...]
    scenarios: tuple[Scenario, ...]  # loaded and validated, in the suite's order
    source: Path


def _check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    if any(s < 0 for s in seeds):
        raise ValueError("seeds must be >= 0")
    if any(s > MAX_SEED for s in seeds):
        raise ValueError(f"seeds must be <= {MAX_SEED} (SUMO's largest)")
    if len(set(seeds)) != len(seeds):
        raise ValueError("duplicate seed(s)")
    return tuple(seeds)


def _check_controllers(names: Sequence[str]) -> tuple[str, ...]:
    unknown = [c for c in names if c not in KNOWN_CONTROLLERS]
    if unknown:
        raise ValueError(f"unknown controller '{unknown[0]}' (choose from: {', '.join(KNOWN_CONTROLLERS)})")
    if len(set(names)) != len(names):
        raise ValueError("duplicate controller(s)")
    return tuple(names)


def load_suite(path: Path | str) -> Suite:
    """Read and validate a suite file, and load every scenario it names."""
    path = Path(path)
    if _is_scenario_file(path):
        sc = load_scenario(path)
        return Suite(sc.name, 1, sc.description, SCENARIO_SEEDS, KNOWN_CONTROLLERS, (sc,), path.resolve())
    spec = read_toml_model(path, SuiteSpec, "suite")
    base = path.resolve().parent
    scenarios: list[Scenario] = []
    names: dict[str, int] = {}
    for i, rel in enumerate(spec.scenarios):
        file = rel if rel.is_absolute() else (base / rel).resolve()
        if file.is_dir():
            raise ScenarioError(f"{path}: field 'scenarios[{i}]': '{file}' is a folder, not a scenario file")
        if not file.exists():
            raise ScenarioError(f"{path}: field 'scenarios[{i}]': file '{file}' does not exist")
        if not file.is_file():
            raise ScenarioError(f"{path}: field 'scenarios[{i}]': '{file}' is not a file")
        try:
            sc = load_scenario(file)
        except ScenarioError as e:
            raise ScenarioError(f"{path}: field 'scenarios[{i}]': {e}") from None
        if sc.name in names:
            raise ScenarioError(
                f"{path}: field 'scenarios[{i}]': scenario name '{sc.name}' "
                f"is already used by scenarios[{names[sc.name]}]"
            )
        names[sc.name] = i
        scenarios.append(sc)
    return Suite(spec.name, spec.version, spec.description, spec.seeds, spec.controllers, tuple(scenarios),
                 path.resolve())


def _is_scenario_file(path: Path) -> bool:
    """A TOML file with a [network] table and no scenario list (anything else is read, and its
    errors named, as a suite)."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    return isinstance(raw.get("network"), dict) and "scenarios" not in raw


def parse_seeds(raw: str) -> tuple[int, ...]:
    """``1-10``, ``1,2,3`` or a mix (``1-3,7``) -> seeds in the order given, without duplicates."""
    seeds: list[int] = []
    for part in (p.strip() for p in raw.split(",")):
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", part)
        if not m:
            raise ScenarioError(f"--seeds '{raw}': '{part}' is not a seed (N) or a range (A-B)")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        if hi < lo:
            raise ScenarioError(f"--seeds '{raw}': range '{part}' runs backwards")
        if hi > MAX_SEED:
            raise ScenarioError(f"--seeds '{raw}': {hi} is over {MAX_SEED}, SUMO's largest seed")
        if hi - lo >= MAX_SEEDS:
            raise ScenarioError(f"--seeds '{raw}': range '{part}' has {hi - lo + 1} seeds (at most {MAX_SEEDS})")
        seen = set(seeds)
        seeds.extend(s for s in range(lo, hi + 1) if s not in seen)
        if len(seeds) > MAX_SEEDS:
            raise ScenarioError(f"--seeds '{raw}': {len(seeds)} seeds (at most {MAX_SEEDS})")
    return tuple(seeds)


def parse_controllers(raw: str) -> tuple[str, ...]:
    names = [p.strip() for p in raw.split(",") if p.strip()]
    if not names:
        raise ScenarioError("--controllers: give at least one controller")
    try:
        return _check_controllers(list(dict.fromkeys(names)))
    except ValueError as e:
        raise ScenarioError(f"--controllers '{raw}': {e}") from None
