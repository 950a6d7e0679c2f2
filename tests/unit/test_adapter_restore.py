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


def _gone() -> BaseException:
    import traci.exceptions

    # (what TraCI raises where SUMO does not answer in time, stopped or stuck: it was taken for
    # one signal's own error, every call waited its 10 s, and "signals handed back" was said)
    gone: BaseException = traci.exceptions.FatalTraCIError("Connection closed by SUMO.")
    return gone


@pytest.mark.parametrize("broken", [struct.error("unpack requires a buffer of 4 bytes"), KeyError(0x2c),
                                    TimeoutError("timed out"), _gone()])
def test_a_broken_connection_stops_the_hand_back_and_names_what_is_left(broken: Any,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    sim, api = _adapter({"B": broken})
    assert sim.restore_all() == ["A"]  # (no traceback; C not tried over a connection that reads wrong)
    assert api.trafficlight.set == [("A", "0")]
    err = capsys.readouterr().err
    assert "connection to SUMO broke" in err and "B, C" in err, err
    assert sim.left_switched == ("B", "C")


def test_an_interrupt_that_left_signals_switched_says_which(capsys: pytest.CaptureFixture[str]) -> None:
    # the adapter's exit puts them on the interrupt, for the CLI: "signals NOT handed back"
    sim, _api = _adapter({"A": _gone()})
    sim._api.close = lambda: None
    interrupt = KeyboardInterrupt()
    sim.__exit__(KeyboardInterrupt, interrupt, None)
    assert interrupt.left_switched == ("A", "B", "C")  # type: ignore[attr-defined]
    # a SUMO known to have ended took its signals with it: nothing is asked of it, nothing said
    sim, api = _adapter({})
    sim.ended = True
    assert sim.restore_all() == [] and api.trafficlight.set == [] and sim.left_switched == ()
    assert "connection to SUMO broke" not in capsys.readouterr().err.split("B, C")[-1]
