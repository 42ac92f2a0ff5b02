"""The scenario file format: pydantic models that validate a parsed YAML document.

Every model forbids unknown keys. Quantities with units are parsed here (see :mod:`.units`), so a wrong unit
is reported at its field path. Cross-references (links to known factories, jobs that fit somewhere) are checked
by :mod:`.compiler` after this structural pass. ``superfactory scenario schema`` exports the JSON schema of
:class:`ScenarioSpec` for editors.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from superfactory.domain.accelerator import ACCELERATORS, SYSTEMS
from superfactory.scenario import units
from superfactory.scenario.seeds import MAX_SEED

Duration = Annotated[int, BeforeValidator(units.parse_duration_s), Field(description="duration, e.g. '30min'")]
Size = Annotated[float, BeforeValidator(units.parse_size_bytes), Field(description="size, e.g. '1.5TB'")]
Bandwidth = Annotated[float, BeforeValidator(units.parse_bandwidth_gbps), Field(description="e.g. '400Gbps'")]
Power = Annotated[float, BeforeValidator(units.parse_power_w), Field(description="power, e.g. '300MW'")]
Latency = Annotated[float, BeforeValidator(units.parse_latency_ms), Field(description="latency, e.g. '15ms'")]
Identifier = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)]

#: a component seed that overrides the run's seed tree for that component alone (see scenario/seeds.py)
PinnedSeed = Annotated[int | None, Field(ge=0, le=MAX_SEED, description=(
    "pin this component's random stream (otherwise it derives from the run seed; see docs/scenarios.md)"))]

SystemName = Literal[tuple(SYSTEMS)]  # type: ignore[valid-type]
AcceleratorName = Literal[tuple(ACCELERATORS)]  # type: ignore[valid-type]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True, allow_inf_nan=False)


class SystemBlock(Strict):
    """A block of identical systems: give ``nodes`` (hosts/trays) or ``racks`` (NVL72 racks of 18 trays)."""

    system: SystemName
    nodes: int | None = Field(default=None, gt=0)
    racks: int | None = Field(default=None, gt=0)
    nodes_per_rack: int | None = Field(default=None, gt=0, description="default: NVL72 rack / 4 DGX nodes")
    nodes_per_leaf: int | None = Field(default=None, gt=0, description="nodes per rail-leaf group (SU)")
    leaves_per_hall: int | None = Field(default=None, gt=0, description="leaf groups under one spine")
    oversubscription: float = Field(default=1.0, ge=1.0, le=16.0, description="leaf-uplink taper, e.g. 2")

    @model_validator(mode="after")
    def _one_count(self) -> SystemBlock:
        if (self.nodes is None) == (self.racks is None):
            raise ValueError("give exactly one of 'nodes' or 'racks'")
        return self

    def node_count(self) -> int:
        if self.nodes is not None:
            return self.nodes
        assert self.racks is not None
        return self.racks * SYSTEMS[self.system].nodes_per_domain


class TariffSpec(Strict):
    """How a factory buys power: ``ppa_share`` of its energy at the fixed ``ppa_price`` (a power purchase
    agreement), the rest at the hourly market price. Spot-only (share 0) is the default."""

    ppa_share: float = Field(default=0.0, ge=0, le=1, description="share of energy bought under the PPA, 0..1")
    ppa_price: float | None = Field(default=None, description="PPA price, USD/MWh")

    @model_validator(mode="after")
    def _price_if_share(self) -> TariffSpec:
        if self.ppa_share > 0 and self.ppa_price is None:
            raise ValueError("a tariff with ppa_share > 0 needs 'ppa_price' (USD/MWh)")
        return self


class FactorySpec(Strict):
    id: Identifier
    region: str
    market: str = Field(description="electricity market, e.g. ERCOT, PJM, MISO, SERC, CAISO, NORDPOOL_SE2")
    grid: str | None = Field(default=None, description="carbon-intensity zone; defaults to the market")
    jurisdiction: str = "US"
    clearances: list[str] = Field(default_factory=list)
    power_cap: Power
    cooling_capacity: Power
    pue: float = Field(default=1.2, ge=1.0, le=3.0)
    cloud_region: str | None = None
    timezone_offset_h: float = Field(default=0.0, ge=-12, le=14)
    systems: list[SystemBlock] = Field(min_length=1)
    tariff: TariffSpec = TariffSpec()


class LinkSpec(Strict):
    a: Identifier
    b: Identifier
    bandwidth: Bandwidth = Field(gt=0)
    latency: Latency = Field(ge=0)
    egress_usd_per_gb: float = Field(default=0.0, ge=0)


class CheckpointSpecModel(Strict):
    interval: Duration = Field(gt=0)
    blocking: Duration = Field(ge=0)
    size: Size = Field(ge=0)
    write_bandwidth: Bandwidth = Field(default=0, ge=0)


class RecoverySpecModel(Strict):
    detect: Duration = Field(ge=0)
    restart: Duration = Field(ge=0)
    hot_swap: Duration = Field(default="1min", ge=0, description="restart time when only failed nodes are swapped")


class JobDefaults(Strict):
    mfu: float = Field(default=0.40, gt=0, le=1)
    checkpoint: CheckpointSpecModel = CheckpointSpecModel.model_validate(
        {"interval": "30min", "blocking": "30s", "size": "1TB", "write_bandwidth": "800Gbps"}
    )
    recovery: RecoverySpecModel = RecoverySpecModel.model_validate({"detect": "2min", "restart": "5min"})


class JobSpec(Strict):
    """A training job. ``work`` is total compute (``3.8e25`` or ``3.8e25FLOP``) or productive time on the
    declared gang (``12d``)."""

    id: Identifier
    accelerator: AcceleratorName
    gpus: int = Field(gt=0)
    work: str | float
    mfu: float | None = Field(default=None, gt=0, le=1)
    submit: Duration = Field(default=0, ge=0)
    priority: int = 0
    migratable: bool = True
    sovereignty: list[str] = Field(default_factory=list)
    carbon_budget_tco2: float | None = Field(default=None, gt=0)
    home: Identifier | None = None
    tp_size: int = Field(default=8, gt=0)
    segment_gpus: int = Field(default=0, ge=0, description="GPUs that must share a domain/leaf (Slurm --segment)")
    preemptible: bool = True
    checkpoint: CheckpointSpecModel | None = None
    recovery: RecoverySpecModel | None = None


class SizeShare(Strict):
    gpus: int = Field(gt=0)
    weight: float = Field(gt=0)
    tp_size: int | None = Field(default=None, gt=0, description="tensor-parallel size of these gangs")


class WorkloadSpec(Strict):
    """A synthetic mix of training jobs (see :mod:`.workload` for the model and its calibration)."""

    kind: Literal["mixed-training"] = "mixed-training"
    seed: PinnedSeed = None
    load: float = Field(default=0.9, gt=0, le=2.0, description="offered GPU demand / fleet GPUs")
    backlog: float = Field(default=0.9, ge=0, le=2.0, description="demand already queued at t=0 / fleet GPUs")
    sizes: list[SizeShare] = Field(min_length=1)
    median_duration: Duration = Field(gt=0)
    duration_sigma: float = Field(default=0.8, ge=0, le=3)
    min_duration: Duration = Field(default="6h", gt=0)
    max_duration: Duration = Field(default="20d", gt=0)
    sovereign_share: float = Field(default=0.0, ge=0, le=1)
    sovereign_class: str = "EU_PERSONAL"
    priority_levels: int = Field(default=3, ge=1, le=10)
    checkpoint_per_gpu: Size = Field(default="0.3GB", ge=0, description="checkpoint bytes per GPU of the gang")


class ServiceSpec(Strict):
    """An inference service. With a ``trace`` it is served by the inference pre-placer (docs/inference.md):
    demand per PoP = ``trace_scale x pop weight`` copies of the trace, tiled over 24 h in the PoP's time zone."""

    id: Identifier
    model: str
    weights: Size = Field(gt=0)
    accelerator: AcceleratorName
    gpus_per_replica: int = Field(gt=0)
    slo_p99_ms: float = Field(gt=0)
    pops: list[str] = Field(default_factory=list)
    trace: str | None = Field(default=None, description="path (relative to the scenario) or azure-conv, "
                              "azure-code, mooncake-conversation (read from ../shared/data)")
    trace_scale: float = Field(default=1.0, gt=0, description="mean copies of the trace's users per PoP")
    prefill_mfu: float = Field(default=0.5, gt=0, le=1)
    weights_at: list[Identifier] = Field(default_factory=list, description="factories holding the weights at t=0")
    weights_bandwidth: Bandwidth = Field(default="10Gbps", gt=0, description="weight pull from the registry")
    seed: PinnedSeed = None


