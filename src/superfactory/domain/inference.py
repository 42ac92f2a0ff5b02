"""The serving side of a fleet as a policy sees it: services, realised demand, replicas and weights.

Built by a world's :class:`~superfactory.loop.ports.FleetView` into ``FleetSnapshot.inference``. Everything here
is observable by an operator: the realised request rate per PoP and minute, measured round-trip times, the
replicas each factory holds and whether it has a service's weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from superfactory.domain.job import InferenceService

WEIGHTS_PRESENT = "present"
WEIGHTS_SYNCING = "syncing"
WEIGHTS_ABSENT = "absent"


@dataclass(frozen=True, slots=True)
class ServiceProfile:
    """A service plus what its replicas cost and how fast they serve.

    Attributes:
        service: the declared service.
        nodes_per_replica: whole nodes one replica takes.
        mean_service_s: mean prefill time of its request mix on its accelerator, s.
        p99_service_s: 99th percentile of that prefill time, s.
    """

    service: InferenceService
    nodes_per_replica: int
    mean_service_s: float
    p99_service_s: float


@dataclass(frozen=True, slots=True)
class PopDemand:
    """Realised demand of one PoP for one service: one arrival rate per past minute (oldest first), req/s."""

    service_id: str
    pop: str
    history_rps: tuple[float, ...]


@dataclass(frozen=True, slots=True)
class InferenceState:
    """Serving state at one instant.

    Attributes:
        services: the services with their serving profile.
        demands: per (service, PoP) realised history.
        rtt_ms: ``(pop, factory_id) -> measured round-trip time, ms``.
        allocation: ``(service_id, pop, factory_id) -> replicas`` in force (the last applied ``Allocate``).
        weights: ``(service_id, factory_id) -> present / syncing / absent``.
        replicas: ``(service_id, factory_id) -> replicas held now`` (serving or starting).
    """

    services: tuple[ServiceProfile, ...]
    demands: tuple[PopDemand, ...]
    rtt_ms: Mapping[tuple[str, str], float]
    allocation: Mapping[tuple[str, str, str], int]
    weights: Mapping[tuple[str, str], str]
    replicas: Mapping[tuple[str, str], int]
