"""``greenwave bench`` end to end, in-process: a tiny suite (Ingolstadt 7, one seed, none and
oracle) run in two spawned worker processes."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from controller.cli import main

pytestmark = pytest.mark.sumo

REPO = Path(__file__).resolve().parents[2]


def test_bench_tiny_suite(tmp_path: Path) -> None:
    suite = tmp_path / "suite.toml"
    suite.write_text(
        'name = "tiny"\nversion = 3\nseeds = [1, 2]\ncontrollers = ["none", "local", "greenwave", "oracle"]\n'
        f'scenarios = ["{REPO / "scenarios" / "ingolstadt7.toml"}"]\n'
    )
    out = tmp_path / "out"
    baseline = tmp_path / "baseline.json"
    args = ["bench", str(suite), "--seeds", "1", "--controllers", "none,oracle", "--jobs", "2", "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--write-baseline", str(baseline)])
    assert result.exit_code == 0, result.output
    assert "ingolstadt7 none      s1" in result.output and "ingolstadt7 oracle    s1" in result.output

    data = json.loads((out / "bench.json").read_text())
    assert data["suite"]["name"] == "tiny" and data["suite"]["version"] == 3 and data["suite"]["seeds"] == [1]
    assert data["suite"]["sumo_version"].startswith("SUMO 1.")
    assert data["code"]["path"] == str(REPO / "controller")  # which code ran (a shared venv may run another's)
    assert data["code"]["git_commit"] is None or len(data["code"]["git_commit"]) == 40
    assert [(r["scenario"], r["controller"], r["seed"], r["status"]) for r in data["runs"]] == [
        ("ingolstadt7", "none", 1, "ok"), ("ingolstadt7", "oracle", 1, "ok")]
    rows = {r["controller"]: r for r in data["aggregate"]}
    assert set(rows) == {"none", "oracle"}
    assert rows["oracle"]["gap_closed"] == 1.0 and rows["none"]["gap_closed"] == 0.0
    assert rows["oracle"]["ev_travel_mean_s"] < rows["none"]["ev_travel_mean_s"]
    assert rows["oracle"]["delay_over_oracle_s"] == 0.0
    assert data["failures"] == [] and data["verdicts"] == []  # no greenwave run, no verdict
    for ctrl in ("none", "oracle"):
        assert (out / "runs" / "ingolstadt7" / f"{ctrl}-s1" / "summary.json").is_file()
    page = (out / "report.html").read_text()
    assert '<figure class="bench-travel-time">' in page and '<figure class="bench-gap-closed">' in page
    for ctrl in ("none", "oracle"):
        assert f'id="travel-ingolstadt7-{ctrl}"' in page
    assert "<td>1.00</td>" in page and "<td>0.00</td>" in page  # gap closed with two decimals (0.98 is not 1.0)

    with (out / "bench.csv").open() as f:
        csv_rows = list(csv.DictReader(f))
    assert [(r["scenario"], r["controller"]) for r in csv_rows] == [("ingolstadt7", "none"), ("ingolstadt7", "oracle")]
    assert float(csv_rows[1]["gap_closed"]) == 1.0

    # The same seed gives the same figures: checking against the baseline just written passes.
    assert json.loads(baseline.read_text())["format"] == "greenwave-bench-baseline"
    result = CliRunner().invoke(main, [*args, "--check", str(baseline)])
    assert result.exit_code == 0, result.output
    assert "no regression" in result.output and "check: " not in result.output  # (the same SUMO: no note)
    assert json.loads(baseline.read_text())["suite"]["sumo_version"] == data["suite"]["sumo_version"]

    # --update-baseline on a baseline whose figures moved: rewritten, what moved listed, exit 0
    # (it used to say "regression" and exit 1 after writing)
    moved = json.loads(baseline.read_text())
    next(g for g in moved["groups"] if g["controller"] == "oracle")["ev_travel_mean_s"] += 50.0
    # (and one within the check's tolerance: rewritten unlisted before)
    none_was = next(g for g in moved["groups"] if g["controller"] == "none")["collisions"]
    next(g for g in moved["groups"] if g["controller"] == "none")["collisions"] = none_was + 1
    for g in moved["groups"]:  # (timings: kept from the baseline rewritten, not made a diff of each update)
        g["wall_mean_s"] = 123.0
    baseline.write_text(json.dumps(moved))
    update = ["bench", str(suite), "--jobs", "2", "--out", str(out), "--check", str(baseline), "--update-baseline"]
    result = CliRunner().invoke(main, update)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "updated; what moved (2)" in said and "ingolstadt7 / oracle: ev_travel_mean_s" in said, said
    assert f"ingolstadt7 / none: collisions {none_was + 1} -> {none_was}" in said, said
    assert len(json.loads((out / "bench.json").read_text())["check"]["changes"]) == 2
    rewritten = json.loads(baseline.read_text())["groups"]
    assert all(g["wall_mean_s"] == 123.0 for g in rewritten)
    oracle_was = next(g for g in moved["groups"] if g["controller"] == "oracle")["ev_travel_mean_s"]
    assert next(g for g in rewritten if g["controller"] == "oracle")["ev_travel_mean_s"] == oracle_was - 50.0
    page = (out / "report.html").read_text()
    assert "updated on purpose; what moved (2)" in page and "regression(s)" not in page
    result = CliRunner().invoke(main, [*args, "--check", str(baseline)])
    assert result.exit_code == 0 and "no regression" in result.output, result.output


def test_a_reused_bench_folder_keeps_none_of_the_earlier_benchs_runs(tmp_path: Path) -> None:
    # only its bench.json, bench.csv and report.html went: the runs of controllers, seeds and
    # scenarios the new bench does not run stayed, each complete, and `greenwave report`
    # compared one of them with the new runs (an interrupted rerun left all the old ones)
    out = tmp_path / "out"
    old = {out / "runs" / "gone-scenario" / "none-s9", out / "runs" / "ingolstadt7" / "greenwave-s1",
           out / "runs" / "ingolstadt7" / "oracle-s1"}
    for run in old:
        run.mkdir(parents=True)
        (run / ".greenwave-run").touch()
        (run / "summary.json").write_text("{}")
    (out / "bench.json").write_text("{}")
    (out / "runs" / "ingolstadt7" / "my-notes.txt").write_text("mine")
    (out / "notes.txt").write_text("mine too")
    result = CliRunner().invoke(main, ["bench", str(REPO / "scenarios" / "ingolstadt7.toml"), "--seeds", "1",
                                       "--controllers", "none", "--jobs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert not any(run.exists() for run in old) and not (out / "runs" / "gone-scenario").exists()
    assert sorted(p.name for p in (out / "runs" / "ingolstadt7").iterdir()) == ["my-notes.txt", "none-s1"]
    assert (out / "notes.txt").read_text() == "mine too"
    # a folder no bench wrote (no bench.json, no mark) holding a runs/ of `greenwave run`
    # outputs: they stay (`--out .` beside them lost runs/trials/greenwave-try1)
    mine = tmp_path / "scratch" / "runs" / "trials" / "greenwave-try1"
    mine.mkdir(parents=True)
    (mine / ".greenwave-run").touch()
    (mine / "summary.json").write_text("{}")
    result = CliRunner().invoke(main, ["bench", str(REPO / "scenarios" / "ingolstadt7.toml"), "--seeds", "1",
                                       "--controllers", "none", "--jobs", "1", "--out", str(tmp_path / "scratch")])
    assert result.exit_code == 0, result.output
    assert (mine / "summary.json").is_file() and (tmp_path / "scratch" / ".greenwave-bench").is_file()


def test_bench_refuses_unavailable_controllers_before_running(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import controller.runtime.run as run_module

    monkeypatch.setattr(run_module, "CONTROLLERS", ("none", "oracle"))  # as before local/greenwave existed
    result = CliRunner().invoke(main, ["bench", str(REPO / "benchmarks" / "suite.toml"), "--out",
                                       str(tmp_path / "out"), "--controllers", "none,oracle,greenwave"])
    assert result.exit_code == 2
    assert "greenwave not available" in result.output
    assert not (tmp_path / "out").exists()


def test_an_ev_that_cannot_be_planned_is_refused_before_running(tmp_path: Path) -> None:
    # it used to fail in every worker after the runs started, once per run, with exit 1
    scenario = tmp_path / "bad.toml"
    text = (REPO / "scenarios" / "grid5-moderate.toml").read_text().replace('"../networks', f'"{REPO / "networks"}')
    scenario.write_text(re.sub(r'(?m)^to = "[^"]*"', 'to = "no_such_edge"', text.replace(
        'name = "grid5-moderate"', 'name = "bad-grid"'), count=1))
    suite = tmp_path / "suite.toml"
    suite.write_text(f'name = "s"\nversion = 1\nseeds = [1, 2]\ncontrollers = ["none", "greenwave"]\n'
                     f'scenarios = ["{REPO / "scenarios" / "grid5-moderate.toml"}", "bad.toml"]\n')
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["bench", str(suite), "--jobs", "1", "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert f"suite.toml: scenario 'bad-grid': {scenario.resolve()}: field 'ev[0]'" in result.output
    assert "to edge 'no_such_edge' is not in network grid5.net.xml" in result.output
    assert not out.exists()


def test_a_check_that_could_not_compare_is_refused_before_running(tmp_path: Path) -> None:
    # another suite or version, other seeds, the baseline itself as --write-baseline, an unknown
    # format version: exit 2 with nothing run (they used to fail, or rewrite the baseline, after
    # the whole bench)
    suite = tmp_path / "suite.toml"
    suite.write_text(f'name = "tiny"\nversion = 3\nseeds = [1]\ncontrollers = ["none"]\n'
                     f'scenarios = ["{REPO / "scenarios" / "ingolstadt7.toml"}"]\n')
    group = {"scenario": "ingolstadt7", "controller": "none", "seeds": [1], "S1": 0, "S2": 0, "S3": 0, "S4": 0,
             "S5": 0, "evs": 1, "evs_not_arrived": 0, "ev_travel_mean_s": 300.0, "collisions": 0,
             "collisions_ev": 0}

    def baseline(name: str, **changes: Any) -> Path:
        data = {"format": "greenwave-bench-baseline", "format_version": 1,
                "suite": {"name": "tiny", "version": 3, "file": str(suite)}, "groups": [group], **changes}
        path = tmp_path / name
        path.write_text(json.dumps(data))
        return path

    good = baseline("good.json")
    out = tmp_path / "out"
    for args, needle in [
        (["--check", str(baseline("v2.json", suite={"name": "tiny", "version": 2, "file": str(suite)}))],
         "was made from suite tiny v2, not tiny v3"),
        (["--check", str(good), "--seeds", "2"], "--seeds 2: "),
        (["--check", str(good), "--write-baseline", str(good)], "is the --check baseline: give --update-baseline"),
        (["--check", str(baseline("f99.json", format_version=99))], "field 'format_version' is 99"),
        # a gate leaving out a controller its baseline checks passed without checking it
        (["--check", str(baseline("two.json", groups=[group, {**group, "controller": "greenwave"}])),
          "--controllers", "none"], "--controllers none: "),
    ]:
        result = CliRunner().invoke(main, ["bench", str(suite), "--jobs", "1", "--out", str(out), *args])
        assert result.exit_code == 2 and needle in result.output, (args, result.output)
        assert not out.exists()
    other = tmp_path / "other.toml"
    other.write_text(suite.read_text().replace('name = "tiny"', 'name = "other"'))
    result = CliRunner().invoke(main, ["bench", str(other), "--out", str(out), "--check", str(good),
                                       "--update-baseline"])
    assert result.exit_code == 2 and "--update-baseline rewrites a baseline with its own suite" in result.output
    assert json.loads(good.read_text())["suite"]["name"] == "tiny"


def test_ci_gate_passes_on_main(tmp_path: Path) -> None:
    """The regression gate, as CI runs it: ``greenwave bench --check benchmarks/baseline.json``
    runs the baseline's own suite (benchmarks/ci.toml) and compares. KPIs are deterministic for
    fixed seeds, so any change in EV times, stops, background time loss or safety counts beyond
    the tolerances, or a controller tick grown against SUMO's step, fails it."""
    args = ["bench", "--jobs", "2", "--out", str(tmp_path / "out"),
            "--check", str(REPO / "benchmarks" / "baseline.json")]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "no regression" in result.output
    data = json.loads((tmp_path / "out" / "bench.json").read_text())
    safety = [row for row in data["aggregate"] if row["controller"] in ("local", "greenwave")]
    assert safety and all(row[rule] == 0 for row in safety for rule in ("S1", "S2", "S3", "S4", "S5"))


