"""The live :class:`~superfactory.loop.ports.FleetView`: a :class:`FleetSnapshot` built from the store.

It is built to equal the twin's snapshot for the same fleet state (a test checks it), so a policy sees the same
world in both:

- factories and links in import order, the very same domain values (:mod:`superfactory.live.codec`);
- node status: busy for nodes held by jobs ``assigned``, ``running`` or ``stopping`` (and nodes reserved for a
  move in progress), down for the agent's ``down_nodes``; a factory that may not get new work (cordoned,
  draining, or its lease past the short timeout) shows its free nodes as down, so no policy places there;
- ``up`` is False for a factory with no live agent lease (never registered, or lost);
- IT power like the twin's: training power on held live nodes, idle power on free ones, none on down ones;
- pending jobs in the order they (re)joined the queue, running jobs in placement order (fencing token);
  held jobs and jobs whose tenant is at its quota are left out (why-pending explains them);
- price and carbon histories from :mod:`superfactory.live.services.signals`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sqlalchemy as sa

from superfactory.domain.factory import Factory
from superfactory.domain.fleet import NODE_BUSY, NODE_DOWN, NODE_FREE, FactoryState, FleetSnapshot, JobView
from superfactory.domain.lifecycle import JobLifecycle
from superfactory.live.codec import decode_job
from superfactory.live.context import Live
from superfactory.live.services.fleet import lease_status, load_fleet, schedulable
from superfactory.live.services.jobs_common import HOLDING, TWIN_STATE
from superfactory.live.services.signals import histories
from superfactory.live.services.tenants import usage
from superfactory.live.store import tables as t


def node_power(f: Factory) -> tuple[np.ndarray, np.ndarray]:
    """Per node: (training power, idle power), W."""
    busy = np.empty(f.nodes)
    idle = np.empty(f.nodes)
    for c in f.clusters:
        busy[c.node_offset:c.node_end] = c.system.training_power_per_node_w
        idle[c.node_offset:c.node_end] = c.system.idle_power_per_node_w
    return busy, idle


# a job row as the view reads it: the compiled job (`spec.job`) without the request it came from
_VIEW_COLUMNS = (*(c for c in t.jobs.c if c.name != "spec"), t.jobs.c.spec["job"].label("job"))


def job_view(r: Any, pending: bool) -> JobView:
    """The policy's view of a job row read with ``_VIEW_COLUMNS``."""
    job = decode_job(str(r.id), r.job, r.submit_s, r.priority)
    return JobView(
        job, None if pending else r.factory_id, () if pending else tuple(r.nodes), r.progress_s,
        r.waiting_since_s if pending else -1, r.last_factory_id, tuple(r.last_nodes), bool(r.interrupted) and pending,
        r.committed_progress_s, JobLifecycle(TWIN_STATE[r.state]), r.carbon_spent_tco2,
    )


class StoreFleetView:
    """Builds snapshots from the store at the clock's time."""

    def __init__(self, live: Live) -> None:
        self.live = live
        self.left_out: dict[int, str] = {}  # job id -> why the last snapshot left it out (quota)

    def snapshot(self) -> FleetSnapshot:
        live = self.live
        now = live.clock.now_s()
        fleet = load_fleet(live)
        with live.engine.connect() as conn:
            rows = {r.id: r for r in conn.execute(sa.select(t.factories))}
            holding = conn.execute(sa.select(*_VIEW_COLUMNS).where(t.jobs.c.state.in_(HOLDING))
                                   .order_by(t.jobs.c.fencing_token)).all()
            pending = conn.execute(sa.select(*_VIEW_COLUMNS).where(t.jobs.c.state == "pending")
                                   .order_by(t.jobs.c.waiting_since_s, t.jobs.c.id)).all()
            quotas = {r.id: r.quotas for r in conn.execute(sa.select(t.tenants.c.id, t.tenants.c.quotas))}
            used = usage(conn)
        prices, carbon, price_now, carbon_now = histories(live, now)
        states = []
        for f in fleet.factories:
            r = rows[f.id]
            status = np.zeros(f.nodes, dtype=np.uint8)
            for j in holding:
                if j.factory_id == f.id:
                    status[j.nodes] = NODE_BUSY
                if j.migrate_to and j.migrate_to["factory_id"] == f.id:
                    status[j.migrate_to["nodes"]] = NODE_BUSY
            down = np.zeros(f.nodes, dtype=bool)
            down[list(r.down_nodes)] = True
            busy_w, idle_w = node_power(f)
            held = status == NODE_BUSY
            lease = lease_status(live, r)
            up = lease in ("live", "suspect")
            power = float(busy_w[held & ~down].sum() + idle_w[~held & ~down].sum()) if up else 0.0
            status[down] = NODE_DOWN
            if not schedulable(live, r):
                status[status == NODE_FREE] = NODE_DOWN
            states.append(FactoryState(f.id, up, status.tobytes(), price_now.get(f.market, 0.0),
                                       carbon_now.get(f.grid, 0.0), power))
        self.left_out = {}
        pend = []
        for r in pending:
            cap = quotas.get(r.tenant_id, {}).get(r.accelerator)
            if cap is not None and used.get((r.tenant_id, r.accelerator), 0) + r.gpus > cap:
                self.left_out[r.id] = "quota"
                continue
            pend.append(job_view(r, True))
        running = tuple(job_view(r, False) for r in holding)
        return FleetSnapshot(now, fleet.factories, tuple(states), fleet.links, tuple(pend), running, prices, carbon)
