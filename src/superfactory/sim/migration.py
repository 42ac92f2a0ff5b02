"""Moving a running job between factories: final checkpoint at the source, WAN transfer, restart.

Part of :class:`~superfactory.sim.fleet.SimulatedFleet` (a mixin over its state); see sim/README.md for the
state machine. The destination nodes are reserved from the decision on; a destination that loses a node or
goes down during the transfer requeues the job with nothing lost.
"""

from __future__ import annotations

import numpy as np

from superfactory.domain.events import Event, EventKind
from superfactory.domain.fleet import Migrate
from superfactory.errors import SimulationError
from superfactory.sim.jobstate import JobRuntime, JobState
from superfactory.sim.kernel import PRIO_JOB

#: bandwidth assumed between factories with no (up) dedicated path, Gb/s
DEFAULT_WAN_GBPS = 100.0


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

    def link_bandwidth_gbps(self, a: str, b: str) -> float:
        """Usable bandwidth between two factories: the direct link if up, else the best two-hop path (its
        narrowest link), else ``DEFAULT_WAN_GBPS`` over the public internet."""
        up = [lk for lk in self.links if (lk.a, lk.b) not in self.links_down]
        adj: dict[str, dict[str, float]] = {}
        for lk in up:
            adj.setdefault(lk.a, {})[lk.b] = lk.bandwidth_gbps
            adj.setdefault(lk.b, {})[lk.a] = lk.bandwidth_gbps
        direct = adj.get(a, {}).get(b)
        if direct is not None:
            return direct
        two_hop = [min(bw, adj.get(mid, {}).get(b, 0.0)) for mid, bw in adj.get(a, {}).items()]
        best = max(two_hop, default=0.0)
        return best if best > 0 else DEFAULT_WAN_GBPS

    def transfer_s(self, a: str, b: str, size_bytes: float) -> int:
        """Seconds to move ``size_bytes`` from factory ``a`` to ``b`` now."""
        return int(np.ceil(size_bytes * 8 / (self.link_bandwidth_gbps(a, b) * 1e9)))

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
        tok = jr.bump(JobState.STARTING)
        self.emit(Event(now, EventKind.JOB_PLACED, jr.job.id, r.factory.id, cause="migrated",
                        value=float(jr.job.gpus)))
        self.k.after(jr.job.recovery.restart_s, PRIO_JOB, self._begin_running, jr, tok)
