"""Job functions for run_jobs tests (module level: the spawned workers import them)."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

from controller.bench.runner import Job


def crash_or_return(job: Job) -> tuple[dict[str, Any], float]:
    """Seed 1: the worker dies (as when SUMO crashes), after the others have started; else a result."""
    if job.seed == 1:
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)
    return {"seed": job.seed}, 0.0


def crash_once(job: Job) -> tuple[dict[str, Any], float]:
    """The worker dies on the job's first attempt (a marker beside its folder), completes on the next."""
    marker = job.out_dir.parent / f"{job.out_dir.name}.tried"
    if not marker.exists():
        marker.write_text("1")
        os.kill(os.getpid(), signal.SIGKILL)
    return {"seed": job.seed}, 0.0


def crash_beside_a_running_one(job: Job) -> tuple[dict[str, Any], float]:
    """As run_job marks its folder (its worker's pid), with a SUMO output being written: seed 1's
    worker dies half a second in, while the other job is still running."""
    from controller.bench.runner import WORKER_FILE

    job.out_dir.mkdir(parents=True, exist_ok=True)
    (job.out_dir / WORKER_FILE).write_text(str(os.getpid()), encoding="utf-8")
    (job.out_dir / "tripinfo.xml").write_text('<tripinfos>\n    <tripinfo id="a" depart="1', encoding="utf-8")
    if job.seed == 1:
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(2.0)
    (job.out_dir / WORKER_FILE).unlink()
    return {"seed": job.seed}, 0.0


def kill_the_idle_sibling_once(job: Job) -> tuple[dict[str, Any], float]:
    """As run_job marks its folder; seed 0 ends at once (its worker then idles), seed 1 kills the
    other worker of the bench on its first attempt (a marker beside its folder) and runs on."""
    from pathlib import Path

    from controller.bench.runner import WORKER_FILE

    job.out_dir.mkdir(parents=True, exist_ok=True)
    (job.out_dir / WORKER_FILE).write_text(str(os.getpid()), encoding="utf-8")
    marker = job.out_dir.parent / f"{job.out_dir.name}.tried"
    if job.seed == 1 and not marker.exists():
        marker.write_text("1")
        time.sleep(1.0)
        bench = os.getppid()
        siblings = {int(c) for task in Path(f"/proc/{bench}/task").iterdir()
                    for c in (task / "children").read_text().split()} - {os.getpid()}
        for pid in siblings:
            if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text():
                os.kill(pid, signal.SIGKILL)
        time.sleep(2.0)
    (job.out_dir / WORKER_FILE).unlink()
    return {"seed": job.seed}, 0.0
