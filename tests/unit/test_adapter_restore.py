"""SumoAdapter.restore_all over a connection broken inside a TraCI exchange: no traceback, no hang
on the rest, and the signals left switched said."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from controller.sim.adapter import SumoAdapter


class _Lights:
    def __init__(self, fail: dict[str, BaseException]) -> None:
        self.fail = fail
        self.set: list[tuple[str, str]] = []

    def setProgram(self, tls_id: str, program: str) -> None:  # (TraCI's name)
        if tls_id in self.fail:
            raise self.fail[tls_id]
        self.set.append((tls_id, program))


class _Api:
    def __init__(self, fail: dict[str, BaseException]) -> None:
        self.trafficlight = _Lights(fail)


def _adapter(fail: dict[str, BaseException]) -> tuple[SumoAdapter, _Api]:
    sim = SumoAdapter([], backend="traci")
    api = _Api(fail)
    sim._api = api
    sim._original_program.update({"A": "0", "B": "0", "C": "night"})
    return sim, api


def test_a_signal_sumo_refuses_is_skipped_and_the_others_restored() -> None:
    import traci.connection

    sim, api = _adapter({"A": traci.connection.TraCIException("no such program")})
    assert sim.restore_all() == ["B", "C"]
    assert api.trafficlight.set == [("B", "0"), ("C", "night")]
    assert sim.preempted == ()


@pytest.mark.parametrize("broken", [struct.error("unpack requires a buffer of 4 bytes"), KeyError(0x2c),
                                    TimeoutError("timed out")])
def test_a_broken_connection_stops_the_hand_back_and_names_what_is_left(broken: Any,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    sim, api = _adapter({"B": broken})
    assert sim.restore_all() == ["A"]  # (no traceback; C not tried over a connection that reads wrong)
    assert api.trafficlight.set == [("A", "0")]
    err = capsys.readouterr().err
    assert "connection to SUMO broke" in err and "B, C" in err, err
