"""What a bench shows and writes: one comparison table, the verdict lines, ``bench.json`` and
``bench.csv``; and reading a baseline file."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from controller.bench.aggregate import (
    BASELINE_FORMAT,
    CSV_COLUMNS,
    SAFETY_RULES,
    csv_rows,
)
from controller.errors import ScenarioError

# (header, key, digits); "-" where a figure is missing
_COLUMNS: tuple[tuple[str, str, int], ...] = (
    ("EV mean", "ev_travel_mean_s", 1),
    ("p95", "ev_travel_p95_s", 1),
    ("ratio", "ev_ratio_mean", 2),
    ("gap", "gap_closed", 2),
    ("stops sig", "ev_stops_at_signals_mean", 2),
    ("stops", "ev_stops_mean", 2),
    ("Δ oracle", "delay_over_oracle_s", 1),
    ("bg loss", "bg_time_loss_mean_s", 1),
    ("bg Δ%", "bg_time_loss_change_pct", 1),
    ("cross Δ%", "cross_time_loss_change_pct", 1),
    ("recov", "recovery_mean_s", 1),
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
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("scenario", justify="left")
    t.add_column("ctrl", justify="left")
    t.add_column("runs", justify="right")
    for header, _key, _d in _COLUMNS:
        t.add_column(header, justify="right")
    for header in ("S1-5", "coll (EV)", "ebrake", "telep", "wall"):
        t.add_column(header, justify="right")
    last = None
    for r in rows:
        if last is not None and r["scenario"] != last:
            t.add_section()
        runs = str(r["runs"]) + (f" ({r['failed']}✗)" if r["failed"] else "")
        gap = _fmt(r["gap_closed"], 2) + ("*" if r["gap_judged"] is False and r["gap_closed"] is not None else "")
        cells = [_fmt(r[key], d) for _h, key, d in _COLUMNS]
        cells[3] = gap
        t.add_row(
            r["scenario"] if r["scenario"] != last else "", r["controller"], runs, *cells,
            str(sum(r[k] for k in SAFETY_RULES)), f"{r['collisions']} ({r['collisions_ev']})",
            str(r["emergency_braking"]), str(r["teleports"]), _fmt(r["wall_mean_s"], 1),
        )
        last = r["scenario"]
    return t


def print_report(console: Console, rows: Sequence[Mapping[str, Any]], verdicts: Sequence[Mapping[str, Any]],
                 title: str) -> None:
    console.print(table(rows, title))
    if any(r["gap_judged"] is False and r["gap_closed"] is not None for r in rows):
        console.print("* gap not judged: the oracle saves less than 10 % of none's EV time", highlight=False)
    if any(r["eta_pooling"] == "mean_of_run_p90" for r in rows):
        console.print("ETA p90: mean of the runs' p90s (raw errors not in the summaries)", highlight=False)
    for v in verdicts:
        parts = "; ".join(
            f"{c['name']}: {c['detail']}" + {True: "", False: " ✗", None: " ?"}[c["ok"]] for c in v["criteria"]
        )
        console.print(f"verdict {v['controller']} on {v['scenario']}: {v['status'].upper()} · {parts}",
                      highlight=False)


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
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ScenarioError(f"baseline '{path}' cannot be read: {e.strerror or e}") from None
    except ValueError as e:
        raise ScenarioError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT or not isinstance(data.get("groups"), list):
        raise ScenarioError(f"{path}: not a greenwave bench baseline (field 'format' must be '{BASELINE_FORMAT}')")
    needed = {"scenario", "controller", "seeds", *SAFETY_RULES}
    for i, g in enumerate(data["groups"]):
        missing = needed - set(g) if isinstance(g, dict) else needed
        if missing:
            raise ScenarioError(f"{path}: field 'groups[{i}].{sorted(missing)[0]}' is missing")
    return data
