"""When geo solves its global assignment (policy/geo_cadence.py), and the cheap placement between full solves.

- :class:`SolveCadence` asks for a full solve on the first decision, a factory going up or down, a material move
  of a factory's 24-hour cost (from the next clock hour on) or current-hour cost (at once), capacity freed at a
  site some job is known to want (at most once per clock hour), and on its timer; not on small drifts, nor on
  capacity freed where no job wants to go.
- geo's plain-Python placement of pending work between full solves gives the plan
  :func:`superfactory.policy.solver.greedy` gives on the same columns, at every such decision of a busy run.
- Between full solves no running job is moved or paused.
"""

from __future__ import annotations

import dataclasses

import pytest

from superfactory.domain.fleet import Migrate, Preempt
from superfactory.policy import solver as S
from superfactory.policy.geo import GeoPolicy
from superfactory.policy.geo_cadence import SolveCadence
from superfactory.scenario.loader import load_scenario
from superfactory.sim.twin import run_twin

UP = (True, True, True)
SIZE = [1000, 1000, 1000]


def _solved(c: SolveCadence, now: int = 0) -> SolveCadence:
    c.solved(now, UP, [100.0, 50.0, 60.0], [100.0, 50.0, 60.0], [0, 0, 0])
    return c


def test_first_decision_and_timer_need_a_full_solve() -> None:
    c = SolveCadence(full_resolve_s=3600)
    assert c.due(0, UP, [1.0] * 3, [1.0] * 3, [0] * 3, SIZE)
    _solved(c, now=100)
    assert not c.due(3699, UP, [100.0, 50.0, 60.0], [100.0, 50.0, 60.0], [0, 0, 0], SIZE)
    assert c.due(3700, UP, [100.0, 50.0, 60.0], [100.0, 50.0, 60.0], [0, 0, 0], SIZE) and c.reason == "timer"


def test_material_changes_only() -> None:
    c = _solved(SolveCadence())  # fleet mean of the 24-hour cost: 70
    same = ([100.0, 50.0, 60.0], [100.0, 50.0, 60.0], [0, 0, 0])
    assert not c.due(60, UP, *same, SIZE) and c.reason == ""
    assert c.due(60, (True, False, True), *same, SIZE) and c.reason == "up/down"
    assert not c.due(60, UP, [103.0, 50.0, 60.0], same[1], same[2], SIZE)  # 3 < 5 % of 70
    assert not c.due(60, UP, [104.0, 50.0, 60.0], same[1], same[2], SIZE)  # 4 > 3.5, but the solve's hour
    assert c.due(3600, UP, [104.0, 50.0, 60.0], same[1], same[2], SIZE) and c.reason == "cost"
    assert not c.due(60, UP, same[0], [130.0, 50.0, 60.0], same[2], SIZE)  # 30 < 50 % of 70
    assert c.due(60, UP, same[0], [1000.0, 50.0, 60.0], same[2], SIZE) and c.reason == "spike"


def test_freed_capacity_counts_only_where_a_job_wants_it() -> None:
    r24 = [100.0, 50.0, 60.0]
    c = SolveCadence(capacity_change=0.1)
    c.solved(0, UP, r24, r24, [0, 0, 0], wanted={1: 64})  # a running job left at 0 would rather run at 1
    assert not c.due(60, UP, r24, r24, [0, 150, 0], SIZE)  # 15 % freed at 1, but within the solve's hour
    assert c.due(3600, UP, r24, r24, [0, 150, 0], SIZE) and c.reason == "capacity"  # the next hour
    assert not c.due(3600, UP, r24, r24, [0, 90, 0], SIZE)  # 9 %: not material
    assert not c.due(3600, UP, r24, r24, [0, 0, 500], SIZE)  # freed where no job is known to want to go
    c.solved(0, UP, r24, r24, [0, 0, 0], wanted={1: 512})
    assert not c.due(3600, UP, r24, r24, [0, 150, 0], SIZE)  # too little for the smallest job wanting it
    c.solved(0, UP, r24, r24, [0, 0, 0])  # nothing wanted: freed capacity is left to the cheap placement
    assert not c.due(3600, UP, r24, r24, [0, 1000, 1000], SIZE)
    c.want(2, 8)  # a cheap placement started a job elsewhere while factory 2 (cheaper) was full
    assert c.due(3600, UP, r24, r24, [0, 0, 150], SIZE) and c.reason == "capacity"
    with pytest.raises(ValueError):
        SolveCadence(full_resolve_s=0)


def test_cost_moves_wait_for_the_next_hour_spikes_do_not() -> None:
    c = _solved(SolveCadence(), now=7200 + 60)
    same = ([100.0, 50.0, 60.0], [100.0, 50.0, 60.0], [0, 0, 0])
    assert not c.due(7200 + 600, UP, [110.0, 50.0, 60.0], same[1], same[2], SIZE)  # the solve's hour
    assert c.due(3 * 3600, UP, [110.0, 50.0, 60.0], same[1], same[2], SIZE) and c.reason == "cost"
    assert c.due(7200 + 600, UP, same[0], [1000.0, 50.0, 60.0], same[2], SIZE) and c.reason == "spike"
    assert c.due(7200 + 600, (True, False, True), *same, SIZE) and c.reason == "up/down"


def test_cheap_placement_matches_the_greedy_and_moves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    checked: list[bool] = []
    quick_actions: list[object] = []
    original = GeoPolicy._greedy_pending

    def compare(self: GeoPolicy, snap, views, cols):  # type: ignore[no-untyped-def]
        mine = original(self, snap, views, cols)
        problem, col_list = self._problem(snap, views, cols, set())
        checked.append(mine == [col_list[int(c)] for c in S.greedy(problem)])
        return mine

    original_actions = GeoPolicy._actions

    def actions(self: GeoPolicy, snap, views, running, chosen, cols, rng, waiting):  # type: ignore[no-untyped-def]
        plan = original_actions(self, snap, views, running, chosen, cols, rng, waiting)
        if not running:  # a decision between full solves
            quick_actions.extend(a for a in plan.actions if isinstance(a, Migrate | Preempt))
        return plan

    monkeypatch.setattr(GeoPolicy, "_greedy_pending", compare)
    monkeypatch.setattr(GeoPolicy, "_actions", actions)
    sc = load_scenario("default")
    cut = 4 * 86_400
    sc = dataclasses.replace(sc, duration_s=cut, jobs=tuple(j for j in sc.jobs if j.submit_s < cut),
                             events=tuple(e for e in sc.events if e.at_s < cut))
    r = run_twin(sc, policy="geo")
    assert r.decisions > 0
    assert len(checked) >= 20, f"only {len(checked)} placements between full solves"
    assert all(checked), f"{checked.count(False)} of {len(checked)} cheap placements differ from the greedy"
    assert quick_actions == []
