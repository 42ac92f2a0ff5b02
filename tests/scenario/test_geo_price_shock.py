"""The price-shock scenario under ``geo``: a 10x ERCOT price for 6 h.

Checked, on the event log and on every decision:
- every job migrates at most once per hour (consecutive JobMigrated events of one job are >= 3600 s apart);
- geo responds within 5 simulated minutes of the shock's start S: jobs move out of the shocked factory in
  [S, S+300]; during the shock (after S+300, up to E+300, E its end) no job is moved *into* the shocked factory or
  paused there (no flapping back while it is dear; a job newly started there, because no other site had room
  and running at the shocked price still costs less than idling a GPU worth its capital, may leave it when
  room appears elsewhere); in (E+300, E+3600) nothing moves in or out of it (the next hourly price tick, at
  E+3600, may legitimately move work again);
- geo's total cost per productive GPU-hour on the scenario is below home-region's (moves paid for);
- no factory ever exceeds its power or cooling cap: at every decision the IT power the twin reports, plus the
  power the plan adds at each destination, stays within min(power cap / PUE, cooling capacity); and every
  hour's mean IT power does too.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator

import numpy as np
import pytest

from superfactory.domain.events import Event, EventKind
from superfactory.domain.fleet import FleetSnapshot, Migrate, Place, Plan
from superfactory.observe.summary import summarize
from superfactory.policy.feasibility import added_it_power_w
from superfactory.policy.geo import GeoPolicy
from superfactory.policy.registry import register, unregister
from superfactory.scenario.loader import load_scenario
from superfactory.sim.twin import run_twin

CAP_SLACK_W = 1.0  # float rounding only


class CapCheckedGeo(GeoPolicy):
    """``geo`` itself, asserting the power/cooling caps on every snapshot it sees and every plan it makes."""

    def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
        plan = super().decide(snapshot, rng)
        added = [0.0] * len(snapshot.factories)
        for a in plan.actions:
            if isinstance(a, Place | Migrate):
                i = snapshot.factory_index(a.factory_id)
                job = next(v.job for v in snapshot.pending + snapshot.running if v.job.id == a.job_id)
                added[i] += added_it_power_w(snapshot.factories[i], job.accelerator, len(a.nodes))
        for f, st, extra in zip(snapshot.factories, snapshot.states, added, strict=True):
            cap = min(f.power_cap_w / f.pue, f.cooling_capacity_w)
            assert st.it_power_w <= cap + CAP_SLACK_W, (snapshot.now_s, f.id, st.it_power_w, cap)
            assert st.it_power_w + extra <= cap + CAP_SLACK_W, (snapshot.now_s, f.id, st.it_power_w + extra, cap)
        return plan


@pytest.fixture
def capcheck_policy() -> Iterator[str]:
    """``geo-capcheck`` registered for this test only: other tests in the same worker list the registry."""
    register("geo-capcheck")(CapCheckedGeo)
    yield "geo-capcheck"
    unregister("geo-capcheck")


def test_price_shock_moves_once_settles_fast_and_respects_caps(capcheck_policy: str) -> None:
    sc = load_scenario("price-shock")
    (shock,) = [e for e in sc.events if e.kind == "price_shock"]
    start, end = shock.at_s, shock.at_s + shock.duration_s
    shocked = {f.id for f in sc.factories if f.market == shock.market}
    r = run_twin(sc, policy=capcheck_policy)

    moves: dict[str, list[int]] = defaultdict(list)
    for e in r.events:
        if e.kind is EventKind.JOB_MIGRATED:
            moves[e.job].append(e.time_s)
    assert moves, "the shock moved nothing: the scenario does not exercise geo"
    for job, times in moves.items():
        assert all(b - a >= 3600 for a, b in itertools.pairwise(times)), (job, times)

    responses = [e for e in r.events if _touches(e, shocked) and start <= e.time_s <= end + 3600]
    assert any(e.kind is EventKind.JOB_MIGRATED and start <= e.time_s <= start + 300 for e in responses)
    flapping = [e for e in responses if start + 300 < e.time_s <= end + 300 and _into_or_paused(e, shocked)]
    assert not flapping, [(e.time_s, e.kind.name, e.job, e.cause) for e in flapping]
    after = [e for e in responses if end + 300 < e.time_s < end + 3600 and e.kind is not EventKind.JOB_PLACED]
    assert not after, [(e.time_s, e.kind.name, e.job, e.cause) for e in after]
    home = summarize(run_twin(sc, policy="home-region"))
    assert summarize(r)["total_usd_per_productive_gpu_hour"] < home["total_usd_per_productive_gpu_hour"]

    for h in r.hours:
        f = next(x for x in sc.factories if x.id == h.factory)
        cap_mwh = min(f.power_cap_w / f.pue, f.cooling_capacity_w) / 1e6
        assert h.it_energy_mwh <= cap_mwh + 1e-6, (h.factory, h.hour, h.it_energy_mwh, cap_mwh)


def _into_or_paused(e: Event, shocked: set[str]) -> bool:
    """A move into the shocked factory or a pause there."""
    if e.kind is EventKind.JOB_MIGRATED:
        return e.cause.partition(":")[0].partition("->")[2] in shocked
    return e.kind is EventKind.JOB_PREEMPTED and e.factory in shocked


def _touches(e: Event, shocked: set[str]) -> bool:
    """A placement decision involving the shocked factory: a move in or out, a pause there, a new start there."""
    if e.kind is EventKind.JOB_MIGRATED:
        src, _, dst = e.cause.partition(":")[0].partition("->")
        return src in shocked or dst in shocked
    if e.kind is EventKind.JOB_PREEMPTED:
        return e.factory in shocked
    if e.kind is EventKind.JOB_PLACED:
        return e.factory in shocked and e.cause not in ("migrated", "hot-swap")
    return False
