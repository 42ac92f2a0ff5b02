"""WAN transfers between factories and the schedules a transfer planner returns for them.

Layer 2 of the design (the inter-factory fabric) moves bytes between sites: checkpoint replication, restores,
migrations, weight syncs, with inference traffic sharing the same fibre. A :class:`Transfer` is one such
movement with a release time and a deadline; a :class:`FabricPlan` says, slot by slot, how many gigabits of each
transfer cross which path of sites. Sizes are in gigabits (``size_gbit``) so that ``gbit / slot_s`` is a rate
in Gb/s, the unit links are rated in.
"""

from __future__ import annotations

import enum
import zlib
from dataclasses import dataclass

from superfactory.domain.factory import WanLink


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


def barrier_offset_s(factory_id: str, interval_s: int, jitter_share: float = 0.1, quantum_s: int = 10) -> int:
    """Deterministic barrier jitter for a factory: an offset in ``[-share, +share] * interval_s`` from a hash of
    its id, so factories on the same checkpoint interval stop colliding at the barrier (the checkpoint
    thundering herd) and every run and every site computes the same offset.

    The offset is a whole number of ``quantum_s`` (the planner's slot): a jittered barrier then starts on a slot
    boundary, so the planner's grid loses none of a transfer's window to rounding.
    """
    h = zlib.crc32(factory_id.encode("utf-8")) / 0xFFFFFFFF  # in [0, 1]
    offset = (2.0 * h - 1.0) * jitter_share * interval_s
    q = max(1, int(quantum_s))
    return round(offset / q) * q


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


@dataclass(frozen=True, slots=True)
class WanSettings:
    """How a scenario models its WAN (the ``wan:`` block; absent = no WAN modelling, links only time migrations).

    Attributes:
        policy: the acting policy of the ``wan`` role (``wan-planner``, ``wan-naive``, ``wan-overlay``).
        policy_params: its keyword parameters.
        copies: regions each checkpoint's critical tier is replicated to (fewer when fewer are lawful).
        quorum: copies that must arrive for the checkpoint to be durable (0 = every target).
        critical_share: share of a checkpoint's bytes in its critical tier (what crosses the WAN).
        inference_share: inference traffic on every link, share of its capacity in each direction.
        barrier_jitter: offset each job's checkpoint barriers by ±10 % of its interval from its factory's hash.
        stall_at_barrier: a job whose previous checkpoint is not durable yet waits at its next barrier.
        queue_alarm: checkpoint sync queue depth above which a link counts as congested (the source warns > 5).
        durability_slo_s: a checkpoint must be durable this long after it is written, s, when that comes before
            the job's next barrier (0 = the next barrier is the deadline).
    """

    policy: str = "wan-planner"
    policy_params: tuple[tuple[str, object], ...] = ()
    copies: int = 3
    quorum: int = 0
    critical_share: float = 1.0
    inference_share: float = 0.0
    barrier_jitter: bool = False
    stall_at_barrier: bool = True
    queue_alarm: int = 5
    durability_slo_s: int = 0


@dataclass(frozen=True, slots=True)
class WanState:
    """The WAN as the ``wan`` role sees it (``FleetSnapshot.wan``).

    Attributes:
        now_s: the snapshot's time, s.
        links: WAN links that are up (a partition or a factory outage takes a link down).
        transfers: open transfers; ``size_gbit`` is what is left to carry, ``release_s`` when it may start.
        needs_route: ids of open transfers that have no route now (new, plan used up, path cut, link healed).
        background_gbps: forecast of inference traffic per directed link, ``(src, dst, Gb/s)``.
        copies: regions each checkpoint goes to; critical_share: share of a checkpoint that crosses the WAN.
        sync_capacity_gbps: per factory, the WAN egress left for checkpoint sync (up links minus inference), Gb/s.
    """

    now_s: int
    links: tuple[WanLink, ...]
    transfers: tuple[Transfer, ...]
    needs_route: frozenset[str]
    background_gbps: tuple[tuple[str, str, float], ...]
    copies: int = 3
    critical_share: float = 1.0
    sync_capacity_gbps: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class RouteTransfer:
    """Carry transfer ``job_id`` (a transfer id: outcomes name the transfer) from now on.

    With ``flows``: send exactly the planned gigabits per path and slot (slot ``t`` spans
    ``[start_s + t·slot_s, start_s + (t+1)·slot_s)``); data the plan leaves over goes best effort after the
    plan's last slot and the world asks for a new route. Without ``flows``: best effort (the links' fair share)
    from now over ``paths``, split by ``shares`` (equal when empty). Replaces any earlier route of the transfer.
    """

    job_id: str
    start_s: int
    slot_s: int = 1
    flows: tuple[PathFlow, ...] = ()
    paths: tuple[tuple[str, ...], ...] = ()
    shares: tuple[float, ...] = ()
    action_id: str = ""
