"""Reservations of the gang policy (issue 19): the starvation guard's place in the queue, latest-fit reservation
nodes (block the least capacity while waiting) and a starving gang's deadline (backfill that ends before it may
use the gang's reserved nodes)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from superfactory.domain.events import EventKind
from superfactory.domain.factory import Factory, build_clusters
from superfactory.domain.fleet import FactoryState, FleetSnapshot, JobView
from superfactory.domain.job import CheckpointSpec, RecoverySpec, TrainingJob
from superfactory.domain.topology import topology_of
from superfactory.policy.gang import GangScheduler, GangSite, queue_order, starving
from superfactory.policy.gangfit import shape_of
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.twin import run_twin

from scenario_builders import factory, first_placed, job, scenario


def _view(jid: str, priority: int, submit_s: int, gpus: int = 8) -> JobView:
    j = TrainingJob(jid, "GB200", gpus, 3600.0, 0.4, submit_s, CheckpointSpec(1800, 20, 1e12, 800),
                    RecoverySpec(120, 300), priority=priority)
    return JobView(j, None, (), 0.0, submit_s)


def test_the_guard_goes_to_the_head_or_just_behind_the_top_class() -> None:
    old = _view("old", 0, 0)
    top = [_view("t1", 2, 5000), _view("t2", 2, 6000)]
    mid = _view("m", 1, 100)
    pending = (mid, *top, old)
    assert [v.job.id for v in queue_order(pending, 3000, 4000)] == ["t1", "t2", "m", "old"]  # not yet starving
    assert starving(pending, 3000, 4000) is None and starving(pending, 4000, 4000) is old
    assert [v.job.id for v in queue_order(pending, 7000, 4000)] == ["old", "t1", "t2", "m"]
    assert [v.job.id for v in queue_order(pending, 7000, 4000, guard_behind_top=True)] == ["t1", "t2", "old", "m"]


def test_largest_first_orders_only_ties_of_priority_and_submission_by_size() -> None:
    backlog = (_view("a", 2, 0, 8), _view("b", 2, 0, 4096), _view("c", 2, 0, 64), _view("d", 1, 0, 2048),
               _view("e", 2, 10, 1024), _view("f", 1, 0, 8))
    assert [v.job.id for v in queue_order(backlog)] == ["a", "b", "c", "e", "d", "f"]
    assert [v.job.id for v in queue_order(backlog, largest_first=True)] == ["b", "c", "a", "e", "d", "f"]
    # only jobs of >= 1,000 GPUs move; the rest keep the id order behind them
    assert [v.job.id for v in queue_order(backlog, largest_first=True, largest_first_min_gpus=1000)] == \
        ["b", "a", "c", "e", "d", "f"]


def test_latest_fit_reserves_the_nodes_that_free_up_last_and_leaves_free_nodes_open() -> None:
    f = Factory("f", "r", "MISO", "MISO", 1e12, 1e12, 1.1, frozenset(), "US", build_clusters([("gb200-nvl72", 36)]))
    topo = topology_of(f)
    status = np.ones(f.nodes, dtype=np.uint8)  # busy
    free = np.zeros(f.nodes, dtype=bool)
    free[8:18] = True  # 10 free trays on rack 0
    status[free] = 0
    site = GangSite(0, f, topo, status, free.copy(), np.zeros(f.nodes, dtype=bool), set(), {}, 0.0)
    gang = TrainingJob("g", "GB200", 32, 3600.0, 0.4, 0, CheckpointSpec(1800, 20, 1e12, 800),
                       RecoverySpec(120, 300), tp_size=8)
    shape = shape_of(gang, 4, 18)  # 8 trays in TP units of 2
    early, late = np.arange(0, 8), np.arange(18, 26)  # running jobs' trays, ending first and last
    chosen = GangScheduler._latest_fit(site, [early, late], shape)
    assert chosen is not None and sorted(chosen) == list(range(18, 26))  # the late job's trays, no free tray


def _deadline_run(deadline_s: float) -> dict[str, int]:
    jobs = [job("a", gpus=64, accelerator="GB200", tp_size=8, work="2h", priority=2),
            job("big", gpus=72, accelerator="GB200", tp_size=8, work="6h", priority=0),
            job("c", gpus=8, accelerator="GB200", tp_size=8, work="90min", priority=1, submit="1h")]
    sc = parse_scenario(scenario([factory("f", nodes=18, system="gb200-nvl72")], jobs, duration="12h",
                                 failures={"rate_scale": 0.0, "planned": False}))
    result = run_twin(sc, policy="gang", policy_params={"starve_after_s": 3600, "guard_deadline_s": deadline_s,
                                                        "preemption": False})
    return first_placed(result.events)


def test_a_starving_gangs_deadline_lets_shorter_work_use_its_reserved_nodes() -> None:
    # one NVL72 rack: "a" holds 16 trays for 2 h; "big" needs all 18 and starves after 1 h; "c" (2 trays, 1.5 h)
    # arrives at 1 h. Without a deadline, c would end after big's expected start (2 h) and must wait for big's 6 h
    # run; with big's deadline at 4 h it backfills at once on the 2 free trays, and big still starts by 4 h.
    strict = _deadline_run(float("inf"))
    assert strict["c"] > strict["big"] >= 2 * 3600
    open_ = _deadline_run(4 * 3600)
    assert open_["c"] == 3600
    assert 2 * 3600 <= open_["big"] <= 4 * 3600


def _guard_run(guard_preemptions: int) -> tuple[dict[str, int], list[str]]:
    jobs = [job("t", gpus=64, accelerator="GB200", tp_size=8, work="10h", priority=2),
            job("v", gpus=72, accelerator="GB200", tp_size=8, work="10h", priority=1),
            job("big", gpus=72, accelerator="GB200", tp_size=8, work="4h", priority=0)]
    sc = parse_scenario(scenario([factory("f", nodes=36, system="gb200-nvl72")], jobs, duration="12h",
                                 failures={"rate_scale": 0.0, "planned": False}))
    result = run_twin(sc, policy="gang", policy_params={"starve_after_s": 3600,
                                                        "guard_preemptions_per_day": guard_preemptions})
    preempted = [f"{e.job}: {e.cause}" for e in result.events if e.kind is EventKind.JOB_PREEMPTED]
    return first_placed(result.events), preempted


def test_a_starving_gang_preempts_lower_than_top_priority_work_from_its_own_budget() -> None:
    # two NVL72 racks: "t" (priority 2) and "v" (priority 1) hold 34 of 36 trays for 10 h; "big" (priority 0,
    # 18 trays) starves after 1 h. With a guard budget it preempts v as if it had priority 2 (never t); without
    # one it cannot preempt anybody (lowest priority) and waits for the 10 h runs to end.
    first, preempted = _guard_run(2)
    assert len(preempted) == 1 and preempted[0].startswith("v: preempted by big (starving: preempts as priority 2")
    assert 3600 <= first["big"] <= 2 * 3600
    first, preempted = _guard_run(0)
    assert not preempted and first["big"] >= 9 * 3600


def _handoff_reservation(delay_weight: float) -> tuple[list[int], float, int]:
    """Four NVL72 racks (72 trays). Racks 2-3 are held by a large gang ``L`` expected to end at 5 h; on racks
    0-1, 4 trays are free and two jobs hold 16 trays each, ending at 1 h and 3 h. A 144-GPU gang (36 trays, TP-8)
    waits. The earliest it fits is 3 h, on racks 0-1, whose trays then sit free for 4 x 3 h + 16 x 2 h = 44
    tray-hours first (the drain); on L's trays it starts at 5 h and nothing drains."""
    f = Factory("f", "r", "MISO", "MISO", 1e12, 1e12, 1.1, frozenset(), "US", build_clusters([("gb200-nvl72", 72)]))
    topo = topology_of(f)
    status = np.ones(f.nodes, dtype=np.uint8)
    free = np.zeros(f.nodes, dtype=bool)
    free[32:36] = True
    status[free] = 0
    site = GangSite(0, f, topo, status, free.copy(), np.zeros(f.nodes, dtype=bool), set(), {}, 0.0)
    site.ends = [(3600.0, "a", tuple(range(16))), (3 * 3600.0, "b", tuple(range(16, 32))),
                 (5 * 3600.0, "L", tuple(range(36, 72)))]
    gang = TrainingJob("g", "GB200", 144, 3600.0, 0.4, 0, CheckpointSpec(1800, 20, 1e12, 800),
                       RecoverySpec(120, 300), tp_size=8)
    sched = GangScheduler(handoff=True, handoff_min_gpus=144, handoff_delay_weight=delay_weight)
    res = sched._reservation(SimpleNamespace(now_s=0), site, [], gang, shape_of(gang, 4, 18))  # type: ignore[arg-type]
    assert res is not None
    nodes, start_s = res
    return np.flatnonzero(nodes).tolist(), start_s, sched.stats["handoffs"]


