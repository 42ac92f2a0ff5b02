"""The live :class:`~superfactory.loop.ports.Actuator`: writes a plan's assignments to the store.

One transaction per plan. It first reserves the fencing tokens it may need (on SQLite that write takes the
database lock; on PostgreSQL it serialises with the agents' reassignments) and locks the jobs the plan
touches, then checks each action against the store *as it is now* (the world may have moved since the
snapshot: a cancel, a hold, a node reported down, a lease gone) and settles it:

- ``Place``: job still pending; factory schedulable; nodes in range, distinct, free and of the job's
  accelerator, enough GPUs; the factory cleared for the job's data; the tenant within quota -> ``assigned``
  with the next fencing token (the agent starts it). Otherwise ``refused`` with the reason.
- ``Preempt``: a running job -> ``stopping`` (the agent checkpoints, stops, and the job is requeued).
- ``Migrate``: a running job, destination checked like a Place -> ``stopping`` with the destination's nodes
  reserved; when the agent reports ``stopped`` the job is assigned there under a new token.
- ``Allocate`` / ``SyncWeights``: refused (the live plane does not serve inference yet).

Every action gets an outcome now (``applied`` or ``refused``), written to the ``actions`` table in the same
transaction as the assignments (a crash never leaves one without the other). Hard-rule refusals of the plan
(sovereignty, carbon budget) are written once each as job events (``audit_refusal``), and each waiting job's
reason is written when it changes. Writes are batched (one ``executemany`` per statement shape), so a cycle that
places thousands of jobs costs a handful of round trips.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sqlalchemy as sa

from superfactory.domain.factory import Factory
from superfactory.domain.fleet import Allocate, Migrate, Place, Plan, Preempt, SyncWeights
from superfactory.domain.outcome import ActionOutcome, OutcomeStatus
from superfactory.live.codec import decode_factory
from superfactory.live.context import Live
from superfactory.live.services.fleet import schedulable
from superfactory.live.services.jobs_common import HOLDING, add_event, next_fence
from superfactory.live.services.tenants import usage
from superfactory.live.store import tables as t

# the jobs were read (and on PostgreSQL locked) in this transaction and checked against what they were then
_PLACE = (t.jobs.update().where(t.jobs.c.id == sa.bindparam("jid"), t.jobs.c.state == "pending").values(
    state="assigned", factory_id=sa.bindparam("factory_id"), nodes=sa.bindparam("nodes"),
    fencing_token=sa.bindparam("fence"), attempts=sa.bindparam("attempts"), waiting_reason=None, preempted=False,
    updated_at_unix_s=sa.bindparam("now")))
_STOP = (t.jobs.update().where(t.jobs.c.id == sa.bindparam("jid"), t.jobs.c.state == "running").values(
    state="stopping", stop_reason=sa.bindparam("why"), migrate_to=sa.bindparam("migrate_to"),
    updated_at_unix_s=sa.bindparam("now")))


# what the checks read of a job: not the whole `spec` document (decoding it was a third of a cycle's CPU)
_ACT_COLUMNS = (t.jobs.c.id, t.jobs.c.state, t.jobs.c.attempts, t.jobs.c.gpus, t.jobs.c.tenant_id,
                t.jobs.c.accelerator, t.jobs.c.factory_id, t.jobs.c.spec[("job", "sovereignty")].label("sovereignty"))


class Refused(Exception):
    """An action the store's current state does not allow (message: why)."""


