"""run_jobs when a worker dies: the bench finishes (no hang, no traceback), the job that killed
its worker twice is recorded as failed and the others complete."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
from pathlib import Path
from controller.bench.runner import Job, run_jobs
from tests.unit.bench_jobs import crash_or_return
if __name__ == "__main__":
    jobs = [Job("s", Path("x"), "none", seed, Path("{tmp}") / str(i)) for i, seed in enumerate({seeds})]
    results = run_jobs(jobs, workers={workers}, job_fn=crash_or_return)
    print([(r.seed, r.error) for r in results])
"""


@pytest.mark.parametrize(("seeds", "workers"), [([0, 1], 2), ([1, 0, 0], 1), ([0, 1, 0], 3)])
def test_a_dying_worker_beside_idle_ones_neither_hangs_nor_stops_the_bench(tmp_path: Path, seeds: list[int],
                                                                           workers: int) -> None:
    # beside an idle worker the bench hung for ever (Python 3.12+ waits for every worker to end);
    # a worker dying on its job's last try made the bench submit to the broken pool: a traceback
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tmp=tmp_path, seeds=seeds, workers=workers))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False, env=env)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    died = "the worker process died (SUMO crashed?)"
    assert done.stdout.strip() == str([(s, died if s == 1 else None) for s in seeds])
