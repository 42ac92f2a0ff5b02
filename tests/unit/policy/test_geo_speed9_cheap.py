"""geo's decisions between full solves, made cheaper in session 9 (issue 12), against the computations they
replace (reference copies kept below):

- the pending split (:meth:`GeoColumns._split_pending`): which pending jobs are priced and the kept reasons of the
  rest, in one pass with each job's fit key kept with the pending tuple, equals the old filter
  ``[v for v in pending if v.job.id not in reasons or _fits_somewhere(...)]`` on a fresh policy, also when the
  same pending tuple comes back after its nodes or the set of factories changed;
- the job ids of the pending tuple (``_pending_ids``), kept while the tuple is the same object;
- the actions (:meth:`GeoPlanning._actions`), which now write a plan's placed nodes into a factory's status copy
  only when a later pick in that factory reads it, equal the old ``_actions`` (copy on first pick, write at once);
- place_gang in factories whose every node is its own NVLink domain (free nodes per domain = the usable mask)
  equals the per-domain sums.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from superfactory.domain.fleet import (
    NODE_BUSY,
    NODE_FREE,
    FactoryState,
    FleetSnapshot,
    JobView,
    Migrate,
    Place,
    Plan,
    Preempt,
)
from superfactory.domain.job import TrainingJob
from superfactory.domain.topology import topology_of
from superfactory.policy import gangfit
from superfactory.policy.geo import GeoPolicy
from superfactory.policy.geo_columns import _Col
from superfactory.policy.geo_plan import pick_nodes
from superfactory.scenario.loader import load_scenario

_SC = load_scenario("default")
_FACTORIES = tuple(_SC.factories)
_JOBS = tuple(_SC.jobs[::5])  # 128 to 8,192 GPUs, both accelerators
_SMALL = tuple(j for j in load_scenario("fleet-year").jobs[:400] if j.gpus <= 256)  # many fit one factory


def _states(factories: tuple, seed: int, busy_p: float, down: int) -> tuple[FactoryState, ...]:
    rng = np.random.default_rng(seed)
    return tuple(FactoryState(f.id, i != down, bytes(np.where(rng.random(f.nodes) < busy_p, NODE_BUSY,
                                                              NODE_FREE).astype(np.uint8)), 50.0, 300.0, 0.0)
                 for i, f in enumerate(factories))


def _reference_split(snap: FleetSnapshot, reasons: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The filter as decide wrote it before session 9, on a policy that has never seen the jobs."""
    fresh = GeoPolicy()
    views = [v for v in snap.pending if v.job.id not in reasons or fresh._fits_somewhere(snap, v.job)]
    priced = {v.job.id for v in views}
    waiting = {v.job.id: reasons[v.job.id] for v in snap.pending if v.job.id not in priced}
    return [v.job.id for v in views], waiting


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**31), st.floats(0.0, 1.0), st.integers(-1, 4), st.booleans(),
                          st.booleans(), st.floats(0.0, 1.0)), min_size=1, max_size=8),
       st.randoms(use_true_random=False))
def test_split_pending_equals_the_old_filter(steps: list[tuple[int, float, int, bool, bool, float]], rnd) -> None:
    """Random decisions: a new pending tuple or the same object again (its kept keys read back) with new node
    states, some jobs with a reason, a factory down, sometimes a new set of factories under the same tuple."""
    pol = GeoPolicy()
    factories = _FACTORIES
    pending: tuple[JobView, ...] = ()
    for seed, busy_p, down, new_set, keep_pending, reason_p in steps:
        if new_set:  # a new set of factories (fewer, or renamed): sites and keys change, the tuple may not
            n = rnd.randint(2, len(_FACTORIES))
            factories = tuple(dataclasses.replace(f, id=f"{f.id}-{seed % 7}") for f in _FACTORIES[:n])
        if not (keep_pending and pending):
            jobs = rnd.sample(_JOBS, k=min(len(_JOBS), rnd.randint(1, 30)))
            pending = tuple(JobView(j, None, (), 0.0, 0) for j in jobs)
        snap = FleetSnapshot(0, factories, _states(factories, seed, busy_p, down), (), pending, ())
        reasons = {v.job.id: f"r{k}" for k, v in enumerate(pending) if rnd.random() < reason_p}
        views, waiting = pol._split_pending(snap, reasons)
        assert ([v.job.id for v in views], waiting) == _reference_split(snap, reasons)
        assert all(v is w for v, w in zip(views, [v for v in pending if v.job.id in {x.job.id for x in views}],
                                          strict=True))
        ids, idset = pol._pending_ids(snap)
        assert ids == tuple(v.job.id for v in pending) and idset == frozenset(ids)


