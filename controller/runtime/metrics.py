"""Counters of the live service in Prometheus' text exposition format (written by hand: a few
counters, gauges and one histogram need no client library)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

TICK_BUCKETS_MS = (0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0)
# the methods counted by name; any other a client sends is counted as "other" (a label value per
# made-up method would let a client grow the exposition without bound)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class Histogram:
    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        for i, b in enumerate(self.buckets):
            if value <= b:
                self.counts[i] += 1
        self.total += 1
        self.sum += value


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ticks = 0
        self.tick_ms = Histogram(TICK_BUCKETS_MS)
        self.over_budget = 0
        self.requests: dict[tuple[str, str, int], int] = {}  # (route, method, status) -> count

    def tick(self, ms: float, budget_ms: float | None) -> None:
        with self._lock:
            self.ticks += 1
            self.tick_ms.observe(ms)
            if budget_ms is not None and ms > budget_ms:
                self.over_budget += 1

    def request(self, method: str, route: str, status: int) -> None:
        with self._lock:
            key = (route, method if method in HTTP_METHODS else "other", status)
            self.requests[key] = self.requests.get(key, 0) + 1

    def render(self, gauges: Mapping[str, tuple[str, float]]) -> str:
        """The exposition text; ``gauges`` maps a metric name to (help, value)."""
        out: list[str] = []
        with self._lock:
            out += ["# HELP greenwave_ticks_total Control ticks run.", "# TYPE greenwave_ticks_total counter",
                    f"greenwave_ticks_total {self.ticks}"]
            out += ["# HELP greenwave_ticks_over_budget_total Ticks longer than the wall time of one step.",
                    "# TYPE greenwave_ticks_over_budget_total counter",
                    f"greenwave_ticks_over_budget_total {self.over_budget}"]
            h = self.tick_ms
            name = "greenwave_tick_latency_ms"
            out += [f"# HELP {name} Wall time of one control tick (SUMO step, controller, publishing) in ms.",
                    f"# TYPE {name} histogram"]
            out += [f'{name}_bucket{{le="{b:g}"}} {c}' for b, c in zip(h.buckets, h.counts, strict=True)]
            out += [f'{name}_bucket{{le="+Inf"}} {h.total}', f"{name}_sum {h.sum:.6f}", f"{name}_count {h.total}"]
            out += ["# HELP greenwave_http_requests_total HTTP requests answered, by route, method and status.",
                    "# TYPE greenwave_http_requests_total counter"]
            for (route, method, status), n in sorted(self.requests.items()):
                out.append(f'greenwave_http_requests_total{{route="{_label(route)}",method="{method}",'
                           f'status="{status}"}} {n}')
        for gname, (help_, value) in gauges.items():
            out += [f"# HELP {gname} {help_}", f"# TYPE {gname} gauge", f"{gname} {value:g}"]
        return "\n".join(out) + "\n"


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