class PopSpec(Strict):
    """An edge point of presence: where users are. ``cloud_region`` keys the measured RTT matrix."""

    id: Identifier
    cloud_region: str
    timezone_offset_h: float = Field(default=0.0, ge=-12, le=14)
    weight: float = Field(default=1.0, gt=0, description="demand relative to the service's trace_scale")


class InferenceSettings(Strict):
    """Parameters of the inference pre-placement policy (see policy/inference.py)."""

    headroom: float = Field(default=1.3, ge=1.0, le=4.0)
    horizon: Duration = Field(default="15min", ge=60)
    hysteresis: float = Field(default=0.1, ge=0, lt=1)
    queue_margin: float = Field(default=0.2, ge=0, lt=1)
    replica_start: Duration = Field(default="1min", ge=0, description="load weights into a new replica")
    rtt_matrix: str = Field(default="skyplane-latency", description="skyplane latency.csv path or named ref")


class SeriesCsv(Strict):
    """A signal read from a CSV file: one column of values at a fixed step (path relative to the scenario)."""

    csv: str
    column: str
    step: Duration = Field(default="1h", gt=0)
    unit: Literal["usd_per_mwh", "g_per_kwh", "lbs_per_mwh"] = "usd_per_mwh"
    scale: float = Field(default=1.0, gt=0)