def test_split_forgets_kept_keys_when_the_factories_change() -> None:
    """The same pending tuple under a new set of factories: a job kept with the key of "no lawful site" (no H100
    factory) must not read the answer another job, too big for any factory, files under that key now."""
    gb = tuple(f for f in _FACTORIES if f.accelerators == frozenset({"GB200"}))
    h100 = next(j for j in _JOBS if j.accelerator == "H100-SXM" and j.gpus <= 1024)
    huge = dataclasses.replace(h100, id="huge", gpus=10**7)
    pending = (JobView(huge, None, (), 0.0, 0), JobView(h100, None, (), 0.0, 0))
    reasons = {"huge": "waits", h100.id: "waits too"}
    pol = GeoPolicy()
    views, waiting = pol._split_pending(FleetSnapshot(0, gb, _states(gb, 1, 0.0, -1), (), pending, ()), reasons)
    assert views == [] and waiting == reasons  # no H100 factory: both fit nowhere
    new = FleetSnapshot(0, _FACTORIES, _states(_FACTORIES, 1, 0.0, -1), (), pending, ())
    views, waiting = pol._split_pending(new, reasons)
    assert [v.job.id for v in views] == [h100.id] and waiting == {"huge": "waits"}  # an idle H100 factory holds it


# -- the actions ------------------------------------------------------------------------------------------------
def _reference_actions(self: GeoPolicy, snap: FleetSnapshot, views: list[JobView], running: set[int],
                       chosen: list[_Col], cols: list[_Col], rng: np.random.Generator,
                       waiting: dict[str, str]) -> Plan:
    """GeoPlanning._actions as it was before session 9 (bdee95a): a factory's status copied at its first pick and
    every placement written into the copy at once."""
    now = snap.now_s
    copies: dict[int, npt.NDArray[np.uint8]] = {}

    def status(i: int) -> npt.NDArray[np.uint8]:
        got = copies.get(i)
        if got is None:
            got = copies[i] = np.frombuffer(snap.states[i].node_status, dtype=np.uint8).copy()
        return got

    filled: set[int] = set()
    memo = self._pick_memo

    def nodes_for(i: int, job: TrainingJob) -> tuple[int, ...] | None:
        f = snap.factories[i]
        if i in filled:
            return pick_nodes(f, status(i), job)
        b = snap.states[i].node_status
        hit = memo.get((job.id, i))
        if hit is not None and hit[0] is b and hit[1] is f:
            return hit[2]
        got = pick_nodes(f, status(i), job, b)
        memo[(job.id, i)] = (b, f, got)
        return got
    actions: list[Place | Migrate | Preempt] = []
    cheapest: dict[int, _Col] | None = None
    best_move: dict[int, _Col] = {}
    for c in cols:
        if c.migrating and c.job in running and (c.job not in best_move or c.cost < best_move[c.job].cost):
            best_move[c.job] = c
    for c in sorted(chosen, key=lambda c: (-views[c.job].job.priority, views[c.job].job.submit_s, c.job)):
        v = views[c.job]
        job = v.job
        if c.job in running:
            cur = snap.factory_index(v.factory_id) if v.factory_id is not None else -1
            if c.factory == cur:
                bm = best_move.get(c.job)
                if bm is not None and bm.cost < c.cost and self.governor.quota_left_gpus(
                        snap.factories[bm.factory].id, snap.factories[bm.factory].gpus, now, False,
                        job.gpus) < job.gpus:
                    self.governor.refuse(job.id, snap.factories[bm.factory].id, now, rng)
                continue
            if c.factory < 0:
                self._paused.add(job.id)
                actions.append(Preempt(job.id, "geo: paused, running here costs more than the value of a "
                                               "GPU-hour over the forecast horizon"))
                continue
            f = snap.factories[c.factory]
            nodes = nodes_for(c.factory, job)
            if nodes is None:
                continue
            status(c.factory)[list(nodes)] = 1
            filled.add(c.factory)
            self.governor.record_move(job.id, f.id, job.gpus, now)
            self._gpus[job.id] = job.gpus
            actions.append(Migrate(job.id, f.id, nodes, "geo: cheaper forecast power"))
            continue
        if c.factory < 0:
            if job.id not in waiting:
                if cheapest is None:
                    cheapest = self._cheapest_runs(cols)
                waiting[job.id] = self._wait_reason(snap, v, c, cols, cheapest)
            continue
        f = snap.factories[c.factory]
        nodes = nodes_for(c.factory, job)
        if nodes is None:
            waiting[job.id] = f"{f.id}: not enough free {job.accelerator} nodes"
            continue
        status(c.factory)[list(nodes)] = 1
        filled.add(c.factory)
        if c.migrating or (v.last_factory_id is not None and v.last_factory_id != f.id):
            self.governor.record_move(job.id, f.id, job.gpus, now)
            self._gpus[job.id] = job.gpus
        else:
            self.governor.record_start(job.id, now)
        waiting.pop(job.id, None)
        self._paused.discard(job.id)
        actions.append(Place(job.id, f.id, nodes))
    pending_ids = {v.job.id for v in snap.pending}
    return Plan(tuple(actions), tuple(sorted((j, r) for j, r in waiting.items() if j in pending_ids)))


