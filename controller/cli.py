"""The ``greenwave`` command (also ``python -m controller``)."""

from __future__ import annotations

import glob
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from click.core import ParameterSource
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from controller import MAX_SEED
from controller.errors import GreenwaveError, OutputError, ScenarioError, is_disk_full
from controller.tables import print_uncut, uncut_table

T = TypeVar("T")


def _fail(error: GreenwaveError) -> NoReturn:
    """Report a user's mistake in one line, with its exit code, and no traceback."""
    click.echo(f"greenwave: error: {error}", err=True)
    sys.exit(error.exit_code)


class Finite(click.FloatRange):
    """A float option that must be a finite number (``nan`` and ``inf`` parse as floats, and
    compare false with any bound), within the optional bounds."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (the terminal or the SSH session closed), handled as Ctrl-C is:
    signals handed back, SUMO closed, no summary."""

    def __init__(self, signum: int = signal.SIGTERM) -> None:
        super().__init__()
        self.signum = int(signum)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # (143 for SIGTERM, 129 for SIGHUP, as the shell reports a kill)


# the signals handled as Ctrl-C is, besides it (SIGHUP: a terminal or an SSH session closing
# killed a run with no hand-back, its cut-off outputs under their final names)
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP) if hasattr(signal, "SIGHUP") else (signal.SIGTERM,)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


def _take_stop_signals(handler: Any) -> dict[int, Any]:
    """Set ``handler`` for :data:`STOP_SIGNALS`; the handlers they had."""
    return {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}


def _give_back(previous: Mapping[int, Any] | None) -> None:
    for sig, handler in (previous or {}).items():
        signal.signal(sig, handler)


def _exit_code(e: KeyboardInterrupt) -> int:
    return e.exit_code if isinstance(e, Terminated) else 130


def _what(e: KeyboardInterrupt) -> str:
    if not isinstance(e, Terminated):
        return "interrupted"
    return "terminated" if e.signum == signal.SIGTERM else f"terminated ({signal.Signals(e.signum).name})"


def _ignore_signal(signum: int, frame: object) -> None:
    """A signal taken and let go (a second Ctrl-C while an interrupted run exits)."""


_OWN_PROCESS = False  # the command runs as greenwave's own process (entry()), not inside a caller's


def entry() -> None:
    """The ``greenwave`` command and ``python -m controller``: :func:`main` in a process of its
    own, which an interrupted run ends (its signal handlers need not be given back)."""
    global _OWN_PROCESS
    _OWN_PROCESS = True
    main()


