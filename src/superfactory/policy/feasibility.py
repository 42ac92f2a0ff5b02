"""Hard filters every placement policy applies: accelerator, sovereignty, factory up, power and cooling.

Each check returns ``None`` when the factory passes, or a short reason a user can read. Sovereignty is a hard
rule: a job whose data classes are not all in a factory's clearances never runs there.
"""

from __future__ import annotations

from superfactory.domain.factory import Factory
from superfactory.domain.fleet import FactoryState
from superfactory.domain.job import TrainingJob
from superfactory.policy.nodes import nodes_needed


def sovereignty_refusal(job: TrainingJob, factory: Factory) -> str | None:
    """Why ``job`` may not run in ``factory`` under sovereignty rules, or ``None`` if it may."""
    missing = job.sovereignty - factory.clearances
    if missing:
        return f"{factory.id} lacks clearance for {', '.join(sorted(missing))}"
    return None


def added_it_power_w(factory: Factory, accelerator: str, nodes: int) -> float:
    """Extra IT power, W, when ``nodes`` idle nodes of ``accelerator`` start training."""
    clusters = factory.clusters_of(accelerator)
    if not clusters:
        return 0.0
    s = clusters[0].system
    return nodes * (s.training_power_per_node_w - s.idle_power_per_node_w)


def power_refusal(factory: Factory, it_power_w: float, extra_it_w: float) -> str | None:
    """Why adding ``extra_it_w`` to an IT load of ``it_power_w`` would break the power cap or cooling
    capacity, or ``None``."""
    it_w = it_power_w + extra_it_w
    if it_w * factory.pue > factory.power_cap_w:
        return (
            f"{factory.id} power cap: {it_w * factory.pue / 1e6:.1f} MW facility load "
            f"> cap {factory.power_cap_w / 1e6:.1f} MW"
        )
    if it_w > factory.cooling_capacity_w:
        return (
            f"{factory.id} cooling: {it_w / 1e6:.1f} MW heat > capacity {factory.cooling_capacity_w / 1e6:.1f} MW"
        )
    return None


def remaining_energy_mwh(job: TrainingJob, progress_s: float, factory: Factory) -> float:
    """Facility energy, MWh, to finish ``job`` from ``progress_s`` on ``factory`` at training power."""
    clusters = factory.clusters_of(job.accelerator)
    if not clusters:
        return 0.0
    s = clusters[0].system
    nodes = nodes_needed(factory, job.accelerator, job.gpus)
    remaining_h = max(0.0, job.work_s - progress_s) / 3600.0
    return nodes * s.training_power_per_node_w * factory.pue * remaining_h / 1e6


def carbon_budget_refusal(job: TrainingJob, spent_tco2: float, progress_s: float, factory: Factory,
                          intensity_g_per_kwh: float) -> str | None:
    """Why running the rest of ``job`` on ``factory`` would break its carbon budget, or ``None``.

    Projected emissions = already emitted + remaining facility energy x grid intensity (g/kWh = kg/MWh, so
    t = MWh x intensity / 1000). Jobs without a budget always pass.
    """
    if job.carbon_budget_tco2 is None:
        return None
    projected = spent_tco2 + remaining_energy_mwh(job, progress_s, factory) * intensity_g_per_kwh / 1000.0
    if projected > job.carbon_budget_tco2:
        # stable text (no projection in it): the audit trail records each distinct refusal once
        return f"carbon budget: finishing on {factory.id} would exceed the job's {job.carbon_budget_tco2:g} tCO2"
    return None


def static_refusal(job: TrainingJob, factory: Factory, state: FactoryState) -> str | None:
    """Checks that don't depend on free capacity: up, accelerator type, size, sovereignty."""
    if not state.up:
        return f"{factory.id} is down"
    if factory.gpus_of(job.accelerator) < job.gpus:
        return f"{factory.id} has {factory.gpus_of(job.accelerator)} {job.accelerator} GPUs < {job.gpus}"
    return sovereignty_refusal(job, factory)
