from __future__ import annotations

import numpy as np
import pytest

from superfactory.domain.accelerator import SYSTEMS
from superfactory.domain.factory import Cluster, Factory
from superfactory.domain.fleet import FactoryState, FleetSnapshot, JobView, Place
from superfactory.domain.job import CheckpointSpec, RecoverySpec, TrainingJob
from superfactory.policy.registry import UnknownPolicyError, available, make_policy


def _factory(fid: str, nodes: int = 8, clearances: frozenset[str] = frozenset({"US"})) -> Factory:
    return Factory(fid, "r", fid.upper(), fid.upper(), 1e9, 1e9, 1.2, clearances, "US",
                   (Cluster(SYSTEMS["dgx-h100"], nodes),))


def _job(jid: str, gpus: int = 16, home: str | None = None, sov: frozenset[str] = frozenset(),
         priority: int = 0, submit: int = 0) -> TrainingJob:
    return TrainingJob(jid, "H100-SXM", gpus, 1e21, 0.4, submit, CheckpointSpec(600, 10, 1e9, 0),
                       RecoverySpec(60, 60), priority=priority, home_factory=home, sovereignty=sov)


def _snap(factories: list[Factory], prices: list[float], jobs: list[TrainingJob],
          status: list[bytes] | None = None) -> FleetSnapshot:
    states = tuple(FactoryState(f.id, True, (status or [bytes(f.nodes)] * len(factories))[i], p, 100.0, 0.0)
                   for i, (f, p) in enumerate(zip(factories, prices, strict=True)))
    pending = tuple(JobView(j, None, (), 0.0, 0) for j in jobs)
    return FleetSnapshot(0, tuple(factories), states, (), pending, ())


def test_registry_lists_and_rejects() -> None:
    assert {"greedy", "home-region", "cheapest-static"} <= set(available())
    with pytest.raises(UnknownPolicyError, match="known policies"):
        make_policy("nope")


def test_greedy_picks_cheapest_and_first_fit_nodes() -> None:
    fs = [_factory("a"), _factory("b")]
    plan = make_policy("greedy").decide(_snap(fs, [50.0, 20.0], [_job("j")]), np.random.default_rng(0))
    assert plan.actions == (Place("j", "b", (0, 1)),)


def test_greedy_never_double_books_and_explains_waiting() -> None:
    fs = [_factory("a", nodes=4)]
    jobs = [_job("j1", gpus=24), _job("j2", gpus=16), _job("j3", gpus=8)]
    plan = make_policy("greedy").decide(_snap(fs, [10.0], jobs), np.random.default_rng(0))
    placed = {a.job_id: a.nodes for a in plan.actions if isinstance(a, Place)}
    assert placed == {"j1": (0, 1, 2), "j3": (3,)}
    assert dict(plan.waiting)["j2"] == "not enough free H100-SXM nodes at a"


def test_waiting_reason_is_stable_and_grouped() -> None:
    fs = [_factory("a", nodes=1), _factory("b", nodes=1)]
    gb = Factory("g", "r", "G", "G", 1e9, 1e9, 1.2, frozenset({"US"}), "US", (Cluster(SYSTEMS["gb200-nvl72"], 18),))
    jobs = [_job("big", gpus=16)]
    r1 = make_policy("greedy").decide(_snap([*fs, gb], [10.0, 20.0, 5.0], jobs), np.random.default_rng(0))
    r2 = make_policy("greedy").decide(_snap([*fs, gb], [30.0, 20.0, 5.0], jobs), np.random.default_rng(0))
    # price order changed, the reason did not; factories without the accelerator are grouped at the end
    assert dict(r1.waiting)["big"] == dict(r2.waiting)["big"]
    assert dict(r1.waiting)["big"] == (
        "a has 8 H100-SXM GPUs < 16; b has 8 H100-SXM GPUs < 16; no H100-SXM at g"
    )


def test_home_region_stays_home_and_sovereignty_is_hard() -> None:
    fs = [_factory("us"), _factory("eu", clearances=frozenset({"EU", "EU_PERSONAL"}))]
    jobs = [_job("h", home="us"), _job("p", sov=frozenset({"EU_PERSONAL"}))]
    plan = make_policy("home-region").decide(_snap(fs, [90.0, 10.0], jobs), np.random.default_rng(0))
    assert {(a.job_id, a.factory_id) for a in plan.actions if isinstance(a, Place)} == {("h", "us"), ("p", "eu")}
    full = [bytes([1] * 8), bytes([1] * 8)]
    plan = make_policy("greedy").decide(_snap(fs, [10.0, 90.0], [jobs[1]], full), np.random.default_rng(0))
    assert plan.actions == ()
    assert "us lacks clearance for EU_PERSONAL" in dict(plan.waiting)["p"]


def test_priority_then_submission_order() -> None:
    fs = [_factory("a", nodes=2)]
    jobs = [_job("low", priority=0), _job("high", priority=5, submit=10)]
    plan = make_policy("greedy").decide(_snap(fs, [10.0], jobs), np.random.default_rng(0))
    assert [a.job_id for a in plan.actions] == ["high"]


def test_sovereignty_refusals_are_reported_for_audit() -> None:
    fs = [_factory("us"), _factory("eu", clearances=frozenset({"EU", "EU_PERSONAL"}))]
    plan = make_policy("greedy").decide(_snap(fs, [10.0, 90.0], [_job("p", sov=frozenset({"EU_PERSONAL"}))]),
                                        np.random.default_rng(0))
    assert plan.refusals == (("p", "us", "sovereignty: us lacks clearance for EU_PERSONAL"),)
    assert plan.actions == (Place("p", "eu", (0, 1)),)


def test_queue_order_equals_the_plain_sort() -> None:
    """Issue 12, session 7: the queue is sorted by two stable sorts on C-level keys; it must give exactly the order
    of the plain key (higher priority, then earlier submission, then id) on queues with many ties."""
    from superfactory.policy.baseline import _queue_order

    rng = np.random.default_rng(7)
    for trial in range(200):
        n = int(rng.integers(0, 40))
        jobs = [_job(f"j{int(rng.integers(0, 10_000)):05d}-{i}", priority=int(rng.integers(-2, 3)),
                     submit=int(rng.integers(0, 5)) * 60) for i in range(n)]
        pending = tuple(JobView(j, None, (), 0.0, 0) for j in rng.permutation(np.array(jobs, dtype=object)))
        want = sorted(pending, key=lambda v: (-v.job.priority, v.job.submit_s, v.job.id))
        assert _queue_order(pending) == want, trial


def test_greedy_order_follows_the_prices_as_they_move() -> None:
    """Greedy keeps its candidate order while the prices are the same; a price change reorders it."""
    fs = [_factory("a"), _factory("b"), _factory("c")]
    greedy = make_policy("greedy")
    rng = np.random.default_rng(0)
    for prices, first in (([30.0, 20.0, 10.0], "c"), ([30.0, 20.0, 10.0], "c"), ([5.0, 20.0, 10.0], "a"),
                          ([5.0, 20.0, 1.0], "c"), ([50.0, 2.0, 10.0], "b")):
        plan = greedy.decide(_snap(fs, prices, [_job("x", gpus=8)]), rng)
        assert [a.factory_id for a in plan.actions] == [first]
