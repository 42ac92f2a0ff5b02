"""geo proves a running job settled without building its columns (``geo_running._settles``, issue 12, session 8):
at a full solve, a running job for which staying is strictly the cheapest column is dropped before its columns
exist, and the answer is shared at that decision by every running job of the same class. The quick path must find
exactly the jobs the full build finds (``_settles`` off: every column built, then staying compared with the rest),
and the columns of the others must be the same to the last bit, on random prices (ties included), values of a
GPU-hour, hysteresis, job states, sizes, spans and near-copies of a job that differ in one thing the answer reads
(priority, state, checkpoint size, drain); a later full solve of the same hour and a build without the settled set
included."""

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
_PRICES = (-10.0, 0.0, 20.0, 40.0, 40.0, 55.5, 80.0, 400.0, 3000.0)  # few values: exact ties happen
_STATES = (JobLifecycle.RUNNING, JobLifecycle.RUNNING, JobLifecycle.CHECKPOINTING, JobLifecycle.STARTING)
_LAWFUL = {j.id: [f.id for f in _FACTORIES if j.accelerator in f.accelerators] for j in _JOBS}


def _variant(draw: st.DrawFn, view: JobView, n: int) -> JobView:
    """A near-copy of a running job (another id): the same in all, or different in one thing _settles reads."""
    job = dataclasses.replace(view.job, id=f"{view.job.id}-v{n}")
    what = draw(st.sampled_from(["same", "priority", "state", "checkpoint", "drain", "progress"]))
    if what == "priority":
        job = dataclasses.replace(job, priority=job.priority + 60)  # pausing ~2x dearer
    elif what == "checkpoint":
        job = dataclasses.replace(job, checkpoint=dataclasses.replace(
            job.checkpoint, size_bytes=job.checkpoint.size_bytes * 3000))
    elif what == "drain":
        job = dataclasses.replace(job, recovery=dataclasses.replace(
            job.recovery, restart_s=job.recovery.restart_s + 20 * 3600))
    state = JobLifecycle.STARTING if what == "state" else view.state
    progress = view.job.work_s - 2 * 3600.0 if what == "progress" else view.progress_s  # a 2 h span
    return dataclasses.replace(view, job=job, state=state, progress_s=progress)


@st.composite
def _cases(draw: st.DrawFn) -> tuple[FleetSnapshot, list[np.ndarray], dict[str, float], dict[str, object]]:
    nf = len(_FACTORIES)
    level = [draw(st.sampled_from([0.1, 1.0, 10.0]) | st.floats(0.05, 30.0)) for _ in range(nf)]
    paths = [np.array(draw(st.lists(st.sampled_from(_PRICES), min_size=25, max_size=25))) * lv for lv in level]
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
        running.extend(_variant(draw, view, k) for k in range(draw(st.integers(0, 5))))
    running = draw(st.permutations(running))  # a copy may come first: the first of a class answers for it
    snap = FleetSnapshot(0, _FACTORIES, states, (), (), tuple(running))
    lam = {"H100-SXM": draw(st.sampled_from([0.5, 2.0, 5.0, 1e12]) | st.floats(0.05, 20.0)),
           "GB200": draw(st.sampled_from([1.0, 4.0]) | st.floats(0.05, 20.0))}  # near pausing's break-even too
    params = {"hysteresis": draw(st.sampled_from([0.0, 0.02, 0.15])), "horizon_h": draw(st.sampled_from([3, 12])),
              "migrate": draw(st.booleans())}
    return snap, paths, lam, params


def _columns(snap: FleetSnapshot, paths: list[np.ndarray], lam: dict[str, float], params: dict[str, object],
             forced: frozenset[str] = frozenset()) -> list[tuple[list[object], set[int] | None]]:
    """Two full solves' columns and settled sets on one policy (the second in the same hour: the kept columns),
    then the columns asked without the settled set."""
    pol = GeoPolicy(**params)  # type: ignore[arg-type]
    pol._lam = lam
    pol._sig_key = ("test",)
    pol._forced |= forced
    views = list(snap.running)
    running = set(range(len(views)))
    out: list[tuple[list[object], set[int] | None]] = []
    for settled in (set(), set(), None):
        cols = pol._columns(snap, views, running, paths, set(), {}, [], settled)
        out.append((cols, settled))
    return out