def test_a_waiting_large_gang_is_handed_a_running_large_gangs_nodes_and_no_free_node_idles_for_it() -> None:
    # drain cost of the earliest fit: 44 tray-h; hand-off: 0 drain + 0.5 x 36 trays x 2 h later = 36 tray-h
    nodes, start_s, handoffs = _handoff_reservation(0.5)
    assert nodes == list(range(36, 72)) and start_s == 5 * 3600 and handoffs == 1
    assert not set(nodes) & set(range(32, 36))  # the free trays stay open to other work
    # priced at its full node-seconds (72 tray-h > 44), the later start does not pay: the earliest fit is kept
    nodes, start_s, handoffs = _handoff_reservation(1.0)
    assert nodes == list(range(36)) and start_s == 3 * 3600 and handoffs == 0


def _backlog_run(largest_first: bool) -> dict[str, int]:
    # one NVL72 rack (18 trays), empty at t=0; a backlog of nine 2-tray jobs (ids first) and a 16-tray gang, all
    # priority 2 and submitted at 0
    jobs = [job(f"a{i}", gpus=8, accelerator="GB200", tp_size=8, work="3h", priority=2) for i in range(9)]
    jobs.append(job("big", gpus=64, accelerator="GB200", tp_size=8, work="2h", priority=2))
    sc = parse_scenario(scenario([factory("f", nodes=18, system="gb200-nvl72")], jobs, duration="12h",
                                 failures={"rate_scale": 0.0, "planned": False}))
    result = run_twin(sc, policy="gang", policy_params={"largest_first": largest_first, "preemption": False})
    return first_placed(result.events)


