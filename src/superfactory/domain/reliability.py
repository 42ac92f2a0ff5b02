"""The failure model: per-component failure rates calibrated on the Llama 3 405B interruption table.

Calibration (Llama 3 Herd of Models, 2024, Table 5): 419 unexpected interruptions by root cause during 54 days
of pre-training on 16,384 H100 GPUs (2,048 DGX-class nodes), plus 47 planned ones. A cause in a GPU category
becomes a rate per GPU-hour (count / (16,384 x 1,296 h)); host, network, maintenance and software causes become
a rate per node-hour (count / (2,048 x 1,296 h)). A node's failure rate is then the sum over causes of the
per-GPU rates x its GPUs plus the per-node rates, so a job's interruption rate grows with the GPUs (nodes) it
spans, and a 16,384-GPU job sees 419 expected interruptions in 54 days.

Repair times are our assumptions, stated here: GPU hardware faults take the node out for 48 h (swap GPU or
baseboard); host hardware 24 h; unplanned host maintenance 8 h; switch/cable 4 h; software and NCCL timeouts
10 min (reboot). They matter only through spare capacity.

The random process that draws failures from these rates lives in :mod:`superfactory.sim.failures`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from superfactory.domain.units import HOUR_S, MINUTE_S

#: Llama 3 405B Table 5 as (component, category, interruptions in 54 days). Counts are authoritative;
#: tests compare this against ../shared/data/facts/llama3_405b_interruptions.csv.
LLAMA3_405B_TABLE: tuple[tuple[str, str, int], ...] = (
    ("Faulty GPU", "GPU", 148),
    ("GPU HBM3 Memory", "GPU", 72),
    ("Software Bug", "Dependency", 54),
    ("Network Switch/Cable", "Network", 35),
    ("Host Maintenance", "Unplanned Maintenance", 32),
    ("GPU SRAM Memory", "GPU", 19),
    ("GPU System Processor", "GPU", 17),
    ("NIC", "Host", 7),
    ("NCCL Watchdog Timeouts", "Unknown", 7),
    ("Silent Data Corruption", "GPU", 6),
    ("GPU Thermal Interface + Sensor", "GPU", 6),
    ("SSD", "Host", 3),
    ("Power Supply", "Host", 3),
    ("Server Chassis", "Host", 2),
    ("IO Expansion Board", "Host", 2),
    ("Dependency", "Dependency", 2),
    ("CPU", "Host", 2),
    ("System Memory", "Host", 2),
)
LLAMA3_GPUS = 16_384
LLAMA3_NODES = 2_048
LLAMA3_HOURS = 54 * 24
LLAMA3_PLANNED = 47

_REPAIR_S_BY_CATEGORY = {
    "GPU": 48 * HOUR_S,
    "Host": 24 * HOUR_S,
    "Unplanned Maintenance": 8 * HOUR_S,
    "Network": 4 * HOUR_S,
    "Dependency": 10 * MINUTE_S,
    "Unknown": 10 * MINUTE_S,
}


@dataclass(frozen=True, slots=True)
class FailureCause:
    """One root cause.

    Attributes:
        name: component name as in the source table.
        category: GPU, Host, Network, Dependency, Unknown or Unplanned Maintenance.
        per_gpu: True if the rate is per GPU-hour, else per node-hour.
        rate_per_hour: failures per GPU-hour (``per_gpu``) or per node-hour.
        repair_s: time the node is out after the failure, s.
    """

    name: str
    category: str
    per_gpu: bool
    rate_per_hour: float
    repair_s: int


@dataclass(frozen=True, slots=True)
class FailureModel:
    """A set of causes plus the planned-interruption rate (per GPU-hour of a running job)."""

    causes: tuple[FailureCause, ...]
    planned_rate_per_gpu_hour: float

    def scaled(self, factor: float) -> FailureModel:
        """The same model with every rate multiplied by ``factor`` (e.g. 0.5 for more reliable hardware)."""
        return FailureModel(
            tuple(
                FailureCause(c.name, c.category, c.per_gpu, c.rate_per_hour * factor, c.repair_s)
                for c in self.causes
            ),
            self.planned_rate_per_gpu_hour * factor,
        )

    def node_rates_per_s(self, gpus_per_node: int) -> np.ndarray:
        """Failure rate of each cause on one node of ``gpus_per_node`` GPUs, per second."""
        return np.array(
            [c.rate_per_hour * (gpus_per_node if c.per_gpu else 1) / HOUR_S for c in self.causes], dtype=float
        )

    def job_mtbf_h(self, gpus: int, gpus_per_node: int) -> float:
        """Mean time between unexpected interruptions of a job on ``gpus`` GPUs, hours."""
        nodes = -(-gpus // gpus_per_node)
        return 1.0 / (float(self.node_rates_per_s(gpus_per_node).sum()) * HOUR_S * nodes)


def model_from_table(rows: tuple[tuple[str, str, int], ...], gpus: int, nodes: int, hours: float,
                     planned: int) -> FailureModel:
    """Turn interruption counts observed on ``gpus`` GPUs / ``nodes`` nodes over ``hours`` into rates."""
    causes = []
    for name, category, count in rows:
        per_gpu = category == "GPU"
        exposure = gpus * hours if per_gpu else nodes * hours
        causes.append(
            FailureCause(name, category, per_gpu, count / exposure, _REPAIR_S_BY_CATEGORY.get(category, HOUR_S))
        )
    return FailureModel(tuple(causes), planned / (gpus * hours))


def llama3_405b_model() -> FailureModel:
    """The built-in model calibrated on Llama 3 405B (see module docstring)."""
    return model_from_table(LLAMA3_405B_TABLE, LLAMA3_GPUS, LLAMA3_NODES, LLAMA3_HOURS, LLAMA3_PLANNED)
