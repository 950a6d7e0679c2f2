"""Scenario files (TOML): what network, what background demand, which emergencies, when.

A scenario is validated once, at the edge, into typed objects; every error names the file and
the field. The format (paths are relative to the scenario file)::

    name = "grid5-moderate"
    description = "..."

    [network]
    net = "../networks/grid5/grid5.net.xml"   # or: sumocfg = "../networks/x/run.sumocfg"
    additional = []                            # extra additional files (signal programs, vTypes)

    [demand]
    level = "moderate"                         # a label for reports
    generator = "random_trips"                 # generated from the seed ...
    vehicles_per_hour = 5400
    params = { through_share = 0.6 }
    # routes = ["../networks/x/x.rou.xml"]     # ... or fixed route files (real demand)

    [simulation]
    begin_s = 0
    end_s = 1500
    step_length_s = 1.0

    [[ev]]
    id = "ambulance_1"
    from = "A0B0"                               # origin edge (or give `route = [...]`)
    to = "E4D4"                                 # destination edge
    depart_s = 600
    type = "ambulance"                          # ambulance | fire | police
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from controller import MAX_TRIPS, MAX_WINDOW_S
from controller.core.greenwave import ExclusiveService
from controller.errors import ScenarioError
from controller.sim.xmlroot import ADDITIONAL_ROOTS, CONFIG_ROOTS, NET_ROOTS, ROUTE_ROOTS, wrong_kind

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

EvType = Literal["ambulance", "fire", "police", "transit"]
SCENARIO_NAME = r"[^\W_][\w.-]{0,99}"  # letters (any script), digits, '_', '.', '-'; a letter or digit first


class _Model(BaseModel):
    # (finite numbers only: an infinite setting passed here crashed the run after it had simulated)
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)


class NetworkSpec(_Model):
    net: Path | None = None
    additional: tuple[Path, ...] = ()
    sumocfg: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> NetworkSpec:
        if (self.net is None) == (self.sumocfg is None):
            raise ValueError("give exactly one of 'net' or 'sumocfg'")
        return self


class DemandSpec(_Model):
    # a label for reports; "moderate" also turns on the bench's "no EV stop at a signal" verdict
    level: Literal["none", "light", "moderate", "heavy", "real", "synthetic"] = "none"
    generator: Literal["random_trips"] | None = None
    vehicles_per_hour: float | None = Field(default=None, gt=0, strict=True)
    params: dict[str, Any] = Field(default_factory=dict)  # checked by the generator
    routes: tuple[Path, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> DemandSpec:
        if self.generator is not None and self.vehicles_per_hour is None:
            raise ValueError("'vehicles_per_hour' is required with a generator")
        if self.generator is not None and self.routes:
            raise ValueError("give either 'generator' or 'routes', not both")
        reserved = {"seed", "begin_s", "end_s", "vehicles_per_hour", "net_file", "out_file"} & set(self.params)
        if reserved:
            raise ValueError(f"'{sorted(reserved)[0]}' is set by greenwave, not in 'params'")
        return self


class SimulationSpec(_Model):
    model_config = ConfigDict(strict=True)  # numbers as numbers: "1500" is refused, not converted

    begin_s: float = Field(default=0.0, ge=0)  # (SUMO refuses a negative begin)
    end_s: float = Field(gt=0)
    step_length_s: float = Field(default=1.0, ge=0.001, le=1.0)  # (SUMO's least: 0.001 s)

    @model_validator(mode="after")
    def _order(self) -> SimulationSpec:
        if self.end_s <= self.begin_s:
            raise ValueError(f"end_s ({self.end_s}) must be after begin_s ({self.begin_s})")
        if self.end_s - self.begin_s > MAX_WINDOW_S:
            raise ValueError(f"end_s ({self.end_s:g}) is {(self.end_s - self.begin_s) / 86400.0:.3g} days after "
                             f"begin_s ({self.begin_s:g}): at most 7 days are simulated in one run")
        return self


_XML_SPECIAL = frozenset("&<>\"'")


def ev_id_problem(ev_id: str) -> str | None:
    """Why an EV id cannot be used, or None: SUMO writes ids into its XML outputs as they are,
    so with white space or any of & < > \" ' the run's tripinfo would not parse."""
    bad = sorted({c for c in ev_id if c in _XML_SPECIAL or c.isspace() or not c.isprintable()})
    if not bad:
        return None
    return (f"contains {' '.join(repr(c) for c in bad)}: an EV id may not hold white space, control characters "
            "or any of & < > \" '")


def _check_vehicle_id(field: str, vehicle_id: str) -> None:
    """A vehicle id SUMO's outputs can carry (:func:`ev_id_problem`), else a ValueError naming the field."""
    problem = ev_id_problem(vehicle_id)
    if problem:
        raise ValueError(f"{field} {vehicle_id!r} {problem}")