def test_largest_first_starts_the_big_gang_of_a_backlog_on_the_empty_factory_without_a_drain() -> None:
    by_id = _backlog_run(False)  # the small jobs take the rack; the gang waits for all of them to end
    assert by_id["big"] >= 3 * 3600
    first = _backlog_run(True)
    assert first["big"] == 0 and sum(t == 0 for t in first.values()) == 2  # the gang and one 2-tray job


def _mix_run(mix_share: float) -> dict[str, int]:
    # two NVL72 racks (36 trays, 144 GPUs: "large" gangs have >= 9 GPUs): eighteen 2-tray jobs (priority 1) fill
    # them at t = 0 and end 5 min apart from 40 min on; twenty more wait. A 16-GPU gang (4 trays, priority 2)
    # arrives at 10 min: large gangs carry ~3 % of the work seen, a small-gang mix
    jobs = [job(f"s{i:02d}", gpus=8, accelerator="GB200", tp_size=8, work=f"{40 + 5 * i}min", priority=1)
            for i in range(38)]
    jobs.append(job("big", gpus=16, accelerator="GB200", tp_size=8, work="2h", priority=2, submit="10min"))
    sc = parse_scenario(scenario([factory("f", nodes=36, system="gb200-nvl72")], jobs, duration="6h",
                                 failures={"rate_scale": 0.0, "planned": False}))
    result = run_twin(sc, policy="gang", policy_params={"reserve_mix_share": mix_share, "preemption": False})
    return first_placed(result.events)


