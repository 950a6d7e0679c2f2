"""What a bench shows and writes: one comparison table, the verdict lines, ``bench.json`` and
``bench.csv``; and reading a baseline file."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from controller.bench.aggregate import (
    BASELINE_FORMAT,
    BASELINE_FORMAT_VERSION,
    BASELINE_REQUIRED,
    CSV_COLUMNS,
    SAFETY_KEYS,
    SAFETY_RULES,
    UNRECORDED,
    csv_rows,
    fewer_trips,
    not_arrived,
    past_end,
)
from controller.errors import ScenarioError
from controller.tables import print_uncut, uncut_table

_COUNTS = ("runs", "failed", "evs", "evs_not_arrived")  # a baseline group's counts besides SAFETY_KEYS
_NULLABLE_COUNTS = ("ev_green_lost",)  # counts that are null where not recorded (none, the oracle)

# (header, key, digits); "-" where a figure is missing
_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("EV mean", "ev_travel_mean_s", 1),
    ("p95", "ev_travel_p95_s", 1),
    ("ratio", "ev_ratio_mean", 2),
    ("gap", "gap_closed", 2),
    ("stops sig", "ev_stops_at_signals_mean", 2),
    ("stops", "ev_stops_mean", 2),
    ("green lost", "ev_green_lost", 0),
    ("Δ oracle", "delay_over_oracle_s", 1),
    ("±", "delay_over_oracle_se_s", 1),
    ("bg loss", "bg_time_loss_mean_s", 1),
    ("bg Δ%", "bg_time_loss_change_pct", 1),
    ("±", "bg_time_loss_change_se_pp", 1),
    ("cross Δ%", "cross_time_loss_change_pct", 1),
    ("recov", "recovery_mean_s", 1),
    ("in step", "in_step_mean_s", 1),
    ("ETA p90", "eta_p90_s", 1),
    ("@60", "eta_p90_60_s", 1),
    ("@entry", "eta_p90_entry_s", 1),
)


def _fmt(x: Any, digits: int) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def table(rows: Sequence[Mapping[str, Any]], title: str) -> Table:
    """One row per (scenario, controller). Numbers are never cut: each column is at least as wide
    as its widest value, and headers wrap at spaces when the terminal is narrow."""
    headers = ["scenario", "ctrl", "runs", *(h for h, _k, _d in _COLUMNS), "S1-5", "coll (EV, pre)", "ebrake", "telep",
               "wall"]
    body: list[list[str]] = []
    last = None
    for r in rows:
        runs = str(r["runs"]) + (f" ({r['failed']}✗)" if r["failed"] else "")
        cells = [_fmt(r[key], d) for _h, key, d in _COLUMNS]
        if r["gap_judged"] is False and r["gap_closed"] is not None:
            cells[3] += "*"
        measured = bool(r["runs"])  # sums over no completed run are not a clean 0
        body.append([
            r["scenario"] if r["scenario"] != last else "", r["controller"], runs, *cells,
            str(sum(r[k] for k in SAFETY_RULES)) if measured else "-",
            f"{r['collisions']} ({r['collisions_ev']}, {_fmt(r.get('collisions_preempted'), 0)})" if measured else "-",
            str(r["emergency_braking"]) if measured else "-", str(r["teleports"]) if measured else "-",
            _fmt(r["wall_mean_s"], 1),
        ])  # fmt: skip
        last = r["scenario"]
    t = uncut_table(title, headers, body, left=2, no_wrap=2)
    for i, cells in enumerate(body):
        if i and cells[0]:
            t.add_section()
        t.add_row(*cells)
    return t


def print_report(console: Console, rows: Sequence[Mapping[str, Any]], verdicts: Sequence[Mapping[str, Any]],
                 title: str) -> None:
    print_uncut(console, table(rows, title))
    if any(r["gap_judged"] is False and r["gap_closed"] is not None for r in rows):
        console.print("* gap not judged: the oracle saves less than 10 % of none's EV time", highlight=False)
    for note in [*not_arrived(rows), *past_end(rows), *fewer_trips(rows)]:
        console.print(f"note: {note}", highlight=False, markup=False)
    means = sorted({tag.split(":")[0] for r in rows for tag in (r["eta_pooling"] or "").split()
                    if tag.endswith(":mean_of_run_p90")})
    if means:
        names = ", ".join({"all": "ETA p90", "60": "@60", "entry": "@entry"}[m] for m in means)
        why = ("summaries keep the raw errors at entry and at the 10/30/60 s horizons only" if means == ["all"]
               else "raw errors not in every summary")
        console.print(f"{names}: mean of the runs' own p90s ({why}); other ETA columns pooled over all runs' errors",
                      highlight=False)
    for v in verdicts:
        parts = "; ".join(
            f"{c['name']}: {c['detail']}" + {True: "", False: " ✗", None: " ?"}[c["ok"]] for c in v["criteria"]
        )
        console.print(f"verdict {v['controller']} on {v['scenario']}: {v['status'].upper()} · {parts}",
                      highlight=False, soft_wrap=True)  # (one line per verdict, however long, for grep)
    if verdicts:
        console.print("(the verdicts report the acceptance targets; they do not set the exit code, which is 1 "
                      "only for failed runs or, with --check, a regression)", highlight=False)


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(path)


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS))
        writer.writeheader()
        writer.writerows(csv_rows(rows))


def read_baseline(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))  # (a byte-order mark, as an editor may save)
    except OSError as e:
        raise ScenarioError(f"baseline '{path}' cannot be read: {e.strerror or e}") from None
    except ValueError as e:
        raise ScenarioError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT:
        raise ScenarioError(f"{path}: not a greenwave bench baseline (field 'format' must be '{BASELINE_FORMAT}')")
    if not isinstance(data.get("groups"), list):
        raise ScenarioError(f"{path}: field 'groups' must be a list of groups")
    version = data.get("format_version", 1)
    if version != BASELINE_FORMAT_VERSION:
        raise ScenarioError(f"{path}: field 'format_version' is {version!r}; this greenwave reads version "
                            f"{BASELINE_FORMAT_VERSION} (write a new baseline with --write-baseline)")
    suite = data.get("suite", {})
    if not isinstance(suite, dict) or not isinstance(suite.get("name", ""), str) \
            or not _is_count(suite.get("version", 1)):
        raise ScenarioError(f"{path}: field 'suite' must be an object with a 'name' (text) and a 'version' "
                            "(a whole number)")
    # (they choose what --check runs where --seeds or --controllers is not given)
    seeds, controllers = suite.get("seeds"), suite.get("controllers")
    if seeds is not None and (not isinstance(seeds, list) or not all(_is_count(x) for x in seeds)
                              or len(set(seeds)) != len(seeds)):
        raise ScenarioError(f"{path}: field 'suite.seeds' must be a list of distinct seeds (whole numbers, 0 or "
                            f"more), not {seeds!r}")
    if controllers is not None and (not isinstance(controllers, list)
                                    or not all(isinstance(c, str) and c for c in controllers)
                                    or len(set(controllers)) != len(controllers)):
        raise ScenarioError(f"{path}: field 'suite.controllers' must be a list of distinct controller names, "
                            f"not {controllers!r}")
    # (the figures every baseline the bench writes has, which the check compares: a group without
    # them would pass any change; the others, added later, are noted where missing)
    needed = {"scenario", "controller", "seeds", *SAFETY_RULES, *BASELINE_REQUIRED}
    seen: set[tuple[str, str]] = set()
    for i, g in enumerate(data["groups"]):
        if not isinstance(g, dict):
            raise ScenarioError(f"{path}: field 'groups[{i}]' must be an object (a scenario and controller's "
                                f"figures), not {json.dumps(g)[:60]}")
        missing = needed - set(g)
        if missing:
            raise ScenarioError(f"{path}: field 'groups[{i}].{sorted(missing)[0]}' is missing")
        problem = _group_problem(g)
        if problem:
            raise ScenarioError(f"{path}: field 'groups[{i}].{problem}")
        key = (g["scenario"], g["controller"])
        # (--check runs the suite's controllers: a group of another went unchecked without a word)
        if controllers is not None and key[1] not in controllers:
            raise ScenarioError(f"{path}: groups[{i}] is for controller '{key[1]}', which field 'suite.controllers' "
                                f"({', '.join(controllers)}) does not list")
        if key in seen:
            raise ScenarioError(f"{path}: groups[{i}] is a second group for scenario '{key[0]}', controller '{key[1]}'")
        seen.add(key)
    return data


def _is_count(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _group_problem(g: Mapping[str, Any]) -> str | None:
    """What is wrong with one baseline group's fields (``field': why``), or None. The check
    compares numbers: each figure must be a finite number or null (a string compared as one
    crashed the check after every run; NaN passed every comparison)."""
    for name in ("scenario", "controller"):
        if not isinstance(g[name], str) or not g[name]:
            return f"{name}' must be a non-empty text"
    if not isinstance(g["seeds"], list) or not all(_is_count(s) for s in g["seeds"]):
        return "seeds' must be a list of seeds (whole numbers, 0 or more)"
    # (a negative count compared as a fine one: collisions = -5 let every later run have 4 more)
    for name in (*_COUNTS, *SAFETY_KEYS, *_NULLABLE_COUNTS):
        if name in g and not _is_count(g[name]) and not (g[name] is None and name in (*UNRECORDED,
                                                                                      *_NULLABLE_COUNTS)):
            return f"{name}' must be a count (a whole number, 0 or more), not {g[name]!r}"
    for name, by_seed in g.items():
        if name.endswith("_by_seed") and by_seed is not None and not isinstance(by_seed, dict):
            return f"{name}' must be an object of per-seed figures ({{\"1\": ...}}) or null, not {by_seed!r}"
        if name.endswith("_by_seed") and name.startswith("collisions") and isinstance(by_seed, dict):
            bad = next((k for k, v in by_seed.items() if not _is_count(v)), None)
            if bad is not None:
                return f"{name}.{bad}' must be a count (a whole number, 0 or more), not {by_seed[bad]!r}"
    for name, value in g.items():
        if name in ("scenario", "controller", "seeds", "eta_pooling", "demand_level") or value is None \
                or isinstance(value, dict):
            continue
        if isinstance(value, bool):
            if name == "gap_judged":
                continue
            return f"{name}' must be a number or null, not {value!r}"
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"{name}' must be a finite number or null, not {value!r}"
    return None
