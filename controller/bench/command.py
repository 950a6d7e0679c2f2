"""The ``greenwave bench`` command's work, apart from option parsing (which stays in
controller/cli.py): plan the jobs, run them, aggregate, report, write, check."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from controller import __version__
from controller.bench.aggregate import (
    BASELINE_FORMAT,
    RunResult,
    aggregate,
    check_baseline,
    make_baseline,
    moved_text,
    run_ev_mean,
    run_row,
    sumo_version_of,
    verdicts,
)
from controller.bench.report import print_report, read_baseline, write_csv, write_json
from controller.bench.runner import Job, run_jobs
from controller.bench.suite import default_suite, load_suite, parse_controllers, parse_seeds
from controller.errors import GreenwaveError
from controller.report.bench import write_bench_report
from controller.runtime.folder_lock import hold_folder
from controller.runtime.setup import OPTIONS_NOT_USED, is_run_folder


def _progress(console: Console, width: int) -> Any:
    def on_done(r: RunResult, n: int, total: int) -> None:
        head = f"[{n:>{len(str(total))}}/{total}] {r.scenario:<{width}} {r.controller:<9} s{r.seed:<3}"
        if r.summary is None:
            console.print(f"{head} FAILED: {r.error}", highlight=False, markup=False)
            return
        ev = run_ev_mean(r.summary)
        ev_txt = f"{ev:7.1f} s" if ev is not None else "   (no EV arrived)"
        wall = f"{r.wall_s:6.1f} s" if r.wall_s is not None else "-"
        console.print(f"{head} EV travel {ev_txt}  wall {wall}", highlight=False, markup=False)

    return on_done


def run_bench(
    console: Console,
    *,
    suite: Path | None,
    seeds: str | None,
    controllers: str | None,
    out_dir: Path | None,
    jobs: int | None,
    baseline: Path | None,
    write_baseline: Path | None,
    update: bool = False,
) -> int:
    """Run a bench; the exit code (0 ok, 1 failed runs or a regression). Input errors raise.
    ``update``: ``write_baseline`` is the ``baseline`` checked against, rewritten on purpose:
    what moved is listed, and is not a failure once the new baseline is written."""
    from controller.runtime.run import CONTROLLERS  # imports SUMO; the aggregation does not

    base = read_baseline(baseline) if baseline is not None else None  # a bad baseline fails before any run
    made_from = _baseline_suite(baseline, base) if baseline is not None and base is not None else None
    if suite is None and base is not None:
        if made_from is None:
            named = base.get("suite", {}).get("file")
            raise GreenwaveError(f"{baseline}: " + (f"its suite file {named!r} is not found" if named else
                                                    "it names no suite file (field 'suite.file')")
                                 + "; give the SUITE to run")
        suite = made_from
    s = load_suite(suite or default_suite())
    # checking the suite a baseline was made from: its seeds and controllers, unless given
    base_suite = base.get("suite", {}) if base is not None and made_from is not None and suite is not None \
        and suite.resolve() == made_from.resolve() else {}
    seed_list = parse_seeds(seeds) if seeds is not None else tuple(base_suite.get("seeds") or s.seeds)
    ctrl_list = parse_controllers(controllers) if controllers is not None else \
        tuple(base_suite.get("controllers") or s.controllers)
    if base is not None:
        # what the check would refuse after the runs, refused before them
        made = base.get("suite", {})
        if (made.get("name"), made.get("version")) != (s.name, s.version):
            raise GreenwaveError(
                f"{baseline} was made from suite {made.get('name')} v{made.get('version')}, not {s.name} v{s.version}: "
                "nothing could be compared" + ("; --update-baseline rewrites a baseline with its own suite"
                                               if update else ""))
        base_seeds = {tuple(sorted(g.get("seeds", ()))) for g in base.get("groups", [])}
        if seeds is not None and base_seeds and tuple(sorted(seed_list)) not in base_seeds:
            raise GreenwaveError(f"--seeds {seeds}: {baseline} was made with seeds "
                                 f"{', '.join(str(list(x)) for x in sorted(base_seeds))}; the check compares the same "
                                 "seeds only")
        base_ctrls = sorted({str(g.get("controller")) for g in base.get("groups", [])} - set(ctrl_list))
        if base_ctrls and not update:
            # (a gate run with --controllers none,local passed without checking greenwave at all)
            raise GreenwaveError(f"--controllers {','.join(ctrl_list)}: {baseline} checks "
                                 f"{', '.join(base_ctrls)} too; the check runs every controller of its baseline "
                                 "(--update-baseline rewrites it with these)")
    if write_baseline is not None and baseline is not None and not update \
            and write_baseline.resolve() == baseline.resolve():
        raise GreenwaveError(f"--write-baseline {write_baseline} is the --check baseline: give --update-baseline to "
                             "rewrite it on purpose")
    missing = [c for c in ctrl_list if c not in CONTROLLERS]
    if missing:
        raise GreenwaveError(
            f"controller{'s' if len(missing) > 1 else ''} {', '.join(missing)} not available yet "
            f"(available: {', '.join(CONTROLLERS)}); choose with --controllers"
        )
    from controller.runtime.setup import check_scenario

    for sc in s.scenarios:  # an EV that cannot be planned fails every run of its scenario: refused now
        try:
            check_scenario(sc)
        except GreenwaveError as e:
            if sc.source == s.source:  # a scenario file benched on its own: its error names it
                raise
            raise type(e)(f"{s.source.name}: scenario '{sc.name}': {e}") from None
    out = (out_dir or Path("runs") / f"bench-{s.name}").resolve()
    if write_baseline is not None:
        _check_baseline_target(write_baseline, out)
    with hold_folder(out, "--out", "bench"):
        # (its run folders go only where it was a bench's: a folder holding a `runs/` of the
        # user's `greenwave run` outputs lost them)
        was_bench = (out / BENCH_MARK).is_file() or (out / "bench.json").is_file()
        out.mkdir(parents=True, exist_ok=True)
        (out / BENCH_MARK).touch()
        # an earlier bench's aggregate goes now: an interrupted or failing bench would leave it
        # beside runs it no longer describes (report redrew it without a word)
        for name in sorted(_BENCH_OUTPUTS - {"runs"}):
            (out / name).unlink(missing_ok=True)
        if was_bench:
            _clear_earlier_runs(out / "runs")

        plan = [
            Job(sc.name, sc.source, ctrl, seed, out / "runs" / sc.name / f"{ctrl}-s{seed}")
            for sc in s.scenarios if sc.source is not None
            for seed in seed_list
            for ctrl in ctrl_list
        ]  # fmt: skip
        workers = min(jobs or os.cpu_count() or 1, len(plan))
        console.print(
            f"greenwave bench: suite {s.name} v{s.version}: {len(s.scenarios)} scenario(s) x "
            f"{len(ctrl_list)} controller(s) x {len(seed_list)} seed(s) = {len(plan)} runs on {workers} worker(s); "
            f"output {out}",
            highlight=False,
        )
        width = max(len(sc.name) for sc in s.scenarios)
        results = run_jobs(plan, workers=workers, on_done=_progress(console, width))

        rows = aggregate(results)
        verdict_list = verdicts(results, rows)
        suite_info = {"name": s.name, "version": s.version, "file": str(s.source), "seeds": list(seed_list),
                      "controllers": list(ctrl_list), "scenarios": [sc.name for sc in s.scenarios],
                      # (the SUMO the runs ran: a baseline's figures are that version's)
                      "sumo_version": sumo_version_of(results)}
        print_report(console, rows, verdict_list,
                     f"{s.name} v{s.version} · seeds {_seed_text(seed_list)} · times in s, changes vs none in %")
        check = check_baseline(rows, base, suite_info) if base is not None else None
        failures = [run_row(r) for r in results if r.summary is None]
        written = write_baseline is not None and not failures
        unwritten = ""  # why the baseline asked for could not be written
        updated = update and written  # moved on purpose: --update-baseline rewrites the baseline; listed, not a failure
        # (every figure the rewrite changes: the baseline's diff, within the tolerances too)
        changes = (baseline_changes(base, _timings_kept(rows, base),
                                    {**suite_info, "file": _portable(s.source, write_baseline)})
                   if updated and base is not None and write_baseline is not None else None)
        write_json(out / "bench.json", {
            "suite": suite_info,
            "greenwave_version": __version__,
            "code": code_provenance(),
            "out_dir": str(out),
            "aggregate": rows,
            "verdicts": verdict_list,
            "check": None if check is None else {"baseline": str(baseline), **check, "updated": updated,
                                                 **({"changes": changes} if changes is not None else {})},
            "failures": failures,
            "runs": [run_row(r) for r in results],
            "notes": {
                "gap_closed": "(mean_none - mean_X) / (mean_none - mean_oracle) of EV travel time on the seeds all "
                              "three completed, over the EVs that arrived in all three runs of a seed; gap_judged "
                              "false when the oracle saves < 10 % of none's time",
                "eta_pooling": "per figure (all, 60, entry): pooled = p90 over every run's raw errors (eta.errors); "
                               "mean_of_run_p90 = the mean of the runs' own p90s, used when some summary carries "
                               "no raw errors for that figure ('all' needs an explicit 'all' tag)",
                "changes": "bg/cross time loss change: mean over seeds of (X - none) / none, in %",
            },
        })  # fmt: skip
        write_csv(out / "bench.csv", rows)
        report = write_bench_report(out)
        console.print(f"written: {out / 'bench.json'}, {out / 'bench.csv'}, {report} (each run's own report: "
                      f"greenwave report {out / 'runs' / '<scenario>' / '<controller>-s<seed>'})", highlight=False,
                      soft_wrap=True)
        if write_baseline is not None:
            if failures:
                console.print(f"baseline NOT written: {len(failures)} run(s) failed", highlight=False)
            else:
                info = {**suite_info, "file": _portable(s.source, write_baseline)}
                kept = _timings_kept(rows, base) if update and base is not None else rows
                try:
                    write_baseline.parent.mkdir(parents=True, exist_ok=True)
                    write_json(write_baseline, make_baseline(info, kept))
                    console.print(f"baseline written: {write_baseline}", highlight=False)
                except OSError as e:  # (checked before the runs; a disk full, a read-only mount since)
                    unwritten = f"baseline NOT written: {write_baseline}: {e.strerror or e}"
                    console.print(unwritten, highlight=False, markup=False)
                    if updated:  # (nothing was rewritten: bench.json and the report said "updated")
                        updated, changes = False, None
                        data = json.loads((out / "bench.json").read_text(encoding="utf-8"))
                        data["check"] = {k: v for k, v in data["check"].items() if k != "changes"} | {
                            "updated": False}
                        write_json(out / "bench.json", data)
                        write_bench_report(out)

        code = 0
        for r in results:
            if r.attempts > 1:  # (a worker that died once and then completed: not hidden from CI)
                console.print(f"note: {r.scenario} {r.controller} s{r.seed}: its worker process died (SUMO crashed?); "
                              f"run again, attempt {r.attempts}: {'completed' if r.ok else 'failed'}",
                              highlight=False, markup=False)
        for line in run_notes(results):
            console.print(line, highlight=False, markup=False)
        if failures:
            console.print(f"{len(failures)} run(s) failed:", highlight=False)
            for f in failures:
                console.print(f"  {f['scenario']} {f['controller']} s{f['seed']}: {f['error']}", highlight=False,
                              markup=False)
            code = 1
        if check is not None:
            assert base is not None
            for note in check["notes"]:
                console.print(f"check: {note}", highlight=False, markup=False)
            moved = changes if changes is not None else check["regressions"]
            if moved:
                console.print(f"baseline {baseline} updated; what moved ({len(moved)}):" if updated else
                              f"check against {baseline}: {len(moved)} regression(s):", highlight=False)
                for g in moved:
                    console.print(f"  {moved_text(g, updated=updated)}", highlight=False, markup=False)
                if not updated:
                    code = 1
            else:
                console.print(f"check against {baseline}: no regression", highlight=False)
        if unwritten:
            code = 2  # (as for a --write-baseline refused before the runs)
        return code


def code_provenance() -> dict[str, Any]:
    """Which code ran the bench: the package's folder, and where it is a git checkout its commit
    and whether it had uncommitted changes (a shared editable install runs another checkout's code
    than the folder the bench was started from)."""
    folder = Path(__file__).resolve().parents[1]
    info: dict[str, Any] = {"path": str(folder), "git_commit": None, "git_dirty": None}
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return info  # not a checkout, or no git: the path alone
    info.update(git_commit=commit, git_dirty=bool(dirty))
    return info


def _portable(suite: Path | None, baseline: Path) -> str:
    """The suite's path as a baseline stores it: relative to the repository root (the folder
    above the baseline's ``benchmarks/``) when it lies inside it, so the file works in any
    checkout."""
    if suite is None:
        return ""
    root = baseline.resolve().parent.parent
    try:
        return suite.resolve().relative_to(root).as_posix()
    except ValueError:
        return str(suite.resolve())


def _baseline_suite(path: Path, base: dict[str, Any]) -> Path | None:
    """The suite file a baseline was made from (its 'suite.file', relative to the repository
    root, i.e. the folder above the baseline's ``benchmarks/``, or to the baseline's folder)."""
    name = base.get("suite", {}).get("file")
    if not isinstance(name, str) or not name:
        return None
    for root in (path.resolve().parent.parent, path.resolve().parent, Path.cwd()):
        candidate = root / name
        if candidate.is_file():
            return candidate
    return None


NOTES_SHOWN = 10  # the runs' notes the bench prints (bench.json keeps each run's all)


def run_notes(results: Sequence[RunResult]) -> list[str]:
    """The notes of the runs' summaries (a route not the fastest, a re-route SUMO made onto a
    signal left to its program, ...), each once per scenario with the runs that gave it: a run's
    console is not shown, and its route choices changed the bench's figures silently."""
    runs: dict[tuple[str, str], list[str]] = {}
    for r in results:
        for note in (r.summary or {}).get("notes") or []:
            if note.startswith(OPTIONS_NOT_USED):
                continue  # (the scenario's configuration's outputs: nothing the comparison is told by)
            runs.setdefault((r.scenario, note), []).append(f"{r.controller} s{r.seed}")
    lines = [f"note: {scenario} ({', '.join(which) if len(which) <= 4 else f'{len(which)} runs'}): {note}"
             for (scenario, note), which in runs.items()]
    if len(lines) > NOTES_SHOWN:
        lines = [*lines[:NOTES_SHOWN], f"note: {len(lines) - NOTES_SHOWN} more: each run's notes are in bench.json "
                 "(runs[].notes) and its summary.json"]
    return lines


