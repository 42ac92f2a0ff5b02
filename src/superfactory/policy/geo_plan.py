"""geo's plan: the assignment problem over the columns, the cheap placement of pending work, and the actions
(:class:`GeoPlanning`, a part of :class:`~superfactory.policy.geo.GeoPolicy`).

- **rows** (:meth:`GeoPlanning._problem`): free nodes per (factory, accelerator), IT-power headroom per factory
  (power cap / PUE and cooling capacity) and the migration quota per destination, plus the WAN egress rows of
  checkpoint sync (:mod:`.wan_capacity`); staying jobs hold their own nodes and power.
- **the cheap placement between full solves** (:meth:`GeoPlanning._greedy_pending`): the regret greedy of
  :mod:`.solver` over pending jobs only, on the same rows kept as plain values.
- **actions** (:meth:`GeoPlanning._actions`): topology-aware nodes (:func:`pick_nodes`) for each chosen column,
  highest priority first; moves and starts recorded in the governor; a waiting job's reason states the figures
  compared.
"""

from __future__ import annotations

import math
from operator import itemgetter

import numpy as np
import numpy.typing as npt

from superfactory.domain.factory import Factory
from superfactory.domain.fleet import NODE_FREE, FleetSnapshot, JobView, Migrate, Place, Plan, Preempt
from superfactory.domain.job import TrainingJob
from superfactory.domain.topology import FactoryTopology, topology_of
from superfactory.models.collective import nodes_array
from superfactory.policy import solver as S
from superfactory.policy.assignment import EPS
from superfactory.policy.gangfit import place_gang, shape_of
from superfactory.policy.geo_columns import HOUR_S, GeoColumns, _Col
from superfactory.policy.nodes import tp_aligned_fit
from superfactory.policy.wan_capacity import with_checkpoint_sync_rows

#: the order of a job's columns for the greedy: by job, then factory (wait first); the key ``(c.job, c.factory)``
_JOB_FACTORY = itemgetter(0, 1)


def pick_nodes(f: Factory, status: npt.NDArray[np.uint8], job: TrainingJob,
               node_bytes: bytes | None = None) -> tuple[int, ...] | None:
    """Topology-aware nodes for ``job`` in ``f`` (smallest subtree, TP groups inside NVLink domains, see
    :mod:`.gangfit`), falling back to TP-aligned first fit; ``None`` if no placement keeps every TP group inside
    one NVLink domain (a split group runs at a fraction of its speed: better to wait or go elsewhere).

    ``node_bytes``: optional, the snapshot's node status bytes that ``status`` is an unchanged copy of; the
    usable mask is then kept per (factory, accelerator) while those bytes are the same object."""
    site = _site_of(f, job.accelerator)
    if site is None:
        return None
    topo, in_acc, gpus_per_node, domain_nodes = site
    usable = None
    key = (id(f), job.accelerator)
    if node_bytes is not None:
        hit = _USABLE.get(key)
        if hit is not None and hit[0] is f and hit[1] is node_bytes:
            usable, n_usable = hit[2], hit[3]
    if usable is None:
        usable = status == NODE_FREE
        if in_acc is not None:  # the factory has other accelerators' nodes too
            usable &= in_acc
        n_usable = int(np.count_nonzero(usable))
        if node_bytes is not None:
            if len(_USABLE) >= 256:
                _USABLE.clear()
            _USABLE[key] = (f, node_bytes, usable, n_usable)
    if n_usable * gpus_per_node < job.gpus:  # fewer usable nodes than the gang needs: neither placement can
        return None
    nodes = place_gang(topo, usable, shape_of(job, gpus_per_node, domain_nodes))
    return nodes if nodes is not None else tp_aligned_fit(f, status, job.accelerator, job.gpus, job.tp_size)