class EvSpec(_Model):
    id: str = Field(min_length=1)
    from_edge: str | None = Field(default=None, alias="from")
    to_edge: str | None = Field(default=None, alias="to")
    route: tuple[str, ...] | None = None
    depart_s: float = Field(strict=True)
    type: EvType = "ambulance"

    @model_validator(mode="after")
    def _id_fits_sumo_outputs(self) -> EvSpec:
        _check_vehicle_id("id", self.id)
        return self

    @model_validator(mode="after")
    def _route_or_od(self) -> EvSpec:
        has_od = self.from_edge is not None and self.to_edge is not None
        if self.route is not None and (self.from_edge is not None or self.to_edge is not None):
            raise ValueError("give 'route', or 'from' and 'to' edges, not both")
        if self.route is None and not has_od:
            raise ValueError("give 'from' and 'to' edges, or 'route'")
        if self.route is not None and len(self.route) < 1:
            raise ValueError("'route' is empty")
        return self


class EscortSpec(_Model):
    """A vehicle of the scenario's route files to escort along its own route (``[[escort]]``; the
    CLI's ``--escort``)."""

    vehicle: str = Field(min_length=1)
    type: EvType = "ambulance"

    @model_validator(mode="after")
    def _id_fits_sumo_outputs(self) -> EscortSpec:
        _check_vehicle_id("vehicle", self.vehicle)
        return self


