"""``greenwave report`` on real runs: the issue's acceptance (a grid5-heavy greenwave run's
time-space diagram shows every junction of the route), with the none run of the same seed beside
it for the comparison."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from controller.cli import main
from tests.helpers import run_ok

pytestmark = pytest.mark.sumo

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def grid5_heavy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("grid5-heavy")
    scenario = str(REPO / "scenarios" / "grid5-heavy.toml")
    for controller in ("greenwave", "none"):
        run_ok(["run", scenario, "--controller", controller, "--seed", "1", "--out", str(root / f"{controller}-s1")])
    return root


def test_report_on_a_grid5_heavy_greenwave_run(grid5_heavy: Path) -> None:
    import json

    folder = grid5_heavy / "greenwave-s1"
    result = CliRunner().invoke(main, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    summary = json.loads((folder / "summary.json").read_text())
    page = (folder / "report.html").read_text()

    diagrams = re.findall(r'<figure class="time-space-diagram".*?</figure>', page, flags=re.S)
    assert len(diagrams) == len(summary["evs"]) == 1
    diagram = diagrams[0]
    assert "Time-space diagram" in diagram and "The <b>time-space diagram</b> of EV" in diagram
    tls = summary["evs"][0]["tls"]
    assert len(tls) == 9
    for i, tls_id in enumerate(tls):
        assert f"{tls_id} (#{i})" in diagram
        assert re.search(rf'id="j{i}-signal-green"', diagram)  # the EV met green at every junction
        assert f'id="j{i}-preempt-dwell"' in diagram  # and greenwave held each one for it
    assert f'id="trajectory-{summary["evs"][0]["id"]}"' in diagram
    # the junction table names each junction (it showed "#0", "#1", ... only), and the EV table
    # counts the route's signalized junctions as such
    for i, tls_id in enumerate(tls):
        assert f"<td>#{i}</td><td>{tls_id}</td><td>{tls_id}</td>" in page  # (grid: a junction's signal is its own)
    assert "<th>signalized junctions on route</th>" in page

    # the none run beside it is found and compared, and other traffic is measured against it
    assert re.search(r'<figure class="time-space-comparison" data-ev="[^"]+" data-controllers="none greenwave"',
                     page)
    none = json.loads((grid5_heavy / "none-s1" / "summary.json").read_text())
    change = (summary["background"]["mean_time_loss"] - none["background"]["mean_time_loss"]) \
        / none["background"]["mean_time_loss"] * 100
    assert f"<td>greenwave</td><td>{summary['background']['trips']}</td>" \
           f"<td>{summary['background']['mean_time_loss']:.1f}</td><td>{change:.1f}</td>" in page
    assert 'class="eta-accuracy"' in page
    assert "The independent monitor saw no violation of S1–S5." in page


def test_report_on_a_none_run_says_what_is_missing(grid5_heavy: Path) -> None:
    folder = grid5_heavy / "none-s1"
    result = CliRunner().invoke(main, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    page = (folder / "report.html").read_text()
    assert len(re.findall(r'<figure class="time-space-diagram"', page)) == 1
    assert "No ETA predictions for this EV" in page
    assert "preempt" not in "".join(re.findall(r'id="j\d+-[a-z-]+"', page))  # none preempts nothing


def test_the_diagram_draws_each_signal_state_over_the_step_it_governed(grid5_heavy: Path) -> None:
    """SUMO switches a signal at the start of a step; the state read after the step ending at T
    is the one the vehicles moved under since T − 1. The none run's EV, which obeys the signals,
    stops at red stop lines of this route and crosses some in the very step that turned them
    green (junction #7 in this seed): drawn from when each state was read, those crossings fell
    in red bars; drawn from when it governed, none does."""
    from controller.report.figures import governing, movement_intervals
    from controller.report.load import load_run

    run = load_run(grid5_heavy / "none-s1")
    ev_id = str(run.summary["evs"][0]["id"])
    leg = run.evs[ev_id].leg
    assert leg is not None
    crossings = run.crossings(ev_id)

    def colour_at(changes: list[tuple[float, str]], links: list[int], t: float) -> str:
        spans = movement_intervals(changes, links, t - 30.0, t + 30.0)
        return next(c for s, e, c in spans if s <= t < e)

    as_read, as_governed = [], []
    for j in leg.junctions:
        t = crossings[j["index"]]
        changes = run.signals[j["tls"]]
        as_read.append(colour_at(changes, j["links"], t))
        as_governed.append(colour_at(governing(changes, 1.0), j["links"], t))
    assert "red" in as_read  # what the diagram showed before: a lawful crossing drawn on red
    assert "red" not in as_governed and "off" not in as_governed, as_governed