class _Old(GeoPolicy):
    _actions = _reference_actions  # type: ignore[assignment]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**31), st.floats(0.0, 0.97), st.integers(-1, 4),
                          st.integers(1, 60)), min_size=1, max_size=4),
       st.randoms(use_true_random=False))
def test_actions_write_placed_nodes_only_when_read_and_plan_as_before(
        steps: list[tuple[int, float, int, int]], rnd) -> None:
    """Random plans of many small jobs, most into few factories (several picks in one factory read the nodes the
    plan placed before them), some to wait, over a few decisions (the pick memo answers the repeats): the same
    plan, action for action and reason for reason, as the old actions."""
    new, old = GeoPolicy(), _Old()
    for seed, busy_p, _down, n in steps:
        jobs = rnd.sample(_SMALL, k=min(n, len(_SMALL)))
        pending = tuple(JobView(j, None, (), 0.0, 0) for j in jobs)
        snap = FleetSnapshot(3600, _FACTORIES, _states(_FACTORIES, seed, busy_p, -1), (), pending, ())
        views = list(pending)
        hot = rnd.randrange(len(_FACTORIES))
        chosen = []
        for jx, v in enumerate(views):
            sites = [i for i, f in enumerate(_FACTORIES) if f.gpus_of(v.job.accelerator) >= v.job.gpus]
            fx = -1 if not sites or rnd.random() < 0.15 else (hot if hot in sites and rnd.random() < 0.7
                                                              else rnd.choice(sites))
            chosen.append(_Col(jx, fx, 1.0, 1 if fx >= 0 else 0, 0.0, False))
        for pol in (new, old):
            pol._lam = {"GB200": 2.0, "H100-SXM": 1.5}
        got = new._actions(snap, views, set(), chosen, chosen, np.random.default_rng(seed), {})
        want = old._actions(snap, views, set(), chosen, chosen, np.random.default_rng(seed), {})
        assert got == want
        placed = [a for a in got.actions if isinstance(a, Place)]
        for i, f in enumerate(_FACTORIES):  # (and no node handed out twice within a factory)
            nodes = [x for a in placed if a.factory_id == f.id for x in a.nodes]
            assert len(nodes) == len(set(nodes)), i


def test_actions_second_pick_in_a_factory_sees_the_first() -> None:
    """Two jobs placed in the same factory by one plan get disjoint nodes (the deferred write is made before the
    second pick reads the status)."""
    f0 = _FACTORIES[0]
    jobs = [j for j in _SMALL if f0.gpus_of(j.accelerator) >= j.gpus][:2]
    pending = tuple(JobView(j, None, (), 0.0, 0) for j in jobs)
    snap = FleetSnapshot(0, _FACTORIES, _states(_FACTORIES, 0, 0.0, -1), (), pending, ())
    chosen = [_Col(jx, 0, 1.0, 1, 0.0, False) for jx in range(2)]
    plan = GeoPolicy()._actions(snap, list(pending), set(), chosen, chosen, np.random.default_rng(0), {})
    a, b = plan.actions
    assert isinstance(a, Place) and isinstance(b, Place) and not set(a.nodes) & set(b.nodes)


