"""Training jobs and inference services as declared by a scenario.

Work is measured in FLOP so a job's speed follows from where it runs: a job of ``work_flop`` on ``gpus``
accelerators of peak ``bf16_dense_tflops`` at model-FLOPs utilisation ``mfu`` needs
``work_flop / (gpus * peak * mfu)`` productive seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from superfactory.domain.accelerator import ACCELERATORS


@dataclass(frozen=True, slots=True)
class CheckpointSpec:
    """How a job checkpoints.

    Attributes:
        interval_s: time between checkpoint starts while running, s.
        blocking_s: time the job is stalled taking a consistent snapshot, s (the Young/Daly ``delta``).
        size_bytes: checkpoint size (all replicas' shards together), bytes.
        write_bandwidth_gbps: aggregate storage write bandwidth the job gets, Gb/s. After the blocking
            snapshot, the write proceeds asynchronously while training continues; the checkpoint counts
            only once the write completes (``size_bytes / bandwidth``). 0 means the write is part of
            ``blocking_s`` (fully synchronous checkpoint).
    """

    interval_s: int
    blocking_s: int
    size_bytes: float
    write_bandwidth_gbps: float

    @property
    def async_write_s(self) -> int:
        """Seconds from the end of the blocking snapshot until the checkpoint is durable."""
        if self.write_bandwidth_gbps <= 0:
            return 0
        return round(self.size_bytes * 8 / (self.write_bandwidth_gbps * 1e9))


@dataclass(frozen=True, slots=True)
class RecoverySpec:
    """What an interruption costs besides lost work.

    Attributes:
        detect_s: time from the fault until the job is declared failed (heartbeat/NCCL timeout), s.
        restart_s: time to relaunch on healthy nodes and load the last checkpoint, s.
        hot_swap_s: restart time when only failed nodes are swapped for spares in place, s.
    """

    detect_s: int
    restart_s: int
    hot_swap_s: int = 60


@dataclass(frozen=True, slots=True)
class TrainingJob:
    """A gang-scheduled training job.

    Attributes:
        id: unique name.
        accelerator: required accelerator type (catalog key).
        gpus: gang size; allocated as whole nodes.
        work_flop: total training compute, FLOP.
        mfu: model-FLOPs utilisation achieved while running (0..1].
        submit_s: simulated time of submission, s.
        checkpoint: checkpoint behaviour.
        recovery: detection and restart costs.
        priority: higher runs first.
        migratable: whether the job may move between factories.
        sovereignty: data classes whose clearance a factory must hold.
        carbon_budget_tco2: optional cap on the job's emissions, tCO2.
        home_factory: the factory it was submitted to (used by home-region policies), optional.
        tp_size: tensor-parallel group size (must fit in one NVLink domain).
        segment_gpus: like Slurm ``--segment``: GPUs that must share an NVLink domain (if they fit in one) or a
            leaf group; 0 = no constraint beyond TP groups.
        preemptible: whether a higher-priority gang may evict it (after a checkpoint).
    """

    id: str
    accelerator: str
    gpus: int
    work_flop: float
    mfu: float
    submit_s: int
    checkpoint: CheckpointSpec
    recovery: RecoverySpec
    priority: int = 0
    migratable: bool = True
    sovereignty: frozenset[str] = frozenset()
    carbon_budget_tco2: float | None = None
    home_factory: str | None = None
    tp_size: int = 8
    segment_gpus: int = 0
    preemptible: bool = True

    @property
    def flop_per_s(self) -> float:
        """Sustained training throughput on the declared gang, FLOP/s."""
        return self.gpus * ACCELERATORS[self.accelerator].bf16_dense_tflops * 1e12 * self.mfu

    @property
    def work_s(self) -> float:
        """Productive seconds needed to finish on the declared gang."""
        return self.work_flop / self.flop_per_s


@dataclass(frozen=True, slots=True)
class InferenceService:
    """An inference service (declared now; served by the inference placement policy).

    Attributes:
        id: unique name.
        model: model name, e.g. ``"llama-70b"``.
        weights_bytes: model weights, bytes (what a weight sync must move).
        accelerator: accelerator type replicas run on.
        gpus_per_replica: GPUs per model replica.
        slo_p99_ms: P99 time-to-first-token target, ms (network included).
        pops: edge points of presence (region names) whose users it serves.
    """

    id: str
    model: str
    weights_bytes: float
    accelerator: str
    gpus_per_replica: int
    slo_p99_ms: float
    pops: tuple[str, ...] = ()