def test_on_a_small_gang_mix_a_gang_is_reserved_only_after_reserve_after_s() -> None:
    # every mix counts as large (share 0): the gang is reserved at once and starts when the first four trays free
    # (two 2-tray jobs end, ~45 min); nothing else may take them meanwhile
    first = _mix_run(0.0)
    assert first["big"] <= 3600
    # default (0.4): small-gang mix, so no drain for the first hour: freed trays go to the waiting 2-tray jobs,
    # and the gang gets its reservation only after waiting reserve_after_s (1 h), then starts
    first = _mix_run(0.4)
    assert 600 + 3600 <= first["big"] <= 600 + 3600 + 1800
    assert sum(t < 600 + 3600 for j, t in first.items() if j.startswith("s")) > 18  # queued small work ran


def _guard_order(mix_share: float) -> dict[str, int]:
    # two NVL72 racks filled at t = 0 by eighteen 2-tray jobs (priority 1) ending 5 min apart; "old" (priority 0,
    # 2 trays) waits from t = 0 and starves after 30 min; "top" (priority 2, 2 trays) arrives at 35 min. Only
    # 8-GPU jobs: a small-gang mix under the default share
    jobs = [job(f"s{i:02d}", gpus=8, accelerator="GB200", tp_size=8, work=f"{40 + 5 * i}min", priority=1)
            for i in range(18)]
    jobs += [job("old", gpus=8, accelerator="GB200", tp_size=8, work="1h", priority=0),
             job("top", gpus=8, accelerator="GB200", tp_size=8, work="1h", priority=2, submit="35min")]
    sc = parse_scenario(scenario([factory("f", nodes=36, system="gb200-nvl72")], jobs, duration="4h",
                                 failures={"rate_scale": 0.0, "planned": False}))
    result = run_twin(sc, policy="gang", policy_params={"reserve_mix_share": mix_share, "preemption": False,
                                                        "starve_after_s": 1800})
    return first_placed(result.events)


def test_on_a_small_gang_mix_the_top_class_goes_before_the_starving_gang() -> None:
    large = _guard_order(0.0)  # large-gang mix: the starving gang is at the head and takes the first free trays
    assert large["old"] < large["top"]
    small = _guard_order(0.4)  # small-gang mix: the top class first, the starving gang right after
    assert small["top"] < small["old"] <= small["top"] + 1800