def test_ci_gate_fails_on_an_injected_regression(tmp_path: Path) -> None:
    """The same gate against a greenwave that plans entries too late (a scenario copy whose
    controller settings leave no margin and no lead time): it must exit 1 and name what moved."""
    baseline = json.loads((REPO / "benchmarks" / "baseline.json").read_text())
    scenario = (REPO / "scenarios" / "grid5-moderate.toml").read_text()
    net_dir = (REPO / "networks").as_posix()
    broken = tmp_path / "grid5-moderate.toml"
    broken.write_text(scenario.replace("../networks", net_dir) + "\n[controller]\nmargin_s = 0\nmax_lead_s = 2\n")
    suite = tmp_path / "ci.toml"
    suite.write_text(f'name = "greenwave-ci"\nversion = 1\nseeds = [1]\ncontrollers = ["greenwave"]\n'
                     f'scenarios = ["{broken.as_posix()}"]\n')
    baseline["suite"]["file"] = str(suite)
    doctored = tmp_path / "baseline.json"
    doctored.write_text(json.dumps(baseline))
    result = CliRunner().invoke(main, ["bench", "--jobs", "1", "--out", str(tmp_path / "out"),
                                       "--check", str(doctored)])
    assert result.exit_code == 1, result.output
    assert "regression" in result.output and "grid5-moderate / greenwave: ev_travel_mean_s" in result.output


