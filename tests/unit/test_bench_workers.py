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


def _attempts(tmp_path: Path, job_fn: str, seeds: list[int], workers: int) -> str:
    """Run ``job_fn`` (of tests/unit/bench_jobs.py) for ``seeds`` in a bench's workers; what it
    prints: each job's (seed, error, attempts)."""
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.replace("crash_or_return", job_fn).replace(
        "print([(r.seed, r.error) for r in results])", "print([(r.seed, r.error, r.attempts) for r in results])",
    ).format(tmp=tmp_path, seeds=seeds, workers=workers))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(script)], cwd=REPO, capture_output=True, text=True, timeout=120,
                          check=False, env=env)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return done.stdout.strip()


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


def test_a_job_whose_worker_died_once_says_it_was_run_again(tmp_path: Path) -> None:
    # it completed on its second attempt and nothing said a worker had died: a flaky SUMO crash
    # was invisible to CI
    assert _attempts(tmp_path, "crash_once", [3], 1) == "[(3, None, 2)]"


def test_a_failed_job_leaves_no_earlier_run_in_its_folder_and_says_why(tmp_path: Path) -> None:
    # a bench re-run into the same --out folder: the job failing before it wrote anything left
    # the earlier bench's complete run there, which `greenwave report` drew without a word
    from controller.bench.runner import Job, _failed, run_job
    from controller.errors import GreenwaveError

    folder = tmp_path / "runs" / "s" / "none-s1"
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text("{}")
    (folder / "tripinfo.xml").write_text("<tripinfos/>")
    job = Job("s", tmp_path / "missing.toml", "none", 1, folder)
    with pytest.raises(GreenwaveError) as failure:
        run_job(job)
    result = _failed(job, failure.value)
    assert result.error is not None and not result.ok
    assert sorted(p.name for p in folder.iterdir()) == ["error.txt"]
    assert (folder / "error.txt").read_text(encoding="utf-8").startswith(result.error)


def test_only_the_job_whose_worker_died_is_charged_and_its_cut_off_outputs_are_marked(tmp_path: Path) -> None:
    # every job running when a worker died was charged an attempt (two kills failed both, and a
    # scenario that crashes SUMO each time failed whatever ran beside it), and the dead job's
    # tripinfo.xml was left cut off under its name, with no INCOMPLETE.txt
    died = "the worker process died (SUMO crashed?)"
    assert _attempts(tmp_path, "crash_beside_a_running_one", [0, 1], 2) == str([(0, None, 1), (1, died, 2)])
    dead = tmp_path / "1"
    assert sorted(p.name for p in dead.iterdir()) == ["INCOMPLETE.txt", "error.txt", "tripinfo.partial.xml"]
    assert "its worker process died" in (dead / "INCOMPLETE.txt").read_text(encoding="utf-8")


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the sibling worker in /proc (Linux)")
def test_an_idle_worker_dying_charges_no_job(tmp_path: Path) -> None:
    # the job running beside it was charged (where no job named the dead worker, every one
    # running was): an idle worker dying twice failed a healthy run
    assert _attempts(tmp_path, "kill_the_idle_sibling_once", [0, 1], 2) == str([(0, None, 1), (1, None, 1)])
    assert (tmp_path / "1.tried").is_file()  # (it did kill its sibling, and was run again)