# -- place_gang where every node is its own domain -----------------------------------------------------------------
def _dgx() -> Any:
    f = next(f for f in _FACTORIES if all(c.system.nodes_per_domain == 1 for c in f.clusters))
    return f, topology_of(f)


@settings(max_examples=60, deadline=None)
@given(busy_p=st.floats(0.0, 1.0), seed=st.integers(0, 2**31), units=st.integers(1, 3000))
def test_node_is_domain_counts_equal_the_per_domain_sums(busy_p: float, seed: int, units: int) -> None:
    f, topo = _dgx()
    t = gangfit._tables_of(topo)
    assert t.node_is_domain  # (DGX H100: one node per NVLink domain, numbered as the nodes)
    usable = np.random.default_rng(seed).random(f.nodes) >= busy_p
    shape = gangfit.GangShape(units, 1, 1)
    got = gangfit.place_gang(topo, usable, shape)
    gangfit._TABLES[id(topo)] = (topo, dataclasses.replace(t, node_is_domain=False))  # the per-domain sums
    try:
        want = gangfit.place_gang(topo, usable, shape)
    finally:
        gangfit._TABLES[id(topo)] = (topo, t)
    assert got == want


# -- free counts, once per cluster for both the per-accelerator and the per-factory figures ---------------------------
def _mixed_factory(blocks: list[tuple[int, int]], name: str) -> Any:
    """A factory of clusters ``(system 0..3, domains)``; system i is accelerator ``ACC{i % 2}``."""
    from superfactory.domain.accelerator import SystemSpec
    from superfactory.domain.factory import Cluster, Factory
    systems = [(4, 18), (8, 1), (2, 4), (4, 6)]
    clusters = []
    node_off = dom_off = 0
    for si, (sys_ix, domains) in enumerate(blocks):
        gpn, npd = systems[sys_ix]
        spec = SystemSpec(f"sys{si}", f"ACC{sys_ix % 2}", gpus_per_node=gpn, nodes_per_domain=npd,
                          max_power_w=1000.0)
        c = Cluster(spec, domains * npd, node_off, dom_off, npd, npd, 2, 2.0)
        clusters.append(c)
        node_off += c.nodes
        dom_off += c.domains
    return Factory(name, "r", "PJM", "PJM", 1e12, 1e12, 1.1, frozenset(), "US", tuple(clusters))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 6)), min_size=1, max_size=3), min_size=1,
                max_size=3),
       st.lists(st.tuples(st.integers(0, 2**31), st.floats(0.0, 1.0), st.booleans()), min_size=1, max_size=5))
def test_free_counts_per_cluster_equal_plain_counts(layouts: list[list[tuple[int, int]]],
                                                    steps: list[tuple[int, float, bool]]) -> None:
    """``_free_nodes`` (per accelerator) and ``_free_gpus`` (per factory) share one count per cluster per node bytes
    object: both equal plain counts over the bytes, as the bytes change or stay the same object, and when new
    factories (other clusters) come at the same indices."""
    pol = GeoPolicy()
    factories = tuple(_mixed_factory(b, f"f{i}") for i, b in enumerate(layouts))
    states: tuple[FactoryState, ...] = ()
    for seed, busy_p, new_factories in steps:
        if new_factories:  # the layouts rebuilt: new factory objects at the same indices, with new node bytes
            factories = tuple(_mixed_factory(list(reversed(b)), f"g{i}") for i, b in enumerate(layouts))
            states = ()  # (the counts are kept per node bytes object: a factory's bytes belong to that factory)
        rng = np.random.default_rng(seed)
        states = tuple(st if st is not None and rng.random() < 0.3 and st.node_status and len(st.node_status) == f.nodes
                       else FactoryState(f.id, True, bytes(np.where(rng.random(f.nodes) < busy_p, NODE_BUSY,
                                                                    NODE_FREE).astype(np.uint8)), 50.0, 300.0, 0.0)
                       for f, st in zip(factories, states or (None,) * len(factories), strict=True))
        snap = FleetSnapshot(0, factories, states, (), (), ())
        for _ask in range(2):
            for i, (f, s) in enumerate(zip(factories, states, strict=True)):
                for acc in ("ACC0", "ACC1", "ACC9"):
                    want = sum(s.node_status.count(NODE_FREE, c.node_offset, c.node_end) for c in f.clusters_of(acc))
                    assert pol._free_nodes(snap, i, acc) == want
            assert pol._free_gpus(snap) == [sum(s.node_status.count(NODE_FREE, c.node_offset, c.node_end)
                                                * c.system.gpus_per_node for c in f.clusters)
                                            for f, s in zip(factories, states, strict=True)]


