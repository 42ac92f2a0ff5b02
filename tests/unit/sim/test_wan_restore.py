"""Restores over the twin's WAN: a job restarting where its region holds no copy of its checkpoint waits for a
RESTORE transfer from the nearest copy; one restarting next to a copy pulls nothing; restores share links with
replication and go first; runs are deterministic; without a ``wan:`` block nothing of this happens."""

from __future__ import annotations

import numpy as np
import pytest

from superfactory.domain.events import EventKind, event_log_digest
from superfactory.domain.fleet import NODE_FREE, FleetSnapshot, Place, Plan
from superfactory.policy.registry import PolicyBase, register, unregister
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.twin import TwinResult, run_twin

SIZE_GBIT = 500e9 * 8 / 1e9  # one 500 GB checkpoint, all of it critical
RESTART_S = 300  # recovery: {detect: 2min, restart: 5min} (the schema's defaults)


def scenario_text(link: str = "5Gbps", wan: str = "{policy: wan-planner, copies: 1}", outage_at: str = "2100s",
                  duration: str = "2h") -> str:
    """Three factories in three regions. With one copy per checkpoint, j1 (at a) replicates to b (5 ms, nearer
    than c) and j2 (at b) to c (4 ms, nearer than a). Factory a goes down for an hour at
    ``outage_at`` (``""``: never)."""

    def fac(fid: str, region: str) -> str:
        return (f"  - {{id: {fid}, region: {region}, market: PJM, clearances: [US], power_cap: 20MW, "
                f"cooling_capacity: 20MW, systems: [{{system: dgx-h100, nodes: 64}}]}}\n")

    return (
        f"name: wan-restore\nduration: {duration}\npolicy: home-region\nfactories:\n"
        + fac("a", "r1") + fac("b", "r2") + fac("c", "r3")
        + "links:\n"
        + "".join(f"  - {{a: {x}, b: {y}, bandwidth: {link}, latency: {ms}ms}}\n"
                  for x, y, ms in (("a", "b", 5), ("b", "c", 4), ("a", "c", 20)))
        + "defaults:\n  checkpoint: {interval: 15min, blocking: 10s, size: 500GB, write_bandwidth: 800Gbps}\n"
        + "jobs:\n"
        + "  - {id: j1, accelerator: H100-SXM, gpus: 256, work: 30d, home: a, preemptible: false}\n"
        + "  - {id: j2, accelerator: H100-SXM, gpus: 256, work: 30d, home: b, preemptible: false}\n"
        + "failures: {rate_scale: 0, planned: false}\n"
        + (f"events: [{{at: {outage_at}, kind: factory_outage, factory: a, duration: 1h}}]\n" if outage_at
           else "events: []\n")
        + (f"wan: {wan}\n" if wan else "")
    )


class _FailOver(PolicyBase):
    """Places every pending job on its home factory's first free nodes, or on ``FALLBACK`` while home is down."""

    FALLBACK = "c"
    cycle_s = 60

    def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
        del rng
        actions: list[Place] = []
        taken: dict[int, int] = {}
        for v in snapshot.pending:
            fid = v.job.home_factory or ""
            if not snapshot.states[snapshot.factory_index(fid)].up:
                fid = self.FALLBACK
            i = snapshot.factory_index(fid)
            if not snapshot.states[i].up:
                continue
            free = np.flatnonzero(np.frombuffer(snapshot.states[i].node_status, dtype=np.uint8) == NODE_FREE)
            n, k = v.job.gpus // 8, taken.get(i, 0)
            taken[i] = k + n
            actions.append(Place(v.job.id, fid, tuple(int(x) for x in free[k:k + n])))
        return Plan(tuple(actions))


@pytest.fixture
def failover():
    register("test-failover")(_FailOver)
    yield _FailOver
    _FailOver.FALLBACK = "c"
    unregister("test-failover")


def run(text: str) -> TwinResult:
    return run_twin(parse_scenario(text, "wan-restore.yaml"), policy="test-failover")


def of(r: TwinResult, kind: EventKind, job: str | None = None) -> list:
    return [e for e in r.events if e.kind is kind and (job is None or e.job == job)]


def restores(r: TwinResult) -> list:
    return [e for e in of(r, EventKind.TRANSFER_COMPLETED) if e.cause == "restore"]


def failover_start(r: TwinResult) -> tuple[object, object]:
    """j1's placement after the outage and the JobRunning that follows it."""
    t_out = of(r, EventKind.JOB_INTERRUPTED, "j1")[0].time_s
    placed = next(e for e in of(r, EventKind.JOB_PLACED, "j1") if e.time_s > t_out)
    running = next(e for e in of(r, EventKind.JOB_RUNNING, "j1") if e.time_s >= placed.time_s)
    return placed, running


