"""Issue 12, session 7: the loop stamps a ``Place`` and the ``Plan`` through their constructors; the result must be
exactly what ``dataclasses.replace`` gave, for every kind of action."""

from __future__ import annotations

import dataclasses

from superfactory.domain.fleet import Allocate, Migrate, Place, Plan, Preempt, SwapNodes, SyncWeights
from superfactory.loop.decision import _stamp


def _by_replace(plan: Plan, prefix: str) -> Plan:
    acts = tuple(dataclasses.replace(a, action_id=f"{prefix}:{i}") for i, a in enumerate(plan.actions))
    return dataclasses.replace(plan, actions=acts)


def test_stamp_equals_replace() -> None:
    plan = Plan(
        actions=(Place("j1", "f1", (0, 1, 2)), Place("j2", "f2", (5,), hot_swap=True), Preempt("j3", "why"),
                 Migrate("j4", "f3", (7, 8), "cheaper"), SwapNodes("j5", "f1", ((1, 9),), "degraded"),
                 Allocate("svc", (("f1", "H100-SXM", 2),)), SyncWeights("svc", "f2")),
        waiting=(("j6", "full"),), refusals=(("j7", "f1", "sovereignty"),), forecasts=(("svc/p", "rate_rps", 1.5),))
    got, want = _stamp(plan, "greedy:3"), _by_replace(plan, "greedy:3")
    assert got == want
    assert [type(a) for a in got.actions] == [type(a) for a in want.actions]
    assert [a.action_id for a in got.actions] == [f"greedy:3:{i}" for i in range(7)]
    assert got.actions[1].hot_swap is True and got.actions[0].nodes == (0, 1, 2)


def test_stamp_leaves_an_empty_plan_alone() -> None:
    plan = Plan(waiting=(("j", "full"),))
    assert _stamp(plan, "p:0") is plan
