"""The physical and network tree of a factory: halls -> racks -> nodes -> GPUs, NVLink domains, leaf/spine.

Derived from a :class:`~superfactory.domain.factory.Factory`'s cluster numbering, never stored separately, so a
scenario needs no topology section unless it wants non-default grouping. Per cluster (all counts in nodes):

- **NVLink domain**: ``system.nodes_per_domain`` consecutive nodes (one DGX H100 node of 8 GPUs; one GB200
  NVL72 rack of 18 trays x 4 GPUs). A tensor-parallel group must sit inside one domain.
- **rack**: ``nodes_per_rack`` consecutive nodes (default: the domain for NVL72, 4 DGX-class nodes ~ 40 kW).
- **leaf group** (scalable unit): ``nodes_per_leaf`` consecutive nodes whose GPUs hang off the same set of
  rail-optimised leaf switches (GPU *r* of every node on rail leaf *r*): traffic between them crosses one leaf
  hop at full NIC rate. Defaults follow NVIDIA SuperPOD reference designs: 32 DGX nodes per SU, 8 NVL72 racks
  (144 trays) per SU.
- **hall** (spine group): ``leaves_per_hall`` leaf groups under one spine layer (default 16).

Bandwidth a placement should get (per GPU, one direction, Gb/s): inside one domain the NVLink rate; inside one
leaf group the NIC rate; across leaf groups of one hall the NIC rate / ``oversubscription`` (leaf uplinks are
tapered by that factor); across halls the NIC rate / ``oversubscription`` squared (a second tapered tier).

Leaves and halls never straddle clusters. Everything here is pure and vectorised (numpy arrays indexed by the
factory's node numbering), so a 100k-GPU factory's tree is built once in milliseconds and then cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from superfactory.domain.factory import Cluster, Factory

IntArray = npt.NDArray[np.int32]

#: NVLink bandwidth per GPU per direction, Gb/s (H100/H200 NVLink4 900 GB/s bidirectional; B200/GB200 NVLink5
#: 1.8 TB/s bidirectional; MI325X Infinity Fabric ~896 GB/s bidirectional).
NVLINK_GBPS_PER_GPU: dict[str, float] = {
    "H100-SXM": 3600.0, "H200": 3600.0, "B200": 7200.0, "GB200": 7200.0, "MI325X": 3584.0,
}
#: Scale-out NIC bandwidth per GPU, Gb/s (one ConnectX-7 400G per GPU in DGX H100 and GB200 NVL72 trays).
NIC_GBPS_PER_GPU = 400.0
DEFAULT_LEAVES_PER_HALL = 16

#: Network tiers a placement can span, innermost first.
TIER_DOMAIN, TIER_LEAF, TIER_HALL, TIER_FACTORY = 0, 1, 2, 3
TIER_NAMES = ("one NVLink domain", "one leaf group", "one hall", "several halls")


def rack_nodes(c: Cluster) -> int:
    """Nodes per rack of ``c`` (explicit, else the NVLink domain if it spans several nodes, else 4)."""
    if c.nodes_per_rack > 0:
        return c.nodes_per_rack
    return c.system.nodes_per_domain if c.system.nodes_per_domain > 1 else 4


def leaf_nodes(c: Cluster) -> int:
    """Nodes per leaf group of ``c`` (explicit, else 8 racks of NVL72 or 32 eight-GPU nodes)."""
    if c.nodes_per_leaf > 0:
        return c.nodes_per_leaf
    return 8 * c.system.nodes_per_domain if c.system.nodes_per_domain > 1 else 32


def hall_leaves(c: Cluster) -> int:
    return c.leaves_per_hall if c.leaves_per_hall > 0 else DEFAULT_LEAVES_PER_HALL


def topology_problem(c: Cluster) -> str | None:
    """Why ``c``'s grouping is inconsistent (racks must hold whole domains, leaves whole racks), or None."""
    d, r, lf = c.system.nodes_per_domain, rack_nodes(c), leaf_nodes(c)
    if r % d and d % r:
        return f"nodes_per_rack {r} must be a multiple or divisor of the NVLink domain ({d} nodes)"
    if lf % r or lf % d:
        return f"nodes_per_leaf {lf} must hold whole racks ({r} nodes) and whole NVLink domains ({d} nodes)"
    if c.oversubscription < 1.0:
        return f"oversubscription {c.oversubscription} must be >= 1"
    return None


