"""Per-factory runtime state in the twin: node occupancy, health, IT power and hourly accounting.

Node state is kept in flat arrays indexed by the factory's node numbering. ``status`` is the byte string a
policy sees (free / busy / down) and is kept consistent with ``node_job`` and ``down`` by :meth:`refresh`.
IT power is maintained incrementally: a node draws its system's training power while held by a job, idle
power while free, nothing while down or while the factory is out. ``reserved`` marks nodes held by a
non-job owner (inference replicas, see :mod:`superfactory.sim.inference`): busy to policies, ``node_job`` -1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from superfactory.domain.factory import Factory
from superfactory.domain.fleet import NODE_BUSY, NODE_DOWN, NODE_FREE

#: ``ndarray.sum()`` and ``.any()`` without numpy's Python-level method wrappers (~1-2 us a call, at every
#: placement and release): the same reduction, bit for bit
_add_reduce = np.add.reduce
_count_nonzero = np.count_nonzero


@dataclass(slots=True)
class HourRow:
    """Accounting for one factory over one simulated hour."""

    factory: str
    hour: int
    it_energy_mwh: float
    facility_energy_mwh: float
    price_usd_per_mwh: float
    carbon_g_per_kwh: float
    cost_usd: float
    carbon_t: float
    gpu_utilization: float
    busy_gpus_mean: float


@dataclass(slots=True)
class FactoryRuntime:
    """Mutable twin-side state of one factory."""

    factory: Factory
    index: int
    status: np.ndarray = field(init=False)
    node_cluster: np.ndarray = field(init=False)
    node_job: np.ndarray = field(init=False)
    down: np.ndarray = field(init=False)
    reserved: np.ndarray = field(init=False)
    node_power_busy_w: np.ndarray = field(init=False)
    node_power_idle_w: np.ndarray = field(init=False)
    node_gpus: np.ndarray = field(init=False)
    #: ``node_power_busy_w - node_power_idle_w``, node by node (the power arrays never change after start-up)
    node_delta_w: np.ndarray = field(init=False)
    #: whether cluster indices never decrease with the node index (then ascending nodes span the clusters of
    #: their first and last node only)
    clusters_in_order: bool = field(init=False)
    up: bool = True
    it_power_w: float = 0.0
    busy_gpus: int = 0
    last_accrue_s: int = 0
    hour_energy_j: float = 0.0
    hour_busy_gpu_s: float = 0.0
    total_busy_gpu_s: float = 0.0
    total_gpu_s: float = 0.0
    #: bumped by every change of what a snapshot shows of the factory (status, up, IT power; the fleet bumps it
    #: for probe readings too), so an unchanged factory's FactoryState is reused between decisions
    version: int = 0
    #: where a bump of :attr:`version` is told (the index appended): the fleet shares one list between its
    #: factories, so a snapshot revisits only the factories changed since the last one (issue 12, fleet-200)
    touched: list[int] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        f = self.factory
        n = f.nodes
        self.status = np.zeros(n, dtype=np.uint8)
        self.node_cluster = np.empty(n, dtype=np.intp)
        self.node_job = np.full(n, -1, dtype=np.int32)
        self.down = np.zeros(n, dtype=bool)
        self.reserved = np.zeros(n, dtype=bool)
        self.node_power_busy_w = np.empty(n)
        self.node_power_idle_w = np.empty(n)
        self.node_gpus = np.empty(n, dtype=np.int64)
        for ci, c in enumerate(f.clusters):
            sl = slice(c.node_offset, c.node_end)
            self.node_cluster[sl] = ci
            self.node_power_busy_w[sl] = c.system.training_power_per_node_w
            self.node_power_idle_w[sl] = c.system.idle_power_per_node_w
            self.node_gpus[sl] = c.system.gpus_per_node
        self.node_delta_w = self.node_power_busy_w - self.node_power_idle_w
        self.clusters_in_order = bool((self.node_cluster[1:] >= self.node_cluster[:-1]).all())
        self.it_power_w = float(self.node_power_idle_w.sum())

    # -- power & accounting -------------------------------------------------------------------------------
    def accrue(self, now_s: int) -> None:
        """Integrate power and busy GPUs up to ``now_s`` (call before any change)."""
        dt = now_s - self.last_accrue_s
        if dt > 0:
            self.hour_energy_j += self.it_power_w * dt
            self.hour_busy_gpu_s += self.busy_gpus * dt
            self.last_accrue_s = now_s

    def _node_power_w(self, node: int) -> float:
        if not self.up or self.down[node]:
            return 0.0
        if self.node_job[node] >= 0 or self.reserved[node]:
            return float(self.node_power_busy_w[node])
        return float(self.node_power_idle_w[node])

    def refresh(self, node: int) -> None:
        """Recompute the public status byte of ``node``."""
        self.version += 1
        self.touched.append(self.index)
        if self.down[node]:
            self.status[node] = NODE_DOWN
        elif self.node_job[node] >= 0 or self.reserved[node]:
            self.status[node] = NODE_BUSY
        else:
            self.status[node] = NODE_FREE

    # -- transitions (caller has called accrue(now) first) --------------------------------------------------
    def hold(self, nodes: np.ndarray, job_index: int) -> None:
        """Give free nodes to a job (vectorised: a 16k-GPU gang is 2,048 nodes). Nodes that are down stay down
        and add no power. (With none down — the usual case — the masks are skipped: the same sums, bit for bit.)"""
        self.version += 1
        self.touched.append(self.index)
        down = self.down[nodes]
        if not _count_nonzero(down):
            if self.up:
                self.it_power_w += float(_add_reduce(self.node_delta_w[nodes]))
                self.busy_gpus += int(_add_reduce(self.node_gpus[nodes]))
            self.node_job[nodes] = job_index
            self.status[nodes] = NODE_BUSY
            return
        live = ~down
        if self.up:
            self.it_power_w += float(self.node_delta_w[nodes][live].sum())
            self.busy_gpus += int(self.node_gpus[nodes][live].sum())
        self.node_job[nodes] = job_index
        self.status[nodes] = np.where(live, NODE_BUSY, NODE_DOWN)

    def release(self, nodes: np.ndarray) -> None:
        """Return a job's nodes; nodes that failed meanwhile stay down (none down: no masks, as in :meth:`hold`)."""
        self.version += 1
        self.touched.append(self.index)
        down = self.down[nodes]
        if not _count_nonzero(down):
            if self.up:
                self.it_power_w -= float(_add_reduce(self.node_delta_w[nodes]))
                self.busy_gpus -= int(_add_reduce(self.node_gpus[nodes]))
            self.node_job[nodes] = -1
            self.status[nodes] = NODE_FREE
            return
        live = ~down
        if self.up:
            self.it_power_w -= float(self.node_delta_w[nodes][live].sum())
            self.busy_gpus -= int(self.node_gpus[nodes][live].sum())
        self.node_job[nodes] = -1
        self.status[nodes] = np.where(live, NODE_FREE, NODE_DOWN)

    def set_down(self, node: int, is_down: bool) -> None:
        self.version += 1
        self.touched.append(self.index)
        before = self._node_power_w(node)
        held = self.node_job[node] >= 0 or self.reserved[node]
        if held and self.up and self.down[node] != is_down:
            self.busy_gpus += -int(self.node_gpus[node]) if is_down else int(self.node_gpus[node])
        self.down[node] = is_down
        self.it_power_w += self._node_power_w(node) - before
        self.refresh(node)

    def set_up(self, up: bool) -> None:
        self.version += 1
        self.touched.append(self.index)
        self.up = up
        if up:
            live = ~self.down
            held = (self.node_job >= 0) | self.reserved
            self.it_power_w = float(
                self.node_power_busy_w[live & held].sum() + self.node_power_idle_w[live & ~held].sum()
            )
            self.busy_gpus = int(self.node_gpus[live & held].sum())
        else:
            self.it_power_w = 0.0
            self.busy_gpus = 0


    def reserve(self, nodes: np.ndarray) -> None:
        """Mark free nodes as held by a non-job owner (caller checked they are free and live)."""
        self.version += 1
        self.touched.append(self.index)
        if self.up:
            self.it_power_w += float((self.node_power_busy_w[nodes] - self.node_power_idle_w[nodes]).sum())
            self.busy_gpus += int(self.node_gpus[nodes].sum())
        self.reserved[nodes] = True
        self.status[nodes] = NODE_BUSY

    def unreserve(self, nodes: np.ndarray) -> None:
        """Return reserved nodes; nodes that failed meanwhile stay down."""
        self.version += 1
        self.touched.append(self.index)
        live = ~self.down[nodes]
        if self.up:
            self.it_power_w -= float((self.node_power_busy_w[nodes] - self.node_power_idle_w[nodes])[live].sum())
            self.busy_gpus -= int(self.node_gpus[nodes][live].sum())
        self.reserved[nodes] = False
        self.status[nodes] = np.where(live, NODE_FREE, NODE_DOWN)
