"""The twin's WAN fabric (sim/wan.py): fair sharing, classes, planned windows, partitions, queues, conservation."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from superfactory.domain.events import Event, EventKind
from superfactory.domain.factory import WanLink
from superfactory.domain.outcome import OutcomeStatus
from superfactory.domain.transfer import PathFlow, RouteTransfer, TrafficClass, Transfer, WanSettings
from superfactory.sim.kernel import Kernel
from superfactory.sim.wan import WanFabric

LINKS = (WanLink("a", "b", 100.0, 5.0), WanLink("b", "c", 100.0, 5.0), WanLink("a", "c", 50.0, 3.0))


def fabric(inference_share: float = 0.0) -> tuple[Kernel, WanFabric, list[Event], dict[str, int]]:
    k = Kernel()
    events: list[Event] = []
    fab = WanFabric(k, LINKS, WanSettings(inference_share=inference_share), events.append)
    return k, fab, events, {}


def add(fab: WanFabric, arrived: dict[str, int], tid: str, src: str, dst: str, gbit: float, deadline: int = 10_000,
        cls: TrafficClass = TrafficClass.CHECKPOINT) -> None:
    fab.add(Transfer(tid, src, dst, gbit, fab.k.now_s(), deadline, cls),
            lambda tr, t: arrived.__setitem__(tr.transfer_id, t))


def best_effort(fab: WanFabric, tid: str, *paths: tuple[str, ...]) -> None:
    outs = fab.route([RouteTransfer(tid, fab.k.now_s(), paths=paths)])
    assert outs[0].status is OutcomeStatus.APPLIED


def test_two_transfers_share_a_link_fairly_and_each_arrives_whole() -> None:
    k, fab, events, arrived = fabric()
    add(fab, arrived, "x", "a", "b", 1000.0)
    add(fab, arrived, "y", "a", "b", 1000.0)
    best_effort(fab, "x", ("a", "b"))
    best_effort(fab, "y", ("a", "b"))
    k.run(1000)
    assert arrived == {"x": 20, "y": 20}  # 2000 Gbit at 100 Gb/s; alone each would take 10 s
    rep = fab.report()
    assert rep.gbit_carried == pytest.approx(2000.0)
    assert rep.peak_utilisation <= 1.0 + 1e-9 and rep.peak_queue_depth == 2
    depth = [(e.time_s, e.cause, e.value) for e in events if e.kind is EventKind.CHECKPOINT_SYNC_QUEUE_DEPTH]
    assert depth == [(0, "a->b", 2.0), (20, "a->b", 0.0)]
    done = [e for e in events if e.kind is EventKind.TRANSFER_COMPLETED]
    assert [(e.job, e.factory, e.cause) for e in done] == [("x", "a->b", "checkpoint"), ("y", "a->b", "checkpoint")]


def test_restores_go_first_and_the_rest_share_what_is_left() -> None:
    k, fab, _, arrived = fabric()
    add(fab, arrived, "ckpt", "a", "b", 1000.0)
    add(fab, arrived, "restore", "a", "b", 1000.0, cls=TrafficClass.RESTORE)
    best_effort(fab, "ckpt", ("a", "b"))
    best_effort(fab, "restore", ("a", "b"))
    k.run(1000)
    assert arrived == {"restore": 10, "ckpt": 20}


def test_a_planned_flow_sends_only_in_its_slots() -> None:
    k, fab, _, arrived = fabric()
    add(fab, arrived, "p", "a", "c", 900.0)
    # 300 Gbit in slot 2 on a->c (30 Gb/s for 10 s), 600 in slot 3 over the relay b (60 Gb/s)
    plan = (PathFlow(("a", "c"), 2, 300.0), PathFlow(("a", "b", "c"), 3, 600.0))
    assert fab.route([RouteTransfer("p", 0, 10, plan)])[0].status is OutcomeStatus.APPLIED
    k.run(15)
    assert fab.state().transfers[0].size_gbit == pytest.approx(900.0)  # slot 2 is [20, 30): nothing yet
    k.run(25)
    assert fab.state().transfers[0].size_gbit == pytest.approx(900.0 - 150.0)  # half of slot 2
    k.run(1000)
    assert arrived == {"p": 40}
    assert fab.report().gbit_carried == pytest.approx(900.0)


def test_data_a_plan_leaves_over_goes_best_effort_and_asks_for_a_new_route() -> None:
    k, fab, _, arrived = fabric()
    asked: list[int] = []
    fab.request_plan = lambda: asked.append(k.now_s())
    add(fab, arrived, "p", "a", "b", 1000.0)
    fab.route([RouteTransfer("p", 0, 10, (PathFlow(("a", "b"), 0, 200.0),))])
    k.run(1000)
    assert arrived["p"] == 18  # 200 Gbit in slot 0 at 20 Gb/s, then 800 at the link's 100 Gb/s
    assert 10 in asked


def test_a_partition_stops_a_link_and_hands_the_transfer_back() -> None:
    k, fab, _, arrived = fabric()
    asked: list[int] = []
    fab.request_plan = lambda: asked.append(k.now_s())
    add(fab, arrived, "x", "a", "b", 1000.0)
    best_effort(fab, "x", ("a", "b"))
    k.at(5, 0, fab.set_link, "a", "b", False)
    k.run(6)
    assert "x" in fab.state().needs_route and fab.state().transfers[0].size_gbit == pytest.approx(500.0)
    assert 5 in asked and LINKS[0] not in fab.state().links
    k.run(50)
    assert fab.state().transfers[0].size_gbit == pytest.approx(500.0)  # nothing moves without a route
    best_effort(fab, "x", ("a", "c", "b"))  # around the cut: a->c is 50 Gb/s
    k.run(1000)
    assert arrived == {"x": 60}
    assert fab.report().gbit_carried == pytest.approx(1000.0)


def test_inference_backlog_delays_requests_only_when_transfers_crowd_it_out() -> None:
    k, fab, _, _ = fabric(inference_share=0.5)
    k.run(100)
    fab.close(100)
    assert fab.report().inference_p99_delay_ms == pytest.approx(5.0, rel=0.03)  # the link latency
    k2, fab2, _, arrived = fabric(inference_share=0.5)
    for i in range(4):  # four transfers + inference share a->b: inference gets 20 of its 50 Gb/s
        add(fab2, arrived, f"t{i}", "a", "b", 4000.0)
        best_effort(fab2, f"t{i}", ("a", "b"))
    k2.run(1000)
    fab2.close(1000)
    assert fab2.report().inference_p99_delay_ms > 10_000  # a backlog of tens of seconds
    assert fab2.report().peak_utilisation <= 1.0 + 1e-9


def test_a_route_for_a_finished_transfer_is_refused() -> None:
    k, fab, _, arrived = fabric()
    add(fab, arrived, "x", "a", "b", 100.0)
    best_effort(fab, "x", ("a", "b"))
    k.run(100)
    out = fab.route([RouteTransfer("x", 100, paths=(("a", "b"),)), RouteTransfer("zz", 100, paths=(("a", "q"),))])
    assert [o.status for o in out] == [OutcomeStatus.REFUSED, OutcomeStatus.REFUSED]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), st.sampled_from(["a", "b", "c"]),
                          st.floats(10.0, 5000.0), st.integers(0, 60), st.booleans()), min_size=1, max_size=8))
def test_every_bit_arrives_and_no_link_is_ever_over_capacity(specs) -> None:
    k, fab, _, arrived = fabric(inference_share=0.2)
    total = 0.0
    for i, (src, dst, gbit, at, relay) in enumerate(specs):
        if src == dst:
            continue
        total += gbit
        via = next(s for s in "abc" if s not in (src, dst))

        def start(i=i, src=src, dst=dst, gbit=gbit, relay=relay, via=via) -> None:
            add(fab, arrived, f"t{i}", src, dst, gbit)
            paths = ((src, dst), (src, via, dst)) if relay else ((src, dst),)
            best_effort(fab, f"t{i}", *paths)

        k.at(at, 0, start)
    k.run(100_000)
    fab.close(100_000)
    rep = fab.report()
    assert not fab.open
    assert rep.gbit_carried == pytest.approx(total, rel=1e-9)
    assert rep.peak_utilisation <= 1.0 + 1e-9
