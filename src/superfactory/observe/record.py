"""What ``observe/`` reads from a finished run: a structural interface, so observers never import a world.

The twin's :class:`superfactory.sim.twin.TwinResult` satisfies :class:`RunRecord` (and its per-job records
:class:`JobRecord`); a live plane that keeps the same event log and per-job records can be reported by the very
same code. Every summary metric is folded from ``events`` (see :mod:`superfactory.observe.fold`); the per-job and
per-factory-hour records feed the tables and plots that show them row by row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from superfactory.domain.events import Event
from superfactory.domain.job import TrainingJob
from superfactory.scenario.model import Scenario


class JobRecord(Protocol):
    """One job's record at the end of a run (times in s since the run started; -1 = never)."""

    job: TrainingJob
    state: Any  # a JobLifecycle value
    factory: int  # index of the factory it holds nodes in, -1 if none
    last_factory: int
    progress_s: float  # productive seconds retained
    first_start_s: int
    completed_s: int
    interruptions: int
    planned_stops: int
    preemptions: int
    lost_work_s: float
    recovery_s: float


class RunRecord(Protocol):
    """A finished run: its scenario, the policy and seed, the event log, and per-job / per-hour records."""

    scenario: Scenario
    policy: str
    seed: int
    events: Sequence[Event]
    jobs: Sequence[Any]  # JobRecord each
    hours: Sequence[Any]  # per factory-hour accounting rows (factory, hour, energy, cost, carbon, prices)
    factory_busy_gpu_s: Mapping[str, float]
    factory_gpu_s: Mapping[str, float]
    waiting_reasons: Mapping[str, str]
    reason_history: Mapping[str, list[tuple[int, str]]]
    decisions: int
    kernel_events: int
    wall_seconds: float
    inference: Any  # serving results, or None when the scenario serves nothing
    shadow: Mapping[str, Any]
    outcomes: Mapping[str, int]