#: per factory and accelerator, what :func:`pick_nodes` reads of the factory itself: its topology (built once per
#: factory value by :func:`~superfactory.domain.topology.topology_of`, here looked up by identity instead of
#: hashing the whole frozen ``Factory``), the mask of the accelerator's nodes (None when they are all the
#: factory's nodes), and the first cluster's GPUs per node and nodes per NVLink domain. The factory is kept so its
#: id cannot be reused while cached.
_Site = tuple[FactoryTopology, "npt.NDArray[np.bool_] | None", int, int]
_SITES: dict[tuple[int, str], tuple[Factory, _Site | None]] = {}
#: (id(factory), accelerator) -> (factory, node bytes, usable mask on them, its count); see :func:`pick_nodes`
_USABLE: dict[tuple[int, str], tuple[Factory, bytes, npt.NDArray[np.bool_], int]] = {}


def _site_of(f: Factory, accelerator: str) -> _Site | None:
    key = (id(f), accelerator)
    hit = _SITES.get(key)
    if hit is not None and hit[0] is f:
        return hit[1]
    cl = f.clusters_of(accelerator)
    site: _Site | None = None
    if cl:
        mask = np.zeros(f.nodes, dtype=bool)
        for c in cl:
            mask[c.node_offset:c.node_end] = True
        in_acc = None if mask.all() else mask
        s = cl[0].system
        site = (topology_of(f), in_acc, s.gpus_per_node, s.nodes_per_domain)
    if len(_SITES) >= 256:
        _SITES.clear()
    _SITES[key] = (f, site)
    return site


