"""The audit trail: every sovereignty refusal, commit, restore, key rotation and shred, as JSON lines.

Events are appended to a JSON-lines file (one object per line, flushed and fsync-ed so a crash does not lose a
refusal that was reported) and also kept in memory so callers can return them (receipts carry theirs).
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["AuditEvent", "AuditLog"]


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One audited action.

    Attributes:
        kind: ``sovereignty_refusal``, ``save_committed``, ``save_failed``, ``restore``, ``repair``,
            ``gc_deleted``, ``key_rotated``, ``key_destroyed``, ``checkpoint_shredded``.
        at_unix_s: wall-clock time of the event, seconds since the epoch.
        details: JSON-serialisable facts (checkpoint id, target, reason …).
    """

    kind: str
    at_unix_s: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """One compact JSON line (no newline)."""
        return json.dumps({"kind": self.kind, "at_unix_s": self.at_unix_s, **self.details}, sort_keys=True)


class AuditLog:
    """Appends audit events to a JSON-lines file (or memory only when ``path`` is None). Thread-safe."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.events: list[AuditEvent] = []
        self._lock = threading.Lock()

    def emit(self, kind: str, **details: Any) -> AuditEvent:
        """Record an event durably and return it."""
        event = AuditEvent(kind, time.time(), details)
        with self._lock:
            self.events.append(event)
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(event.to_json() + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
        return event

    def read(self) -> list[dict[str, Any]]:
        """All events in the file (for tests and the CLI)."""
        if self.path is None or not self.path.exists():
            return [json.loads(e.to_json()) for e in self.events]
        with open(self.path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