@settings(max_examples=300, deadline=None)
@given(_cases(), st.data())
def test_quick_settled_path_finds_what_the_full_build_finds(case, data) -> None:
    snap, paths, lam, params = case
    forced = frozenset(v.job.id for v in snap.running if data.draw(st.integers(0, 5)) == 0)
    answers: list[tuple[str, bool]] = []
    real = geo_running._settles

    def recorded(pol, ctx, job, *a):  # type: ignore[no-untyped-def]
        got = real(pol, ctx, job, *a)
        answers.append((job.id, got))
        return got

    geo_running._settles = recorded  # type: ignore[assignment]
    try:
        quick = _columns(snap, paths, lam, params, forced)
        geo_running._settles = lambda *a: False  # type: ignore[assignment]  # the reference: every column built
        full = _columns(snap, paths, lam, params, forced)
    finally:
        geo_running._settles = real
    assert quick == full
    # and the quick test is exact, not only safe: a job it did not settle is not settled by the full build either
    full_settled = {snap.running[jx].job.id for jx in full[0][1] or ()}
    assert not {jid for jid, got in answers if not got} & full_settled


def test_copies_of_a_job_share_one_answer_and_others_do_not() -> None:
    """Forty running jobs, each with three identical copies: _settles runs once per class, not once per job, and
    both answers occur (the comparison above is not between two empty sets)."""
    rng = np.random.default_rng(7)
    views = []
    for n, job in enumerate(_JOBS[:40]):
        v = JobView(job, _LAWFUL[job.id][n % len(_LAWFUL[job.id])], (n,), 0.0, -1, state=JobLifecycle.RUNNING)
        views += [v, *(dataclasses.replace(v, job=dataclasses.replace(job, id=f"{job.id}-c{k}")) for k in range(3))]
    states = tuple(FactoryState(f.id, True, bytes(np.full(f.nodes, NODE_FREE, np.uint8)), 50.0, 300.0, 0.0)
                   for f in _FACTORIES)
    snap = FleetSnapshot(0, _FACTORIES, states, (), (), tuple(views))
    paths = [rng.choice(np.array(_PRICES[2:8]), 25) for _ in _FACTORIES]
    calls: list[bool] = []
    real = geo_running._settles

    def counted(*a):  # type: ignore[no-untyped-def]
        got = real(*a)
        calls.append(got)
        return got

    geo_running._settles = counted  # type: ignore[assignment]
    try:
        cols, settled = _columns(snap, paths, {"H100-SXM": 0.5, "GB200": 4.0}, {"hysteresis": 0.02})[0]
    finally:
        geo_running._settles = real
    assert 0 < len(calls) <= 40
    assert any(calls) and not all(calls)
    assert settled and len(settled) < len(views) and cols


def _settled_quick_and_full(views: list[JobView], paths: list[np.ndarray], lam: dict[str, float],
                            params: dict[str, object]) -> tuple[set[int] | None, set[int] | None]:
    states = tuple(FactoryState(f.id, True, bytes(np.full(f.nodes, NODE_FREE, np.uint8)), 50.0, 300.0, 0.0)
                   for f in _FACTORIES)
    snap = FleetSnapshot(0, _FACTORIES, states, (), (), tuple(views))
    quick = _columns(snap, paths, lam, params)[1][1]  # (the second solve: the jobs' sites are kept by then)
    real = geo_running._settles
    geo_running._settles = lambda *a: False  # type: ignore[assignment]
    try:
        full = _columns(snap, paths, lam, params)[1][1]
    finally:
        geo_running._settles = real
    return quick, full


def test_a_settled_copy_answers_only_for_its_own_class() -> None:
    """The first job of a class answers for it: a locked copy (no pause column: settled) must not answer for the
    computing job after it, which pauses through a dear spell; a copy whose checkpoint is too big to move must not
    answer for the job after it, which moves to a cheap site (the bigger checkpoint also lengthens the drain)."""
    job = next(j for j in _JOBS if j.accelerator == "GB200" and j.gpus >= 512)
    home = _LAWFUL[job.id][0]
    cur = next(i for i, f in enumerate(_FACTORIES) if f.id == home)
    dear = [np.full(25, 40.0) for _ in _FACTORIES]
    dear[cur] = np.full(25, 90_000.0)  # staying costs far more than pausing or moving
    run = JobView(job, home, (0,), 0.0, -1, state=JobLifecycle.RUNNING)
    locked = dataclasses.replace(run, job=dataclasses.replace(job, id="locked-copy"), state=JobLifecycle.STARTING)
    quick, full = _settled_quick_and_full([locked, run], dear, {"H100-SXM": 2.0, "GB200": 2.0}, {"migrate": False})
    assert full == {0} and quick == full
    big = dataclasses.replace(job, id="big-copy", checkpoint=dataclasses.replace(
        job.checkpoint, size_bytes=job.checkpoint.size_bytes * 10**7))
    moved = [np.full(25, 40.0) for _ in _FACTORIES]
    moved[cur] = np.full(25, 400.0)
    quick, full = _settled_quick_and_full([dataclasses.replace(run, job=big), run], moved,
                                          {"H100-SXM": 1e12, "GB200": 1e12}, {"hysteresis": 0.0})
    assert full == {0} and quick == full
