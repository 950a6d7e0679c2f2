"""Run the jobs of a bench: one per (scenario, controller, seed), each in a worker process.

libsumo runs one simulation per process, so every job runs in a spawned worker, and a worker
runs its jobs one after another. At most ``jobs`` are in flight at a time. When a worker dies
(SUMO crashing takes the process with it) the pool breaks: the job whose worker it was (the pid
each job writes into its folder while it runs) is tried once more in a fresh pool, and recorded
as failed if that worker dies too; the others running then are run again without being charged.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from controller.bench.aggregate import RunResult
from controller.errors import GreenwaveError

MAX_ATTEMPTS = 2  # tries of a job whose worker process died
WORKER_FILE = ".greenwave-worker"  # in a job's folder while it runs: its worker's pid
WORKER_GONE_WAIT_S = 5.0  # how long a broken pool's dead worker is waited for to show gone
MAX_UNCHARGED_BREAKS = 3  # pool breaks charging no job before the jobs running are all charged


@dataclass(frozen=True)
class Job:
    scenario: str  # the scenario's name
    scenario_file: Path
    controller: str
    seed: int
    out_dir: Path

    @property
    def label(self) -> str:
        return f"{self.scenario} {self.controller} s{self.seed}"


class Stopped(KeyboardInterrupt):
    """A worker's run stopped by the bench (interrupted or terminated): handled as Ctrl-C is in
    a run (signals handed back, SUMO closed, its folder marked incomplete)."""


# what the bench sends its workers to stop their runs, and to end when it throws a broken pool
# away (not on Windows: there they are terminated)
STOP_SIGNAL: signal.Signals | None = getattr(signal, "SIGUSR1", None)
GONE_SIGNAL: signal.Signals | None = getattr(signal, "SIGUSR2", None)
_busy = False  # a worker is running a job
_stopping = False  # its job was told to stop (once: a second signal must not cut the stop short)
_stop_pending = False  # told to stop while idle (or starting): a job it picks up after stops at once
_gone = False  # told its pool (or the bench) is gone: it ends once its run has stopped


def _on_stop(signum: int, frame: object) -> None:
    """In a worker: the bench's stop (SIGUSR1) or SIGTERM (a signal to the whole process group,
    or the pool ending its workers after one died). A busy worker stops its run, once (a second
    signal cut its clean-up short); an idle one remembers it and ends when the pool sends it its
    end (ending at once, ``os._exit``, left the pool's queue lock it waited on held, and the other
    workers blocked on it for ever)."""
    global _stopping, _stop_pending
    if _busy and not _stopping:
        _stopping = True
        raise Stopped
    _stop_pending = True


def _on_gone(signum: int, frame: object) -> None:
    """In a worker: the bench throws its pool away (a worker died). An idle worker ends at once:
    the pool's queues are not used again (Python 3.12+ waits for the workers to end and sends no
    end through the queue); a busy one stops its run first, then ends (with the bench itself
    gone, no second signal comes)."""
    global _stopping, _gone
    _gone = True
    if not _busy:
        os._exit(0)
    if not _stopping:
        _stopping = True
        raise Stopped


def _worker_init() -> None:
    """A worker ignores Ctrl-C and SIGHUP (a terminal sends them to every process of the group:
    the bench stops its workers itself). On Linux it is sent ``GONE_SIGNAL`` when the bench dies without
    stopping it (SIGKILL, the OOM killer): it ends, a run in progress stopped first (the workers
    lived on for ever, idle ones ignoring SIGTERM, and could write into a folder another bench
    had taken)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(signal, "SIGHUP"):  # (a closing terminal sends it to the whole group too)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_stop)
    if STOP_SIGNAL is not None and GONE_SIGNAL is not None:
        signal.signal(STOP_SIGNAL, _on_stop)
        signal.signal(GONE_SIGNAL, _on_gone)
        _end_with_the_bench(GONE_SIGNAL)


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (the pools' semaphores) with SIGHUP ignored, which
    it keeps: a closing terminal sends SIGHUP to the whole group, and the tracker, which ignores
    only SIGINT and SIGTERM, died of it (relaunched, a traceback for every semaphore)."""
    if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
        return
    from multiprocessing import resource_tracker

    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        resource_tracker.ensure_running()
    finally:
        signal.signal(signal.SIGHUP, before)


def _end_with_the_bench(signum: signal.Signals) -> None:
    """Have the kernel send this worker ``signum`` when the bench's process ends (Linux's
    PR_SET_PDEATHSIG; elsewhere nothing)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = multiprocessing.parent_process()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signum), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent is not None and os.getppid() != parent.pid:
        os._exit(0)  # (the bench died before that was set)