@pytest.mark.parametrize("to", ["bench", "group", "kill", "hangup"])
def test_a_terminated_bench_stops_its_runs_and_leaves_no_aggregate(tmp_path: Path, tiny_net: Path, to: str) -> None:
    # SIGTERM killed the bench at once: its workers went on writing into the folder, no longer
    # locked, for minutes; and an earlier bench's bench.json stayed beside runs it no longer
    # described. One worker is idle when the signal comes (the short run done): a worker that
    # ended holding the pool's queue lock hung the other and the bench for ever. "group": a
    # signal to every process (a service manager's stop): the runs stopped once, cleanly.
    # "kill": SIGKILL to the bench alone (the OOM killer): its workers lived on for ever, an idle
    # one ignoring SIGTERM; now they end with it, the run in progress stopped and marked.
    # "hangup": SIGHUP to every process (the terminal closing) killed them all at once
    import os
    import signal
    import subprocess
    import sys
    import time

    from tests.helpers import write_scenario

    demand = '[demand]\nlevel = "light"\ngenerator = "random_trips"\nvehicles_per_hour = 600\n'
    short = write_scenario(tmp_path / "short.toml", tiny_net, end_s=200, demand=demand)
    long = write_scenario(tmp_path / "long.toml", tiny_net, end_s=20000, demand=demand)
    long.write_text(long.read_text().replace('name = "tiny"', 'name = "long"'))
    suite = tmp_path / "suite.toml"
    suite.write_text(f'name = "t"\nversion = 1\nseeds = [1]\ncontrollers = ["greenwave"]\n'
                     f'scenarios = ["{short}", "{long}"]\n')
    out = tmp_path / "out"
    out.mkdir()
    (out / "bench.json").write_text("{}")  # an earlier bench's
    (out / "runs").mkdir()
    args = [sys.executable, "-m", "controller", "bench", str(suite), "--jobs", "2", "--out", str(out)]
    bench = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
    done, running = out / "runs" / "tiny" / "greenwave-s1", out / "runs" / "long" / "greenwave-s1"
    deadline = time.monotonic() + 90
    while not ((done / "summary.json").is_file() and (running / "inputs").is_dir()) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    spawned = _workers_of(bench.pid)
    assert len(spawned) == 2, spawned
    if to == "kill":
        bench.kill()
        bench.communicate(timeout=30)
        deadline = time.monotonic() + 60
        while any(_alive(pid) for pid in spawned) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(pid) for pid in spawned), spawned
        assert (running / "INCOMPLETE.txt").is_file() and not (running / "summary.json").exists()
        return
    if to in ("group", "hangup"):
        os.killpg(bench.pid, signal.SIGHUP if to == "hangup" else signal.SIGTERM)
    else:
        bench.send_signal(signal.SIGTERM)
    output, _ = bench.communicate(timeout=120)
    assert bench.returncode == (129 if to == "hangup" else 143), output
    said = "terminated (SIGHUP)" if to == "hangup" else "terminated"
    assert f"{said}; the runs in progress were stopped" in output and "Traceback" not in output, output
    for pid in spawned:  # every worker gone with the bench
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert (done / "summary.json").is_file()
    assert (running / "INCOMPLETE.txt").is_file() and not (running / "summary.json").exists()
    assert not (out / "bench.json").exists()


def _alive(pid: int) -> bool:
    """Is ``pid`` a live process (not a zombie: a worker orphaned to an init that has not reaped
    it yet has ended)?"""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _workers_of(pid: int) -> list[int]:
    """The bench's worker processes (multiprocessing's spawned children), from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and b"multiprocessing.spawn" in cmdline:
            found.append(int(stat.parent.name))
    return found
