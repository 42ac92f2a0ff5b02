"""geo's quick settled test shares what depends only on a running job's sites, factory, span and backoffs
(``geo_running._settles`` over ``_energy_of``, issue 12, session 9): a destination whose run rate plus margin is
already above staying needs no move cost, which is never negative. Its answer must be the full test's
(``_settles_exact``, kept as it was) for every job, on random prices with exact ties (staying equal to a move's
energy part), moves that cost nothing (no checkpoint, no drain), values of a GPU-hour of every sign (the wave-1
quantile rule can give a negative one), unknown values, states, spans, forced runs and near-copies of a job."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from superfactory.domain.fleet import NODE_BUSY, NODE_FREE, FactoryState, FleetSnapshot, JobView
from superfactory.domain.lifecycle import JobLifecycle
from superfactory.policy import geo_running
from superfactory.policy.geo import GeoPolicy
from superfactory.scenario.loader import load_scenario

_SC = load_scenario("default")
_FACTORIES = tuple(_SC.factories)
_JOBS = tuple(j for j in _SC.jobs[::3] if j.gpus <= 2048)
_PRICES = (-10.0, 0.0, 20.0, 40.0, 40.0, 55.5, 80.0, 400.0)  # few values: exact ties happen
_STATES = (JobLifecycle.RUNNING, JobLifecycle.RUNNING, JobLifecycle.CHECKPOINTING, JobLifecycle.STARTING)
_LAWFUL = {j.id: [f.id for f in _FACTORIES if j.accelerator in f.accelerators] for j in _JOBS}


def _free_move(view: JobView, n: int) -> JobView:
    """A copy whose move costs nothing: no checkpoint to ship, no drain, no restart (a move's cost is its energy
    part alone, so a tie between staying and that part decides)."""
    job = view.job
    job = dataclasses.replace(job, id=f"{job.id}-free{n}",
                              checkpoint=dataclasses.replace(job.checkpoint, size_bytes=0, blocking_s=0),
                              recovery=dataclasses.replace(job.recovery, restart_s=0))
    return dataclasses.replace(view, job=job)


@st.composite
def _cases(draw: st.DrawFn) -> tuple[FleetSnapshot, list[np.ndarray], dict[str, float], dict[str, object]]:
    nf = len(_FACTORIES)
    level = draw(st.sampled_from([0.1, 1.0, 10.0]))  # one level: equal prices give equal rates across sites
    paths = [np.array(draw(st.lists(st.sampled_from(_PRICES), min_size=25, max_size=25))) * level
             for _ in range(nf)]
    if draw(st.booleans()):
        paths[1] = paths[0].copy()  # two sites at the same price: staying ties a move's energy part
    down = draw(st.integers(-1, nf - 1))
    busy = [draw(st.booleans()) for _ in range(nf)]
    states = tuple(FactoryState(f.id, i != down, bytes(np.full(f.nodes, NODE_BUSY if busy[i] else NODE_FREE,
                                                                np.uint8)), 50.0, 300.0, 0.0)
                   for i, f in enumerate(_FACTORIES))
    jobs = draw(st.lists(st.sampled_from(_JOBS), min_size=1, max_size=6, unique_by=lambda j: j.id))
    running: list[JobView] = []
    for n, job in enumerate(jobs):
        fid = draw(st.sampled_from(_LAWFUL[job.id]))
        progress = draw(st.sampled_from([0.0, job.work_s - 1800.0, job.work_s - 7 * 3600.0, job.work_s / 2]))
        view = JobView(job, fid, (n,), max(progress, 0.0), -1, state=draw(st.sampled_from(_STATES)))
        running.append(view)
        if draw(st.booleans()):
            running.append(_free_move(view, n))
        if draw(st.booleans()):
            running.append(dataclasses.replace(view, job=dataclasses.replace(job, id=f"{job.id}-p",
                                                                             priority=job.priority + 60)))
    running = draw(st.permutations(running))
    snap = FleetSnapshot(0, _FACTORIES, states, (), (), tuple(running))
    values = st.sampled_from([0.5, 2.0, 0.0, -1.0, -0.0, 1e12]) | st.floats(-20.0, 20.0)
    lam = {"H100-SXM": draw(values), "GB200": draw(values)}
    params = {"hysteresis": draw(st.sampled_from([0.0, 0.02, 0.15])), "horizon_h": draw(st.sampled_from([3, 12])),
              "migrate": draw(st.booleans())}
    return snap, paths, lam, params


def _two_solves(snap: FleetSnapshot, paths: list[np.ndarray], lam: dict[str, float], params: dict[str, object],
                forced: frozenset[str]) -> list[tuple[list[object], set[int]]]:
    pol = GeoPolicy(**params)  # type: ignore[arg-type]
    pol._lam = lam
    pol._sig_key = ("test",)
    pol._forced |= forced
    views = list(snap.running)
    out: list[tuple[list[object], set[int]]] = []
    for _ in range(2):  # (the second: the jobs' sites are kept, so the quick test runs)
        settled: set[int] = set()
        out.append((pol._columns(snap, views, set(range(len(views))), paths, set(), {}, [], settled), settled))
    return out


@settings(max_examples=300, deadline=None)
@given(_cases(), st.data())
def test_shared_settled_test_equals_the_full_one(case, data) -> None:  # type: ignore[no-untyped-def]
    snap, paths, lam, params = case
    forced = frozenset(v.job.id for v in snap.running if data.draw(st.integers(0, 5)) == 0)
    shared = geo_running._settles
    exact = geo_running._settles_exact
    seen: list[bool] = []

    def both(*a):  # type: ignore[no-untyped-def]
        got = shared(*a)
        assert got == exact(*a)
        seen.append(got)
        return got

    geo_running._settles = both  # type: ignore[assignment]
    try:
        got = _two_solves(snap, paths, lam, params, forced)
        geo_running._settles = exact  # type: ignore[assignment]
        want = _two_solves(snap, paths, lam, params, forced)
    finally:
        geo_running._settles = shared
    assert got == want


def test_a_destination_above_staying_needs_no_move_cost() -> None:
    """The shared part really answers: with one cheap site (the job's) and dear others, every movable job is
    settled without its move costs being looked up (its move-cost table stays empty), and a job at a dear site
    with a cheaper one in reach is not settled."""
    nf = len(_FACTORIES)
    paths = [np.full(25, 400.0) for _ in range(nf)]
    paths[0] = np.full(25, 20.0)
    states = tuple(FactoryState(f.id, True, bytes(np.full(f.nodes, NODE_FREE, np.uint8)), 50.0, 300.0, 0.0)
                   for f in _FACTORIES)
    home = _FACTORIES[0].id
    jobs = [j for j in _JOBS if home in _LAWFUL[j.id] and len(_LAWFUL[j.id]) > 1][:6]
    views = [JobView(j, home, (n,), 0.0, -1, state=JobLifecycle.RUNNING) for n, j in enumerate(jobs)]
    dear = next(f for f in _LAWFUL[jobs[0].id] if f != home)
    views.append(JobView(dataclasses.replace(jobs[0], id="dear"), dear, (99,), 0.0, -1, state=JobLifecycle.RUNNING))
    snap = FleetSnapshot(0, _FACTORIES, states, (), (), tuple(views))
    pol = GeoPolicy(hysteresis=0.02)
    pol._lam = {"H100-SXM": 2.0, "GB200": 4.0}
    pol._sig_key = ("test",)
    calls: list[object] = []
    real = geo_running._settles_exact
    geo_running._settles_exact = lambda *a: calls.append(a) or real(*a)  # type: ignore[assignment, func-returns-value]
    try:
        for _ in range(2):  # (the first builds columns: the jobs' sites are not yet kept)
            pol._mig_cache.clear()
            pol._col_cache.clear()
            settled: set[int] = set()
            pol._columns(snap, views, set(range(len(views))), paths, set(), {}, [], settled)
    finally:
        geo_running._settles_exact = real
    assert settled == set(range(len(jobs)))  # every job at the cheap site, not the one at the dear site
    assert not calls  # no job needed the full test
    assert all(not pol._mig_cache.get(v.job.id, ((), {}))[1] for v in views[:-1])


def test_a_free_move_that_ties_staying_is_not_settled() -> None:
    """Power at no cost at every site: staying costs 0.0 and so does a move's energy part. A move that costs
    nothing else (no checkpoint, no drain) ties staying, so staying is not strictly cheapest and the job is not
    settled; the same job with a checkpoint to ship is."""
    paths = [np.zeros(25) for _ in _FACTORIES]
    states = tuple(FactoryState(f.id, True, bytes(np.full(f.nodes, NODE_FREE, np.uint8)), 50.0, 300.0, 0.0)
                   for f in _FACTORIES)
    job = next(j for j in _JOBS if len(_LAWFUL[j.id]) > 1)
    view = JobView(job, _LAWFUL[job.id][0], (0,), 0.0, -1, state=JobLifecycle.RUNNING)
    views = [view, _free_move(view, 1)]
    assert views[1].job.checkpoint.async_write_s == 0  # (its drain hours are 0)
    snap = FleetSnapshot(0, _FACTORIES, states, (), (), tuple(views))
    for settled in (s for _c, s in _two_solves(snap, paths, {"H100-SXM": 2.0, "GB200": 4.0}, {"hysteresis": 0.02},
                                               frozenset())):
        assert settled == {0}
