"""The decision loop: observe the fleet, ask the policy, act on the plan.

:class:`DecisionLoop` is world-agnostic. The twin calls :meth:`DecisionLoop.step` at decision points
(periodic cycles and state changes); the live plane calls it from its scheduler service on a wall-clock timer.
The loop remembers why each job is waiting so ``--explain`` and the API can answer "why is my job not
scheduled".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from superfactory.domain.fleet import Plan
from superfactory.loop.ports import Actuator, FleetView
from superfactory.policy.registry import Policy


@dataclass
class DecisionLoop:
    """observe -> decide -> act over the ports.

    Attributes:
        policy: the placement policy.
        view: builds snapshots.
        actuator: applies plans.
        rng: the only randomness the policy gets (seeded by the caller).
        waiting_reasons: latest reason per waiting job id.
        reason_history: per job, ``(time_s, reason)`` each time its waiting reason changed (at most
            ``MAX_REASONS_PER_JOB`` kept, the earliest ones), so ``--explain`` can tell the whole story.
        cycles: number of decisions made.
    """

    MAX_REASONS_PER_JOB = 40

    policy: Policy
    view: FleetView
    actuator: Actuator
    rng: np.random.Generator
    waiting_reasons: dict[str, str] = field(default_factory=dict)
    reason_history: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    cycles: int = 0

    def step(self) -> Plan:
        """Run one observe -> decide -> act cycle and return the plan that was applied."""
        snapshot = self.view.snapshot()
        plan = self.policy.decide(snapshot, self.rng)
        self.actuator.apply(plan)
        self.cycles += 1
        for job_id, reason in plan.waiting:
            if self.waiting_reasons.get(job_id) != reason:
                hist = self.reason_history.setdefault(job_id, [])
                if len(hist) < self.MAX_REASONS_PER_JOB:
                    hist.append((snapshot.now_s, reason))
            self.waiting_reasons[job_id] = reason
        for action in plan.actions:
            self.waiting_reasons.pop(action.job_id, None)
        return plan
