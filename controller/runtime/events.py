"""Events of the live service (dispatch, ETA updates, per-junction stages, arrival, cancel,
errors) in a bounded, thread-safe ring buffer with increasing ids; the API streams them as
server-sent events and a client resumes from the last id it saw."""

from __future__ import annotations

import functools
import json
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Event:
    id: int
    type: str
    data: dict[str, Any]

    @functools.cached_property
    def frame(self) -> str:
        """The event as a server-sent event, encoded once for every client streaming it (200
        clients of an escort on a 2,000-edge route each encoded its 145 KB ETA events: /healthz
        took 49 s)."""
        return f"id: {self.id}\nevent: {self.type}\ndata: {json.dumps(self.data, default=str)}\n\n"


class EventBus:
    """``first_id``: the id of the first event. The service starts from its start time in
    microseconds, so that ids keep increasing across restarts and a client that reconnects with
    the last id it saw before a restart gets every event of the new run."""

    def __init__(self, keep: int = 10_000, first_id: int = 1) -> None:
        self._events: deque[Event] = deque(maxlen=keep)
        self._lock = threading.Lock()
        self._next = self._first = max(first_id, 1)

    def publish(self, type_: str, **data: Any) -> Event:
        with self._lock:
            event = Event(self._next, type_, data)
            self._next += 1
            self._events.append(event)
            return event

    @property
    def last_id(self) -> int:
        with self._lock:
            return self._next - 1

    def since(self, last_id: int) -> list[Event]:
        """Events with an id above ``last_id`` still kept, oldest first."""
        with self._lock:
            if not self._events or self._events[-1].id <= last_id:
                return []
            return [e for e in self._events if e.id > last_id]

    def since_counting_lost(self, last_id: int) -> tuple[int, list[Event]]:
        """:meth:`since`, and how many events after ``last_id`` are no longer kept (the buffer
        holds the last ``keep``: a client that far behind has lost the others)."""
        with self._lock:
            if not self._events or self._events[-1].id <= last_id:
                return 0, []
            lost = max(0, self._events[0].id - max(last_id + 1, self._first))
            return lost, [e for e in self._events if e.id > last_id]
