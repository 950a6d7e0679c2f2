"""The one error tree of greenwave.

Every error a user can cause is a :class:`GreenwaveError`; its message names the file,
field or id that is wrong, and the CLI maps it to ``exit_code`` without a traceback::

    GreenwaveError                 exit 2, user input or environment
    ├── ScenarioError              a scenario file: missing, malformed, invalid field
    ├── NetworkError               a network: missing edge, unreadable net or additional file
    ├── RouteError                 no route between origin and destination
    ├── CorridorError              a signal program the corridor cannot serve
    ├── SimulationError            SUMO refused the configuration or died
    │   └── SumoCrashed            exit 1: SUMO ended without saying why (killed, crashed)
    ├── OutputError                exit 1: an output could not be written (a full disk)
    └── RequestError               an HTTP API request that cannot be served (``status``: 404 unknown
                                   id, 409 conflict, 422 invalid; the API answers it as JSON)
"""

from __future__ import annotations

import errno


class GreenwaveError(Exception):
    """Base of every error greenwave reports to a user."""

    exit_code: int = 2


class ScenarioError(GreenwaveError):
    """A scenario file or its fields are missing or invalid."""


class NetworkError(GreenwaveError):
    """A network file or an id in it (edge, lane, traffic light) is missing or invalid."""


class RouteError(GreenwaveError):
    """No route connects the requested origin and destination."""


class CorridorError(GreenwaveError):
    """A signal on the route has a program that cannot serve the emergency vehicle's movement."""


class SimulationError(GreenwaveError):
    """SUMO rejected the configuration or stopped unexpectedly."""


class SumoCrashed(SimulationError):
    """The SUMO process ended during the run without an error message: killed or crashed, not
    the input's fault (exit 1, as a failed run; a refusal of the input is exit 2)."""

    exit_code = 1


class OutputError(GreenwaveError):
    """An output could not be written for want of space (a full disk, a quota reached): the run
    failed, its input was not at fault (exit 1)."""

    exit_code = 1


def is_disk_full(e: BaseException) -> bool:
    """Is ``e`` a write refused for want of space (ENOSPC, EDQUOT)?"""
    return isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)


class RequestError(GreenwaveError):
    """An API request names something unknown (404), conflicts with the state (409) or is invalid (422)."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status
