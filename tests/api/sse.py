"""A small server-sent events reader for the tests (a thread collecting parsed events)."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx


class EventCollector:
    def __init__(self, url: str, token: str, since: int = 0) -> None:
        self.url, self.token, self.since = url, token, since
        self.events: list[dict[str, Any]] = []  # {"id", "event", "data"}
        self.comments: list[str] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self.status: int | None = None
        self.content_type = ""
        self.error: httpx.HTTPError | None = None

    def __enter__(self) -> EventCollector:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        self._thread.join(10)

    def _read(self) -> None:
        try:
            self._stream()
        except httpx.HTTPError as e:  # the server went away (stopped at the end of a test)
            self.error = e

    def _stream(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        with httpx.Client(timeout=httpx.Timeout(10.0, read=30.0)) as c, c.stream(
            "GET", f"{self.url}/v1/events", params={"since": self.since}, headers=headers
        ) as response:
            self.status = response.status_code
            self.content_type = response.headers.get("content-type", "")
            fields: dict[str, str] = {}
            for line in response.iter_lines():
                if self._closed.is_set():
                    return
                if line.startswith(":"):
                    self.comments.append(line)
                elif not line:
                    if "data" in fields:
                        with self._lock:
                            self.events.append({"id": int(fields.get("id", "0")), "event": fields.get("event", ""),
                                                "data": json.loads(fields["data"])})
                    fields = {}
                else:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["event"] == kind]

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events)
