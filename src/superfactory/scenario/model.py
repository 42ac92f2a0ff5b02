"""A compiled, validated scenario: domain values the twin runs on."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from superfactory.domain.factory import Factory, WanLink
from superfactory.domain.job import InferenceService, TrainingJob
from superfactory.domain.reliability import FailureModel
from superfactory.domain.signals import StepSeries

if TYPE_CHECKING:
    from superfactory.scenario.demand import InferenceSetup


@dataclass(frozen=True, slots=True)
class ScenarioEvent:
    """A scripted disturbance at ``at_s`` for ``duration_s``: a whole-factory outage (``factory``), a WAN
    partition (``link``) or a price shock (``market`` price x ``factor``)."""

    at_s: int
    kind: str
    duration_s: int
    factory: str = ""
    link: tuple[str, str] = ("", "")
    market: str = ""
    factor: float = 1.0
    domain: int = -1


@dataclass(frozen=True, slots=True)
class Scenario:
    """Everything a twin run needs besides the seed and policy override."""

    name: str
    description: str
    seed: int
    duration_s: int
    factories: tuple[Factory, ...]
    links: tuple[WanLink, ...]
    jobs: tuple[TrainingJob, ...]
    services: tuple[InferenceService, ...]
    prices: dict[str, StepSeries]
    carbon: dict[str, StepSeries]
    failure_model: FailureModel
    events: tuple[ScenarioEvent, ...] = ()
    policy: str = "greedy"
    policy_params: dict[str, object] = field(default_factory=dict)
    source: str = "<built-in>"
    inference: InferenceSetup | None = None  # served inference services (scenario/demand.py), if any