class MarketSpec(Strict):
    """Overrides of a built-in synthetic market, or a CSV of real prices."""

    mean_usd_per_mwh: float | None = Field(default=None, gt=0)
    day_night_ratio: float | None = Field(default=None, ge=1)
    csv: SeriesCsv | None = None
    seed: PinnedSeed = None


class GridSpec(Strict):
    mean_g_per_kwh: float | None = Field(default=None, ge=0)
    csv: SeriesCsv | None = None
    seed: PinnedSeed = None
    basis: Literal["direct", "lca"] = Field(default="direct", description="real data: direct or life-cycle")


class FailureSpec(Strict):
    table: str = Field(default="llama3-405b", description="'llama3-405b' or a CSV path in the same format")
    rate_scale: float = Field(default=1.0, ge=0)
    planned: bool = True
    seed: PinnedSeed = None


class EventSpec(Strict):
    """A scripted disturbance. ``factory_outage`` needs ``factory``; ``partition`` needs ``link: [a, b]``;
    ``price_shock`` needs ``market`` and ``factor`` (times in whole hours: prices are hourly);
    ``link_degradation`` needs ``factory`` and ``domain`` (an NVLink domain index) and cuts its bandwidth to
    ``factor`` (default 1/8) silently."""

    at: Duration = Field(ge=0)
    kind: Literal["factory_outage", "partition", "price_shock", "link_degradation"]
    duration: Duration = Field(gt=0)
    factory: Identifier | None = None
    link: list[Identifier] | None = Field(default=None, min_length=2, max_length=2)
    market: str | None = None
    factor: float | None = Field(default=None, gt=0)
    domain: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _target(self) -> EventSpec:
        if self.kind == "factory_outage" and self.factory is None:
            raise ValueError("a factory_outage needs 'factory'")
        if self.kind == "partition" and self.link is None:
            raise ValueError("a partition needs 'link: [a, b]'")
        if self.kind == "link_degradation" and (self.factory is None or self.domain is None):
            raise ValueError("a link_degradation needs 'factory' and 'domain' (NVLink domain index)")
        if self.kind == "price_shock":
            if self.market is None or self.factor is None:
                raise ValueError("a price_shock needs 'market' and 'factor'")
            if self.at % 3600 or self.duration % 3600:
                raise ValueError("a price_shock starts and lasts whole hours (prices are hourly), e.g. at: 10d")
        return self


class WanSpec(Strict):
    """WAN modelling (docs/wan.md): links carry checkpoint replication, scheduled by a ``wan`` role policy, and a
    failure restores the last checkpoint whose quorum of copies arrived. Absent: links only time migrations."""

    policy: str = Field(default="wan-planner", description="wan-planner, wan-naive or wan-overlay")
    policy_params: dict[str, object] = Field(default_factory=dict)
    copies: int = Field(default=3, ge=1, le=8, description="regions each checkpoint's critical tier goes to")
    quorum: int = Field(default=0, ge=0, le=8, description="copies that make it durable (0 = all)")
    critical_share: float = Field(default=1.0, gt=0, le=1, description="share of a checkpoint replicated")
    inference_share: float = Field(default=0.0, ge=0, lt=1, description="inference traffic, share of each link")
    barrier_jitter: bool = Field(default=False, description="offset barriers ±10 % of the interval by factory")
    stall_at_barrier: bool = Field(default=True, description="a job waits at a barrier for the last durability")
    queue_alarm: int = Field(default=5, ge=1, description="checkpoint sync queue depth that counts as congested")
    durability_slo: Duration = Field(default=0, ge=0, description="durable this soon after writing, if before "
                                     "the next barrier (0 = the next barrier)")


class ScenarioSpec(Strict):
    """A whole scenario file."""

    name: Identifier
    description: str = ""
    seed: int = Field(default=0, ge=0, le=MAX_SEED, description="root of the run's seed tree; --seed overrides it")
    duration: Duration = Field(gt=0)
    factories: list[FactorySpec] = Field(min_length=1)
    links: list[LinkSpec] = Field(default_factory=list)
    defaults: JobDefaults = JobDefaults()
    jobs: list[JobSpec] = Field(default_factory=list)
    workload: WorkloadSpec | None = None
    services: list[ServiceSpec] = Field(default_factory=list)
    pops: list[PopSpec] = Field(default_factory=list)
    inference: InferenceSettings = InferenceSettings()
    window: str | None = Field(default=None, description="real 2023 prices/carbon for this span (UTC): '2023', "
                               "'2023-08' or '2023-08-07/2023-08-21'; see docs/markets.md")
    markets: dict[str, MarketSpec] = Field(default_factory=dict)
    grids: dict[str, GridSpec] = Field(default_factory=dict)
    failures: FailureSpec = FailureSpec()
    events: list[EventSpec] = Field(default_factory=list)
    policy: str = "greedy"
    policy_params: dict[str, object] = Field(default_factory=dict)
    wan: WanSpec | None = None
