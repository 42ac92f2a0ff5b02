"""WAN transfers between factories and the schedules a transfer planner returns for them.

Layer 2 of the design (the inter-factory fabric) moves bytes between sites: checkpoint replication, restores,
migrations, weight syncs, with inference traffic sharing the same fibre. A :class:`Transfer` is one such
movement with a release time and a deadline; a :class:`FabricPlan` says, slot by slot, how many gigabits of each
transfer cross which path of sites. Sizes are in gigabits (``size_gbit``) so that ``gbit / slot_s`` is a rate
in Gb/s, the unit links are rated in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class TrafficClass(enum.IntEnum):
    """What a transfer carries; a lower value is served first when capacity is short."""

    RESTORE = 0  # a job waits on it to restart: first
    CHECKPOINT = 1  # replication of a checkpoint's critical tier to other regions
    MIGRATION = 2
    WEIGHT_SYNC = 3
    INFERENCE = 4  # request/response traffic: latency-sensitive, reserved as background load


#: relative value of one late or unmet gigabit, by class (restores stall a whole job's restart)
CLASS_WEIGHT: dict[TrafficClass, float] = {
    TrafficClass.RESTORE: 4.0,
    TrafficClass.CHECKPOINT: 2.0,
    TrafficClass.MIGRATION: 1.5,
    TrafficClass.WEIGHT_SYNC: 1.0,
    TrafficClass.INFERENCE: 8.0,
}


@dataclass(frozen=True, slots=True)
class Transfer:
    """One movement of data from factory ``src`` to factory ``dst``.

    Attributes:
        transfer_id: unique id.
        src, dst: factory ids (distinct).
        size_gbit: data to move, gigabits (bytes × 8 / 1e9).
        release_s: earliest start, seconds (same clock as the plan's ``now_s``).
        deadline_s: the time by which every bit must have arrived, seconds.
        traffic_class: what it carries (sets its priority).
        gpus: GPUs that stall while the transfer is late (a job blocked on its checkpoint barrier or restore);
            0 when lateness stalls nothing.
    """

    transfer_id: str
    src: str
    dst: str
    size_gbit: float
    release_s: int
    deadline_s: int
    traffic_class: TrafficClass = TrafficClass.CHECKPOINT
    gpus: int = 0

    def __post_init__(self) -> None:
        if self.src == self.dst:
            raise ValueError(f"transfer {self.transfer_id}: src and dst are both {self.src!r}")
        if not self.size_gbit > 0:
            raise ValueError(f"transfer {self.transfer_id}: size_gbit must be > 0, got {self.size_gbit}")
        if self.deadline_s <= self.release_s:
            raise ValueError(f"transfer {self.transfer_id}: deadline {self.deadline_s} s is not after its "
                             f"release {self.release_s} s")


@dataclass(frozen=True, slots=True)
class PathFlow:
    """``gbit`` gigabits of a transfer sent along ``path`` (factory ids, src first) during slot ``slot``."""

    path: tuple[str, ...]
    slot: int
    gbit: float


@dataclass(frozen=True, slots=True)
class TransferSchedule:
    """How one transfer is carried.

    Attributes:
        transfer_id: which transfer.
        flows: its allocations, by slot then path.
        unmet_gbit: gigabits that cannot arrive by the deadline (0 when the plan meets it).
        deferred_gbit: gigabits left for after the planning horizon (deadline beyond it; not a miss).
        finish_s: end of the last slot that carries data, when nothing is unmet or deferred; else ``None``.
    """

    transfer_id: str
    flows: tuple[PathFlow, ...]
    unmet_gbit: float
    deferred_gbit: float
    finish_s: int | None


@dataclass(frozen=True, slots=True)
class FabricPlan:
    """A transfer plan over a horizon of equal slots starting at ``now_s``.

    Attributes:
        now_s: start of slot 0, s.
        slot_s: slot length, s.
        slots: number of slots in the horizon.
        schedules: one per planned transfer, in input order.
        objective: the plan's cost (lateness + relay use + penalties for unmet and deferred data).
        lower_bound: a proven lower bound on the cost of any schedule over all paths (LP duality);
            ``objective - lower_bound`` is the most the plan could still be improved.
        infeasible: ``(transfer_id, reason)`` for every transfer that cannot make its deadline, with the figures.
    """

    now_s: int
    slot_s: int
    slots: int
    schedules: tuple[TransferSchedule, ...]
    objective: float
    lower_bound: float
    infeasible: tuple[tuple[str, str], ...] = ()

    @property
    def gap(self) -> float:
        """Relative optimality gap, ``(objective - lower_bound) / |lower_bound|`` (0 when proven optimal)."""
        if self.objective - self.lower_bound <= 1e-9 * max(1.0, abs(self.objective)):
            return 0.0
        return (self.objective - self.lower_bound) / max(abs(self.lower_bound), 1e-9)