@dataclass(frozen=True, slots=True, eq=False)
class FactoryTopology:
    """The tree of one factory as flat arrays (index = node, domain, or leaf number).

    Attributes:
        factory_id: which factory.
        node_domain, node_rack, node_leaf, node_hall, node_cluster: per node, the index of its NVLink domain,
            rack, leaf group, hall and cluster (all numbered factory-wide).
        domain_first_node, domain_nodes: per domain, its first node and node count.
        domain_leaf, domain_hall, domain_cluster: per domain, its leaf, hall and cluster.
        leaf_hall: per leaf group, its hall.
        gpus_per_node: per cluster.
        nvlink_gbps, nic_gbps, oversubscription: per cluster.
    """

    factory_id: str
    node_domain: IntArray
    node_rack: IntArray
    node_leaf: IntArray
    node_hall: IntArray
    node_cluster: IntArray
    domain_first_node: IntArray
    domain_nodes: IntArray
    domain_leaf: IntArray
    domain_hall: IntArray
    domain_cluster: IntArray
    leaf_hall: IntArray
    gpus_per_node: tuple[int, ...]
    nvlink_gbps: tuple[float, ...]
    nic_gbps: tuple[float, ...]
    oversubscription: tuple[float, ...]

    @property
    def domains(self) -> int:
        return int(self.domain_nodes.size)

    @property
    def leaves(self) -> int:
        return int(self.leaf_hall.size)

    @property
    def halls(self) -> int:
        return int(self.leaf_hall.max()) + 1 if self.leaf_hall.size else 0

    def tier(self, nodes: npt.ArrayLike) -> int:
        """The outermost tier ``nodes`` span: TIER_DOMAIN, TIER_LEAF, TIER_HALL or TIER_FACTORY."""
        idx = np.asarray(nodes, dtype=np.intp)
        if idx.size == 0:
            return TIER_DOMAIN
        for t, arr in ((TIER_DOMAIN, self.node_domain), (TIER_LEAF, self.node_leaf), (TIER_HALL, self.node_hall)):
            v = arr[idx]
            if (v == v[0]).all():
                return t
        return TIER_FACTORY

    def spread(self, nodes: npt.ArrayLike) -> tuple[int, int, int, int]:
        """How many distinct (domains, racks, leaf groups, halls) ``nodes`` touch."""
        idx = np.asarray(nodes, dtype=np.intp)
        return tuple(  # type: ignore[return-value]
            int(np.unique(a[idx]).size) for a in (self.node_domain, self.node_rack, self.node_leaf, self.node_hall)
        )

    def expected_gbps(self, nodes: npt.ArrayLike) -> float:
        """Per-GPU bandwidth, Gb/s, the topology should give a collective across ``nodes`` (module docstring)."""
        idx = np.asarray(nodes, dtype=np.intp)
        if idx.size == 0:
            return 0.0
        ci = int(self.node_cluster[idx[0]])
        t = self.tier(idx)
        if t == TIER_DOMAIN:
            return self.nvlink_gbps[ci]
        return self.nic_gbps[ci] / self.oversubscription[ci] ** (t - TIER_LEAF)


