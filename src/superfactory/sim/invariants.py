"""Fleet invariants checked after every event in tests (``run_twin(..., check_invariants=True)``).

Part of :class:`~superfactory.sim.fleet.SimulatedFleet` (a mixin over its state).
"""

from __future__ import annotations

import numpy as np

from superfactory.domain.fleet import (
    NODE_DOWN,
    NODE_FREE,
)
from superfactory.errors import SimulationError
from superfactory.sim.jobstate import JobState


class InvariantsMixin:
    """Consistency checks of node ownership, health and counters (uses SimulatedFleet's state)."""

    def check_invariants(self) -> None:
        """Raise SimulationError if fleet state is inconsistent: a node held by two jobs or by a job that does
        not list it, a running job on a down node, more GPUs held than exist, or counters out of sync."""
        for r in self.rt:
            expect = np.full(r.factory.nodes, -1, dtype=np.int32)
            for jr in self.holding.values():
                for fi, nodes in ((jr.factory, jr.nodes), (jr.migrate_to, jr.migrate_nodes)):
                    if fi != r.index or not nodes:
                        continue
                    idx = np.asarray(nodes, dtype=np.intp)
                    if np.any(expect[idx] >= 0):
                        raise SimulationError(f"{r.factory.id}: a node is held by two jobs")
                    expect[idx] = jr.index
                    if jr.state in (JobState.RUNNING, JobState.CHECKPOINTING) and fi == jr.factory and (
                        np.any(r.down[idx]) or not r.up
                    ):
                        raise SimulationError(f"job {jr.job.id} is {jr.state.value} on a failed node or down site")
            if not np.array_equal(expect, r.node_job):
                raise SimulationError(f"{r.factory.id}: node ownership out of sync with jobs")
            if np.any(r.reserved & (r.node_job >= 0)):
                raise SimulationError(f"{r.factory.id}: a node is held by a job and reserved")
            held = ((r.node_job >= 0) | r.reserved) & ~r.down
            busy = int(r.node_gpus[held].sum()) if r.up else 0
            if busy != r.busy_gpus or busy > r.factory.gpus:
                raise SimulationError(f"{r.factory.id}: busy GPU counter {r.busy_gpus} != {busy}")
            status = np.where(r.down, NODE_DOWN, np.where((r.node_job >= 0) | r.reserved, 1, NODE_FREE))
            if not np.array_equal(status, r.status):
                raise SimulationError(f"{r.factory.id}: node status bytes out of sync")
            cached = self._state_cache[r.index]
            if cached is not None and cached[0][0] == r.version:  # what the next snapshot would reuse
                st = cached[1]
                probes = tuple(self.link_probes[r.index][d] for d in sorted(self.link_probes[r.index]))
                if (st.node_status != r.status.tobytes() or st.up != r.up or st.it_power_w != r.it_power_w
                        or st.link_probes != probes):
                    raise SimulationError(f"{r.factory.id}: a snapshot would show a stale factory state "
                                          f"(version {r.version} not bumped by a change)")
        for jr in self.jobs:  # a folded checkpoint's window (sim/jobstate.py) belongs to a running job
            if jr.ckpt_until_s >= 0 and (jr._state is not JobState.RUNNING or jr.run_since_s < jr.ckpt_until_s
                                         or not jr.ckpt_began_s <= jr.ckpt_until_s or jr.index not in self.holding):
                raise SimulationError(f"job {jr.job.id}: a folded checkpoint window outside a running job "
                                      f"({jr._state.value}, window {jr.ckpt_began_s}..{jr.ckpt_until_s} s)")
            cell = jr.early_cell  # a window opened early: kept fields of a running job, before the window
            if cell is not None and (cell[0] is not True or jr.ckpt_until_s < 0 or cell[2] > jr.ckpt_began_s
                                     or cell[3] != jr.ckpt_began_s):
                raise SimulationError(f"job {jr.job.id}: a window opened early is inconsistent "
                                      f"(window {jr.ckpt_began_s}..{jr.ckpt_until_s} s, kept {cell})")
        pc = self._pending_cache
        if pc is not None and pc[0] == self.pending.version:
            now = self.k.now
            if pc[1] != tuple(self._view(jr, now) for jr in self.pending.values()):
                raise SimulationError("a snapshot would show a stale pending queue (version not bumped)")
