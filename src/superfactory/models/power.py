"""Power and energy of training nodes: what a placement adds to a factory's load and what finishing a job costs.

The twin's accounting draws the same per-node powers (training when held, idle when free, nothing when down);
policies use these functions to keep plans under power caps and within carbon budgets.
"""

from __future__ import annotations

from superfactory.domain.factory import Factory
from superfactory.domain.job import TrainingJob


def added_it_power_w(factory: Factory, accelerator: str, nodes: int) -> float:
    """Extra IT power, W, when ``nodes`` idle nodes of ``accelerator`` start training."""
    clusters = factory.clusters_of(accelerator)
    if not clusters:
        return 0.0
    s = clusters[0].system
    return nodes * (s.training_power_per_node_w - s.idle_power_per_node_w)


def remaining_energy_mwh(job: TrainingJob, progress_s: float, factory: Factory) -> float:
    """Facility energy, MWh, to finish ``job`` from ``progress_s`` on ``factory`` at training power."""
    clusters = factory.clusters_of(job.accelerator)
    if not clusters:
        return 0.0
    s = clusters[0].system
    nodes = -(-job.gpus // s.gpus_per_node)
    remaining_h = max(0.0, job.work_s - progress_s) / 3600.0
    return nodes * s.training_power_per_node_w * factory.pue * remaining_h / 1e6