def test_mix_rule_counts_each_job_once_and_forgets_ids_of_jobs_gone_for_a_day() -> None:
    # the mix rule (GangScheduler._drain_worthy) on hand-built snapshots of a 1,024-GPU fleet ("large" = 64 GPUs
    # or more). A job seen at many decisions counts once; the ids of jobs gone from the snapshots for a day are
    # dropped at the hourly prune (a long live run keeps a day's ids, not every job's) and their work still counts
    f = parse_scenario(scenario([factory("f", nodes=128)], [], duration="1h")).factories[0]
    assert f.gpus == 1024
    sched = GangScheduler()
    state = FactoryState(f.id, True, bytes(f.nodes), 50.0, 100.0, 0.0)

    def snap(now_s: int, jobs: list) -> FleetSnapshot:
        return FleetSnapshot(now_s, (f,), (state,), (), tuple(JobView(j, None, (), 0.0, now_s) for j in jobs), ())

    def tj(jid: str, gpus: int):
        return parse_scenario(scenario([factory("f", nodes=128)], [job(jid, gpus=gpus, work="1h")],
                                       duration="1h")).jobs[0]

    small, large = tj("small", 8), tj("big", 64)
    for t in range(0, 7200, 60):  # both pending for two hours: counted once
        worthy = sched._drain_worthy(snap(t, [small, large]))
    assert sched._all_gpu_s == pytest.approx(small.gpus * small.work_s + large.gpus * large.work_s)
    assert sched._large_gpu_s == pytest.approx(large.gpus * large.work_s)
    assert worthy  # 64 of 72 GPU-units of work are in the large gang (share 0.89 >= 0.4)
    # both end; a stream of one-off small jobs follows for two days
    for k, t in enumerate(range(7200, 7200 + 2 * 86_400, 600)):
        worthy = sched._drain_worthy(snap(t, [tj(f"s{k}", 8)]))
    assert not worthy
    assert "small" not in sched._seen_s and "big" not in sched._seen_s  # gone for a day: forgotten
    assert len(sched._seen_s) <= 86_400 // 600 + 3600 // 600 + 1  # a day of ids (plus up to an hour to the prune)
    n = 2 * 86_400 // 600
    assert sched._all_gpu_s == pytest.approx(small.gpus * small.work_s * (1 + n) + large.gpus * large.work_s)


def _mix_modes(band: float, shares: list[float]) -> list[bool]:
    """The mix rule's answer at each of a series of decisions on a 1,024-GPU fleet ("large" = 64 GPUs or more),
    where each decision adds one job (8-GPU small or 64-GPU large) sized so that the running share of large-gang
    work is the next of ``shares``."""
    f = parse_scenario(scenario([factory("f", nodes=128)], [], duration="1h")).factories[0]
    state = FactoryState(f.id, True, bytes(f.nodes), 50.0, 100.0, 0.0)
    sched = GangScheduler(reserve_mix_band=band)
    jobs: list[TrainingJob] = []
    modes = []
    def add(jid: str, gpus: int, gpu_s: float) -> None:
        # work_flop in proportion to GPU-seconds (work_s = work_flop / (gpus x peak x mfu))
        jobs.append(TrainingJob(jid, "GB200", gpus, gpu_s * 1e15, 0.4, 0, CheckpointSpec(1800, 20, 1e12, 800),
                                RecoverySpec(120, 300)))

    large, every = shares[0] * 64 * 3600, 64 * 3600.0
    add("first-large", 64, large)  # the first decision sees one large and one small job
    for k, p in enumerate(shares):
        if k == 0:
            gpus, gpu_s = 8, every - large
        elif large / every > p:  # add small work: large / (every + x) = p
            gpus, gpu_s = 8, large / p - every
        else:  # add large work: (large + y) / (every + y) = p
            gpus, gpu_s = 64, (p * every - large) / (1.0 - p)
            large += gpu_s
        every += gpu_s if k else 0.0
        add(f"j{k}", gpus, gpu_s)
        snap = FleetSnapshot(60 * k, (f,), (state,), (), tuple(JobView(j, None, (), 0.0, 0) for j in jobs), ())
        modes.append(sched._drain_worthy(snap))
        assert sched._large_gpu_s / sched._all_gpu_s == pytest.approx(p)
    return modes


def test_the_mix_mode_is_latched_with_hysteresis_around_the_threshold() -> None:
    # a running share wandering around reserve_mix_share (0.4) as on Seren's seed 0 (0.32-0.43 over the day):
    # with the band (default 0.05) the mode changes only on leaving [0.35, 0.45); without it, at every crossing
    shares = [0.42, 0.38, 0.41, 0.37, 0.34, 0.44, 0.41, 0.46]
    assert GangScheduler().reserve_mix_band == 0.05
    assert _mix_modes(0.05, shares) == [True, True, True, True, False, False, False, True]
    assert _mix_modes(0.0, shares) == [True, False, True, False, False, True, True, True]
    with pytest.raises(ValueError, match="reserve_mix_band"):
        GangScheduler(reserve_mix_band=-0.1)


