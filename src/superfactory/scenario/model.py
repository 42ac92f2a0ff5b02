"""A compiled, validated scenario: domain values the twin runs on."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from superfactory.domain.factory import Factory, WanLink
from superfactory.domain.job import InferenceService, TrainingJob
from superfactory.domain.reliability import FailureModel
from superfactory.domain.signals import StepSeries
from superfactory.domain.transfer import WanSettings

if TYPE_CHECKING:
    from superfactory.scenario.demand import InferenceSetup
    from superfactory.scenario.schema import ScenarioSpec


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
    """Everything a twin run needs besides the policy override.

    ``seed`` is the root of the seed tree every random input was drawn from (see :mod:`.seeds`); ``seeds`` maps
    each random component (``failures``, ``policy``, ``workload``, ``prices:MARKET`` ...) to its effective seed,
    and ``pinned_seeds`` names those the scenario file pinned. ``warnings`` are rendered semantic warnings
    (``FILE:LINE: field: message``): things the scenario says that the twin cannot do.
    """

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
    seeds: dict[str, int] = field(default_factory=dict)
    pinned_seeds: frozenset[str] = frozenset()
    warnings: tuple[str, ...] = ()
    generated_jobs: frozenset[str] = frozenset()  # ids of the jobs drawn from ``workload``
    wan: WanSettings | None = None  # WAN modelling (the ``wan:`` block), if any
    spec: ScenarioSpec | None = field(default=None, repr=False, compare=False)
    base_dir: Path | None = field(default=None, repr=False, compare=False)

    def component_seed(self, component: str) -> int:
        """The effective seed of one random component (derived from ``seed`` if compilation did not record it)."""
        from superfactory.scenario.seeds import child_seed

        return self.seeds[component] if component in self.seeds else child_seed(self.seed, component)

    def reseeded(self, seed: int) -> Scenario:
        """This scenario with every random input redrawn under root ``seed``.

        Redrawn: synthetic price and carbon series, the generated workload's jobs, inference demand tiling, and
        the ``failures`` / ``policy`` streams (the components in ``seeds``; pinned ones stay as they are).
        Everything else is kept from ``self``, including fields a caller replaced after compilation.
        A scenario built by hand (no ``spec``) only changes its root seed.
        """
        from superfactory.scenario.seeds import check_seed

        check_seed(seed)
        if seed == self.seed:
            return self
        if self.spec is None:
            return replace(self, seed=seed, seeds={})
        from superfactory.scenario.compiler import compile_scenario

        new = compile_scenario(self.spec, self.base_dir, self.source, seed=seed)
        prices = {k: new.prices[k] if f"prices:{k}" in new.seeds else v for k, v in self.prices.items()}
        carbon = {k: new.carbon[k] if f"carbon:{k}" in new.seeds else v for k, v in self.carbon.items()}
        jobs = tuple(j for j in self.jobs if j.id not in self.generated_jobs) + tuple(
            j for j in new.jobs if j.id in new.generated_jobs)
        inference = self.inference
        if inference is not None and new.inference is not None:
            inference = replace(inference, services=tuple(
                replace(s, demand=n.demand) for s, n in zip(inference.services, new.inference.services, strict=True)))
        return replace(self, seed=seed, seeds=new.seeds, pinned_seeds=new.pinned_seeds, prices=prices,
                       carbon=carbon, jobs=jobs, inference=inference, generated_jobs=new.generated_jobs)