def _seed_text(seeds: tuple[int, ...]) -> str:
    if len(seeds) > 2 and list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


TIMING_FIELDS = ("wall_mean_s", "tick_ms_p99_mean", "sumo_step_ms_p50_mean", "tick_to_step_p50")


def _clear_earlier_runs(runs: Path) -> None:
    """Remove the run folders an earlier bench left in ``runs`` (``runs/<scenario>/<run>``): those
    of scenarios, controllers or seeds this bench does not run stayed, each looking complete,
    and ``greenwave report`` compared them with this bench's; so did those of an interrupted
    rerun's jobs not yet begun. Only greenwave's run folders go (a file of the user's stays)."""
    if not runs.is_dir():
        return
    for scenario in runs.iterdir():
        if not scenario.is_dir() or scenario.is_symlink():
            continue
        for run in scenario.iterdir():
            if run.is_dir() and not run.is_symlink() and (
                    is_run_folder(run) or (run / "error.txt").is_file() or (run / "INCOMPLETE.txt").is_file()):
                shutil.rmtree(run, ignore_errors=True)
        with contextlib.suppress(OSError):
            scenario.rmdir()  # (where nothing else is left in it)


def baseline_changes(base: Mapping[str, Any], rows: Sequence[Mapping[str, Any]],
                     suite: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every figure of ``rows`` that differs from the baseline ``base`` (a group new or gone
    included), and every field of its ``suite`` (the SUMO that ran, the suite file's path), as
    the check lists its regressions (``scenario``, ``controller``, ``metric``, ``baseline``,
    ``current``): what --update-baseline rewrote, within the tolerances too (a travel time
    184 -> 195 s, 4 -> 3 collisions, another SUMO were rewritten unsaid)."""
    old = {(g.get("scenario"), g.get("controller")): g for g in base.get("groups", []) if isinstance(g, Mapping)}
    new = {(r.get("scenario"), r.get("controller")): r for r in rows}
    out: list[dict[str, Any]] = []
    if suite is not None:
        given = base.get("suite")
        made: Mapping[str, Any] = given if isinstance(given, Mapping) else {}
        for field in [*made, *(f for f in suite if f not in made)]:
            if made.get(field) != suite.get(field):
                out.append({"scenario": "(suite)", "controller": "(all)", "metric": field,
                            "baseline": made.get(field), "current": suite.get(field)})
    for key in [*old, *(k for k in new if k not in old)]:
        a, b = old.get(key), new.get(key)
        scenario, controller = key
        if a is None or b is None:
            out.append({"scenario": scenario, "controller": controller, "metric": "group",
                        "baseline": "absent" if a is None else "present", "current": "absent" if b is None
                        else "present"})
            continue
        for metric in [*a, *(m for m in b if m not in a)]:
            if metric in ("scenario", "controller") or a.get(metric) == b.get(metric):
                continue
            out.append({"scenario": scenario, "controller": controller, "metric": metric,
                        "baseline": a.get(metric), "current": b.get(metric)})
    return out


def _timings_kept(rows: Sequence[Mapping[str, Any]], base: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``rows`` with the timing fields of the baseline being rewritten, where its group has them:
    they move with the machine from run to run (the check compares the tick / step ratio with a
    wide tolerance), and rewriting them made every --update-baseline a diff of timings."""
    old = {(g["scenario"], g["controller"]): g for g in base.get("groups", [])}
    out = []
    for r in rows:
        g = old.get((r["scenario"], r["controller"]))
        out.append({**r, **{f: g[f] for f in TIMING_FIELDS if g is not None and f in g}})
    return out


def _check_baseline_target(path: Path, out: Path) -> None:
    """Refuse, before any run, a --write-baseline that would replace something else than a baseline
    (the suite file, a bench.json or a run's summary.json were overwritten), one of this bench's
    own outputs in ``out``, or one that cannot be written (a folder, a path under a file: a
    traceback after every run had finished)."""
    try:
        _check_baseline_path(path, out)
    except OSError as e:  # (a name too long for the file system, say)
        raise GreenwaveError(f"--write-baseline {path}: cannot be written ({e.strerror or e})") from None


def _check_baseline_path(path: Path, out: Path) -> None:
    if path.is_dir():
        raise GreenwaveError(f"--write-baseline {path} is a folder: give the baseline's file name")
    target = path.resolve()
    if target.is_relative_to(out) and target.relative_to(out).parts[0].removesuffix(".tmp") in _BENCH_OUTPUTS:
        raise GreenwaveError(f"--write-baseline {path} is one of the bench's own outputs in {out}: give another name")
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            data = None
        # (the format only: a baseline of another format version, or one edited by hand, may be replaced)
        if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT:
            raise GreenwaveError(f"--write-baseline {path} exists and is not a greenwave baseline: greenwave "
                                 "replaces only a baseline file (give a new name)")
        return
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise GreenwaveError(f"--write-baseline {path}: cannot be written ('{parent}' is not a folder you can "
                             "write in)")


_BENCH_OUTPUTS = frozenset({"bench.json", "bench.csv", "report.html", "runs"})
BENCH_MARK = ".greenwave-bench"  # in a bench's --out from its start: a folder a bench may clear and reuse
