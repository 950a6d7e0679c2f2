"""Reports for engineers: ``report.html`` per run (time-space diagrams, ETA accuracy, the
comparison with other controllers, other traffic, safety) and one for a bench."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from controller.report.load import ReportError, companions, load_run

__all__ = ["ReportError", "write_reports"]


def write_reports(run_dirs: Sequence[Path], *, evs: Sequence[str] = (), max_evs: int | None = None) -> list[Path]:
    """Write ``report.html`` into every folder given: a run's (``greenwave run --out``), where the
    other runs given (and those beside it) of the same scenario and seed are compared; or a
    bench's (``greenwave bench --out``). Every run folder is read and checked before anything is
    written. A run's figures are drawn for the EVs named in ``evs``, else for at most
    ``max_evs`` of them (0: all; default ``MAX_FIGURE_EVS``), see :func:`figure_evs`."""
    from controller.report.bench import BENCH_FILE, write_bench_report
    from controller.report.html import MAX_FIGURE_EVS, figure_evs, write_run_report
    from controller.report.load import SUMMARY_FILE

    limit = MAX_FIGURE_EVS if max_evs is None else max_evs
    benches = [p for p in run_dirs if (p / BENCH_FILE).is_file() and not (p / SUMMARY_FILE).is_file()]
    if benches and (evs or max_evs is not None) and len(benches) == len(run_dirs):
        # (a bench's report draws no EV's figures: they were ignored without a word)
        raise ReportError(f"{benches[0]} is a bench's folder: --ev and --max-evs choose the figures of a run's "
                          f"report; give its run folders (greenwave report {benches[0]}/runs/SCENARIO/CONTROLLER-sN)")
    runs = [load_run(p) for p in run_dirs if p not in benches]
    drawn: list[list[str]] = []
    for r in runs:  # an EV named that is not in a run: say so before writing anything
        try:
            drawn.append(figure_evs(r.summary, evs, limit))
        except ReportError as e:
            raise ReportError(f"{r.path}: {e}") from None
    return ([write_run_report(r, companions(r, runs), d, named=bool(evs)) for r, d in zip(runs, drawn, strict=True)]
            + [write_bench_report(p) for p in benches])
