"""What every live service is handed: the store's engine, a clock, the settings and small caches.

Fleet time (``now_s``, what policies see) is whole seconds since the store's epoch, written once when the store
is first opened (``meta.epoch_unix_s``), so it survives restarts and is shared by every server process.
:class:`WallClock` is the production clock; tests pass a :class:`ManualClock` they advance.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import sqlalchemy as sa

from superfactory.domain.factory import Factory, WanLink
from superfactory.live.store import tables as t


class LiveClock(Protocol):
    """The loop's :class:`~superfactory.loop.ports.Clock` plus wall time for timestamps and leases."""

    def now_s(self) -> int: ...

    def unix_s(self) -> float: ...


class WallClock:
    """Wall time; ``now_s`` counts whole seconds from ``epoch_unix_s``."""

    def __init__(self, epoch_unix_s: float) -> None:
        self.epoch_unix_s = epoch_unix_s

    def unix_s(self) -> float:
        return time.time()

    def now_s(self) -> int:
        return int(time.time() - self.epoch_unix_s)


class ManualClock:
    """A clock a test sets: ``now_s`` is ``t``; wall time is ``epoch_unix_s + t``."""

    def __init__(self, t: float = 0.0, epoch_unix_s: float = 1_700_000_000.0) -> None:
        self.t = t
        self.epoch_unix_s = epoch_unix_s

    def advance(self, dt_s: float) -> None:
        self.t += dt_s

    def unix_s(self) -> float:
        return self.epoch_unix_s + self.t

    def now_s(self) -> int:
        return int(self.t)


@dataclass(frozen=True)
class Settings:
    """Tunables of the control plane (all have safe defaults).

    Attributes:
        suspect_after_s: the short lease timeout: a factory silent this long gets no new work.
        lost_after_s: the long lease timeout: a factory silent this long has its jobs requeued.
        heartbeat_interval_s: how often agents are asked to heartbeat.
        cycle_s: the scheduler's period (it also runs soon after each submission).
        max_attempts: placements a job may get before a further failure fails it for good.
        default_policy: the placement policy used until an admin picks another.
    """

    suspect_after_s: float = 30.0
    lost_after_s: float = 300.0
    heartbeat_interval_s: float = 5.0
    cycle_s: float = 2.0
    max_attempts: int = 10
    default_policy: str = "gang"


@dataclass
class FleetCache:
    version: str
    factories: tuple[Factory, ...]
    links: tuple[WanLink, ...]
    loaded_unix_s: float
    job_defaults: dict[str, Any] = field(default_factory=dict)  # the imported scenario's ``defaults:``
    compiled_defaults: Any = None  # ``job_defaults`` validated once (services/jobs.py)


@dataclass
class Live:
    """The shared context of services, the scheduler and the API."""

    engine: sa.Engine
    clock: LiveClock
    settings: Settings = field(default_factory=Settings)
    fleet_cache: FleetCache | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    wake: threading.Event = field(default_factory=threading.Event)  # set on submit: run the scheduler soon
    extras: dict[str, Any] = field(default_factory=dict)


def ensure_epoch(engine: sa.Engine, now_unix_s: float) -> float:
    """The store's epoch, writing ``now_unix_s`` as the epoch if the store has none yet."""
    with engine.begin() as conn:
        row = conn.execute(sa.select(t.meta.c.value).where(t.meta.c.key == "epoch_unix_s")).first()
        if row is not None:
            return float(row[0])
        conn.execute(t.meta.insert().values(key="epoch_unix_s", value=repr(now_unix_s)))
        conn.execute(t.meta.insert().values(key="fence", value="0"))
        conn.execute(t.meta.insert().values(key="fleet_version", value="0"))
        return now_unix_s
