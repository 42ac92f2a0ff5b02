"""What became of an action: every world reports one :class:`ActionOutcome` per action it was given.

A plan is a request, not a fact. The twin applies valid actions at once; a live agent may refuse one (the
node is gone, the job already finished), fail while carrying it out, or not answer in time. Policies must not
keep state that assumes success: they receive the outcomes of their own actions
(:meth:`~superfactory.policy.registry.Policy.observe`) and rebuild everything else from snapshots.

Outcomes are also domain events (``ActionApplied``, ``ActionPartial``, ``ActionRefused``, ``ActionFailed``,
``ActionTimedOut``; see :func:`outcome_event`), so the record of a run shows every decision's fate.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from superfactory.domain.events import Event, EventKind


class OutcomeStatus(StrEnum):
    """How an action ended."""

    APPLIED = "applied"  # carried out in full
    PARTIAL = "partial"  # carried out in part (e.g. 3 of 4 replicas); ``reason`` says what is missing
    REFUSED = "refused"  # rejected before anything changed (stale plan, invalid target, agent said no)
    FAILED = "failed"  # started, then failed; the world rolled back what it could
    TIMED_OUT = "timed_out"  # no answer within the world's deadline; treated as not applied


#: statuses after which the action's effect is in force (fully or in part)
IN_FORCE = frozenset({OutcomeStatus.APPLIED, OutcomeStatus.PARTIAL})

_KIND = {
    OutcomeStatus.APPLIED: EventKind.ACTION_APPLIED,
    OutcomeStatus.PARTIAL: EventKind.ACTION_PARTIAL,
    OutcomeStatus.REFUSED: EventKind.ACTION_REFUSED,
    OutcomeStatus.FAILED: EventKind.ACTION_FAILED,
    OutcomeStatus.TIMED_OUT: EventKind.ACTION_TIMED_OUT,
}


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """The fate of one action.

    Attributes:
        action_id: the id the loop stamped on the action (``"<policy>:<decision>:<index>"``).
        status: applied, partial, refused, failed or timed out.
        job_id: the job (or service) the action was about.
        factory_id: the factory it targeted, or ``""``.
        reason: why it was not (fully) applied, in words; ``""`` when applied.
        time_s: when the world knew the outcome.
    """

    action_id: str
    status: OutcomeStatus
    job_id: str = ""
    factory_id: str = ""
    reason: str = ""
    time_s: int = 0

    @property
    def in_force(self) -> bool:
        """True when the action's effect is (at least partly) in force."""
        return self.status in IN_FORCE


def outcome_event(o: ActionOutcome) -> Event:
    """The domain event that records ``o``."""
    return Event(o.time_s, _KIND[o.status], o.job_id, o.factory_id, cause=o.reason, action=o.action_id)


def outcome_of(event: Event) -> ActionOutcome | None:
    """The outcome an ``Action*`` event records, or ``None`` for any other event."""
    for status, kind in _KIND.items():
        if event.kind is kind:
            return ActionOutcome(event.action, status, event.job, event.factory, event.cause, event.time_s)
    return None