def test_split_counts_a_site_with_exactly_enough_free_nodes() -> None:
    """A waiting job fits where a lawful factory that is up has exactly the nodes it needs free (>=, not >), and
    not with one node fewer; shape answers are per decision (the next snapshot is asked afresh)."""
    pol = GeoPolicy()
    job = next(j for j in _JOBS if j.accelerator == "H100-SXM" and j.gpus <= 1024)
    site = next(s for s in pol._sites(FleetSnapshot(0, _FACTORIES, _states(_FACTORIES, 0, 0.0, -1), (), (), ()),
                                      job)[0])
    i, n = site[0], site[1]
    pending = (JobView(job, None, (), 0.0, 0),)
    for free, fits in ((n, True), (n - 1, False), (n, True)):
        states = []
        for k, f in enumerate(_FACTORIES):
            b = np.full(f.nodes, NODE_BUSY, dtype=np.uint8)
            if k == i:
                b[:free] = NODE_FREE
            states.append(FactoryState(f.id, True, b.tobytes(), 50.0, 300.0, 0.0))
        snap = FleetSnapshot(0, _FACTORIES, tuple(states), (), pending, ())
        views, waiting = pol._split_pending(snap, {job.id: "waits"})
        assert ([v.job.id for v in views] == [job.id]) is fits and (waiting == {job.id: "waits"}) is not fits


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(-1, 50_000), st.booleans()), max_size=30),
       st.lists(st.tuples(st.integers(0, 80_000), st.integers(-1, 29), st.booleans()), min_size=1, max_size=6))
def test_kept_bounds_give_the_earliest_bound_still_ahead(jobs: list[tuple[int, bool]],
                                                         asks: list[tuple[int, int, bool]]) -> None:
    """``_set_deadline`` keeps the pending jobs' bounds sorted while the pending tuple is the same object and asks
    it again at other instants and with other jobs placed (``at``: ``now`` exactly on a job's bound; ``fresh``: a
    new pending tuple, part of the last one): always the plain min over waiting jobs not placed whose bound is
    after now."""
    pol = GeoPolicy(max_wait_s=6 * 3600)
    views = tuple(JobView(dataclasses.replace(_JOBS[0], id=f"j{i}"), None, (), 0.0, since)
                  for i, (since, _p) in enumerate(jobs))
    base = FleetSnapshot(0, _FACTORIES, _states(_FACTORIES, 0, 0.0, -1), (), views, ())
    for k, (now, at, fresh) in enumerate(asks):
        if 0 <= at < len(jobs) and jobs[at][0] >= 0:
            now = jobs[at][0] + pol.max_wait_s
        placed = {f"j{i}" for i, (_s, p) in enumerate(jobs) if p != bool(k % 2)}
        # (fresh: a new pending tuple, every other job of the last one's: the kept bounds must not be read)
        snap = dataclasses.replace(base, pending=tuple(base.pending[k % 2::2])) if fresh else base
        base = snap
        pol._set_deadline(snap, now, placed)
        want = min((v.waiting_since_s + pol.max_wait_s for v in snap.pending if v.job.id not in placed
                    and v.waiting_since_s >= 0 and v.waiting_since_s + pol.max_wait_s > now), default=10**18)
        assert pol._next_deadline_s == want