def _out_folder(out: Path, option: str = "--out", *, reusable: Callable[[Path], bool] | None = None,
                inputs: Sequence[Path] = (), kind: str = "run") -> Path:
    """A one-line error where the output folder cannot be used: a file, or under one, or where
    nothing may be written; with ``reusable``, a folder with files in it that is not one of
    greenwave's (``reusable(out)``), or the folder of one of the ``inputs`` (the user's files:
    nothing is written next to them). Nothing is created here (a later error leaves no empty
    folder)."""
    if out.exists() and not out.is_dir():
        raise ScenarioError(f"{option} '{out}' is a file, not a folder")
    for path, what in [(out, option), *((p, "input") for p in inputs)]:
        if "," in str(path.resolve()):
            # (SUMO splits its file lists at commas: "The route file '/tmp/r/out' is not accessible")
            raise ScenarioError(f"{what} '{path}': SUMO reads a comma in a path as the end of a file name in its "
                                "file lists; give a path without one")
    if kind == "run":
        # a run folder of a bench (BENCH/runs/SCENARIO/CONTROLLER-sN): a run there replaced one of
        # the bench's, whose bench.json and report went on describing the run it no longer holds
        bench = next((p for p in out.resolve().parents if (p / ".greenwave-bench").is_file()
                      or ((p / "bench.json").is_file() and (p / "runs").is_dir())), None)
        if bench is not None:
            raise ScenarioError(f"{option} '{out}' is inside the greenwave bench folder '{bench}': its bench.json "
                                "and report describe the runs there; give a folder outside it")
    if reusable is not None and out.is_dir():
        here = out.resolve()
        mine = [p for p in inputs if p.resolve().parent == here]
        if mine:
            raise ScenarioError(f"{option} '{out}' is the folder of your input '{mine[0].name}': greenwave writes "
                                "nothing next to your files; give a new folder (or a previous run's)")
        others = sorted(p.name for p in out.iterdir())
        if others and not reusable(out):
            is_kind = {".greenwave-run": "run", ".greenwave-bench": "bench", "bench.json": "bench"}
            other = next((is_kind[n] for n in others if n in is_kind and is_kind[n] != kind), None)
            if other is not None:  # (not "other files" where they are greenwave's own)
                raise ScenarioError(f"{option} '{out}' is a greenwave {other}'s folder, not a {kind}'s: give a new "
                                    f"or empty folder, or a previous {kind}'s (it is replaced)")
            more = f" and {len(others) - 3} more" if len(others) > 3 else ""
            shown = ", ".join(f"'{n}'" for n in others[:3]) + more
            raise ScenarioError(f"{option} '{out}' has other files in it ({shown}) and is not a greenwave {kind}'s "
                                f"folder: give a new or empty folder, or a previous {kind}'s (it is replaced)")
    parent = out
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ScenarioError(f"{option} '{out}': cannot create the folder: '{parent}' is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ScenarioError(f"{option} '{out}': no permission to write in '{parent}'")
    return out


def _check_record(record: Path | None, out: Path) -> None:
    """A one-line error, before anything is written, where ``--record`` cannot be written: a
    folder, or in a folder that does not exist (unless inside the run's ``out``, which the run makes)."""
    if record is None:
        return
    if record.is_dir():
        raise ScenarioError(f"--record: '{record}' is a folder; give a file to write")
    if not record.parent.is_dir() and not record.resolve().is_relative_to(out.resolve()):
        raise ScenarioError(f"--record: the folder '{record.parent}' does not exist")
    # (it replaced whatever it named: the scenario file, the network, the run's own summary.json)
    from controller.runtime.run import is_run_output

    target, folder = record.resolve(), out.resolve()
    first = target.relative_to(folder).parts[0] if target.is_relative_to(folder) and target != folder else ""
    if first and is_run_output(first):
        raise ScenarioError(f"--record: '{record}' is one of the run's own outputs; give another name")
    # (a regular file only: a pipe or /dev/null is written to as it is, and reading one would block)
    if record.is_file() and record.stat().st_size > 0 and not _is_recording(record):
        raise ScenarioError(f"--record: '{record}' exists and is not a greenwave recording: greenwave replaces "
                            "only a recording (give a new name)")


def _is_recording(path: Path) -> bool:
    """Does the file start as a recording's header does (``{"format": "greenwave-snapshots/1"``)?"""
    from controller.bench.core import RECORDING_FORMAT

    try:
        with path.open("rb") as f:
            head = f.read(64)
    except OSError:
        return False
    return head.startswith(b'{"format": "' + RECORDING_FORMAT.encode() + b'"')


def _scenario_inputs(sc: Any) -> list[Path]:
    """A scenario's own files: its network, configuration, additional and route files."""
    net, demand = sc.network, sc.demand
    return [p for p in (net.net, net.sumocfg, *net.additional, *demand.routes) if p is not None]


def _prepared(out: Path, prepare: Callable[[], T]) -> T:
    """``prepare()``, where an OS error writing into ``out`` (a folder that cannot be made after
    all, a full disk) is a one-line error naming it. The folders ``prepare()`` made (``out`` and
    any above it) are removed again when it fails (an unknown edge, no route): an error leaves
    nothing behind."""
    made = None  # the topmost folder of ``out`` that does not exist yet (``runs/`` on a first run)
    folder = out.absolute()
    while not folder.exists() and folder != folder.parent:
        made, folder = folder, folder.parent
    try:
        return prepare()
    except BaseException as e:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
        if isinstance(e, OSError) and is_disk_full(e):  # (a write to an open file names none)
            where = f"'{e.filename}'" if e.filename else f"into --out '{out}'"
            raise OutputError(f"no space left on the device while preparing the run, writing {where}") from None
        if isinstance(e, OSError) and e.filename is not None and str(Path(str(e.filename)).resolve()).startswith(
                str(out.resolve())):
            raise ScenarioError(f"--out '{out}': cannot write '{e.filename}': {e.strerror or e}") from None
        raise


class _PreviousRun:
    """A run into a previous run's folder sets that run aside (renamed to a hidden sibling) and
    puts it back as it was if the new run fails before its first simulated step (input SUMO
    rejects, a route that cannot be planned, Ctrl-C or SIGTERM while preparing): a mistake in the
    new run's input loses nothing. Once the new run is simulating, the previous run's outputs are
    deleted, and the files of the user's own in the folder (a note, a recording) moved back.

    Not set aside (the folder is replaced in place, as before, and a note says so) where that
    cannot be done safely: the folder holds one of the run's inputs (``inputs``, a configuration's
    own files included), it is or holds the working directory, or it cannot be renamed."""

    def __init__(self, out: Path, inputs: Sequence[Path], source: Path) -> None:
        self.out, self.here = out, out.resolve()
        self.kept: Path | None = None
        self._another_source(source)
        for left in sorted(self.here.parent.glob(f".{glob.escape(self.here.name)}.previous-*")):
            if not _alive(left.name.rpartition("-")[2]):  # (a run killed while preparing: SIGKILL, no memory)
                click.echo(f"greenwave: note: '{left}' holds an earlier run of '{out}' that a run killed while "
                           "preparing had set aside", err=True)
        if not out.is_dir() or not any(out.iterdir()):
            return
        why = ("it holds the working directory" if Path.cwd().resolve().is_relative_to(self.here) else
               "it holds the run's input files" if any(p.resolve().is_relative_to(self.here) for p in inputs)
               else None)
        aside = self.here.with_name(f".{self.here.name}.previous-{os.getpid()}")
        if why is None:
            try:
                self.here.rename(aside)
            except OSError as e:
                why = f"it cannot be renamed ({e.strerror or e})"
        if why is not None:
            click.echo(f"greenwave: note: the previous run in '{out}' is replaced in place ({why}): if this run "
                       "fails, it is lost", err=True)
            return
        self.kept = aside

    def _another_source(self, source: Path) -> None:
        """A note where the folder holds a run of another scenario or configuration (two of one
        name share their default folder: a scenario file and a --sumocfg named alike)."""
        try:
            previous = json.loads((self.here / "summary.json").read_text(encoding="utf-8")).get("source")
        except (OSError, ValueError, AttributeError):
            return
        if isinstance(previous, str) and previous and Path(previous).resolve() != source.resolve():
            click.echo(f"greenwave: note: '{self.out}' holds a run of {previous}: this run of {source} replaces "
                       "it once it simulates (give another --out to keep both)", err=True)

    def started(self) -> None:
        """The new run simulates: the previous run's outputs go, the user's own files come back
        (a file of the new run's name stays aside, and is named)."""
        kept, self.kept = self.kept, None  # (from here on, nothing is put back: an interrupt keeps both)
        if kept is None:
            return
        stuck = _move_back(kept, self.here, top=True)
        if stuck:  # (left where it is, and said)
            click.echo(f"greenwave: note: {', '.join(stuck)} of the previous run's folder not moved back into "
                       f"'{self.out}' (the new run has that name): kept in '{kept}'", err=True)
        else:
            shutil.rmtree(kept, ignore_errors=True)

    def restore(self) -> bool:
        """The new run failed before it simulated: put the previous run back (True if it was)."""
        if self.kept is None:
            return False
        try:
            if self.here.exists():
                shutil.rmtree(self.here)
            self.kept.rename(self.here)
        except OSError:
            click.echo(f"greenwave: the previous run in '{self.out}' was kept as '{self.kept}'", err=True)
            return False
        self.kept = None
        click.echo(f"greenwave: the previous run in '{self.out}' is kept as it was", err=True)
        return True


def _alive(pid: str) -> bool:
    """Is there a process of this id (a number) now?"""
    if not pid.isascii() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # (another user's)
        return True
    return True


def _move_back(old: Path, new: Path, *, top: bool = False) -> list[str]:
    """Move what is in ``old`` and not a run's output (at the top) into ``new``, folder into
    folder; return the names that could not be (the new run wrote a file of that name)."""
    from controller.runtime.run import is_run_output

    stuck = []
    for p in old.iterdir():
        if top and is_run_output(p.name):
            continue
        target = new / p.name
        try:
            if not target.exists() and not target.is_symlink():
                p.rename(target)
            elif p.is_dir() and not p.is_symlink() and target.is_dir():
                stuck += [f"{p.name}/{n}" for n in _move_back(p, target)]
            else:
                stuck.append(p.name)
        except OSError:
            stuck.append(p.name)
    return stuck


def _config_files(paths: Sequence[Path]) -> list[Path]:
    """``paths`` and, for each SUMO configuration among them, the files it names (its net, route
    and additional files); a configuration that cannot be read adds nothing (its run says why)."""
    from controller.sim.sumocfg import read_sumocfg

    out = list(paths)
    for p in paths:
        if p.suffix == ".sumocfg" or p.name.endswith(".sumocfg.xml"):
            try:
                cfg = read_sumocfg(p)
            except GreenwaveError:
                continue
            out += [cfg.net_file, *cfg.route_files, *cfg.additional_files]
    return out


def _attach_address(raw: str, gui: bool, backend: str) -> tuple[str, int]:
    """``--attach [HOST:]PORT`` -> (host, port); the host defaults to 127.0.0.1 (IPv4 only, as
    TraCI connects). Refuses the options that do not go with it (for run and serve alike)."""
    if gui or backend == "traci":
        raise ScenarioError("--attach drives your SUMO over TraCI as it runs (a sumo-gui you started shows it): "
                            "--gui and --backend do not apply")
    if click.get_current_context().get_parameter_source("seed") is not ParameterSource.DEFAULT:
        raise ScenarioError("--seed does not apply with --attach: the SUMO you started runs with its own "
                            "(give it --seed N)")
    host, sep, port = raw.strip().rpartition(":")
    if "[" in host or host.count(":"):
        raise ScenarioError(f"--attach '{raw}': '{host}' is not a host name or an IPv4 address (TraCI connects over "
                            "IPv4): give PORT or HOST:PORT, e.g. 127.0.0.1:8813")
    host = host if sep else "127.0.0.1"
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536 or (sep and not host):
        raise ScenarioError(f"--attach '{raw}': give PORT or HOST:PORT (SUMO's --remote-port), e.g. 8813 or "
                            "localhost:8813")
    return host, int(port)


def _parse_ev(raw: str, n: int) -> Any:
    from controller.core.greenwave import PRIORITY
    from controller.scenario import EvSpec, ev_id_problem

    parts = [p.strip() for p in raw.split(",")]
    if len(parts) not in (3, 4, 5) or not all(parts[:3]):
        raise ScenarioError(f"--ev '{raw}': expected FROM_EDGE,TO_EDGE,DEPART[,TYPE[,ID]]")
    try:
        depart = float(parts[2])
    except ValueError:
        raise ScenarioError(f"--ev '{raw}': DEPART '{parts[2]}' is not a number of seconds") from None
    if not math.isfinite(depart) or depart < 0:
        raise ScenarioError(f"--ev '{raw}': DEPART '{parts[2]}' must be a finite number of seconds, 0 or more")
    ev_type = parts[3] if len(parts) >= 4 and parts[3] else "ambulance"
    if ev_type not in PRIORITY:
        raise ScenarioError(f"--ev '{raw}': TYPE '{ev_type}' is not one of {', '.join(PRIORITY)}")
    ev_id = parts[4] if len(parts) == 5 and parts[4] else f"ev{n}"
    problem = ev_id_problem(ev_id)
    if problem:
        raise ScenarioError(f"--ev '{raw}': ID '{ev_id}' {problem}")
    return EvSpec.model_validate({"id": ev_id, "from": parts[0], "to": parts[1], "depart_s": depart,
                                  "type": ev_type})


def _parse_escort(raw: str) -> tuple[str, str]:
    from controller.core.greenwave import PRIORITY
    from controller.scenario import ev_id_problem

    vehicle_id, _, ev_type = (p.strip() for p in raw.partition(","))
    ev_type = ev_type or "ambulance"
    if not vehicle_id or "," in ev_type:
        raise ScenarioError(f"--escort '{raw}': expected VEHICLE[,TYPE] (the id of a vehicle of the configuration's "
                            "route files)")
    if ev_type not in PRIORITY:
        raise ScenarioError(f"--escort '{raw}': TYPE '{ev_type}' is not one of {', '.join(PRIORITY)}")
    problem = ev_id_problem(vehicle_id)
    if problem:
        raise ScenarioError(f"--escort '{raw}': VEHICLE '{vehicle_id}' {problem}")
    return vehicle_id, ev_type


def _fmt(x: object, digits: int = 1) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def print_summary(summary: dict[str, Any], out_dir: Path, console: Console) -> None:
    from controller.report.load import ratio_to_free_flow
    from controller.runtime.run import traffic_notes

    bluelight = " · EVs with SUMO's bluelight device (may pass red)" if summary.get("bluelight") else ""
    seed = summary["seed"] if summary["seed"] is not None else "random"  # (an attached SUMO run with --random)
    title = (f"{summary['scenario']} · controller {summary['controller']} · seed {seed}{bluelight} · "
             "times in s")
    body = [[
        ev["id"], _fmt(ev["depart"], 0), _fmt(ev["travel_time"]), _fmt(ev["free_flow_time"]),
        _fmt(ratio_to_free_flow(ev), 2), _fmt(ev["delay"]), str(ev["stops"]), _fmt(ev["time_stopped"]),
        str(ev["junctions"]), str(ev["preempted"]), _fmt(ev.get("green_lost"), 0),
    ] for ev in summary["evs"]]
    table = uncut_table(title, ("EV", "depart", "travel", "free flow", "ratio", "delay", "stops", "stopped",
                                "junctions", "preempted", "green lost"), body, no_wrap=1)
    for cells in body:
        table.add_row(*cells)
    print_uncut(console, table)
    s = summary["safety"]
    bg = summary["background"]
    rt = summary["realtime"]
    if summary.get("free_flow_error"):
        console.print(f"note: free-flow times not measured ({summary['free_flow_error']}): no ratio or delay",
                      highlight=False, markup=False)
    attached = summary.get("attached")
    if attached:
        console.print(f"note: attached to the SUMO at {attached}: the other traffic, emergency braking and teleports "
                      "are in its own outputs, not measured here", highlight=False, markup=False)
    for note in traffic_notes(summary):
        console.print(f"note: {note}", highlight=False, markup=False)
    console.print(
        (f"background: {bg['trips']} trips, mean time loss {_fmt(bg['mean_time_loss'])} s\n" if not attached else "")
        + f"safety: S1 {s['S1']}  S2 {s['S2']}  S3 {s['S3']}  S4 {s['S4']}  S5 {s['S5']}  ·  "
        f"collisions {s['collisions']} to the end"
        + (f" (+{s['collisions_after_end']} after it)" if s.get("collisions_after_end") else "")
        + f"; in the whole run with an EV {s['collisions_ev']}, at preempted signals "
        f"{_fmt(s.get('collisions_preempted'), 0)}  "
        + (f"emergency braking {s['emergency_braking']}  teleports {s['teleports']} "
           f"({s.get('teleports_traffic', '?')} not after a collision)  " if not attached else "")
        + f"({s['watched_signals']} traffic lights watched)\n"
        f"realtime: {rt['ticks']} ticks, controller p50 {_fmt(rt['tick_ms_p50'], 3)} ms "
        f"p99 {_fmt(rt['tick_ms_p99'], 3)} ms max {_fmt(rt['tick_ms_max'], 1)} ms, over budget "
        f"({rt['budget_ms']:g} ms) {rt['over_budget']}; SUMO step p50 {_fmt(rt['sumo_step_ms_p50'], 2)} ms; "
        f"core {rt.get('core', '?')}; "
        f"wall {rt['wall_s']} s" + (f"; paced x{rt['paced_speed']:g}, tick start jitter p99 "
                                    f"{_fmt(rt['jitter_ms_p99'], 1)} ms" if rt.get("paced_speed") else "") + "\n"
        + _fell_behind(rt)
        + f"written: {out_dir / 'summary.json'}; pictures: greenwave report {out_dir}",
        highlight=False,
    )


def _fell_behind(rt: dict[str, Any]) -> str:
    """A line saying a paced run could not keep pace, where it fell behind by more than a second."""
    speed, achieved, late_ms = rt.get("paced_speed"), rt.get("achieved_speed"), rt.get("jitter_ms_max")
    if not speed or not achieved or not late_ms or late_ms < 1000:
        return ""
    return (f"note: the run could not keep pace x{speed:g}: it went at x{achieved:g}, its ticks starting up to "
            f"{late_ms / 1000:.1f} s late (a faster machine, a lower --speed, or greenwave accel)\n")


class _RunProgress:
    """Progress of a run: a live bar on a terminal; otherwise a plain line at each quarter of the
    simulated span (and once if the run goes on past its end waiting for an EV)."""

    def __init__(self, console: Console, begin_s: float, end_s: float, evs: int) -> None:
        self.console, self.begin_s, self.end_s, self.evs = console, begin_s, end_s, evs
        self.span = max(end_s - begin_s, 1e-9)
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        self.next_quarter = 1
        self.started = time.monotonic()
        self.extended = False

    def __enter__(self) -> _RunProgress:
        if self.console.is_terminal:
            self.bar = Progress(TextColumn("simulating"), BarColumn(), TextColumn("{task.description}"),
                                TimeElapsedColumn(), console=self.console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("", total=self.span)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def __call__(self, t_s: float, evs_done: int) -> None:
        done = min(max(t_s - self.begin_s, 0.0), self.span)
        text = f"{t_s:.0f}/{self.end_s:.0f} s · EVs done {evs_done}/{self.evs}"
        if self.bar is not None and self.task is not None:
            self.bar.update(self.task, completed=done, description=text)
            return
        if t_s > self.end_s + 1e-9 and not self.extended and evs_done < self.evs:
            self.extended = True
            click.echo(f"greenwave: past the end at {t_s:.0f} s, waiting for {self.evs - evs_done} EV(s) to arrive")
        while self.next_quarter <= 3 and done >= self.span * self.next_quarter / 4:
            click.echo(f"greenwave: {25 * self.next_quarter}% simulated ({text}, wall "
                       f"{time.monotonic() - self.started:.0f} s)")
            self.next_quarter += 1


class _Main(click.Group):
    """The command group: Ctrl-C (or SIGTERM) before a command has set up its own handling (while
    it imports SUMO, say) ends it as every interrupt does, exit 130 (143), not click's
    'Aborted!' and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt as e:
            click.echo(f"greenwave: {_what(e)}", err=True)
            sys.exit(_exit_code(e))


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="greenwave")
def main() -> None:
    """greenwave: green waves for emergency vehicles in SUMO."""


@main.command()
@click.argument("scenario", required=False, type=click.Path(path_type=Path))
@click.option("--controller", "controller_name", default="greenwave", show_default=True,
              type=click.Choice(["none", "local", "greenwave", "oracle"]), help="Who drives the signals.")
@click.option("--seed", default=1, show_default=True, type=click.IntRange(min=0, max=MAX_SEED),
              help="Seed of SUMO and of generated demand.")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output folder [default: runs/<scenario>-<controller>-s<seed>].")
@click.option("--backend", default="libsumo", show_default=True, type=click.Choice(["libsumo", "traci"]),
              help="libsumo: SUMO in this process (fastest); traci: over a socket (what --gui uses).")
@click.option("--gui", is_flag=True, help="Show sumo-gui (runs over TraCI).")
@click.option("--sumocfg", type=click.Path(path_type=Path), default=None,
              help="Run a SUMO configuration of your own instead of a scenario file.")
@click.option("--ev", "evs", multiple=True, metavar="FROM,TO,DEPART[,TYPE[,ID]]",
              help="With --sumocfg: an emergency vehicle from edge FROM to edge TO departing at DEPART s "
                   "(its vehicle id: ID, default ev1, ev2, ... in order).")
@click.option("--escort", "escorts", multiple=True, metavar="VEHICLE[,TYPE]",
              help="With --sumocfg: escort a vehicle of the configuration's route files, along its own route from "
                   "its own departure (TYPE: ambulance (default), fire, police or transit).")
@click.option("--end", "end_s", type=Finite(min=0.0), default=None,
              help="With --sumocfg: simulation end in s [default: the config's end, or last EV depart + 1800].")
@click.option("--detect-range", "detect_range_m", type=Finite(min=1.0), default=None,
              help="local: detection range in m [default 300, or the scenario's].")
@click.option("--detect-eta", "detect_eta_s", type=Finite(min=1.0), default=None,
              help="local: switch when the EV's ETA is within this many s (the ETA-threshold variant; "
                   "it replaces the detection range unless one is given here or in the scenario file: "
                   "then whichever comes first).")
@click.option("--bluelight", is_flag=True,
              help="Give EVs SUMO's bluelight device (they may then pass red); reported separately.")
@click.option("--budget-ms", type=Finite(min=0.1), default=None,
              help="The controller's time budget per 1 s tick, in ms [default: 100, or 1000 / X with a --speed X "
                   "over 10: the wall time a tick has].")
@click.option("--realtime", is_flag=True, help="Pace the simulation to the wall clock (1 simulated s per s).")
@click.option("--speed", type=Finite(min=0.01), default=None,
              help="Pace the simulation at this many simulated seconds per wall second.")
@click.option("--record", type=click.Path(path_type=Path), default=None,
              help="Write every tick's snapshot and commands to this file (JSON lines), for benchmarks/core_bench.py.")
@click.option("--attach", default=None, metavar="[HOST:]PORT",
              help="With --sumocfg: drive a SUMO you started with that configuration and --remote-port PORT, "
                   "over TraCI, instead of starting one (it ends when greenwave is done).")
def run(
    scenario: Path | None,
    controller_name: str,
    seed: int,
    out_dir: Path | None,
    backend: str,
    gui: bool,
    sumocfg: Path | None,
    evs: tuple[str, ...],
    escorts: tuple[str, ...],
    end_s: float | None,
    detect_range_m: float | None,
    detect_eta_s: float | None,
    bluelight: bool,
    budget_ms: float | None,
    realtime: bool,
    speed: float | None,
    record: Path | None,
    attach: str | None,
) -> None:
    """Run one SCENARIO (a .toml file), or your own --sumocfg with --ev or --escort, and write summary.json."""
    from controller.runtime.folder_lock import FolderLock, hold_folder
    from controller.runtime.run import run as run_simulation
    from controller.runtime.setup import (
        is_run_folder,
        prepare_scenario,
        prepare_sumocfg,
        setup_notes,
        sumocfg_name,
    )
    from controller.scenario import load_scenario

    console = Console() if sys.stdout.isatty() else Console(width=120)
    kept_run: _PreviousRun | None = None
    lock: FolderLock | None = None
    # SIGTERM as Ctrl-C: hand back, close SUMO, put a previous run set aside back (signal
    # handlers can only be set in the main thread)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = _take_stop_signals(_raise_terminated) if main_thread else None
    on_interrupt: Any = None  # SIGINT's handler before an interrupt's exit took it over
    try:
        if realtime and speed is not None:
            raise ScenarioError("give --realtime or --speed X, not both")
        address = _attach_address(attach, gui, backend) if attach is not None else None
        if address is not None:
            if sumocfg is None:
                raise ScenarioError("--attach needs --sumocfg: the configuration the SUMO you attach to was started "
                                    "with (greenwave reads its network and signal programs from it)")
            if bluelight:
                raise ScenarioError("--bluelight is not available with --attach")
        if gui:
            from controller.sim.adapter import gui_problem

            if problem := gui_problem():  # (before anything is written: it left a folder "INCOMPLETE")
                raise ScenarioError(problem)
        if realtime:
            speed = 1.0
        if scenario is None and sumocfg is None:
            raise ScenarioError("give a SCENARIO file, or --sumocfg FILE with at least one --ev or --escort")
        if scenario is not None and sumocfg is not None:
            raise ScenarioError("give a SCENARIO file or --sumocfg FILE (with at least one --ev or --escort), not both")
        if controller_name != "local" and (detect_range_m is not None or detect_eta_s is not None):
            raise ScenarioError("--detect-range and --detect-eta set the local controller's detection: "
                                f"they do nothing with --controller {controller_name}")
        if sumocfg is not None:
            if not evs and not escorts:
                raise ScenarioError("--sumocfg needs at least one --ev FROM,TO,DEPART (or --escort VEHICLE, a vehicle "
                                    "of its route files)")
            specs = [_parse_ev(raw, i + 1) for i, raw in enumerate(evs)]
            escorted = [_parse_escort(raw) for raw in escorts]
            out = out_dir or Path("runs") / (f"{sumocfg_name(sumocfg)}-{controller_name}-"
                                             + ("attached" if address is not None else f"s{seed}"))
            _out_folder(out, reusable=is_run_folder, inputs=[sumocfg])
            _check_record(record, out)
            lock = hold_folder(out)
            kept_run = _PreviousRun(out, _config_files([sumocfg]), sumocfg)
            setup = _prepared(out, lambda: prepare_sumocfg(sumocfg, specs, seed=seed, out_dir=out.resolve(),
                                                           end_s=end_s, bluelight=bluelight,
                                                           attached=address is not None, escorts=escorted))
        else:
            assert scenario is not None
            if evs or escorts or end_s is not None:
                raise ScenarioError("--ev, --escort and --end go with --sumocfg; a scenario file names its own EVs "
                                    "and end")
            sc = load_scenario(scenario)
            scenario_inputs = [scenario, *_scenario_inputs(sc)]
            out = _out_folder(out_dir or Path("runs") / f"{sc.name}-{controller_name}-s{seed}",
                              reusable=is_run_folder, inputs=scenario_inputs)
            _check_record(record, out)
            lock = hold_folder(out)
            kept_run = _PreviousRun(out, _config_files(scenario_inputs), scenario)
            setup = _prepared(out, lambda: prepare_scenario(sc, seed=seed, out_dir=out.resolve(),
                                                            bluelight=bluelight))
        flags = {"detect_range_m": detect_range_m, "detect_eta_s": detect_eta_s}
        setup = replace(setup, controller={**setup.controller, **{k: v for k, v in flags.items() if v is not None}})
        junctions = {j.junction_id for e in setup.evs for j in e.corridor.junctions}
        # (an EV's table counts each crossing: a route through a junction twice counts it twice)
        twice = [e.ev_id for e in setup.evs if len({j.junction_id for j in e.corridor.junctions})
                 < len(e.corridor.junctions)]
        # (an attached SUMO's own end, which ends the run where earlier, is read once attached)
        their_end = " (or to the attached SUMO's own end, where earlier)" if address and not setup.end_given else ""
        console.print(
            f"greenwave: {setup.name}: {len(setup.evs)} EV(s), {len(junctions)} signalized junction(s) of "
            f"{len({j.tls_id for e in setup.evs for j in e.corridor.junctions})} traffic light(s) on their routes"
            f"{' (crossed more than once by ' + ', '.join(twice) + ')' if twice else ''}; "
            f"simulating {setup.begin_s:g}-{setup.end_s:g} s{their_end} with controller '{controller_name}' ...",
            highlight=False,
        )
        for note in setup_notes(setup, attached=address is not None):
            console.print(f"greenwave: note: {note}", highlight=False, markup=False)
        if address is not None:
            console.print(f"greenwave: attaching to the SUMO at {address[0]}:{address[1]} (one waiting for more "
                          "clients, --num-clients, answers once they have all connected) ...", highlight=False)
        with _RunProgress(console, setup.begin_s, setup.end_s, len(setup.evs)) as progress:
            def on_progress(t_s: float, evs_done: int) -> None:
                kept_run.started()  # (the previous run is replaced once this one simulates)
                progress(t_s, evs_done)

            summary = run_simulation(setup, controller_name, backend="traci" if backend == "traci" else "libsumo",
                                     gui=gui, on_progress=on_progress, budget_ms=budget_ms, speed=speed,
                                     record=record, attach=address,
                                     on_note=lambda note: console.print(f"greenwave: note: {note}", highlight=False,
                                                                        markup=False))
        kept_run.started()
    except GreenwaveError as e:
        _fail(e)
    except KeyboardInterrupt as e:
        if main_thread:
            # (the hand-back is done: a second Ctrl-C or SIGTERM landing now, after the first's,
            # killed the process on its way out, exit -2 or -15 instead of 130 or 143. Greenwave's
            # own process ignores them to its end, through Python's finalization, which puts a
            # handler of Python's back to the default; inside a caller's process they are taken by
            # a handler that does nothing and given back after: an ignored signal stays ignored
            # in every process the caller starts later)
            hold = signal.SIG_IGN if _OWN_PROCESS else _ignore_signal
            on_interrupt = signal.signal(signal.SIGINT, hold)
            _take_stop_signals(hold)
        what = _what(e)
        left = getattr(e, "left_switched", ())
        handed = (f"signals NOT handed back, the connection to SUMO broke: {', '.join(left)} left switched away "
                  "from their programs" if left
                  else "signals switched straight back to their programs (the hand-back through yellow and red "
                  "clearance was cut short by a second signal)" if getattr(e, "hand_back_cut", False)
                  else "signals handed back")
        click.echo(f"greenwave: {what}; {handed}, SUMO closed, no summary written", err=True)
        sys.exit(_exit_code(e))
    finally:
        if main_thread and on_interrupt is None:
            _give_back(previous)
        if kept_run is not None:
            kept_run.restore()  # (nothing to do once the new run simulated)
        if lock is not None:
            lock.release()
        if main_thread and on_interrupt is not None and not _OWN_PROCESS:
            # (inside a caller's process, its handlers back)
            _give_back(previous)
            signal.signal(signal.SIGINT, on_interrupt)
    print_summary(summary, out, console)


@main.command()
@click.argument("suite", required=False, type=click.Path(path_type=Path))
@click.option("--seeds", default=None, metavar="1-10|1,2,3", help="Seeds to run [default: the suite's].")
@click.option("--controllers", default=None, metavar="none,local,greenwave,oracle",
              help="Controllers to compare [default: the suite's].")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output folder [default: runs/bench-<suite name>].")
@click.option("--jobs", type=click.IntRange(min=1), default=None,
              help="Worker processes (one simulation each at a time) [default: CPU count].")
@click.option("--check", "baseline", type=click.Path(path_type=Path), default=None,
              help="Compare with a baseline JSON; exit 1 on a regression.")
@click.option("--write-baseline", "write_baseline", type=click.Path(path_type=Path), default=None,
              help="Write this bench's aggregate as a baseline JSON.")
@click.option("--update-baseline", "update_baseline", is_flag=True,
              help="With --check: rewrite that baseline with this bench's figures (on purpose: say why in the "
                   "commit).")
def bench(
    suite: Path | None,
    seeds: str | None,
    controllers: str | None,
    out_dir: Path | None,
    jobs: int | None,
    baseline: Path | None,
    write_baseline: Path | None,
    update_baseline: bool,
) -> None:
    """Run a benchmark SUITE [default: the --check baseline's suite, else benchmarks/suite.toml
    of this folder or of the greenwave checkout]:
    every scenario x controller x seed, in parallel; print one comparison table; write bench.json,
    bench.csv and report.html. With --check, exit 1 when the figures moved from the baseline's.
    A scenario file as SUITE benches that one scenario (seeds 1-10, every controller, unless
    --seeds and --controllers say otherwise)."""
    from controller.bench.command import run_bench

    console = Console() if sys.stdout.isatty() else Console(width=200)
    # SIGTERM as Ctrl-C: the workers' runs stopped (signal handlers only in the main thread)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = _take_stop_signals(_raise_terminated) if main_thread else None
    try:
        if update_baseline:
            if baseline is None:
                raise ScenarioError("--update-baseline rewrites the --check baseline: give --check BASELINE")
            if write_baseline is not None:
                raise ScenarioError("give --update-baseline or --write-baseline PATH, not both")
            if seeds is not None or controllers is not None:
                raise ScenarioError("--update-baseline runs the baseline's whole suite: drop --seeds and --controllers")
            write_baseline = baseline
        if out_dir is not None:
            _out_folder(out_dir, reusable=lambda p: (p / "bench.json").is_file() or (p / ".greenwave-bench").is_file()
                        or (p / "runs").is_dir(), kind="bench")
        code = run_bench(console, suite=suite, seeds=seeds, controllers=controllers, out_dir=out_dir, jobs=jobs,
                         baseline=baseline, write_baseline=write_baseline, update=update_baseline)
    except GreenwaveError as e:
        _fail(e)
    except KeyboardInterrupt as e:
        click.echo(f"greenwave: {_what(e)}; the runs in progress were stopped (their folders hold INCOMPLETE.txt), "
                   "nothing aggregated", err=True)
        sys.exit(_exit_code(e))
    finally:
        if main_thread:
            _give_back(previous)
    sys.exit(code)


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--ev", "evs", multiple=True, metavar="ID",
              help="Draw the figures of this EV (repeat for several) [default: every EV, up to --max-evs].")
@click.option("--max-evs", type=click.IntRange(min=0), default=None,
              help="A run with more EVs than this gets figures for this many: those that never arrived, then "
                   "those with the most delay; 0: all [default: 12]. Every EV keeps its table.")
def report(run_dirs: tuple[Path, ...], evs: tuple[str, ...], max_evs: int | None) -> None:
    """Write RUN_DIR/report.html for each run folder given (time-space diagrams, ETA accuracy, the
    comparison with the other controllers' runs of the same scenario and seed, other traffic,
    safety). Self-contained: open it in any browser, offline."""
    from controller.report import write_reports

    try:
        written = write_reports(run_dirs, evs=evs, max_evs=max_evs)
    except GreenwaveError as e:
        _fail(e)
    for path in written:
        click.echo(f"written: {path}")


@main.command()
@click.option("--scenario", "scenario", required=True, type=click.Path(path_type=Path),
              help="The scenario (.toml) whose network and background demand to simulate.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--token-file", type=click.Path(path_type=Path), default=None,
              help="File holding the bearer token [default: $GREENWAVE_TOKEN, else a new one, printed].")
@click.option("--realtime", is_flag=True, help="One simulated second per wall second.")
@click.option("--speed", type=Finite(min=0.01, max=1000.0), default=None,
              help="Simulated seconds per wall second [default: as fast as possible].")
@click.option("--audit-db", type=click.Path(path_type=Path), default=None,
              help="SQLite audit log [default: <out>/audit.sqlite]; kept across restarts.")
@click.option("--seed", default=1, show_default=True, type=click.IntRange(min=0, max=MAX_SEED),
              help="Seed of SUMO and of generated demand.")
@click.option("--end", "end_s", type=Finite(min=0.0), default=None,
              help="Stop stepping at this simulation time and keep serving [default: step until shut down].")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Folder for SUMO's inputs and outputs [default: runs/serve-<scenario>].")
@click.option("--sse-max-s", type=Finite(min=0.1), default=600.0, show_default=True,
              help="An event stream is closed after this long (clients reconnect with Last-Event-ID).")
@click.option("--backend", default="libsumo", show_default=True, type=click.Choice(["libsumo", "traci"]),
              help="libsumo: SUMO in this process (fastest); traci: over a socket (what --gui uses).")
@click.option("--gui", is_flag=True, help="Show sumo-gui (runs over TraCI); closing its window ends the service.")
@click.option("--attach", default=None, metavar="[HOST:]PORT",
              help="Drive a SUMO you started with --remote-port PORT (on the network and route files the "
                   "scenario names), over TraCI, instead of starting one (it ends when the service stops).")
@click.option("--stall-after", "stall_after_s", type=Finite(min=1.0), default=30.0, show_default=True,
              help="/healthz answers 503 'stalled' once no simulation step has ended for this long (and ten "
                   "steps at --speed): a SUMO that does not answer.")
def serve(
    scenario: Path,
    host: str,
    port: int,
    token_file: Path | None,
    realtime: bool,
    speed: float | None,
    audit_db: Path | None,
    seed: int,
    end_s: float | None,
    out_dir: Path | None,
    sse_max_s: float,
    backend: str,
    gui: bool,
    attach: str | None,
    stall_after_s: float,
) -> None:
    """Run SCENARIO's simulation live with the controller and the HTTP API (see README, "HTTP API")."""
    from controller.api.serve import ServeOptions
    from controller.api.serve import serve as run_server
    from controller.runtime.setup import is_run_folder
    from controller.scenario import load_scenario

    try:
        if realtime and speed is not None:
            raise ScenarioError("give --realtime or --speed, not both")
        address = _attach_address(attach, gui, backend) if attach is not None else None
        if gui:
            from controller.sim.adapter import gui_problem

            if problem := gui_problem():
                raise ScenarioError(problem)
        if out_dir is not None:
            # (as for run: not a folder of other files, nor the scenario's own folder; it overwrote them)
            _out_folder(out_dir)
            sc = load_scenario(scenario, service=True)
            # (a serve that failed while preparing left its lock and audit log before the run's mark)
            _out_folder(out_dir, reusable=lambda p: is_run_folder(p) or (p / "audit.sqlite").is_file()
                        or (p / ".serve.lock").exists(), inputs=[scenario, *_scenario_inputs(sc)], kind="serve")
        code = run_server(ServeOptions(scenario=scenario, host=host, port=port, token_file=token_file,
                                       speed=1.0 if realtime else speed, audit_db=audit_db, seed=seed, end_s=end_s,
                                       out_dir=out_dir, sse_max_s=sse_max_s,
                                       backend="traci" if backend == "traci" else "libsumo", gui=gui,
                                       attach=address, stall_after_s=stall_after_s))
    except GreenwaveError as e:
        _fail(e)
    sys.exit(code)


@main.command()
@click.option("--status", is_flag=True, help="Only say whether a build of the current sources is in use.")
def accel(status: bool) -> None:
    """Compile the per-tick core (ETA, planner, transitions, controller, EV progress) with mypyc, about twice
    as fast, into a cache folder keyed by the sources' hash: used from then on by every run, until
    a source changes. GREENWAVE_PURE=1 runs the Python files. Needs mypy and a C compiler."""
    from controller import core
    from controller.core import accel as compiled

    if status:
        where = compiled.build_dir()
        click.echo(f"core: {'compiled' if core.COMPILED else 'python'}; build of these sources: "
                   f"{where if compiled.built(where) else 'none'}")
        return
    try:
        target = compiled.build(lambda: click.echo("compiling the core with mypyc (a minute or two) ..."))
    except RuntimeError as e:
        click.echo(f"greenwave: error: {e}", err=True)
        sys.exit(2)
    click.echo(f"compiled core: {target} (used by new runs; GREENWAVE_PURE=1 to run the Python files)")