class GeoPlanning(GeoColumns):
    """Problem, cheap placement and actions (module docstring); state lives on the policy."""

    _keys: dict[str, int]
    _gpus: dict[str, int]
    # (job, factory index) -> (the factory's node bytes, the factory, pick_nodes' answer) on those bytes
    _pick_memo: dict[tuple[str, int], tuple[bytes, Factory, tuple[int, ...] | None]]
    _it_caps: tuple[object, list[float]]  # (factories, each one's IT-power cap: min(power cap / PUE, cooling))
    _reason_memo: dict[str, tuple[tuple[object, ...], str]]  # job -> (the figures of its waiting reason, the text)
    max_wait_s: int

    @staticmethod
    def _without_settled(views: list[JobView], running: set[int], cols: list[_Col], known: frozenset[int] = frozenset()
                         ) -> tuple[list[JobView], set[int], list[_Col]]:
        """Drop the running jobs for which staying is strictly the cheapest column: staying uses no capacity, so
        every plan (integer or fractional) that moved or paused such a job costs more than the same plan with
        it staying; they stay, and the assignment is solved over the rest (the same optimum, a smaller LP).
        Only without WAN rows (a staying job's checkpoint sync is counted against its site's egress there).
        ``known``: running jobs already found settled by :meth:`_columns` (no columns of theirs in ``cols``)."""
        best_other: dict[int, float] = {}
        stay: dict[int, float] = {}
        for c in cols:
            if c.job in running and c.factory >= 0 and c.nodes == 0:
                stay[c.job] = c.cost
            elif c.job in running and c.cost < best_other.get(c.job, math.inf):
                best_other[c.job] = c.cost  # the cheapest other column (no entry: none below infinity)
        settled = {j for j, cost in stay.items() if cost < best_other.get(j, math.inf)} | known
        if not settled:
            return views, running, cols
        new_ix: dict[int, int] = {}
        kept: list[JobView] = []
        for jx, v in enumerate(views):
            if jx not in settled:
                new_ix[jx] = len(kept)
                kept.append(v)
        return (kept, {new_ix[j] for j in running if j not in settled},
                [_Col(new_ix[c.job], c.factory, c.cost, c.nodes, c.it_w, c.migrating) for c in cols
                 if c.job not in settled])

    def _greedy_pending(self, snap: FleetSnapshot, views: list[JobView], cols: list[_Col]) -> list[_Col]:
        """The plan :func:`~superfactory.policy.solver.greedy` finds for pending jobs only (rows: free nodes per
        factory and accelerator, IT-power headroom, migration quota; no WAN rows): the same
        :func:`~superfactory.policy.solver.regret_greedy`, with the rows kept on plain Python values instead of
        the problem's arrays (building those costs more than the placement). The cheap placement between full
        solves; equal to the array version's plan (tested)."""
        by_job: list[list[_Col]] = [[] for _ in views]
        for c in sorted(cols, key=_JOB_FACTORY):
            by_job[c.job].append(c)
        biggest = [0] * len(snap.factories)
        for c in cols:
            if c.migrating and c.factory >= 0:
                biggest[c.factory] = max(biggest[c.factory], views[c.job].job.gpus)
        nodes_left: dict[tuple[int, str], float] = {}
        if self._it_caps[0] is not snap.factories:  # (the factories' IT-power caps, the same expression)
            self._it_caps = (snap.factories, [min(f.power_cap_w / f.pue, f.cooling_capacity_w)
                                              for f in snap.factories])
        head = [max(0.0, cap - st.it_power_w) for cap, st in zip(self._it_caps[1], snap.states, strict=True)]
        quota: dict[int, float] = {}
        eps = EPS

        def place(j: int, k: int) -> bool:  # the rows of :meth:`_problem`, on plain values
            c = by_job[j][k]
            if c.factory < 0:
                return True
            i = c.factory
            nk = (i, views[j].job.accelerator)
            if nk not in nodes_left:
                nodes_left[nk] = float(self._free_nodes(snap, i, nk[1]))
            if c.migrating and i not in quota:
                f = snap.factories[i]
                quota[i] = self.governor.quota_left_gpus(f.id, f.gpus, snap.now_s, False, biggest[i])
            gpus = views[j].job.gpus
            if (c.nodes <= nodes_left[nk] + eps and c.it_w <= head[i] + eps
                    and (not c.migrating or gpus <= quota[i] + eps)):
                nodes_left[nk] -= c.nodes
                head[i] -= c.it_w
                if c.migrating:
                    quota[i] -= gpus
                return True
            return False

        picked = S.regret_greedy([[c.cost for c in js] for js in by_job], place)
        chosen = [by_job[j][k] if k >= 0 else None for j, k in enumerate(picked)]
        out = [c for c in chosen if c is not None]
        assert len(out) == len(views), "every pending job has a wait column"
        return out

    def _problem(self, snap: FleetSnapshot, views: list[JobView], cols: list[_Col], emergency: set[int]
                 ) -> tuple[S.AssignmentProblem, list[_Col]]:
        nf = len(snap.factories)
        accs = sorted({a for f in snap.factories for a in f.accelerators})
        acc_ix = {a: k for k, a in enumerate(accs)}
        # rows: [free nodes per (factory, acc)] [IT headroom per factory, W] [migration quota per factory]
        free = np.zeros(nf * len(accs))
        for i, f in enumerate(snap.factories):
            for acc in f.accelerators:
                free[i * len(accs) + acc_ix[acc]] = self._free_nodes(snap, i, acc)
        head = np.array([max(0.0, min(f.power_cap_w / f.pue, f.cooling_capacity_w) - st.it_power_w)
                         for f, st in zip(snap.factories, snap.states, strict=True)])
        biggest = [0] * nf  # largest job a planned move would bring to each factory
        for c in cols:
            if c.migrating and c.factory >= 0:
                biggest[c.factory] = max(biggest[c.factory], views[c.job].job.gpus)
        quota = np.array([self.governor.quota_left_gpus(f.id, f.gpus, snap.now_s, False, biggest[i])
                          for i, f in enumerate(snap.factories)])
        row_cap = np.concatenate([free, head, quota])
        cols_sorted = sorted(cols, key=lambda c: (c.job, c.factory))
        ptr = np.zeros(len(views) + 1, dtype=np.int64)
        np.cumsum(np.bincount([c.job for c in cols_sorted], minlength=len(views)), out=ptr[1:])
        k = len(cols_sorted)
        col_rows = np.full((k, 3), -1, dtype=np.int64)
        col_use = np.zeros((k, 3))
        current = np.full(len(views), -1, dtype=np.int64)
        for n, c in enumerate(cols_sorted):
            v = views[c.job]
            if c.factory < 0:
                continue
            if c.nodes == 0:  # staying where it runs
                current[c.job] = n
                continue
            col_rows[n, 0] = c.factory * len(accs) + acc_ix[v.job.accelerator]
            col_use[n, 0] = c.nodes
            col_rows[n, 1] = len(free) + c.factory
            col_use[n, 1] = c.it_w
            if c.migrating:
                col_rows[n, 2] = len(free) + nf + c.factory
                col_use[n, 2] = v.job.gpus
        keys = np.array([self._key(v.job.id) for v in views], dtype=np.int64)
        problem = S.AssignmentProblem(ptr, np.array([c.factory for c in cols_sorted], dtype=np.int64),
                                      np.array([c.cost for c in cols_sorted]), col_rows, col_use, row_cap, keys,
                                      current)
        return with_checkpoint_sync_rows(problem, snap, views), cols_sorted  # WAN egress rows (issue 16)

    def _key(self, job_id: str) -> int:
        k = self._keys.get(job_id)
        if k is None:
            k = self._keys[job_id] = len(self._keys)
        return k

    @staticmethod
    def _cheapest_runs(cols: list[_Col]) -> dict[int, _Col]:
        """Per job, its cheapest column in a factory (the first of equal costs, in ``cols`` order)."""
        best: dict[int, _Col] = {}
        for c in cols:
            if c.factory >= 0:
                b = best.get(c.job)
                if b is None or c.cost < b.cost:
                    best[c.job] = c
        return best

    def _wait_reason(self, snap: FleetSnapshot, v: JobView, chosen: _Col, cols: list[_Col],
                     cheapest: dict[int, _Col] | None = None) -> str:
        """Why a pending job waits, with the figures compared: its cheapest lawful run (USD per hour of power,
        carbon and latency) against the value of waiting (its GPUs x the value of a GPU-hour, aged).
        ``cheapest``: :meth:`_cheapest_runs` of ``cols`` when the caller has it (one pass for every waiting
        job instead of one per job)."""
        wait_usd_h = chosen.cost
        best = (cheapest if cheapest is not None else self._cheapest_runs(cols)).get(chosen.job)
        lam = self._lam.get(v.job.accelerator, math.inf)
        if best is None:
            return "geo: no lawful factory with room for it is up"
        site = snap.factories[best.factory].id
        # the text is a function of these figures only: kept per job while they are equal (a waiting job's columns
        # are mostly re-read from its kept run columns, and a forced one waits at a constant rate). Equal floats
        # format alike except zeros of either sign ("-0.00"): a zero figure is never read from the memo (NaN
        # never equals itself: never read either)
        if not (best.cost and wait_usd_h and lam):
            return self._reason_text(site, best.cost, wait_usd_h, lam, v.waiting_since_s)
        key = (site, best.cost, wait_usd_h, lam, v.waiting_since_s, self.max_wait_s)
        hit = self._reason_memo.get(v.job.id)
        if hit is not None and hit[0] == key:
            return hit[1]
        text = self._reason_text(site, best.cost, wait_usd_h, lam, v.waiting_since_s)
        if len(self._reason_memo) >= 4096:
            self._reason_memo.clear()
        self._reason_memo[v.job.id] = (key, text)
        return text

    def _reason_text(self, site: str, best_cost: float, wait_usd_h: float, lam: float, since_s: int) -> str:
        """:meth:`_wait_reason`'s text for a job whose cheapest lawful run is in ``site`` at ``best_cost``."""
        if best_cost <= wait_usd_h:
            return (f"geo: waiting for free capacity (running in {site} costs {best_cost:.2f} USD/h <= waiting "
                    f"{wait_usd_h:.2f} USD/h; value of a GPU-hour {lam:.3f} USD)")
        return (f"geo: waiting for cheaper power (running in {site} costs {best_cost:.2f} USD/h > waiting "
                f"{wait_usd_h:.2f} USD/h; value of a GPU-hour {lam:.3f} USD; since {since_s} s, at most "
                f"{self.max_wait_s / HOUR_S:.1f} h)")

    def _actions(self, snap: FleetSnapshot, views: list[JobView], running: set[int], chosen: list[_Col],
                 cols: list[_Col], rng: np.random.Generator, waiting: dict[str, str]) -> Plan:
        now = snap.now_s
        copies: dict[int, npt.NDArray[np.uint8]] = {}
        # nodes this plan has put work on per factory, not yet written into its copy: the copy is made, and they
        # are written, only when a later pick in the same factory reads it (most plans place one job in a
        # factory, and then no copy is needed at all). A pick reads the same status either way.
        fills: dict[int, list[tuple[int, ...]]] = {}

        def status(i: int) -> npt.NDArray[np.uint8]:  # node status of factory i, as this plan fills it
            got = copies.get(i)
            if got is None:
                got = copies[i] = np.frombuffer(snap.states[i].node_status, dtype=np.uint8).copy()
            todo = fills.pop(i, None)
            if todo is not None:
                for placed in todo:
                    got[nodes_array(placed)] = 1
            return got

        filled: set[int] = set()  # factories this plan has put work on (their status differs from the snapshot's)
        memo = self._pick_memo

        def nodes_for(i: int, job: TrainingJob) -> tuple[int, ...] | None:
            """:func:`pick_nodes` in factory ``i``; on a factory this plan has not filled, kept per job while the
            factory's node bytes are the same object (a job that did not fit is asked again at later decisions;
            the answer is a function of the factory, its node status and the job)."""
            f = snap.factories[i]
            if i in filled:
                return pick_nodes(f, status(i), job)
            b = snap.states[i].node_status
            hit = memo.get((job.id, i))
            if hit is not None and hit[0] is b and hit[1] is f:
                return hit[2]
            # (an unfilled factory's status is the snapshot's bytes: read in place, no copy; pick_nodes only reads)
            got = pick_nodes(f, np.frombuffer(b, dtype=np.uint8), job, b)
            memo[(job.id, i)] = (b, f, got)
            return got
        actions: list[Place | Migrate | Preempt] = []
        cheapest: dict[int, _Col] | None = None  # (made when the first waiting job needs its reason)
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
                    # a cheaper move the quota refused: back off before trying that destination again
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
                fills.setdefault(c.factory, []).append(nodes)
                filled.add(c.factory)
                self.governor.record_move(job.id, f.id, job.gpus, now)
                self._gpus[job.id] = job.gpus
                actions.append(Migrate(job.id, f.id, nodes, "geo: cheaper forecast power"))
                continue
            if c.factory < 0:
                if job.id not in waiting:  # (a reason already given stands)
                    if cheapest is None:
                        cheapest = self._cheapest_runs(cols)
                    waiting[job.id] = self._wait_reason(snap, v, c, cols, cheapest)
                continue
            f = snap.factories[c.factory]
            nodes = nodes_for(c.factory, job)
            if nodes is None:
                waiting[job.id] = f"{f.id}: not enough free {job.accelerator} nodes"
                continue
            fills.setdefault(c.factory, []).append(nodes)
            filled.add(c.factory)
            if c.migrating or (v.last_factory_id is not None and v.last_factory_id != f.id):
                self.governor.record_move(job.id, f.id, job.gpus, now)
                self._gpus[job.id] = job.gpus
            else:
                self.governor.record_start(job.id, now)
            waiting.pop(job.id, None)
            self._paused.discard(job.id)
            actions.append(Place(job.id, f.id, nodes))
        pending_ids = self._pending_ids(snap)[1]
        if waiting.keys() <= pending_ids:  # (the usual case: no reason given for a job not pending)
            return Plan(tuple(actions), tuple(sorted(waiting.items())))
        return Plan(tuple(actions), tuple(sorted((j, r) for j, r in waiting.items() if j in pending_ids)))
