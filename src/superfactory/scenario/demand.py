"""Compile the inference part of a scenario: PoPs, per-PoP demand from real traces, PoP-to-factory RTTs.

A service is *served* (simulated by :mod:`superfactory.sim.inference`) when it names a ``trace``; services
without one stay declared only. Latency between a PoP and a factory is the measured RTT between their cloud
regions (``pops[].cloud_region``, ``factories[].cloud_region``) in the skyplane matrix; a factory without a
``cloud_region`` cannot serve (its latency is unknown). Problems are reported with field paths.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from superfactory.domain.factory import Factory
from superfactory.domain.job import InferenceService
from superfactory.errors import ScenarioError
from superfactory.models.serving import MODELS, ModelSpec
from superfactory.scenario.schema import ScenarioSpec
from superfactory.scenario.seeds import SeedTree, child_seed
from superfactory.scenario.traces import DemandProfile, load_rtt_matrix, load_trace, resolve, rtt_ms, tile_day

Path_ = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Pop:
    """An edge point of presence."""

    id: str
    cloud_region: str
    timezone_offset_h: float
    weight: float


@dataclass(frozen=True, slots=True)
class ServedService:
    """A service with the demand it must serve.

    Attributes:
        service: the declared service.
        model: its model's size (for the prefill model).
        prefill_mfu: achieved MFU during prefill.
        prefill_tokens: uncached prompt tokens of every request in the trace (the request-size mix).
        demand: per PoP id, its per-minute demand over the day.
        weights_at: factories that hold the weights at t=0.
        weights_bandwidth_gbps: registry pull bandwidth for a factory with no peer holding the weights, Gb/s.
        trace_name: the trace file's name (reports).
    """

    service: InferenceService
    model: ModelSpec
    prefill_mfu: float
    prefill_tokens: np.ndarray
    demand: dict[str, DemandProfile]
    weights_at: tuple[str, ...]
    weights_bandwidth_gbps: float
    trace_name: str


@dataclass(frozen=True, slots=True)
class InferenceSetup:
    """Everything the inference layer of the twin needs."""

    pops: tuple[Pop, ...]
    services: tuple[ServedService, ...]
    rtt_ms: dict[tuple[str, str], float]
    headroom: float
    horizon_s: int
    hysteresis: float
    queue_margin: float
    replica_start_s: int


def compile_inference(spec: ScenarioSpec, services: tuple[InferenceService, ...], factories: list[Factory],
                      base_dir: Path | None, errors: list[tuple[Path_, str]],
                      tree: SeedTree | None = None) -> InferenceSetup | None:
    """Build the :class:`InferenceSetup`, or ``None`` when no service names a trace."""
    if not any(s.trace for s in spec.services):
        return None
    pops = tuple(Pop(p.id, p.cloud_region, p.timezone_offset_h, p.weight) for p in spec.pops)
    pop_ids = {p.id for p in pops}
    fids = {f.id for f in factories}
    try:
        matrix = load_rtt_matrix(resolve(spec.inference.rtt_matrix, base_dir))
    except ScenarioError as e:
        errors.append((("inference", "rtt_matrix"), str(e)))
        return None
    regions = {a for a, _ in matrix}
    for i, p in enumerate(pops):
        if p.cloud_region not in regions:
            errors.append((("pops", i, "cloud_region"), f"unknown cloud region {p.cloud_region!r}; the RTT matrix "
                           f"has e.g. {sorted(regions)[:6]} ... ({len(regions)} regions)"))
    rtt: dict[tuple[str, str], float] = {}
    for f in factories:
        if f.cloud_region is None:
            continue
        for p in pops:
            try:
                rtt[(p.id, f.id)] = rtt_ms(matrix, p.cloud_region, f.cloud_region)
            except KeyError:
                if p.cloud_region in regions:
                    fi = next(i for i, fs in enumerate(spec.factories) if fs.id == f.id)
                    errors.append((("factories", fi, "cloud_region"), f"no measured RTT between "
                                   f"{f.cloud_region!r} and PoP {p.id}'s {p.cloud_region!r}"))
    served = []
    for i, (ss, svc) in enumerate(zip(spec.services, services, strict=True)):
        if ss.trace is None:
            continue
        path: Path_ = ("services", i)
        model = MODELS.get(ss.model)
        if model is None:
            errors.append(((*path, "model"), f"unknown model {ss.model!r}; known models are {sorted(MODELS)}"))
            continue
        for j, pop in enumerate(ss.pops):
            if pop not in pop_ids:
                errors.append(((*path, "pops", j), f"unknown PoP {pop!r}; PoPs are {sorted(pop_ids)}"))
        for j, fid in enumerate(ss.weights_at):
            if fid not in fids:
                errors.append(((*path, "weights_at", j), f"unknown factory {fid!r}; factories are {sorted(fids)}"))
        if not any(f.gpus_of(ss.accelerator) >= ss.gpus_per_replica for f in factories):
            errors.append(((*path, "gpus_per_replica"), f"no factory has {ss.gpus_per_replica} {ss.accelerator} "
                           "GPUs for one replica"))
        try:
            trace = load_trace(ss.trace, base_dir)
        except ScenarioError as e:
            errors.append(((*path, "trace"), str(e)))
            continue
        demand = {}
        # one stream per service (pinnable), one child per PoP by name: adding a PoP moves no other's offsets
        service_seed = (tree or SeedTree(spec.seed)).seed(f"demand:{ss.id}", ss.seed)
        for pop_id in ss.pops:
            pop = next((p for p in pops if p.id == pop_id), None)
            if pop is not None:
                seed = child_seed(service_seed, pop_id)
                demand[pop_id] = tile_day(trace, ss.trace_scale * pop.weight, pop.timezone_offset_h, seed)
        served.append(ServedService(svc, model, ss.prefill_mfu, trace.prefill_tokens.astype(np.float64), demand,
                                    tuple(ss.weights_at), ss.weights_bandwidth, trace.name))
    st = spec.inference
    return InferenceSetup(pops, tuple(served), rtt, st.headroom, st.horizon, st.hysteresis, st.queue_margin,
                          st.replica_start)
