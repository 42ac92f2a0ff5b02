"""The accelerator and system catalog.

An :class:`Accelerator` is one GPU model; a :class:`SystemSpec` is the unit a factory is built from (a DGX
node of 8 GPUs, a GB200 NVL72 rack of 18 compute trays x 4 GPUs). Figures are vendor data-sheet values; the
per-GPU-hour prices are typical 2024-25 on-demand/contract prices and only used for reporting.

Power: ``max_power_w`` is the whole system at full load (GPUs, CPUs, NICs, fans/pumps inside the chassis), as
on the data sheet (DGX H100 10.2 kW). Training draws ``training_power_fraction`` of it on average and an idle
system ``idle_power_fraction`` (measured fleets report ~0.75-0.85 under training and ~0.2-0.3 idle).

Capital (total cost of ownership, :mod:`superfactory.models.tco`): ``list_price_usd`` is one NVLink domain as
sold (a DGX node, a GB200 NVL72 rack), written off straight-line over ``depreciation_years``; a cluster adds
networking and storage, priced as shares of the GPU systems' cost (``systems x (1 + networking + storage)``;
docs/cost.md says why this reading of the source's "share of cluster cost"). Sources and choices:
- DGX H100 ~ $300-400k per 8-GPU system, GB200 NVL72 ~ $2-3M per rack, networking 15-25 % and storage 5-10 %
  of cluster cost: the course material the project is built on (quoted in issue 17). The catalog takes the
  midpoints: $350k, $2.5M, 20 % and 7.5 %. Other systems have no list price here (``None``): a TCO that
  meets one says which capital it could not price.
- Depreciation 4 years: between the ~3-year economic life usually argued for a GPU generation and the 5-6-year
  server lives hyperscalers book (Microsoft and Alphabet 6 years from fiscal 2023, Meta 5.5 years from 2025,
  per their annual reports). A parameter of every cost command (``--depreciation-years``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Accelerator:
    """One GPU model.

    Attributes:
        name: catalog key, e.g. ``"H100-SXM"``.
        memory_gb: HBM capacity, GB.
        tdp_w: board power limit, W.
        bf16_dense_tflops: dense BF16 peak, TFLOP/s (no sparsity).
        nvlink_domain_gpus: GPUs in one NVLink/Infinity-Fabric domain in the usual system.
        usd_per_gpu_hour: typical rental price, USD per GPU-hour (reporting only).
    """

    name: str
    vendor: str
    memory_gb: float
    tdp_w: float
    bf16_dense_tflops: float
    nvlink_domain_gpus: int
    usd_per_gpu_hour: float


@dataclass(frozen=True, slots=True)
class SystemSpec:
    """A buildable system: ``nodes_per_domain`` hosts of ``gpus_per_node`` GPUs share one NVLink domain.

    The node (host/tray) is the unit of failure and allocation; the domain is the unit a tensor-parallel
    group must stay inside.
    """

    name: str
    accelerator: str
    gpus_per_node: int
    nodes_per_domain: int
    max_power_w: float  # per node, whole system at full load
    training_power_fraction: float = 0.80
    idle_power_fraction: float = 0.25
    list_price_usd: float | None = None  # one NVLink domain as sold (DGX node, NVL72 rack); None = not known
    depreciation_years: float = 4.0

    @property
    def gpus_per_domain(self) -> int:
        return self.gpus_per_node * self.nodes_per_domain

    @property
    def training_power_per_node_w(self) -> float:
        return self.max_power_w * self.training_power_fraction

    @property
    def idle_power_per_node_w(self) -> float:
        return self.max_power_w * self.idle_power_fraction


ACCELERATORS: dict[str, Accelerator] = {
    a.name: a
    for a in (
        # NVIDIA H100 SXM5 data sheet: 80 GB HBM3, 700 W, 989 TFLOP/s dense BF16.
        Accelerator("H100-SXM", "NVIDIA", 80, 700, 989, 8, 2.50),
        # H200 SXM: 141 GB HBM3e, 700 W, same compute as H100.
        Accelerator("H200", "NVIDIA", 141, 700, 989, 8, 3.50),
        # B200 (HGX/DGX B200): 180 GB usable HBM3e, 1000 W, 2.25 PFLOP/s dense BF16.
        Accelerator("B200", "NVIDIA", 180, 1000, 2250, 8, 5.00),
        # GB200 in an NVL72 rack: 186 GB HBM3e, ~1200 W, 2.5 PFLOP/s dense BF16, 72-GPU NVLink domain.
        Accelerator("GB200", "NVIDIA", 186, 1200, 2500, 72, 6.00),
        # AMD Instinct MI325X: 256 GB HBM3E, 1000 W, 1307 TFLOP/s dense BF16, 8-GPU Infinity Fabric.
        Accelerator("MI325X", "AMD", 256, 1000, 1307, 8, 3.00),
    )
}

SYSTEMS: dict[str, SystemSpec] = {
    s.name: s
    for s in (
        SystemSpec("dgx-h100", "H100-SXM", gpus_per_node=8, nodes_per_domain=1, max_power_w=10_200,
                   list_price_usd=350_000),
        SystemSpec("hgx-h200", "H200", gpus_per_node=8, nodes_per_domain=1, max_power_w=10_200),
        SystemSpec("dgx-b200", "B200", gpus_per_node=8, nodes_per_domain=1, max_power_w=14_300),
        # NVL72: 18 compute trays of 4 GPUs; ~132 kW per rack at full load -> ~7.3 kW per tray.
        SystemSpec("gb200-nvl72", "GB200", gpus_per_node=4, nodes_per_domain=18, max_power_w=132_000 / 18,
                   list_price_usd=2_500_000),
        SystemSpec("mi325x-8", "MI325X", gpus_per_node=8, nodes_per_domain=1, max_power_w=14_000),
    )
}

#: networking (switches, optics, cabling) per dollar of GPU systems (source: 15-25 % of cluster cost; midpoint)
NETWORKING_SHARE = 0.20
#: storage (checkpoint and data tiers) per dollar of GPU systems (source: 5-10 % of cluster cost; midpoint)
STORAGE_SHARE = 0.075