def test_a_withheld_claim_keeps_every_other_job_off_the_promised_nodes() -> None:
    # nodes a preemptor was promised (a claim) on a free rack: with claims_withhold no other job may place there,
    # however short; without it (the old rule, start = inf) any job may still backfill onto them
    from superfactory.policy.gang_site import hold_claims

    f = Factory("f", "r", "MISO", "MISO", 1e12, 1e12, 1.1, frozenset(), "US", build_clusters([("gb200-nvl72", 18)]))
    other = TrainingJob("o", "GB200", 8, 600.0, 0.4, 0, CheckpointSpec(1800, 20, 1e12, 800), RecoverySpec(120, 300))
    snap = SimpleNamespace(now_s=0, factory_index=lambda fid: 0)
    usable = {}
    for withhold in (False, True):
        sched = GangScheduler(claims_withhold=withhold)
        site = GangSite(0, f, topology_of(f), np.zeros(f.nodes, dtype=np.uint8), np.ones(f.nodes, dtype=bool),
                        np.zeros(f.nodes, dtype=bool), set(), {}, 0.0)
        claims = {"p": ("f", tuple(range(16)), 3600)}
        hold_claims(claims, {"p"}, snap, [site], sched.claim_start_s)
        usable[withhold] = int(sched._usable(site, other, 600.0).sum())
        assert sched._usable(site, TrainingJob("p", "GB200", 64, 600.0, 0.4, 0, CheckpointSpec(1800, 20, 1e12, 800),
                                               RecoverySpec(120, 300)), 600.0).sum() == 18  # the owner's own
    assert usable == {False: 18, True: 2}


def test_sticky_reservations_are_entered_before_the_degraded_swaps_when_asked() -> None:
    # a waiting gang's sticky reservation on trays 0-15, where a running job holds 8-15 until ~2 h: entered for the
    # swaps that run before the walk, it starts at that job's expected end, so a long swap target cannot take the
    # free trays 0-7 (a drain window) while a short job still may
    from superfactory.domain.lifecycle import JobLifecycle

    f = Factory("f", "r", "MISO", "MISO", 1e12, 1e12, 1.1, frozenset(), "US", build_clusters([("gb200-nvl72", 18)]))
    ck, rec = CheckpointSpec(1e9, 20, 1e12, 800), RecoverySpec(60, 300)
    per_flop_s = TrainingJob("x", "GB200", 8, 1e18, 0.4, 0, ck, rec).work_s / 1e18

    def tj(jid: str, work_s: float) -> TrainingJob:
        return TrainingJob(jid, "GB200", 8, work_s / per_flop_s, 0.4, 0, ck, rec)

    holder = JobView(tj("h", 7200.0), "f", tuple(range(8, 16)), 0.0, -1, state=JobLifecycle.RUNNING)
    snap = SimpleNamespace(now_s=0, running=(holder,), factories=(f,), factory_index=lambda fid: 0)
    sched = GangScheduler(swaps_honour_reservations=True)
    sched._sticky["g"] = ("f", tuple(range(16)))
    free = np.zeros(f.nodes, dtype=bool)
    free[:8] = True
    free[16:] = True
    site = GangSite(0, f, topology_of(f), np.zeros(f.nodes, dtype=np.uint8), free, np.zeros(f.nodes, dtype=bool),
                    set(), {}, 0.0)
    added = sched._hold_sticky(snap, [site])
    assert len(added) == 1 and added[0][2] == "g" and abs(added[0][1] - 7200.0) < 1.0
    assert int(sched._usable(site, tj("long", 3 * 3600.0), 3 * 3600.0).sum()) == 2  # only trays 16-17
    assert int(sched._usable(site, tj("short", 3600.0), 3600.0).sum()) == 10  # ends before the gang's start