# -- waiting reasons ------------------------------------------------------------------------------------------------
def _reference_reason(pol: GeoPolicy, site: str, best_cost: float, wait_usd_h: float, lam: float,
                      since_s: int) -> str:
    """GeoPlanning._wait_reason's text as it was before session 9 (every call formatted afresh)."""
    if best_cost <= wait_usd_h:
        return (f"geo: waiting for free capacity (running in {site} costs {best_cost:.2f} USD/h <= waiting "
                f"{wait_usd_h:.2f} USD/h; value of a GPU-hour {lam:.3f} USD)")
    return (f"geo: waiting for cheaper power (running in {site} costs {best_cost:.2f} USD/h > waiting "
            f"{wait_usd_h:.2f} USD/h; value of a GPU-hour {lam:.3f} USD; since {since_s} s, at most "
            f"{pol.max_wait_s / 3600:.1f} h)")


_figures = st.sampled_from([0.0, -0.0, 1.0, 1.004, 1.006, -2.5, 1e4, float("inf"), float("nan"), 3.14159])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 4), _figures, _figures, _figures,
                          st.sampled_from([0, 10, 3600])), min_size=1, max_size=12))
def test_kept_reason_texts_equal_fresh_ones(asks: list[tuple[int, int, float, float, float, int]]) -> None:
    """A job's waiting reason, kept while its figures are equal, is the text formatted afresh: also for zeros of
    either sign (formatted "-0.00" and "0.00", yet equal), NaN and infinities, and as figures change back and
    forth for the same job."""
    pol = GeoPolicy()
    snap = FleetSnapshot(0, _FACTORIES, _states(_FACTORIES, 0, 0.0, -1), (), (), ())
    for j, fx, best, wait, lam, since in asks:
        v = JobView(dataclasses.replace(_JOBS[0], id=f"j{j}"), None, (), 0.0, since)
        pol._lam = {v.job.accelerator: lam}
        chosen = _Col(0, -1, wait, 0, 0.0, False)
        cols = [_Col(0, fx, best, 1, 0.0, False), chosen]
        got = pol._wait_reason(snap, v, chosen, cols)
        assert got == _reference_reason(pol, _FACTORIES[fx].id, best, wait, lam, since)


def test_reasons_kept_when_nothing_is_priced_are_the_sorted_reasons() -> None:
    """Between full solves, a decision that prices nothing keeps every pending job's reason: the plan's reasons are
    the jobs' reasons sorted by job, the same as re-sorting them, also after a job left the queue."""
    jobs = [dataclasses.replace(j, id=f"z{k:02d}" if k % 2 else f"a{k:02d}") for k, j in enumerate(_JOBS[:8])]
    pol = GeoPolicy()
    busy = tuple(FactoryState(f.id, True, bytes([NODE_BUSY]) * f.nodes, 50.0, 300.0, 0.0) for f in _FACTORIES)
    rng = np.random.default_rng(0)
    views = tuple(JobView(j, None, (), 0.0, 0) for j in jobs)
    first = pol.decide(FleetSnapshot(60, _FACTORIES, busy, (), views, ()), rng)
    assert first.actions == () and [j for j, _r in first.waiting] == sorted(j.id for j in jobs)
    reasons = dict(first.waiting)
    again = tuple(FactoryState(s.factory_id, True, bytes(s.node_status), 50.0, 300.0, 0.0) for s in busy)
    for now, pend in ((1000, views), (2000, views[1:]), (3000, views[1:])):  # new bytes: not the quick answer
        again = tuple(FactoryState(s.factory_id, True, bytes(s.node_status), 50.0, 300.0, 0.0) for s in again)
        plan = pol.decide(FleetSnapshot(now, _FACTORIES, again, (), pend, ()), rng)
        want = tuple(sorted((v.job.id, reasons[v.job.id]) for v in pend))
        assert plan.actions == () and plan.waiting == want


def test_a_kept_reason_is_not_served_for_a_zero_of_the_other_sign() -> None:
    pol = GeoPolicy()
    snap = FleetSnapshot(0, _FACTORIES, _states(_FACTORIES, 0, 0.0, -1), (), (), ())
    v = JobView(_JOBS[0], None, (), 0.0, 10)
    pol._lam = {v.job.accelerator: 2.0}
    for best, wait in ((0.0, 5.0), (-0.0, 5.0), (7.0, 0.0), (7.0, -0.0), (-0.0, 5.0)):
        chosen = _Col(0, -1, wait, 0, 0.0, False)
        got = pol._wait_reason(snap, v, chosen, [_Col(0, 1, best, 1, 0.0, False), chosen])
        assert got == _reference_reason(pol, _FACTORIES[1].id, best, wait, 2.0, 10)
