"""The benchmark scripts README sends users to refuse a mistaken input with a message, not a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("script", "args", "said"), [
    ("core_bench.py", ["--replay", "nope.jsonl"], "--replay nope.jsonl: No such file or directory"),
    ("core_bench.py", ["--replay", "README.md"], "not a recording of greenwave run --record"),
    ("core_bench.py", ["--evs", "0"], "--evs and --ticks must be at least 1"),
    ("core_bench.py", ["--evs", "1,x"], "--evs '1,x': expected EV counts"),
    ("backends.py", ["scenarios/nope.toml"], "the libsumo run failed (exit 2): greenwave: error: scenario file "
                                              "'scenarios/nope.toml' does not exist"),
    ("backends.py", ["--controller", "greenwav"], "invalid choice: 'greenwav'"),
    ("api_load.py", ["--scenario", "nope.toml"], "scenario file 'nope.toml' does not exist"),
    ("api_load.py", ["--clients", "0"], "--clients must be at least 1"),
    ("planner_fuzz.py", ["--seeds", "x"], "'x': expected a seed or a range such as 1-2000"),
    ("planner_fuzz.py", ["--seeds", "9-3"], "'9-3': the range ends before it starts"),
])
def test_a_benchmark_script_names_the_mistake(script: str, args: list[str], said: str) -> None:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert said in " ".join(done.stderr.split()) and "Traceback" not in done.stderr, done.stderr


def test_the_planner_fuzz_runs_its_seeds_and_says_how_many_failed() -> None:
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "planner_fuzz.py"), "--seeds", "1-12"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("12 seeds (1-12), 0 failing"), done.stdout
    # the seeds that found S5 overruns since stop 42 (each failed on the code before its fix), as
    # they were found (no foes drawn)
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "planner_fuzz.py"), "--seeds",
                           "8636,11198,34012", "--no-foes"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith("3 seeds (8636,11198,34012), 0 failing"), done.stdout
    shown = subprocess.run([sys.executable, str(REPO / "benchmarks" / "planner_fuzz.py"), "--show", "7"], cwd=REPO,
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0 and shown.stdout.startswith("seed 7: ") and "phase 0: " in shown.stdout, shown.stdout
