"""Bound v4 (job level, continuity; ``policy/hindsight_jobs.py``) against schedules the twin really produced
(home-region, greedy, geo) on bound v3's small fleets with frequent node failures, GB200 sites and WAN links:

- every (re)start the twin makes is paid by an event of row 4: the starts after each job's first (``JobPlaced``
  other than a migration's arrival, ``JobMigrated``'s destination hold, ``JobHotSwapped``) are at most the
  failures plus the run's drains and migrations, and each job's own are at most its interruptions, drains and
  twice its migrations (an arrival on a failed destination is requeued);
- v4 built from each run's own hourly busy GPUs is at most that run's busy cost and at least v3's."""

from __future__ import annotations

from collections import Counter

import pytest
from test_hindsight_twin import _grids
from test_hindsight_v3 import POLICIES, _scenario, bound_setup

from superfactory.domain.events import EventKind
from superfactory.policy.hindsight import hindsight_bound
from superfactory.policy.hindsight_fleet import GANGS_HELD
from superfactory.policy.hindsight_holds import failure_budget, schedule_moves
from superfactory.policy.hindsight_jobs import job_level_bound
from superfactory.policy.hindsight_jobs_fleet import event_budget, job_level_inputs
from superfactory.sim.twin import run_twin


@pytest.fixture(scope="module", params=[1, 2])
def runs(request):
    sc = _scenario(request.param)
    return sc, {p: run_twin(sc, policy=p) for p in POLICIES}


def _starts(events) -> Counter:
    """Upward jumps of each job's busy GPUs other than repairs: placements, destination holds, hot swaps."""
    c: Counter = Counter()
    for e in events:
        if (e.kind is EventKind.JOB_PLACED and e.cause != "migrated") or e.kind in (EventKind.JOB_MIGRATED,
                                                                                  EventKind.JOB_HOT_SWAPPED):
            c[e.job] += 1
    return c


def test_every_restart_is_paid_by_an_event(runs) -> None:
    sc, rs = runs
    restarted = 0
    for name, r in rs.items():
        starts = _starts(r.events)
        drains, migrations = schedule_moves(r.events)
        extra = sum(n - 1 for n in starts.values())
        assert extra <= failure_budget(r.events, sc.factories, sc.jobs) + drains + migrations, name
        interrupted = Counter(e.job for e in r.events if e.kind is EventKind.JOB_INTERRUPTED)
        drained = Counter(e.job for e in r.events if e.kind in (EventKind.JOB_PREEMPTED, EventKind.JOB_PLANNED_STOP,
                                                                EventKind.JOB_HOT_SWAPPED))
        moved = Counter(e.job for e in r.events if e.kind is EventKind.JOB_MIGRATED)
        for job, n in starts.items():
            assert n <= 1 + interrupted[job] + drained[job] + 2 * moved[job], (name, job)
        restarted += extra
    assert restarted >= 5  # the fleets exercise restarts


def test_v4_is_below_every_policys_own_busy_cost_and_above_v3(runs) -> None:
    sc, rs = runs
    _pools, usable, _spells, rows, groups = bound_setup(sc, rs)
    budget = event_budget(rs["geo"].events, [r.events for r in rs.values()], sc.factories, sc.jobs)
    assert budget.failures > 0 and budget.repair_units > 0
    for name, r in rs.items():
        cost, busy = _grids(sc, r)
        ji = job_level_inputs(sc.factories, sc.jobs, sc.duration_s, cost, usable, sc.links)
        totals = [(tuple(ps), float(busy[ps].sum())) for ps in groups.values()]
        hourly = [(tuple(ps), busy[ps].sum(axis=0)) for ps in groups.values()]
        v4 = job_level_bound(ji.inst, ji.gangs, totals, hourly, rows, budget, ji.hold_h).cost_usd
        v3 = hindsight_bound(ji.inst, totals, hourly_gpus=hourly, gangs_held=GANGS_HELD, knap_rows=rows,
                             interruptions=(budget.failures, budget.drains, budget.migrations)).cost_usd
        own = float((cost * busy).sum())
        assert v4 is not None and v3 is not None, name
        assert v3 <= v4 + 1e-6 <= own + 2e-6, (name, v3, v4, own)
