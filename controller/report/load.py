"""Reading a run's folder for its report: summary.json and trace.json, checked, with errors that
name the file and what is wrong."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.errors import GreenwaveError
from controller.runtime.trace import TRACE_FILE, TRACE_FORMAT

SUMMARY_FILE = "summary.json"


class ReportError(GreenwaveError):
    """A report cannot be made from the folders given."""


@dataclass(frozen=True)
class Leg:
    """One EV on one corridor, as the trace recorded it."""

    from_s: float
    route_length_m: float
    junctions: tuple[dict[str, Any], ...]  # index, tls, junction, approach_edge, distance_m, links
    t: tuple[float, ...]
    pos: tuple[float, ...]
    speed: tuple[float, ...]
    queues: dict[int, list[tuple[float, int]]]


@dataclass(frozen=True)
class EvTrace:
    ev_id: str
    ev_type: str
    legs: tuple[Leg, ...]

    @property
    def leg(self) -> Leg | None:
        """The corridor the EV finished on (the one its summary's crossings refer to)."""
        return self.legs[-1] if self.legs else None


@dataclass(frozen=True)
class RunData:
    path: Path
    summary: dict[str, Any]
    evs: dict[str, EvTrace]
    signals: dict[str, list[tuple[float, str]]]  # tls -> change points
    eta: tuple[tuple[str, int, float, float, float, float, str], ...]  # ev, junction, t, eta, low, high, tag
    # what tells it from another run of the same controller beside it (set by :func:`companions`)
    distinct: str = field(default="", compare=False)

    @property
    def scenario(self) -> str:
        return str(self.summary.get("scenario", "?"))

    @property
    def controller(self) -> str:
        return str(self.summary.get("controller", "?"))

    @property
    def seed(self) -> int | None:
        seed = self.summary.get("seed")
        return seed if isinstance(seed, int) else None

    @property
    def setting(self) -> tuple[object, ...]:
        """What makes two runs comparable: the scenario and seed, the simulated window and step,
        the demand, what the simulation ran on (``inputs_digest``: network, demand, programs and
        options; a scenario file edited between two runs changes it), whether EVs had the
        bluelight device, and each EV's id, type, departure asked for (SUMO may insert it a few
        seconds later, differently under each controller) and first corridor (its length and
        signals). A scenario name alone is not enough: the runs of one configuration with other
        EVs, or of two configurations named alike, share it."""
        s = self.summary
        evs = []
        listed = s.get("evs")
        for ev in listed if isinstance(listed, list) else []:
            if not isinstance(ev, dict):
                continue  # (a malformed summary is named where its EVs are read)
            trace = self.evs.get(str(ev.get("id")))
            first = trace.legs[0] if trace is not None and trace.legs else None
            corridor = None if first is None else (
                round(first.route_length_m, 1), tuple(str(j.get("tls")) for j in first.junctions))
            evs.append((ev.get("id"), ev.get("type"), ev.get("dispatched", ev.get("depart")), corridor))
        return (self.scenario, self.seed, s.get("begin"), s.get("end"), s.get("step_length"), s.get("demand_level"),
                s.get("inputs_digest"), bool(s.get("bluelight")), tuple(evs))

    @property
    def name(self) -> str:
        """The controller, with what tells its runs apart in a report: local's detection settings,
        and a TraCI backend (libsumo is the default)."""
        settings = self.summary.get("controller_settings") or {}
        shown = {"detect_range_m": "range {:g} m", "detect_eta_s": "ETA {:g} s"}
        extras = [f.format(settings[k]) for k, f in shown.items() if isinstance(settings.get(k), (int, float))]
        if self.summary.get("backend") not in (None, "libsumo"):
            extras.append(str(self.summary.get("backend")))
        if self.distinct:
            extras.append(self.distinct)
        return f"{self.controller}{' ' + ', '.join(extras) if extras else ''}"

    @property
    def label(self) -> str:
        return f"{self.name} (seed {self.seed})"

    def ev_summary(self, ev_id: str) -> dict[str, Any]:
        for ev in self.summary.get("evs", []):
            if ev.get("id") == ev_id:
                return dict(ev)
        return {}

    def crossings(self, ev_id: str) -> dict[int, float]:
        """Junction index -> the time the EV crossed its stop line (from summary.json). Not the
        junctions it went past off the road, in a teleport (``passed_off_road``): no crossing was
        seen there, and an ETA has no arrival to be measured against."""
        ev = self.ev_summary(ev_id)
        off_road = {str(k) for k in ev.get("passed_off_road") or ()}
        out: dict[int, float] = {}
        for key, t in (ev.get("crossed_s") or {}).items():
            _, _, idx = str(key).rpartition("#")
            if idx.isdigit() and isinstance(t, (int, float)) and str(key) not in off_road:
                out[int(idx)] = float(t)
        return out


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text("utf-8"))
    except OSError as e:
        raise ReportError(f"{path}: cannot read {what}: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ReportError(f"{path}: {what} is not valid JSON ({e})") from None


def _leg(raw: dict[str, Any], where: str) -> Leg:
    try:
        t = tuple(float(x) for x in raw["t"])
        pos = tuple(float(x) for x in raw["pos"])
        speed = tuple(float(x) for x in raw["speed"])
        junctions = tuple(dict(j) for j in raw["junctions"])
        for j in junctions:
            j["index"], j["distance_m"], j["tls"] = int(j["index"]), float(j["distance_m"]), str(j["tls"])
            j["links"] = [int(i) for i in j["links"]]
        queues = {int(k): [(float(a), int(b)) for a, b in v] for k, v in raw.get("queues", {}).items()}
        leg = Leg(float(raw["from_s"]), float(raw["route_length_m"]), junctions, t, pos, speed, queues)
    except (KeyError, TypeError, ValueError) as e:
        raise ReportError(f"{where}: malformed leg ({type(e).__name__}: {e})") from None
    if not len(t) == len(pos) == len(speed):
        raise ReportError(f"{where}: t, pos and speed differ in length")
    return leg


def load_run(path: Path) -> RunData:
    """A completed run's folder (``greenwave run --out``) with its summary and trace."""
    if not path.is_dir():
        raise ReportError(f"{path}: not a folder (give the --out folder of a greenwave run)")
    summary_path = path / SUMMARY_FILE
    if not summary_path.is_file():
        if (path / "runs").is_dir():  # (a bench's folder: it writes bench.json once every run has ended)
            raise ReportError(f"{path}: no bench.json: not a completed greenwave bench (its runs' own reports: "
                              f"greenwave report {path / 'runs' / '<scenario>' / '<controller>-s<seed>'})")
        raise ReportError(f"{path}: no {SUMMARY_FILE}: not a completed greenwave run")
    summary = _read_json(summary_path, "the run summary")
    if not isinstance(summary, dict) or summary.get("complete") is not True:
        raise ReportError(f"{summary_path}: not the summary of a completed run")
    trace_path = path / TRACE_FILE
    if not trace_path.is_file():
        raise ReportError(f"{path}: no {TRACE_FILE} (it is written by greenwave 0.1 runs since the report "
                          f"was added): run the scenario again")
    trace = _read_json(trace_path, "the run trace")
    if not isinstance(trace, dict) or trace.get("format") != TRACE_FORMAT:
        raise ReportError(f"{trace_path}: format is {trace.get('format') if isinstance(trace, dict) else None!r}, "
                          f"expected {TRACE_FORMAT!r}")
    evs: dict[str, EvTrace] = {}
    for i, raw in enumerate(trace.get("evs", [])):
        where = f"{trace_path}: evs[{i}]"
        if not isinstance(raw, dict) or "id" not in raw:
            raise ReportError(f"{where}: no id")
        legs = tuple(_leg(leg, f"{where}.legs[{k}]") for k, leg in enumerate(raw.get("legs", [])))
        evs[str(raw["id"])] = EvTrace(str(raw["id"]), str(raw.get("type", "")), legs)
    try:
        signals = {str(tls): [(float(t), str(s)) for t, s in ch] for tls, ch in trace.get("signals", {}).items()}
        eta = tuple(
            (str(r[0]), int(r[1]), float(r[2]), float(r[3]), float(r[4]), float(r[5]), str(r[6]))
            for r in trace.get("eta", [])
        )
    except (TypeError, ValueError, IndexError) as e:
        raise ReportError(f"{trace_path}: malformed signals or eta ({type(e).__name__}: {e})") from None
    return RunData(path, summary, evs, signals, eta)


def companions(run: RunData, given: Iterable[RunData]) -> list[RunData]:
    """The runs of the same setting as ``run`` (:attr:`RunData.setting`: scenario, seed, window,
    demand and EVs; itself included), in the order none, local, greenwave, oracle, others: those
    given, and those beside it in its parent folder (``greenwave bench`` puts them there)."""
    found: dict[Path, RunData] = {run.path.resolve(): run}
    setting = run.setting
    for other in given:
        if other.setting == setting:
            found.setdefault(other.path.resolve(), other)
    parent = run.path.resolve().parent
    for sibling in sorted(parent.iterdir()) if parent.is_dir() else []:
        if sibling.resolve() in found or not (sibling / SUMMARY_FILE).is_file():
            continue
        try:
            other = load_run(sibling)
            same = other.setting == setting
        except (ReportError, AttributeError, KeyError, TypeError, ValueError):
            continue  # an unrelated, unfinished or malformed folder (not the reported run's fault)
        if same:
            found[sibling.resolve()] = other
    order = {"none": 0, "local": 1, "greenwave": 2, "oracle": 3}
    runs = sorted(found.values(), key=lambda r: (order.get(r.controller, 9), r.controller, str(r.path)))
    _tell_apart(runs)
    return runs


def _tell_apart(runs: Sequence[RunData]) -> None:
    """Runs of one controller that the name does not tell apart (other controller settings: two
    "greenwave" rows and lines, one with ``progression = false``) get the settings that differ
    among them in their name, or, where none does, their folder's name."""
    for r in runs:
        object.__setattr__(r, "distinct", "")
    groups: dict[str, list[RunData]] = {}
    for r in runs:
        groups.setdefault(r.name, []).append(r)
    for same in groups.values():
        if len(same) < 2:
            continue
        settings = [r.summary.get("controller_settings") or {} for r in same]
        keys = sorted({k for st in settings for k in st if len({repr(x.get(k)) for x in settings}) > 1})
        for r, st in zip(same, settings, strict=True):
            shown = ", ".join(f"{k} = {json.dumps(st[k])}" if k in st else f"{k} default" for k in keys)
            object.__setattr__(r, "distinct", shown or f"{r.path.parent.name}/{r.path.name}")


def by_controller(runs: Sequence[RunData], controller: str) -> RunData | None:
    return next((r for r in runs if r.controller == controller), None)


def number(x: object) -> float | None:
    """A JSON value as a float where it is a number (not a bool), else None."""
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


def ratio_to_free_flow(ev: Mapping[str, Any]) -> float | None:
    """An EV's travel time over its free-flow time, for display: from the two times where both are
    there (summary.json's 4-decimal ratio, shown to 2, would be rounded twice: 116 / 111 =
    1.04505 is stored as 1.045, which prints as 1.04), else the stored ratio."""
    tt, ff = number(ev.get("travel_time")), number(ev.get("free_flow_time"))
    return tt / ff if tt is not None and ff is not None and ff > 0 else number(ev.get("ratio_to_free_flow"))