def tp_nodes(gpus_per_node: int, gpus: int, tp_size: int) -> int:
    """Nodes one tensor-parallel group occupies (at least 1; a TP group smaller than a node shares it)."""
    tp = max(1, min(tp_size, gpus))
    return max(1, -(-tp // gpus_per_node))


def split_tp_groups(topo: FactoryTopology, nodes: tuple[int, ...], gpus: int, tp_size: int) -> int:
    """How many of a gang's TP groups span more than one NVLink domain.

    Ranks are laid out in the order of ``nodes`` (the launcher's host list), so TP group *i* is the *i*-th run of
    :func:`tp_nodes` consecutive entries. 0 means every TP group sits inside one domain.
    """
    if not nodes:
        return 0
    idx = np.asarray(nodes, dtype=np.intp)
    k = tp_nodes(topo.gpus_per_node[int(topo.node_cluster[idx[0]])], gpus, tp_size)
    if k == 1:
        return 0
    n = idx.size - idx.size % k
    groups = topo.node_domain[idx[:n]].reshape(-1, k)
    split = int((groups != groups[:, :1]).any(axis=1).sum())
    return split + (1 if idx.size % k and np.unique(topo.node_domain[idx[n:]]).size > 1 else 0)


@lru_cache(maxsize=128)
def topology_of(factory: Factory) -> FactoryTopology:
    """Build (once per factory value) the tree of ``factory``."""
    n = factory.nodes
    node_domain = np.empty(n, dtype=np.int32)
    node_rack = np.empty(n, dtype=np.int32)
    node_leaf = np.empty(n, dtype=np.int32)
    node_hall = np.empty(n, dtype=np.int32)
    node_cluster = np.empty(n, dtype=np.int32)
    rack0 = leaf0 = hall0 = 0
    leaf_hall: list[npt.NDArray[np.int32]] = []
    for ci, c in enumerate(factory.clusters):
        local = np.arange(c.nodes, dtype=np.int32)
        sl = slice(c.node_offset, c.node_end)
        node_cluster[sl] = ci
        node_domain[sl] = c.domain_offset + local // c.system.nodes_per_domain
        node_rack[sl] = rack0 + local // rack_nodes(c)
        leaf_local = local // leaf_nodes(c)
        node_leaf[sl] = leaf0 + leaf_local
        node_hall[sl] = hall0 + leaf_local // hall_leaves(c)
        n_leaves = -(-c.nodes // leaf_nodes(c))
        leaf_hall.append((hall0 + np.arange(n_leaves, dtype=np.int32) // hall_leaves(c)).astype(np.int32))
        rack0 += -(-c.nodes // rack_nodes(c))
        leaf0 += n_leaves
        hall0 += -(-n_leaves // hall_leaves(c))
    domain_first = np.flatnonzero(np.r_[True, node_domain[1:] != node_domain[:-1]]).astype(np.int32) if n else (
        np.empty(0, dtype=np.int32))
    domain_nodes = np.diff(np.r_[domain_first, n]).astype(np.int32)
    return FactoryTopology(
        factory_id=factory.id,
        node_domain=node_domain,
        node_rack=node_rack,
        node_leaf=node_leaf,
        node_hall=node_hall,
        node_cluster=node_cluster,
        domain_first_node=domain_first,
        domain_nodes=domain_nodes,
        domain_leaf=node_leaf[domain_first],
        domain_hall=node_hall[domain_first],
        domain_cluster=node_cluster[domain_first],
        leaf_hall=np.concatenate(leaf_hall) if leaf_hall else np.empty(0, dtype=np.int32),
        gpus_per_node=tuple(c.system.gpus_per_node for c in factory.clusters),
        nvlink_gbps=tuple(
            NVLINK_GBPS_PER_GPU.get(c.accelerator, NIC_GBPS_PER_GPU) if c.system.gpus_per_domain > 1
            else NIC_GBPS_PER_GPU for c in factory.clusters
        ),
        nic_gbps=tuple(NIC_GBPS_PER_GPU for _ in factory.clusters),
        oversubscription=tuple(c.oversubscription for c in factory.clusters),
    )
