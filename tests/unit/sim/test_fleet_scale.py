"""Issue 12's shortcuts change no outcome: the greedy family's kept outcomes give the plan a plain walk of every
job and factory gives, on every decision of a busy run; snapshots reuse only what did not change (checked after
every event by the invariants); the pending queue and unchanged factories are the same objects between
decisions."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest

from superfactory.domain.fleet import NODE_FREE, FleetSnapshot, Place, Plan
from superfactory.errors import SimulationError
from superfactory.policy.baseline import FULL, _why
from superfactory.policy.feasibility import evaluate
from superfactory.policy.nodes import nodes_needed, tp_aligned_fit
from superfactory.policy.registry import PolicyBase, make_policy, register, unregister
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.twin import run_twin

from scenario_builders import factory, job, scenario

MISMATCHES: list[str] = []
DECISIONS: list[int] = []


def _plain_greedy(snapshot: FleetSnapshot) -> Plan:
    """Greedy as it was before issue 12: every pending job tries every factory, cheapest first."""
    status: dict[int, npt.NDArray[np.uint8]] = {}
    it_power = [s.it_power_w for s in snapshot.states]
    actions, waiting, refusals = [], [], []
    order = sorted(range(len(snapshot.factories)),
                   key=lambda i: (snapshot.states[i].price_usd_per_mwh * snapshot.factories[i].pue, i))
    for view in sorted(snapshot.pending, key=lambda v: (-v.job.priority, v.job.submit_s, v.job.id)):
        j = view.job
        reasons: dict[int, str] = {}
        placed = False
        for i in order:
            f, st = snapshot.factories[i], snapshot.states[i]
            check = evaluate(view, f, st, it_power[i])
            if not check.ok:
                reasons[i] = check.reason
                audit = check.audit(j.id, f.id)
                if audit is not None:
                    refusals.append(audit)
                continue
            if i not in status:
                status[i] = np.frombuffer(st.node_status, dtype=np.uint8).copy()
            free = sum(int((status[i][c.node_offset:c.node_end] == NODE_FREE).sum())
                       for c in f.clusters_of(j.accelerator))
            nodes = (tp_aligned_fit(f, status[i], j.accelerator, j.gpus, j.tp_size)
                     if free >= nodes_needed(f, j.accelerator, j.gpus) else None)
            if nodes is None:
                reasons[i] = FULL
                continue
            status[i][list(nodes)] = 1
            it_power[i] += check.extra_it_w
            actions.append(Place(j.id, f.id, nodes))
            placed = True
            break
        if not placed:
            waiting.append((j.id, _why(snapshot, j.accelerator, reasons)))
    return Plan(tuple(actions), tuple(waiting), tuple(refusals))


@pytest.fixture
def checked_greedy() -> Iterator[str]:
    @register("test-greedy-checked")
    class Checked(PolicyBase):
        """Test only: greedy, compared on every decision with the plain walk."""

        def __init__(self) -> None:
            self.inner = make_policy("greedy")

        def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
            plan = self.inner.decide(snapshot, rng)
            DECISIONS.append(len(snapshot.pending))
            if plan != _plain_greedy(snapshot):
                MISMATCHES.append(f"t={snapshot.now_s}: {plan} != plain walk")
            return plan

    MISMATCHES.clear()
    DECISIONS.clear()
    yield "test-greedy-checked"
    unregister("test-greedy-checked")


def _busy() -> str:
    """Five factories at different prices (one power-capped, one also cleared for EU data, one of NVL72 racks), a
    queue of many shapes (sizes, TP, data classes, carbon budgets) arriving over two days, failures at 50x the
    default rate."""
    facs = [factory("pjm", nodes=24), factory("ercot", market="ERCOT", nodes=24),
            factory("caiso", market="CAISO", nodes=32, power_cap="0.3MW"),
            factory("eu", market="PJM", nodes=40, clearances=("US", "EU")),
            factory("nvl", market="ERCOT", nodes=36, system="gb200-nvl72")]
    sizes = (8, 16, 64, 128, 256)
    jobs = []
    for i in range(90):
        extra: dict[str, object] = {"submit": f"{(i * 37) % 2880}min", "priority": i % 3}
        gpus = sizes[i % len(sizes)]
        if i % 7 == 0 and i % 9:
            extra["sovereignty"] = ["EU"]
        if i % 11 == 0:
            extra["carbon_budget_tco2"] = 5.0
        acc = "H100-SXM"
        if i % 9 == 0:
            acc, gpus, extra["tp_size"] = "GB200", min(gpus, 128), 16 if gpus >= 16 else 8
        jobs.append(job(f"j{i}", gpus=gpus, work=f"{2 + i % 17}h", accelerator=acc, **extra))
    return scenario(facs, jobs, duration="3d", failures={"rate_scale": 50.0})


def test_greedy_with_kept_outcomes_plans_as_the_plain_walk(checked_greedy: str) -> None:
    res = run_twin(parse_scenario(_busy()), policy=checked_greedy)
    assert not MISMATCHES, MISMATCHES[:3]
    assert len(DECISIONS) > 200 and max(DECISIONS) >= 20  # busy enough that outcomes were kept and reused
    assert any(e.kind.value == "AuditRefusal" for e in res.events)


def test_cached_snapshot_parts_never_go_stale() -> None:
    """check_invariants compares every kept FactoryState and the kept pending tuple with the fleet after every
    event; a change that forgot to bump a version would fail here."""
    run_twin(parse_scenario(_busy()), policy="greedy", check_invariants=True)


def test_unchanged_parts_are_the_same_objects() -> None:
    seen: list[FleetSnapshot] = []

    @register("test-snapshot-keeper")
    class Keeper(PolicyBase):
        """Test only: keeps every snapshot, places nothing."""

        cycle_s = 600

        def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
            seen.append(snapshot)
            return Plan()

    try:
        sc = scenario([factory("a"), factory("b", market="ERCOT")], [job("j", submit="1h")], duration="3h",
                      failures={"rate_scale": 0.0, "planned": False})
        run_twin(parse_scenario(sc), policy="test-snapshot-keeper")
    finally:
        unregister("test-snapshot-keeper")
    # ten-minute cycles inside one price hour with nothing happening: the very same parts
    a, b = seen[1], seen[2]
    assert a.now_s < b.now_s < 3600
    assert a.pending is b.pending and a.links is b.links
    assert all(x is y for x, y in zip(a.states, b.states, strict=True))
    # the job arrived at 1 h: the pending tuple moved, and it shows the job
    later = [s for s in seen if s.now_s >= 3600]
    assert later and later[0].pending is not a.pending and [v.job.id for v in later[0].pending] == ["j"]


@pytest.mark.parametrize(("nodes", "error"), [
    ((3, 1, 2, 0), None),  # any order is fine
    ((0, 1, 1, 2), "duplicate nodes"),
    ((0, 1, 2), "GPUs < 32"),
    ((14, 15, 16, 17), "needs H100-SXM, got B200 nodes"),  # straddles the H100 and B200 clusters
    ((16, 17, 18, 19), "needs H100-SXM, got B200 nodes"),
])
def test_placement_checks_refuse_bad_node_sets(nodes: tuple[int, ...], error: str | None) -> None:
    """The fast paths of the node-set check (ascending sets, one cluster) refuse what the full check did."""
    name = f"test-place-{'-'.join(map(str, nodes))}"

    @register(name)
    class PlaceThese(PolicyBase):
        """Test only: places the first pending job on fixed nodes of factory a."""

        def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
            if not snapshot.pending:
                return Plan()
            return Plan((Place(snapshot.pending[0].job.id, "a", nodes),))

    mixed = factory("a", nodes=16)
    mixed["systems"].append({"system": "dgx-b200", "nodes": 8})
    sc = parse_scenario(scenario([mixed], [job("j", gpus=32, work="1h")], duration="2h",
                                 failures={"rate_scale": 0.0, "planned": False}))
    try:
        if error is None:
            res = run_twin(sc, policy=name)
            assert [e.value for e in res.events if e.kind.value == "JobPlaced"] == [32.0]
        else:
            with pytest.raises(SimulationError, match=error):
                run_twin(sc, policy=name)
    finally:
        unregister(name)
