"""geo's pending fit filter keeps each job's key to the per-snapshot answers (issue 12, session 8): asking
``_fits_somewhere`` for many waiting jobs costs two dict lookups per job once its key's answer is known. The kept
keys must give the same answers as a policy that has never seen the jobs, on every snapshot, including after the
set of factories changes (the keys belong to the factories they were made for). Also the next wait bound
(``_set_deadline``, one pass over the pending jobs at every cheap decision) against the plain min."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from superfactory.domain.fleet import NODE_BUSY, NODE_FREE, FactoryState, FleetSnapshot, JobView
from superfactory.domain.job import TrainingJob
from superfactory.policy.geo import GeoPolicy
from superfactory.scenario.loader import load_scenario

_SC = load_scenario("default")
_FACTORIES = tuple(_SC.factories)
_JOBS = tuple(_SC.jobs[::5])  # 128 to 8,192 GPUs, both accelerators


def _snapshot(factories: tuple, seed: int, busy_p: float, jobs: tuple[TrainingJob, ...],
              down: int) -> FleetSnapshot:
    rng = np.random.default_rng(seed)
    states = tuple(FactoryState(f.id, i != down, bytes(np.where(rng.random(f.nodes) < busy_p, NODE_BUSY,
                                                                 NODE_FREE).astype(np.uint8)), 50.0, 300.0, 0.0)
                   for i, f in enumerate(factories))
    pending = tuple(JobView(j, None, (), 0.0, 0) for j in jobs)
    return FleetSnapshot(0, factories, states, (), pending, ())


def _fresh_fits(snap: FleetSnapshot, job: TrainingJob) -> bool:
    return GeoPolicy()._fits_somewhere(snap, job)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**31), st.floats(0.0, 1.0), st.integers(-1, 4), st.booleans()),
                min_size=1, max_size=6),
       st.randoms(use_true_random=False))
def test_kept_fit_keys_answer_as_a_fresh_policy(steps: list[tuple[int, float, int, bool]], rnd) -> None:
    pol = GeoPolicy()
    factories = _FACTORIES
    for seed, busy_p, down, new_set in steps:
        if new_set:  # a new set of factories (fewer, or the same ones renamed): sites and keys change
            n = rnd.randint(2, len(_FACTORIES))
            factories = tuple(dataclasses.replace(f, id=f"{f.id}-{seed % 7}") for f in _FACTORIES[:n])
        jobs = tuple(rnd.sample(_JOBS, k=min(len(_JOBS), rnd.randint(1, 30))))
        snap = _snapshot(factories, seed, busy_p, jobs, down)
        for _ask in range(2):  # the second pass answers every job from its kept key
            for v in snap.pending:
                assert pol._fits_somewhere(snap, v.job) == _fresh_fits(snap, v.job)


def test_keys_are_forgotten_when_the_factories_change() -> None:
    """A job kept with the key of "no lawful site" (its accelerator was missing) must not read that key's answer
    once the factories change and another job, too big for any of them, has put a "no" under it."""
    gb = tuple(f for f in _FACTORIES if f.accelerators == frozenset({"GB200"}))
    h100 = next(j for j in _JOBS if j.accelerator == "H100-SXM" and j.gpus <= 1024)
    huge = dataclasses.replace(h100, id="huge", gpus=10**7)
    pol = GeoPolicy()
    assert not pol._fits_somewhere(_snapshot(gb, 1, 0.0, (h100,), -1), h100)  # no H100 factory at all
    new = _snapshot(_FACTORIES, 1, 0.0, (huge, h100), -1)
    assert not pol._fits_somewhere(new, huge)  # asked first: the answer of "no site", for H100 jobs, is no
    assert pol._fits_somewhere(new, h100)  # an idle H100 factory holds it


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(-1, 50_000), st.booleans()), max_size=30), st.integers(0, 80_000),
       st.integers(-1, 29))
def test_next_deadline_is_the_earliest_bound_still_ahead(jobs: list[tuple[int, bool]], now: int, at: int) -> None:
    """``_set_deadline``'s one pass gives the earliest ``waiting_since_s + max_wait_s`` after ``now`` among waiting
    jobs not placed now (the plain min over them; no such job: 10**18). ``at``: ``now`` is exactly that job's
    bound (a job at its bound now is not ahead)."""
    pol = GeoPolicy(max_wait_s=6 * 3600)
    if 0 <= at < len(jobs) and jobs[at][0] >= 0:
        now = jobs[at][0] + pol.max_wait_s
    views = tuple(JobView(dataclasses.replace(_JOBS[0], id=f"j{i}"), None, (), 0.0, since)
                  for i, (since, _p) in enumerate(jobs))
    placed = {f"j{i}" for i, (_s, p) in enumerate(jobs) if p}
    snap = _snapshot(_FACTORIES, 0, 0.0, (), -1)
    pol._set_deadline(dataclasses.replace(snap, pending=views), now, placed)
    want = min((v.waiting_since_s + pol.max_wait_s for v in views if v.job.id not in placed
                and v.waiting_since_s >= 0 and v.waiting_since_s + pol.max_wait_s > now), default=10**18)
    assert pol._next_deadline_s == want
