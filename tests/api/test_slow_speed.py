"""At a slow ``--speed`` a tick lasts long in wall time: the API waits for a command's answer
(which comes after the next tick) for as long as two ticks take, on top of its fixed wait, instead
of answering 503 for work the simulation then carries out (a client retrying without an id would
dispatch a second escort)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import pytest

import controller.runtime.service as service_module
from controller.api.app import _answer
from controller.errors import RequestError
from controller.runtime.service import SimService
from controller.runtime.service_model import Dispatch
from tests.api.conftest import in_process_service

pytestmark = pytest.mark.sumo


def test_the_answer_wait_covers_two_ticks_at_a_slow_speed(
    tiny_scenario: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a 1 s step at --speed 0.5 is a 2 s tick; with the fixed wait cut to 0.2 s, only the
    # part that scales with the tick lets the dispatch be answered
    monkeypatch.setattr(service_module, "ANSWER_TIMEOUT_S", 0.2)
    service: SimService = in_process_service(tiny_scenario, tmp_path, speed=0.5)
    assert service.answer_timeout_s == pytest.approx(0.2 + 2 * 2.0)
    service.start()
    try:
        route = ("left1A1", "A1B1", "B1C1", "C1right1")
        answer = asyncio.run(_answer(service.submit(Dispatch(escort_id="amb", route=route)), service.answer_timeout_s))
        assert answer.id == "amb"
        assert list(service.state.escorts) == ["amb"]
    finally:
        service.stop()


def test_a_dispatch_carried_out_as_the_service_stops_is_answered_with_the_escort_not_503(
    tiny_scenario: Path, tmp_path: Path
) -> None:
    # at a slow speed the dispatch waits for the next tick; the stop comes first: the client was
    # told 503 (not done) while the audit log had the dispatch and then its cancel
    service: SimService = in_process_service(tiny_scenario, tmp_path, speed=0.5)
    service.start()
    try:
        route = ("left1A1", "A1B1", "B1C1", "C1right1")
        future = service.submit(Dispatch(escort_id="amb", route=route, tracking="external"))
        for _ in range(200):  # until the service thread has carried it out
            if "amb" in {row.escort_id for row in service.audit.since(0, kind="dispatch")}:
                break
            time.sleep(0.01)
    finally:
        service.stop()
    answer = future.result(timeout=5)
    assert answer.id == "amb" and answer.state == "cancelled" and answer.reason == "service stopped"


def test_a_dispatch_carried_out_on_the_last_step_before_the_end_is_answered(tiny_scenario: Path,
                                                                          tmp_path: Path) -> None:
    # the end's drain ran no tick (nothing preempted): the dispatch, carried out and in the
    # audit log, waited for a tick that never came and was answered 503 after the timeout
    service: SimService = in_process_service(tiny_scenario, tmp_path, speed=2.0, end_s=6.0)
    service.start()
    try:
        futures = []
        for k in range(60):  # one every 0.1 s until the end (6 simulated s at 2x: 3 s)
            futures.append(service.submit(Dispatch(escort_id=f"e{k}", route=("A1left1",), tracking="external")))
            time.sleep(0.1)
        answers = []
        for f in futures:
            try:
                answers.append(f.result(timeout=10))
            except (RequestError, FutureTimeout) as e:  # a refusal after the end (409) is an answer too
                answers.append(e)
    finally:
        service.stop()
    done = [a for a in answers if not isinstance(a, Exception)]
    refused = [a for a in answers if isinstance(a, Exception)]
    assert done, answers
    assert all("the simulation ended" in str(e) for e in refused), refused