class ControllerSpec(_Model):
    """Settings of the preemption controllers for this scenario (defaults in core/greenwave.py)."""

    # numbers and true/false as TOML writes them: margin_s = "3" or progression = 1 is refused,
    # not converted (a quoted value is usually a mistake elsewhere in the line)
    model_config = ConfigDict(strict=True)

    margin_s: float | None = Field(default=None, ge=0)
    saturation_headway_s: float | None = Field(default=None, gt=0)
    startup_lost_s: float | None = Field(default=None, ge=0)
    upstream_share: float | None = Field(default=None, ge=0, le=1)
    detect_range_m: float | None = Field(default=None, gt=0)
    detect_eta_s: float | None = Field(default=None, gt=0)
    max_presence_s: float | None = Field(default=None, gt=0, le=170)
    # at max presence, an EV about to cross (within this many seconds) is still waited for, this long at most
    max_presence_grace_s: float | None = Field(default=None, ge=0, le=30)
    max_lead_s: float | None = Field(default=None, gt=0)
    # on the program's last step before a green with a minimum (the cross street's), enter at once,
    # skipping it, where waiting through it would show the EV's approach green this much too late
    late_entry_tolerance_s: float | None = Field(default=None, ge=0)
    # a switch's new greens wait, after the red clearance, for the vehicles of the links that turned red
    # to leave the crossing, at most this long (0: never)
    red_extension_s: float | None = Field(default=None, ge=0, le=10)
    # greenwave: an EV standing this long keeps only its next signal's request (the others are handed back)
    stall_release_s: float | None = Field(default=None, gt=0)
    # an armed signal plans with the median of each request's need over this long (s), or over this
    # many ticks where given (1: the latest)
    need_median_s: float | None = Field(default=None, ge=0, le=60)
    need_median_ticks: int | None = Field(default=None, ge=1, le=600)
    # several EVs at one signal: one ranked lower goes first where it is predicted to have crossed
    # this long (beyond the longest switch-over and the all-red extension) before every EV ranked
    # above needs its green
    serve_first_s: float | None = Field(default=None, ge=0, le=120)
    # several EVs at one signal: the one it serves keeps going first by this much (s) against one
    # ranked above it whose need comes and goes, or one of its class with an ETA this much earlier
    keep_first_s: float | None = Field(default=None, ge=0, le=30)
    # false: a signal turns green for the EV's own queue only, not also in time for the vehicles
    # the previous signal releases ahead of it (less harm to cross streets, a slower EV in congestion)
    progression: bool | None = None
    # false: hand a fixed-time signal back at the skipped cross street for a full phase, leaving
    # its cycle shifted by the preemption, instead of in step with its own schedule
    handback_sync: bool | None = None
    # when the EV's approach is served alone where it has a permissive turn: for the "whole"
    # preemption, from when its queue must "discharge", from then with the EV in a lane that
    # turn leaves from ("ev-lane", the default), or only where the EV itself turns ("own-turn")
    exclusive_service: ExclusiveService | None = None
    # true: hold red, for the whole preemption, the permissive turns of other approaches that cross
    # the EV's path (the opposing left turn), so none waits for a gap on the crossing as the EV comes
    hold_crossing_turns: bool | None = None
    # greenwave: a street between two signals of the route shorter than this (m) can fill with the
    # next signal's queue, which then must be moving when the EV reaches the first (0: never)
    spillback_link_m: float | None = Field(default=None, ge=0)
    queue_spacing_m: float | None = Field(default=None, gt=0)  # a queued vehicle's length and gap

    def overrides(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Scenario(_Model):
    name: str
    description: str = ""
    network: NetworkSpec
    demand: DemandSpec = DemandSpec()
    simulation: SimulationSpec
    controller: ControllerSpec = ControllerSpec()
    ev: tuple[EvSpec, ...] = ()
    escort: tuple[EscortSpec, ...] = ()
    source: Path | None = None  # the file this scenario was read from
    given_as: str | None = None  # that file as the user named it (errors name it so)

    @property
    def shown(self) -> str:
        """The scenario as errors name it: its file as given, else its name."""
        return self.given_as or (str(self.source) if self.source is not None else self.name)

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        # it names the run's folders (runs/<name>-..., a bench's runs/<name>/): './tiny' shared
        # another scenario's folder, '../../x' wrote outside --out
        if not re.fullmatch(SCENARIO_NAME, name):
            raise ValueError(f"{name!r}: a scenario name has 1 to 100 letters, digits, '_', '.' or '-' (no spaces "
                             "or slashes), and starts with a letter or digit (it names the run's folders)")
        return name

    @model_validator(mode="after")
    def _evs(self, info: ValidationInfo) -> Scenario:
        sim = self.simulation
        rate, span = self.demand.vehicles_per_hour, sim.end_s - sim.begin_s
        if self.demand.generator is not None and rate is not None and rate * span / 3600.0 > MAX_TRIPS:
            raise ValueError(
                f"field 'demand.vehicles_per_hour': {rate:g} over the {span:g} s simulated makes "
                f"{rate * span / 3600.0:.3g} trips; at most {MAX_TRIPS:,} are generated for one run"
            )
        if (info.context or {}).get("service"):
            return self  # (a service ignores [[ev]] and [[escort]]: its escorts come through the API)
        if not self.ev and not self.escort:
            raise ValueError("field 'ev': give at least one [[ev]] (or [[escort]]: a vehicle of the route files)")
        ids = [e.id for e in self.ev]
        dup = {i for i in ids if ids.count(i) > 1}
        if dup:
            raise ValueError(f"field 'ev': duplicate ev id(s): {', '.join(sorted(dup))}")
        escorted = [e.vehicle for e in self.escort]
        dup = {i for i in escorted if escorted.count(i) > 1} | set(ids).intersection(escorted)
        if dup:
            raise ValueError(f"field 'escort': vehicle(s) given twice (in [[escort]] or as an [[ev]] id): "
                             f"{', '.join(sorted(dup))}")
        for k, e in enumerate(self.ev):
            if not sim.begin_s <= e.depart_s < sim.end_s:
                raise ValueError(
                    f"field 'ev[{k}].depart_s': EV '{e.id}' departs at {e.depart_s:g} s, outside the simulation "
                    f"[{sim.begin_s:g}, {sim.end_s:g}) s (simulation.begin_s, simulation.end_s)"
                )
        return self


def _field_path(loc: tuple[int | str, ...], raw: dict[str, Any]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        else:
            parts.append(str(item))
    # EvSpec aliases: pydantic reports 'from'/'to', which is what the user wrote.
    return ".".join(parts)


def _fields_at(model: type[BaseModel] | None, loc: tuple[int | str, ...]) -> list[str]:
    """The field names of the model found at ``loc`` inside ``model`` (through its sub-models,
    lists and optional ones), none where there is no model there."""
    for part in loc:
        if model is None:
            return []
        if isinstance(part, int):
            continue  # (an item of a list: the list's field gave its item's model already)
        info = model.model_fields.get(part)
        if info is None:
            return []
        inner: Any = info.annotation
        model = None
        for candidate in (inner, *get_args(inner), *(a for x in get_args(inner)
                                                              for a in get_args(x))):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                model = candidate
                break
    # (the keys a file uses: an alias where the field has one, ``from`` for ``from_edge``)
    return [info.alias or name for name, info in model.model_fields.items()] if model is not None else []


def describe_validation_error(err: ValidationError, source: str, raw: dict[str, Any], shown: int = 3,
                              model: type[BaseModel] | None = None) -> str:
    """One line naming the file and the offending fields (the first ``shown``). A field name
    the file has but the model does not comes first: usually a misspelling, which also makes
    the field meant look missing; where one of those is close, it is suggested, else a close
    field of ``model`` there (an optional one: ``margn_s`` for ``margin_s``)."""

    def loc_of(e: Any) -> tuple[int | str, ...]:
        return tuple(x for x in e["loc"] if not (isinstance(x, str) and x.startswith("function-after")))

    errors = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
    # a list whose items failed is also reported too short (its valid items counted): the
    # items' own errors say what is wrong
    inside = {loc_of(e)[:k] for e in errors for k, x in enumerate(loc_of(e)) if isinstance(x, int)}
    errors = [e for e in errors if not (e["type"] == "too_short" and loc_of(e) in inside)] or errors
    missing: dict[tuple[int | str, ...], list[str]] = {}
    for e in errors:
        loc = loc_of(e)
        if e["type"] == "missing" and loc and isinstance(loc[-1], str):
            missing.setdefault(loc[:-1], []).append(loc[-1])
    parts = []
    for e in errors[:shown]:
        loc = loc_of(e)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden" and loc and isinstance(loc[-1], str):
            close = (difflib.get_close_matches(loc[-1], missing.get(loc[:-1], []), n=1)
                     or difflib.get_close_matches(loc[-1], _fields_at(model, loc[:-1]), n=1))
            msg = "not a field here" + (f" (did you mean '{close[0]}'?)" if close else "")
        # (a check across fields, the whole file's: its message names the fields)
        parts.append(f"field '{_field_path(loc, raw)}': {msg}" if loc else msg)
    more = len(errors) - shown
    extra = f" (and {more} more problem{'s' if more > 1 else ''})" if more > 0 else ""
    return f"{source}: " + "; ".join(parts) + extra


def _resolve(base: Path, p: Path) -> Path:
    return p if p.is_absolute() else (base / p).resolve()


M = TypeVar("M", bound=BaseModel)


def read_toml_model(path: Path, model: type[M], what: str, context: dict[str, Any] | None = None) -> M:
    """Read a TOML file into a validated model; errors name the file and the field. ``context``:
    pydantic's validation context."""
    if path.is_dir():
        raise ScenarioError(f"'{path}' is a folder, not a {what} file")
    if not path.is_file():
        raise ScenarioError(f"{what} file '{path}' does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")  # (a byte-order mark, as some editors write, is not TOML)
    except UnicodeDecodeError:
        raise ScenarioError(f"{path}: not a {what} file (TOML text): it is not UTF-8 text") from None
    except OSError as e:
        raise ScenarioError(f"{path}: cannot be read: {e.strerror or e}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        if path.suffix in (".sumocfg", ".xml") or text.lstrip().startswith("<"):
            raise ScenarioError(f"{path}: an XML file, not a {what} file (TOML); a SUMO configuration runs as "
                                "`greenwave run --sumocfg FILE --ev FROM,TO,DEPART`, or from a scenario file's "
                                "[network] sumocfg") from None
        raise ScenarioError(f"{path}: not valid TOML: {e}") from None
    try:
        return model.model_validate(raw, context=context)
    except ValidationError as e:
        raise ScenarioError(describe_validation_error(e, str(path), raw, model=model)) from None


def load_scenario(path: Path | str, *, service: bool = False) -> Scenario:
    """Read and validate a scenario file; paths in it are resolved against its folder.
    ``service``: for ``greenwave serve``, which dispatches nothing of the file's own: it may have
    no ``[[ev]]`` or ``[[escort]]``."""
    path = Path(path)
    scenario = read_toml_model(path, Scenario, "scenario", {"service": service})
    base = path.resolve().parent
    net = scenario.network
    network = NetworkSpec(
        net=_resolve(base, net.net) if net.net else None,
        additional=tuple(_resolve(base, a) for a in net.additional),
        sumocfg=_resolve(base, net.sumocfg) if net.sumocfg else None,
    )
    demand = scenario.demand.model_copy(update={"routes": tuple(_resolve(base, r) for r in scenario.demand.routes)})
    for field, files, roots, what in (
        ("network.net", [network.net] if network.net else [], NET_ROOTS, "a SUMO network"),
        ("network.sumocfg", [network.sumocfg] if network.sumocfg else [], CONFIG_ROOTS, "a SUMO configuration"),
        ("network.additional", list(network.additional), ADDITIONAL_ROOTS, "an additional file"),
        ("demand.routes", list(demand.routes), ROUTE_ROOTS, "a route file"),
    ):
        for k, f in enumerate(files):
            named = field if field in ("network.net", "network.sumocfg") else f"{field}[{k}]"
            if f.is_dir():  # ('' resolves to the scenario's own folder)
                raise ScenarioError(f"{path}: field '{named}': '{f}' is a folder, not a file")
            if not f.is_file():
                raise ScenarioError(f"{path}: field '{named}': file '{f}' does not exist")
            # (a route file given as the net read as a network without the EV's edges, and a net
            # given as a route file ran with no traffic, SUMO's warning in its log alone)
            if problem := wrong_kind(f, roots, what):
                raise ScenarioError(f"{path}: field '{named}': {problem}")
    return scenario.model_copy(update={"network": network, "demand": demand, "source": path.resolve(),
                                       "given_as": str(path)})