def run_job(job: Job) -> tuple[dict[str, Any], float]:
    """In a worker: set up and run one simulation; its summary and the job's wall time in s."""
    global _busy, _stopping
    _busy, _stopping = True, False  # (first: a stop during the imports below is not lost)
    worker_file = job.out_dir / WORKER_FILE
    try:
        if _stop_pending:
            raise Stopped  # (the bench stopped before this job began)
        started = time.perf_counter()
        # (the folder is this job's: what an earlier bench, or an attempt whose worker died, left
        # there would pass for this run's output if this one failed before writing its own)
        shutil.rmtree(job.out_dir, ignore_errors=True)
        # which worker runs it: where one dies, the bench tells its job from the others running
        job.out_dir.mkdir(parents=True, exist_ok=True)
        worker_file.write_text(str(os.getpid()), encoding="utf-8")
        from controller.runtime.run import run
        from controller.runtime.setup import prepare_scenario
        from controller.scenario import load_scenario

        setup = prepare_scenario(load_scenario(job.scenario_file), seed=job.seed, out_dir=job.out_dir)
        summary = run(setup, job.controller)
    except Stopped:
        # (stopped while preparing: a run stopped while simulating has marked its folder itself)
        with contextlib.suppress(OSError):
            if job.out_dir.is_dir() and not any((job.out_dir / n).exists() for n in ("INCOMPLETE.txt", "summary.json")):
                (job.out_dir / "INCOMPLETE.txt").write_text("stopped by the bench before it simulated\n",
                                                             encoding="utf-8")
        raise
    finally:
        with contextlib.suppress(OSError):
            worker_file.unlink(missing_ok=True)
        _busy = False
        if _gone:
            os._exit(0)  # (its run stopped and marked; the pool it would answer is gone)
    return summary, time.perf_counter() - started


