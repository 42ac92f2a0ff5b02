"""Moving a running job between factories: final checkpoint at the source, WAN transfer, restart.

Part of :class:`~superfactory.sim.fleet.SimulatedFleet` (a mixin over its state); see sim/README.md for the
state machine. The destination nodes are reserved from the decision on; a destination that loses a node or
goes down during the transfer requeues the job with nothing lost.
"""

from __future__ import annotations

import numpy as np

from superfactory.domain.events import Event, EventKind
from superfactory.domain.factory import WanLink
from superfactory.domain.fleet import Migrate
from superfactory.domain.topology import topology_of
from superfactory.errors import SimulationError
from superfactory.models.collective import placement_throughput
from superfactory.models.wan import route_bandwidth_gbps
from superfactory.models.wan import transfer_s as wan_transfer_s
from superfactory.sim.jobstate import JobRuntime, JobState
from superfactory.sim.kernel import PRIO_JOB


class MigrationMixin:
    """Migration of running jobs between factories (uses SimulatedFleet's state)."""

    def _migrate(self, a: Migrate) -> None:
        jr = self.job_by_id.get(a.job_id)
        if jr is None or jr.state not in (JobState.RUNNING, JobState.CHECKPOINTING):
            raise SimulationError(f"policy migrated job {a.job_id!r} which is not running")
        if not jr.job.migratable:
            raise SimulationError(f"policy migrated job {a.job_id!r} which is not migratable")
        fi, nodes, _ = self._check_nodes(jr, a.factory_id, a.nodes)
        if fi == jr.factory:
            raise SimulationError(f"policy migrated job {a.job_id!r} to the factory it runs in")
        now = self.k.now_s()
        dest = self.rt[fi]
        dest.accrue(now)
        dest.hold(nodes, jr.index)  # reserve the destination now (it draws power while reserved)
        jr.migrate_to, jr.migrate_nodes = fi, tuple(int(n) for n in nodes)
        jr.migrations += 1
        src = self.factories[jr.factory].id
        seconds = self.transfer_s(src, a.factory_id, jr.job.checkpoint.size_bytes)
        self.emit(Event(now, EventKind.JOB_MIGRATED, jr.job.id, a.factory_id, cause=f"{src}->{a.factory_id}"
                        + (f": {a.reason}" if a.reason else ""), value=float(seconds)))
        self._drain(jr, migrate=True)

    def up_links(self) -> list[WanLink]:
        """The WAN links that are up now."""
        return [lk for lk in self.links if (lk.a, lk.b) not in self.links_down]

    def link_bandwidth_gbps(self, a: str, b: str) -> float:
        """Usable bandwidth between two factories now (:func:`superfactory.models.wan.route_bandwidth_gbps`)."""
        return route_bandwidth_gbps(self.up_links(), a, b)

    def transfer_s(self, a: str, b: str, size_bytes: float) -> int:
        """Seconds to move ``size_bytes`` from ``a`` to ``b`` now (:func:`superfactory.models.wan.transfer_s`)."""
        return wan_transfer_s(self.up_links(), a, b, size_bytes)

    def _transfer(self, jr: JobRuntime) -> None:
        src, dst = self.factories[jr.factory].id, self.factories[jr.migrate_to].id
        tok = jr.bump(JobState.MIGRATING)
        self.k.after(self.transfer_s(src, dst, jr.job.checkpoint.size_bytes), PRIO_JOB, self._arrive, jr, tok)

    def _arrive(self, jr: JobRuntime, tok: int) -> None:
        if jr.token != tok:
            return
        now = self.k.now_s()
        self._release(jr)  # source nodes
        fi, nodes = jr.migrate_to, jr.migrate_nodes
        jr.migrate_to, jr.migrate_nodes = -1, ()
        jr.factory, jr.nodes, jr.held_since_s = fi, nodes, now
        self.holding[jr.index] = jr
        r = self.rt[fi]
        if not r.up or np.any(r.down[list(nodes)]):
            # the destination lost a node (or went down) during the transfer: requeue, nothing lost
            self._requeue(jr, jr.token, False)
            return
        jr.restart_cost_s = jr.job.recovery.restart_s
        # the job runs at the speed of its new nodes (their NVLink domains and probed link health), not of the
        # nodes it left: a job moved off a degraded domain is back at full speed, one split across domains is not
        jr.speed = placement_throughput(topology_of(r.factory), nodes, jr.job, self.link_factors[fi])
        tok = jr.bump(JobState.STARTING)
        self.emit(Event(now, EventKind.JOB_PLACED, jr.job.id, r.factory.id, cause="migrated",
                        value=float(jr.job.gpus)))
        self.k.after(jr.job.recovery.restart_s, PRIO_JOB, self._begin_running, jr, tok)
