"""Factories (sites) and their node/NVLink-domain topology.

A factory is built from clusters of one system type. Nodes are numbered 0..n-1 across the factory, cluster
by cluster, and NVLink domains likewise; node ``i`` of a cluster lies in domain
``cluster.domain_offset + (i - cluster.node_offset) // system.nodes_per_domain``. Contiguous numbering lets
the twin keep per-node state in flat arrays and lets policies see a factory as a byte string of node states.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from superfactory.domain.accelerator import SYSTEMS, SystemSpec


@dataclass(frozen=True, slots=True)
class Cluster:
    """A contiguous block of identical nodes inside a factory.

    Attributes:
        system: the system spec the cluster is built from.
        nodes: number of nodes (a GB200 NVL72 rack counts 18 nodes).
        node_offset: index of the first node in the factory's numbering.
        domain_offset: index of the first NVLink domain in the factory's numbering.
        nodes_per_rack, nodes_per_leaf, leaves_per_hall: physical/network grouping of the cluster's nodes
            (0 = the system's default; see :mod:`superfactory.domain.topology`).
        oversubscription: leaf-uplink oversubscription of the rail-optimised leaf/spine fabric (>= 1).
    """

    system: SystemSpec
    nodes: int
    node_offset: int = 0
    domain_offset: int = 0
    nodes_per_rack: int = 0
    nodes_per_leaf: int = 0
    leaves_per_hall: int = 0
    oversubscription: float = 1.0

    @property
    def accelerator(self) -> str:
        return self.system.accelerator

    @property
    def gpus(self) -> int:
        return self.nodes * self.system.gpus_per_node

    @property
    def domains(self) -> int:
        return -(-self.nodes // self.system.nodes_per_domain)

    @property
    def node_end(self) -> int:
        """One past the last node index of this cluster."""
        return self.node_offset + self.nodes


@dataclass(frozen=True, slots=True)
class Factory:
    """One AI factory (site).

    Attributes:
        id: short unique name used in scenarios and reports.
        region: free-text geographic region (e.g. ``"us-central"``).
        market: electricity market whose hourly price applies (e.g. ``"ERCOT"``).
        grid: grid/balancing area whose carbon intensity applies (defaults to the market).
        power_cap_w: facility power cap, W (IT load x PUE must stay below it).
        cooling_capacity_w: heat the cooling plant can remove, W (compared against IT load).
        pue: power usage effectiveness (facility power / IT power), >= 1.
        clearances: regulatory clearances held (e.g. ``{"US", "EU_PERSONAL"}``); a job's sovereignty classes
            must all be in this set for it to run here.
        jurisdiction: legal jurisdiction (e.g. ``"US"``, ``"EU"``).
        clusters: the node blocks, numbered contiguously.
        cloud_region: nearest public-cloud region (used to look up measured RTTs), optional.
        ppa_share, ppa_usd_per_mwh: tariff: this share of the energy is bought under a fixed-price contract
            (PPA), the rest at the hourly market price (see :mod:`superfactory.models.tariff`).
    """

    id: str
    region: str
    market: str
    grid: str
    power_cap_w: float
    cooling_capacity_w: float
    pue: float
    clearances: frozenset[str]
    jurisdiction: str
    clusters: tuple[Cluster, ...]
    cloud_region: str | None = None
    timezone_offset_h: float = 0.0
    ppa_share: float = 0.0  # share of energy bought at the fixed ppa_usd_per_mwh (0 = spot only)
    ppa_usd_per_mwh: float = 0.0
    _node_count: int = field(default=0, init=False, repr=False, compare=False)
    # per accelerator: its clusters and GPUs (derived once; policies ask millions of times over a long run)
    _by_accelerator: dict[str, tuple[tuple[Cluster, ...], int]] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_node_count", sum(c.nodes for c in self.clusters))
        for acc in {c.accelerator for c in self.clusters}:
            cl = tuple(c for c in self.clusters if c.accelerator == acc)
            self._by_accelerator[acc] = (cl, sum(c.gpus for c in cl))

    @property
    def nodes(self) -> int:
        return self._node_count

    @property
    def gpus(self) -> int:
        return sum(c.gpus for c in self.clusters)

    @property
    def domains(self) -> int:
        return sum(c.domains for c in self.clusters)

    def gpus_of(self, accelerator: str) -> int:
        """Total GPUs of one accelerator type."""
        entry = self._by_accelerator.get(accelerator)
        return entry[1] if entry is not None else 0

    def clusters_of(self, accelerator: str) -> tuple[Cluster, ...]:
        """The clusters of one accelerator type, in node order."""
        entry = self._by_accelerator.get(accelerator)
        return entry[0] if entry is not None else ()

    def cluster_of_node(self, node: int) -> Cluster:
        """The cluster that holds node index ``node`` (raises IndexError if out of range)."""
        for c in self.clusters:
            if c.node_offset <= node < c.node_end:
                return c
        raise IndexError(f"factory {self.id} has no node {node}")

    def domain_of_node(self, node: int) -> int:
        c = self.cluster_of_node(node)
        return c.domain_offset + (node - c.node_offset) // c.system.nodes_per_domain

    @property
    def accelerators(self) -> frozenset[str]:
        return frozenset(c.accelerator for c in self.clusters)


def build_clusters(blocks: list[tuple[str, int]],
                   topology: list[tuple[int, int, int, float]] | None = None) -> tuple[Cluster, ...]:
    """Number ``(system_name, nodes)`` blocks contiguously into clusters.

    ``topology``, if given, holds ``(nodes_per_rack, nodes_per_leaf, leaves_per_hall, oversubscription)`` per
    block (0 = system default). Raises KeyError for an unknown system name (the scenario layer validates names
    first).
    """
    out: list[Cluster] = []
    node_offset = 0
    domain_offset = 0
    for bi, (system_name, nodes) in enumerate(blocks):
        topo = topology[bi] if topology is not None else (0, 0, 0, 1.0)
        c = Cluster(SYSTEMS[system_name], nodes, node_offset, domain_offset, *topo)
        out.append(c)
        node_offset += c.nodes
        domain_offset += c.domains
    return tuple(out)


@dataclass(frozen=True, slots=True)
class WanLink:
    """A bidirectional dedicated fibre link between two factories.

    Attributes:
        a, b: factory ids.
        bandwidth_gbps: usable line rate, Gb/s.
        latency_ms: one-way latency, ms.
        egress_usd_per_gb: transfer cost, USD per GB (0 for owned fibre).
    """

    a: str
    b: str
    bandwidth_gbps: float
    latency_ms: float
    egress_usd_per_gb: float = 0.0
