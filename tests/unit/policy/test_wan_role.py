"""The wan role's policies on hand-built WAN states, and checkpoint-sync bandwidth as a capacity row of geo."""

from __future__ import annotations

import numpy as np
import pytest

from superfactory.domain.factory import WanLink
from superfactory.domain.fleet import FleetSnapshot
from superfactory.domain.transfer import RouteTransfer, TrafficClass, Transfer, WanState
from superfactory.policy.registry import ROLES, available, make_policy, role_of

LINKS = (WanLink("a", "b", 100.0, 5.0), WanLink("b", "c", 100.0, 5.0), WanLink("a", "c", 50.0, 3.0),
         WanLink("c", "d", 100.0, 4.0))


def snap(transfers: tuple[Transfer, ...], needs: set[str] | None = None, links: tuple[WanLink, ...] = LINKS,
         now: int = 0, background: float = 0.0) -> FleetSnapshot:
    bg = tuple((s, d, background) for lk in links for s, d in ((lk.a, lk.b), (lk.b, lk.a))) if background else ()
    wan = WanState(now, links, transfers, frozenset({t.transfer_id for t in transfers} if needs is None else needs),
                   bg)
    return FleetSnapshot(now, (), (), links, (), (), wan=wan)


def tr(tid: str, src: str, dst: str, gbit: float, deadline: int = 600, release: int = 0) -> Transfer:
    return Transfer(tid, src, dst, gbit, release, deadline, TrafficClass.CHECKPOINT, 0)


def decide(name: str, s: FleetSnapshot, **params: object):
    return make_policy(name, **params).decide(s, np.random.default_rng(0))


def test_the_wan_role_decides_after_training_and_offers_three_policies() -> None:
    assert set(available(role="wan")) == {"wan-planner", "wan-naive", "wan-overlay"}
    assert ROLES["wan"] > ROLES["training"]
    assert role_of("wan-planner") == "wan"


def test_naive_takes_the_direct_link_else_the_lowest_latency_path() -> None:
    plan = decide("wan-naive", snap((tr("x", "a", "c", 100.0), tr("y", "a", "d", 100.0))))
    routes = {a.job_id: a.paths for a in plan.actions}
    assert routes == {"x": (("a", "c"),), "y": (("a", "c", "d"),)}  # a->c is 3 ms; a->b->c->d 14 ms
    assert decide("wan-naive", snap((tr("x", "a", "c", 100.0),), needs=set())).actions == ()


def test_overlay_stripes_over_k_paths_by_bottleneck() -> None:
    plan = decide("wan-overlay", snap((tr("x", "a", "c", 100.0),)), k=2)
    (a,) = plan.actions
    assert isinstance(a, RouteTransfer) and a.paths == (("a", "c"), ("a", "b", "c"))
    assert a.shares == pytest.approx((50 / 150, 100 / 150))


def test_planner_keeps_every_arc_within_capacity_minus_inference_and_meets_feasible_deadlines() -> None:
    trs = (tr("x", "a", "c", 6000.0, deadline=120), tr("y", "b", "c", 3000.0, deadline=300))
    plan = decide("wan-planner", snap(trs, background=20.0), slot_s=30, horizon_s=600)
    assert not plan.waiting
    load: dict[tuple[int, tuple[str, str]], float] = {}
    for a in plan.actions:
        assert isinstance(a, RouteTransfer) and a.slot_s == 30
        t = next(t for t in trs if t.transfer_id == a.job_id)
        assert sum(f.gbit for f in a.flows) == pytest.approx(t.size_gbit)
        for f in a.flows:
            assert (f.slot + 1) * 30 <= t.deadline_s
            for hop in zip(f.path, f.path[1:], strict=False):
                load[(f.slot, hop)] = load.get((f.slot, hop), 0.0) + f.gbit
    cap = {(lk.a, lk.b): lk.bandwidth_gbps for lk in LINKS} | {(lk.b, lk.a): lk.bandwidth_gbps for lk in LINKS}
    assert all(g <= (cap[hop] - 20.0) * 30 + 1e-6 for (_, hop), g in load.items())
    # x needs 50 Gb/s for 120 s; a->c has 30 left after inference: part of it must go over the relay b
    assert any(len(f.path) == 3 for a in plan.actions if a.job_id == "x" for f in a.flows)


def test_planner_names_what_cannot_make_its_deadline_and_routes_it_anyway() -> None:
    plan = decide("wan-planner", snap((tr("big", "a", "d", 90_000.0, deadline=60),)), slot_s=30, horizon_s=600)
    assert [tid for tid, _ in plan.waiting] == ["big"]
    assert "cannot arrive by 60 s" in plan.waiting[0][1]
    assert [a.job_id for a in plan.actions] == ["big"]


def test_planner_replans_only_when_a_transfer_needs_a_route_or_the_links_changed() -> None:
    pol = make_policy("wan-planner", slot_s=30, horizon_s=600)
    rng = np.random.default_rng(0)
    trs = (tr("x", "a", "c", 3000.0),)
    assert pol.decide(snap(trs), rng).actions
    assert pol.decide(snap(trs, needs=set()), rng).actions == ()
    cut = tuple(lk for lk in LINKS if (lk.a, lk.b) != ("a", "c"))
    again = pol.decide(snap(trs, needs=set(), links=cut), rng)
    assert again.actions
    assert all(f.path != ("a", "c") for a in again.actions for f in a.flows)


def test_planner_plans_an_overdue_transfer_as_soon_as_it_can() -> None:
    late = Transfer("late", "a", "b", 3000.0, 0, 100, TrafficClass.CHECKPOINT, 0)
    plan = decide("wan-planner", snap((late,), now=200), slot_s=30, horizon_s=600)
    (a,) = plan.actions
    assert a.start_s == 200 and min(f.slot for f in a.flows) == 0 and sum(f.gbit for f in a.flows) == 3000.0


def test_bad_planner_parameters_are_refused() -> None:
    with pytest.raises(ValueError, match="slot_s"):
        make_policy("wan-planner", slot_s=0)
