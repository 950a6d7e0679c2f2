"""The audit log of the live service: every dispatch, preemption decision, hand-back, cancel and
rejected request, in SQLite (stdlib ``sqlite3``), so it survives a restart.

Rows are append-only: ``id`` (increasing, the cursor of ``since``), ``at`` (wall clock, UTC ISO
8601), ``t_s`` (simulation time, when there is one), ``kind``, ``escort_id``, ``tls_id`` and
``detail`` (JSON). One connection, used under a lock from the simulation thread and the API.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from controller import MAX_ID_LENGTH
from controller.errors import GreenwaveError

KINDS = ("dispatch", "decision", "handback", "cancel", "arrival", "reroute", "rejected", "service")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    t_s REAL,
    kind TEXT NOT NULL,
    escort_id TEXT,
    tls_id TEXT,
    detail TEXT NOT NULL
)
"""


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: str
    t_s: float | None
    kind: str
    escort_id: str | None
    tls_id: str | None
    detail: dict[str, Any]


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise GreenwaveError(f"audit database '{path}': {e}") from None
        self._lock = threading.Lock()

    def record(
        self,
        kind: str,
        *,
        t_s: float | None = None,
        escort_id: str | None = None,
        tls_id: str | None = None,
        **detail: Any,
    ) -> int:
        if kind not in KINDS:
            raise ValueError(f"unknown audit kind {kind!r}")
        at = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO audit (at, t_s, kind, escort_id, tls_id, detail) VALUES (?, ?, ?, ?, ?, ?)",
                (at, t_s, kind, escort_id, tls_id, json.dumps(detail, sort_keys=True, default=str)),
            )
            return int(cur.lastrowid or 0)

    def since(self, since_id: int = 0, limit: int = 1000, kind: str | None = None) -> list[AuditEntry]:
        query = "SELECT id, at, t_s, kind, escort_id, tls_id, detail FROM audit WHERE id > ?"
        args: list[Any] = [since_id]
        if kind is not None:
            query += " AND kind = ?"
            args.append(kind)
        query += " ORDER BY id LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return [AuditEntry(r[0], r[1], r[2], r[3], r[4], r[5], _encodable(json.loads(r[6]))) for r in rows]

    def highest_number(self, prefix: str) -> int:
        """The highest n of the escorts dispatched under the id ``<prefix><n>`` in the whole log
        (earlier runs too), 0 when there is none. An n whose successor would make an id longer
        than an id may be (``MAX_ID_LENGTH``; only a client's own id can be that long) is not
        counted: counting on from it could not give a valid id."""
        with self._lock:
            rows = self._db.execute("SELECT escort_id FROM audit WHERE kind = 'dispatch' AND escort_id GLOB ?",
                                    (f"{prefix}[0-9]*",)).fetchall()
        numbers = (str(r[0])[len(prefix):] for r in rows)
        return max((int(n) for n in numbers if n.isascii() and n.isdigit()
                    and len(prefix) + len(str(int(n) + 1)) <= MAX_ID_LENGTH), default=0)

    def unfinished_session(self) -> AuditEntry | None:
        """The last ``service`` row where it is a ``started`` one: a session that recorded no stop
        (it was killed: SIGKILL, out of memory, a power cut), or one still running on this log."""
        with self._lock:
            row = self._db.execute("SELECT id, at, t_s, kind, escort_id, tls_id, detail FROM audit "
                                   "WHERE kind = 'service' ORDER BY id DESC LIMIT 1").fetchone()
        if row is None:
            return None
        entry = AuditEntry(row[0], row[1], row[2], row[3], row[4], row[5], _encodable(json.loads(row[6])))
        return entry if isinstance(entry.detail, dict) and entry.detail.get("event") == "started" else None

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _encodable(value: Any) -> Any:
    """``value`` with every text encodable as UTF-8: a lone surrogate a client sent (kept escaped
    in the row's JSON) is shown as its escape. A log holding one could not be read back."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, dict):
        return {_encodable(k): _encodable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encodable(v) for v in value]
    return value