class StoreActuator:
    """Applies plans to the store; see the module docstring."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self._reasons: dict[str, str] = {}  # job id -> waiting reason last written
        self._audited: set[tuple[str, str, str]] = set()

    def apply(self, plan: Plan) -> list[ActionOutcome]:
        live = self.live
        now_s, now_unix = live.clock.now_s(), live.clock.unix_s()
        outcomes: list[ActionOutcome] = []
        self._placed: list[dict[str, Any]] = []
        self._stopped: list[dict[str, Any]] = []
        self._events: list[dict[str, Any]] = []
        with live.engine.begin() as conn:
            n_fences = sum(isinstance(a, Place) for a in plan.actions)
            # reserving tokens is this transaction's first write: on SQLite it takes the database's write lock
            # before anything is read, so the checks below see the state the writes apply to
            fence = next_fence(conn, max(1, n_fences)) if plan.actions else 0
            ids = sorted({int(a.job_id) for a in plan.actions if a.job_id.isdigit()})
            q = sa.select(*_ACT_COLUMNS).where(t.jobs.c.id.in_(ids))
            if conn.dialect.name == "postgresql":
                q = q.with_for_update()
            jobs = {str(r.id): r for r in conn.execute(q)} if ids else {}
            world = _World(conn, live)
            for a in plan.actions:
                fid = getattr(a, "factory_id", "") or ""
                try:
                    if isinstance(a, Place):
                        self._place(world, jobs.get(a.job_id), a, fence, now_unix)
                        fence += 1
                    elif isinstance(a, Preempt):
                        fid = self._stop(world, jobs.get(a.job_id), a.job_id, "preempt", None, now_unix, a.reason)
                    elif isinstance(a, Migrate):
                        self._migrate(world, jobs.get(a.job_id), a, now_unix)
                    elif isinstance(a, Allocate | SyncWeights):
                        raise Refused("the live control plane does not serve inference yet")
                    else:  # pragma: no cover - Action is a closed union
                        raise Refused(f"unknown action {type(a).__name__}")
                    outcomes.append(ActionOutcome(a.action_id, OutcomeStatus.APPLIED, a.job_id, fid, "", now_s))
                except Refused as e:
                    outcomes.append(ActionOutcome(a.action_id, OutcomeStatus.REFUSED, a.job_id, fid, str(e), now_s))
            self._flush(conn, outcomes, now_unix)
            self._audit(conn, plan, now_unix)
            self._waiting(conn, plan)
        return outcomes

    def _flush(self, conn: sa.Connection, outcomes: list[ActionOutcome], now: float) -> None:
        if self._placed:
            conn.execute(_PLACE, self._placed)
        if self._stopped:
            conn.execute(_STOP, self._stopped)
        if self._events:
            conn.execute(t.job_events.insert(), self._events)
        if outcomes:
            conn.execute(t.actions.insert(), [
                {"policy": o.action_id.rsplit(":", 2)[0], "action_id": o.action_id,
                 "kind": "Action" + o.status.value.title().replace("_", ""), "job_id": o.job_id,
                 "factory_id": o.factory_id or None, "outcome": o.status.value, "reason": o.reason, "at_unix_s": now}
                for o in outcomes])

    def _event(self, job_id: int, now: float, kind: str, data: dict[str, Any]) -> None:
        self._events.append({"job_id": job_id, "at_unix_s": now, "kind": kind, "data": data})

    # -- actions --------------------------------------------------------------------------------------------
    def _place(self, world: _World, r: Any, a: Place, fence: int, now: float) -> None:
        if r is None or r.state != "pending":
            raise Refused(f"job {a.job_id} is {r.state if r is not None else 'unknown'}, not pending")
        if a.job_id in world.acted:
            raise Refused(f"job {a.job_id} already has an action in this plan")
        nodes = world.check_nodes(r, a.factory_id, a.nodes)
        world.check_quota(r)
        self._placed.append({"jid": r.id, "factory_id": a.factory_id, "nodes": [int(n) for n in a.nodes],
                             "fence": fence, "attempts": r.attempts + 1, "now": now})
        world.take(a.factory_id, nodes, r)
        world.acted.add(a.job_id)
        self._event(r.id, now, "assigned", {"factory_id": a.factory_id, "fencing_token": fence, "gpus": r.gpus,
                                            "hot_swap": a.hot_swap, "action_id": a.action_id})
        self._reasons.pop(a.job_id, None)

    def _stop(self, world: _World, r: Any, job_id: str, why: str, migrate_to: dict[str, Any] | None,
              now: float, reason: str) -> str:
        if r is None or r.state != "running" or job_id in world.acted:
            raise Refused(f"job {job_id} is {r.state if r is not None else 'unknown'}, not running"
                          if job_id not in world.acted else f"job {job_id} already has an action in this plan")
        world.acted.add(job_id)
        self._stopped.append({"jid": r.id, "why": why, "migrate_to": migrate_to, "now": now})
        self._event(r.id, now, "stopping", {"reason": why, "because": reason, "factory_id": r.factory_id,
                                            **({"to": migrate_to["factory_id"]} if migrate_to else {})})
        return str(r.factory_id)

    def _migrate(self, world: _World, r: Any, a: Migrate, now: float) -> None:
        if r is not None and r.factory_id == a.factory_id:
            raise Refused(f"job {a.job_id} already runs at {a.factory_id}")
        if r is None or r.state != "running":
            raise Refused(f"job {a.job_id} is {r.state if r is not None else 'unknown'}, not running")
        nodes = world.check_nodes(r, a.factory_id, a.nodes)
        self._stop(world, r, a.job_id, "migrate", {"factory_id": a.factory_id, "nodes": [int(n) for n in a.nodes]},
                   now, a.reason)
        world.take(a.factory_id, nodes, None)

    # -- bookkeeping ----------------------------------------------------------------------------------------
    def _audit(self, conn: sa.Connection, plan: Plan, now: float) -> None:
        for job_id, factory_id, rule in plan.refusals:
            key = (job_id, factory_id, rule)
            if key in self._audited or not job_id.isdigit():
                continue
            self._audited.add(key)
            add_event(conn, int(job_id), now, "audit_refusal", {"factory_id": factory_id, "rule": rule})

    def _waiting(self, conn: sa.Connection, plan: Plan) -> None:
        changed = [(j, why) for j, why in plan.waiting if j.isdigit() and self._reasons.get(j) != why]
        if not changed:
            return
        conn.execute(t.jobs.update().where(t.jobs.c.id == sa.bindparam("jid"), t.jobs.c.state == "pending")
                     .values(waiting_reason=sa.bindparam("why")),
                     [{"jid": int(j), "why": why} for j, why in changed])
        self._reasons.update(changed)


class _World:
    """The store's node occupancy, leases and quotas at apply time (loaded lazily per factory)."""

    def __init__(self, conn: sa.Connection, live: Live) -> None:
        self.conn = conn
        self.live = live
        self.rows = {r.id: r for r in conn.execute(sa.select(t.factories))}
        self.busy: dict[str, np.ndarray] = {}
        self.acted: set[str] = set()  # jobs that already got an action in this plan
        self.factories: dict[str, Factory] = {}
        # loaded before any write of this transaction, then kept up to date by take()
        self.quotas = {q.id: q.quotas for q in conn.execute(sa.select(t.tenants.c.id, t.tenants.c.quotas))}
        self.used = usage(conn)

    def _busy(self, fid: str, n: int) -> np.ndarray:
        if fid not in self.busy:
            b = np.zeros(n, dtype=bool)
            for j in self.conn.execute(sa.select(t.jobs.c.factory_id, t.jobs.c.nodes, t.jobs.c.migrate_to)
                                       .where(t.jobs.c.state.in_(HOLDING))):
                if j.factory_id == fid:
                    b[j.nodes] = True
                if j.migrate_to and j.migrate_to["factory_id"] == fid:
                    b[j.migrate_to["nodes"]] = True
            b[list(self.rows[fid].down_nodes)] = True
            self.busy[fid] = b
        return self.busy[fid]

    def check_nodes(self, r: Any, fid: str, raw: tuple[int, ...]) -> np.ndarray:
        row = self.rows.get(fid)
        if row is None:
            raise Refused(f"unknown factory {fid!r}")
        if not schedulable(self.live, row):
            raise Refused(f"factory {fid} takes no new work now (state {row.state}, lease not live or cordoned)")
        f = self.factories.get(fid) or self.factories.setdefault(fid, decode_factory(row.spec))
        missing = set(r.sovereignty) - f.clearances
        if missing:
            raise Refused(f"factory {fid} lacks clearance for {', '.join(sorted(missing))}")
        nodes = np.asarray(raw, dtype=np.intp)
        if nodes.size == 0 or nodes.min() < 0 or nodes.max() >= f.nodes:
            raise Refused(f"nodes outside {fid} (0..{f.nodes - 1})")
        if np.unique(nodes).size != nodes.size:
            raise Refused("duplicate nodes")
        taken = nodes[self._busy(fid, f.nodes)[nodes]]
        if taken.size:
            raise Refused(f"node {int(taken[0])} of {fid} is not free")
        gpus = 0
        for c in f.clusters:
            inside = int(((nodes >= c.node_offset) & (nodes < c.node_end)).sum())
            if inside and c.accelerator != r.accelerator:
                raise Refused(f"job needs {r.accelerator}, got {c.accelerator} nodes")
            gpus += inside * c.system.gpus_per_node
        if gpus < r.gpus:
            raise Refused(f"{gpus} GPUs given < {r.gpus} needed")
        return nodes

    def check_quota(self, r: Any) -> None:
        cap = self.quotas.get(r.tenant_id, {}).get(r.accelerator)
        used = self.used.get((r.tenant_id, r.accelerator), 0)
        if cap is not None and used + r.gpus > cap:
            raise Refused(f"tenant {r.tenant_id} quota: {used} + {r.gpus} {r.accelerator} GPUs > {cap}")

    def take(self, fid: str, nodes: np.ndarray, r: Any) -> None:
        self.busy[fid][nodes] = True
        if r is not None:
            key = (r.tenant_id, r.accelerator)
            self.used[key] = self.used.get(key, 0) + r.gpus