@pytest.mark.parametrize("policy", ["wan-naive", "wan-planner"])
def test_a_job_failing_over_to_a_region_without_a_copy_waits_for_its_restore(failover, policy: str) -> None:
    r = run(scenario_text(wan=f"{{policy: {policy}, copies: 1}}"))
    placed, running = failover_start(r)
    assert placed.factory == "c"
    got = restores(r)
    assert [(e.job, e.factory) for e in got] == [("j1~restore1->c", "b->c")]  # a is down: from b, j1's only copy
    arrival = got[0].time_s
    # restores go first: the whole 5 Gb/s of b->c, though j2's copies to c use that arc too. Tolerance: the
    # fabric rounds arrivals up to whole seconds, the planner works in slots (<= 30 s)
    assert arrival - placed.time_s == pytest.approx(SIZE_GBIT / 5.0, abs=31)
    assert running.time_s == max(placed.time_s + RESTART_S, arrival) == arrival
    durable = [e.value for e in of(r, EventKind.CHECKPOINT_DURABLE, "j1") if e.time_s < placed.time_s]
    assert running.value == durable[-1] > 0  # restarted from the durable copy it pulled
    # the wait beyond the relaunch is recovery time, metered like the relaunch itself
    metered = [e for e in of(r, EventKind.METERED, "j1") if e.cause == "recovery_s" and e.time_s == running.time_s]
    assert [e.value for e in metered] == [running.time_s - placed.time_s]
    assert r.wan is not None
    rep = r.wan.replication.restores
    assert (rep.restores, rep.delayed) == (1, 1)
    assert rep.wait_s == running.time_s - placed.time_s - RESTART_S and rep.wait_gpu_s == rep.wait_s * 256


@pytest.mark.parametrize("policy", ["wan-naive", "wan-planner"])
def test_restores_share_links_with_replication_and_go_first(failover, policy: str) -> None:
    """j2's copies cross b->c too, the arc j1's restore takes: the one in flight when the restore starts gets
    nothing while it runs (it lands one whole restore later), where it lands in size ÷ rate without one."""

    def j2_copy_in_flight_at(r: TwinResult, t: int) -> tuple[int, int]:
        commits = of(r, EventKind.CHECKPOINT_COMMITTED, "j2")
        n, sent = next((n, e.time_s) for n, e in reversed(list(enumerate(commits, start=1))) if e.time_s <= t)
        landed = next(e.time_s for e in of(r, EventKind.TRANSFER_COMPLETED) if e.job == f"j2#{n}->c")
        return sent, landed

    wan = f"{{policy: {policy}, copies: 1}}"
    r = run(scenario_text(wan=wan))
    placed, _ = failover_start(r)
    restore_s = restores(r)[0].time_s - placed.time_s
    assert restore_s == pytest.approx(SIZE_GBIT / 5.0, abs=31)
    sent, landed = j2_copy_in_flight_at(r, placed.time_s)
    assert sent < placed.time_s < landed, "the scenario should put a replication on b->c during the restore"
    assert landed - sent == pytest.approx(SIZE_GBIT / 5.0 + restore_s, abs=31)  # held back for the whole restore
    failover.FALLBACK = "b"  # the same outage, j1 restarting next to its copy: no restore
    r0 = run(scenario_text(wan=wan))
    assert not restores(r0)
    sent0, landed0 = j2_copy_in_flight_at(r0, failover_start(r0)[0].time_s)
    assert sent0 == sent and landed0 - sent0 == pytest.approx(SIZE_GBIT / 5.0, abs=31)


def test_a_job_restarting_where_its_region_holds_a_copy_pulls_nothing(failover) -> None:
    failover.FALLBACK = "b"  # b holds j1's durable copy
    r = run(scenario_text())
    placed, running = failover_start(r)
    assert placed.factory == "b"
    assert not restores(r)
    assert running.time_s == placed.time_s + RESTART_S
    assert r.wan is not None and r.wan.replication.restores.restores == 0


def test_a_first_start_needs_no_restore_and_the_twin_without_wan_restores_nothing(failover) -> None:
    r = run(scenario_text(outage_at=""))  # no outage: every job starts once, with nothing committed
    assert not restores(r)
    assert [e.time_s for e in of(r, EventKind.JOB_RUNNING, "j1")] == [RESTART_S]
    r0 = run(scenario_text(wan=""))
    placed, running = failover_start(r0)
    assert placed.factory == "c" and running.time_s == placed.time_s + RESTART_S  # as before restores existed


def test_restores_are_deterministic(failover) -> None:
    text = scenario_text(duration="90min")
    a, b = run(text), run(text)
    assert restores(a) and event_log_digest(a.events) == event_log_digest(b.events)