def _died_with_its_worker(jobs: Sequence[Job], suspects: Sequence[int], known: Sequence[BaseProcess],
                          wait_s: float = WORKER_GONE_WAIT_S) -> set[int]:
    """Of the jobs running when a worker died (``suspects``, indices into ``jobs``), those whose
    worker it was, by the pid each job's worker wrote into its folder (``known``: the pool's
    workers), waiting up to ``wait_s`` for the system to show it gone (a process killed with
    much memory to free shows as running a while after its pool broke); where none names a dead
    worker, those that named none (a worker dying before it wrote its pid), none where each names
    a live one (an idle worker died). One kill failed every job running beside it, and a job that
    crashes SUMO each time failed the others with it."""
    pids: dict[int, int | None] = {}
    for i in suspects:
        try:
            pids[i] = int((jobs[i].out_dir / WORKER_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            pids[i] = None
    deadline = time.monotonic() + (wait_s if any(pid is not None for pid in pids.values()) else 0.0)
    while True:
        gone = {i for i, pid in pids.items() if pid is not None and _worker_gone(pid, known)}
        if gone or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    return gone or {i for i, pid in pids.items() if pid is None}


def _worker_gone(pid: int, known: Sequence[BaseProcess]) -> bool:
    """Has the worker of this pid died? Its process object says so once it has been waited for
    (by the pool's own thread, maybe: then only the system knows), else the system: no such
    process, or a zombie (Linux)."""
    if any(p.pid == pid and p.exitcode is not None for p in known):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z"
    return False


def _abandon(processes: Sequence[BaseProcess], wait_s: float = 60.0) -> None:
    """End the workers of a broken pool (one died): idle ones at once, busy ones once their run
    has stopped (asked again until they are gone)."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        alive = [p for p in processes if p.is_alive() and p.pid is not None]
        if not alive:
            return
        for proc in alive:
            _send(proc, GONE_SIGNAL)
        for proc in alive:
            proc.join(0.2)
    _kill_left(processes)


def _send(proc: BaseProcess, signum: signal.Signals | None) -> None:
    """Send a worker ``signum`` (where there is none, not on POSIX: terminate it); a process
    gone meanwhile is passed over."""
    with contextlib.suppress(OSError):
        if signum is None or proc.pid is None:
            proc.terminate()
        else:
            os.kill(proc.pid, signum)


def _kill_left(processes: Sequence[BaseProcess]) -> None:
    """End the workers still there after their time (so none outlives the bench)."""
    for proc in processes:
        if proc.is_alive():
            proc.kill()
            proc.join(5.0)


def _stop_workers(pool: ProcessPoolExecutor, wait_s: float = 120.0) -> None:
    """Stop the runs in progress (each handled as Ctrl-C in a run: signals handed back, SUMO
    closed, its folder marked incomplete), let the idle workers end with the pool, and wait for
    them (the bench's folder stays locked until none writes into it). Ctrl-C and SIGTERM are
    ignored meanwhile: a second one cut this short and left the runs going."""
    main = threading.current_thread() is threading.main_thread()
    taken = (signal.SIGINT, signal.SIGTERM, *((signal.SIGHUP,) if hasattr(signal, "SIGHUP") else ()))
    before = {sig: signal.signal(sig, signal.SIG_IGN) for sig in taken} if main else {}
    try:
        processes = list((getattr(pool, "_processes", None) or {}).values())  # (shutdown forgets them)
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in processes:
            if proc.is_alive():
                _send(proc, STOP_SIGNAL)
        deadline = time.monotonic() + wait_s
        for proc in processes:
            proc.join(max(0.0, deadline - time.monotonic()))
        _kill_left(processes)  # (a run that did not stop in time)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def _describe(error: BaseException) -> tuple[str, str | None]:
    """A one-line message, and the worker's traceback for errors that are not the user's."""
    if isinstance(error, GreenwaveError):
        return str(error), None
    if isinstance(error, BrokenProcessPool):
        return "the worker process died (SUMO crashed?)", None
    remote = error.__cause__  # concurrent.futures attaches the worker's traceback here
    tb = str(remote) if remote is not None else "".join(traceback.format_exception(error))
    return f"{type(error).__name__}: {error}", tb


def run_jobs(
    jobs: Sequence[Job],
    *,
    workers: int,
    on_done: Callable[[RunResult, int, int], None] | None = None,
    job_fn: Callable[[Job], tuple[dict[str, Any], float]] = run_job,
) -> list[RunResult]:
    """Run every job in ``workers`` spawned processes; results in the order of ``jobs``.

    A failing job is recorded (its error in the result, a traceback in ``out_dir/error.txt`` for
    unexpected errors) and the others go on. ``on_done(result, n_done, n_total)`` is called as
    each job finishes. ``job_fn`` must be a module-level function (it is pickled)."""
    results: dict[int, RunResult] = {}
    attempts = dict.fromkeys(range(len(jobs)), 0)
    uncharged = 0  # pool breaks in a row that charged no job (idle workers dying)
    pending = list(range(len(jobs)))
    ctx = multiprocessing.get_context("spawn")
    _start_resource_tracker()

    def record(i: int, result: RunResult) -> None:
        results[i] = result
        if on_done is not None:
            on_done(result, len(results), len(jobs))

    while pending:
        retry: list[int] = []
        with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=ctx, initializer=_worker_init) as pool:
            in_flight: dict[Future[tuple[dict[str, Any], float]], int] = {}
            known: list[BaseProcess] = []  # the pool's workers (it forgets them when it breaks)
            try:
                while pending or in_flight:
                    while pending and len(in_flight) < workers:
                        i = pending.pop(0)
                        attempts[i] += 1
                        in_flight[pool.submit(job_fn, jobs[i])] = i
                    # (every worker this pool had: it forgets them when it breaks)
                    known = list({id(p): p for p in (*known, *(getattr(pool, "_processes", None) or {}).values())
                                  }.values())
                    done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    suspects: list[int] = []  # jobs a worker's death ended (those still running too)
                    broken: BaseException | None = None
                    for fut in done:
                        i = in_flight.pop(fut)
                        error = fut.exception()
                        if error is None:
                            summary, wall = fut.result()
                            record(i, RunResult(jobs[i].scenario, jobs[i].controller, jobs[i].seed, summary,
                                                out_dir=str(jobs[i].out_dir), wall_s=wall, attempts=attempts[i]))
                        elif isinstance(error, BrokenProcessPool):
                            broken = error
                            suspects.append(i)
                        else:
                            record(i, _failed(jobs[i], error, attempts[i]))
                    if broken is not None:  # the jobs not yet finished go to a fresh pool (this one takes no more)
                        suspects += in_flight.values()
                        charged = _died_with_its_worker(jobs, suspects, known)
                        uncharged = 0 if charged else uncharged + 1
                        if uncharged > MAX_UNCHARGED_BREAKS:  # (workers dying for ever: the runs end)
                            charged, uncharged = set(suspects), 0
                        for i in suspects:
                            if i not in charged:
                                attempts[i] -= 1  # (its worker lived: stopped with the pool, not its fault)
                                retry.append(i)
                                continue
                            _mark_cut_off(jobs[i])
                            if attempts[i] < MAX_ATTEMPTS:
                                retry.append(i)
                            else:
                                record(i, _failed(jobs[i], broken, attempts[i]))
                        _abandon(known)
                        break
            except KeyboardInterrupt:
                _stop_workers(pool)
                raise
        pending = sorted(set(retry) | set(pending))
    return [results[i] for i in range(len(jobs))]


def _mark_cut_off(job: Job) -> None:
    """A job whose worker died: SUMO's outputs in its folder are cut off (renamed ``*.partial.xml``,
    with ``INCOMPLETE.txt``), not left under their names looking complete."""
    from controller.runtime.run import mark_incomplete

    with contextlib.suppress(OSError):
        (job.out_dir / WORKER_FILE).unlink(missing_ok=True)
    if job.out_dir.is_dir():
        mark_incomplete(job.out_dir, "its worker process died (SUMO crashed?)")


def _failed(job: Job, error: BaseException, attempts: int = 1) -> RunResult:
    message, tb = _describe(error)
    try:  # (its folder says so too: what is left there is not a run's complete output)
        job.out_dir.mkdir(parents=True, exist_ok=True)
        (job.out_dir / "error.txt").write_text(f"{message}\n" + ("" if tb is None else f"\n{tb}\n"),
                                               encoding="utf-8")
    except OSError:
        pass  # the message is still in the result
    return RunResult(job.scenario, job.controller, job.seed, None, error=message, out_dir=str(job.out_dir),
                     attempts=attempts)
