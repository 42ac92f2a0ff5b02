"""The feasibility pipeline every placement policy runs: filters, in order, then the policy's own scoring.

:func:`evaluate` checks one (job, factory) pair and returns a :class:`Feasibility`:

1. **accelerator and size** -> ``infeasible`` (the factory can never hold the job);
2. **sovereignty** -> ``refused`` (a hard rule: a job whose data classes are not all in the factory's
   clearances never runs there), audited;
3. **carbon budget** -> ``refused`` (finishing there would exceed the job's budget), audited;
4. **up** -> ``retry_later`` (the factory is down now);
5. **power cap and cooling headroom** -> ``retry_later`` (with the figures: facility MW vs cap, heat vs
   cooling).

Every ``refused`` result goes into ``Plan.refusals`` (:meth:`Feasibility.audit`), so each distinct refusal is
an ``AuditRefusal`` event under every policy that uses the pipeline (``greedy``, ``home-region``,
``cheapest-static``, ``firstfit-blind``, ``gang``; ``geo`` builds its columns from the same checks). The lower
level checks return ``None`` when the factory passes, or a short reason a user can read.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from superfactory.domain.factory import Factory
from superfactory.domain.fleet import FactoryState, JobView
from superfactory.domain.job import TrainingJob
from superfactory.models.power import added_it_power_w, remaining_energy_mwh
from superfactory.policy.nodes import nodes_needed

__all__ = ["Feasibility", "ShapeCheck", "Verdict", "added_it_power_w", "carbon_budget_refusal", "evaluate",
           "power_refusal", "remaining_energy_mwh", "shape_check", "sovereignty_refusal", "static_refusal"]


class Verdict(StrEnum):
    """What a feasibility check concluded."""

    OK = "ok"
    INFEASIBLE = "infeasible"  # never here (accelerator, size)
    REFUSED = "refused"  # a hard rule forbids it (sovereignty, carbon budget); audited
    RETRY_LATER = "retry_later"  # not now (down, power or cooling headroom)


@dataclass(frozen=True, slots=True)
class Feasibility:
    """Result of :func:`evaluate` for one (job, factory).

    Attributes:
        verdict: ok, infeasible, refused or retry_later.
        rule: which filter decided (``""`` when ok): accelerator, sovereignty, carbon, down, power.
        reason: in words a user can read (``""`` when ok).
        extra_it_w: IT power the job would add there, W (0 unless the power filter ran).
    """

    verdict: Verdict
    rule: str = ""
    reason: str = ""
    extra_it_w: float = 0.0

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.OK

    def audit(self, job_id: str, factory_id: str) -> tuple[str, str, str] | None:
        """The ``Plan.refusals`` entry for a hard-rule refusal, else ``None``."""
        if self.verdict is not Verdict.REFUSED:
            return None
        return (job_id, factory_id, self.reason)


@dataclass(frozen=True, slots=True)
class ShapeCheck:
    """What :func:`evaluate` concludes from the job's shape and the factory alone (issue 12: a policy may keep it
    for the whole run, since neither changes).

    Attributes:
        refusal: the accelerator/size or sovereignty verdict when it fails, else ``None``.
        nodes: nodes the job would take there.
        extra_it_w: IT power those nodes would add, W.
    """

    refusal: Feasibility | None
    nodes: int
    extra_it_w: float


def shape_check(job: TrainingJob, factory: Factory, nodes: int | None = None) -> ShapeCheck:
    """The static filters of :func:`evaluate` (accelerator and size, then sovereignty) for ``job`` on
    ``factory``, with the nodes it takes (default: the fewest that hold it) and the IT power they add."""
    n = nodes if nodes is not None else nodes_needed(factory, job.accelerator, job.gpus)
    extra = added_it_power_w(factory, job.accelerator, n)
    if factory.gpus_of(job.accelerator) < job.gpus:
        return ShapeCheck(Feasibility(
            Verdict.INFEASIBLE, "accelerator",
            f"{factory.id} has {factory.gpus_of(job.accelerator)} {job.accelerator} GPUs < {job.gpus}"), n, extra)
    rule = sovereignty_refusal(job, factory)
    if rule is not None:
        return ShapeCheck(Feasibility(Verdict.REFUSED, "sovereignty", f"sovereignty: {rule}"), n, extra)
    return ShapeCheck(None, n, extra)


def evaluate(view: JobView, factory: Factory, state: FactoryState, it_power_w: float,
             nodes: int | None = None, shape: ShapeCheck | None = None) -> Feasibility:
    """Run the pipeline (module docstring) for ``view`` on ``factory`` whose IT load is ``it_power_w`` (the
    snapshot's, plus what this plan already added). ``nodes``: nodes the job would take (default: the fewest
    that hold it). ``shape``: :func:`shape_check` of this job and factory, when the caller kept it."""
    job = view.job
    sc = shape if shape is not None else shape_check(job, factory, nodes)
    if sc.refusal is not None:
        return sc.refusal
    if job.carbon_budget_tco2 is not None:
        rule = carbon_budget_refusal(job, view.carbon_spent_tco2, view.progress_s, factory,
                                     state.carbon_g_per_kwh)
        if rule is not None:
            return Feasibility(Verdict.REFUSED, "carbon", rule)
    if not state.up:
        return Feasibility(Verdict.RETRY_LATER, "down", f"{factory.id} is down")
    rule = power_refusal(factory, it_power_w, sc.extra_it_w)
    if rule is not None:
        return Feasibility(Verdict.RETRY_LATER, "power", rule, sc.extra_it_w)
    w = sc.extra_it_w
    ok = _OK.get(w) if w else None  # (a zero is built each time: 0.0 and -0.0 are one key)
    if ok is None:  # an immutable record, equal for equal power: one per value (issue 12: ~2 us a construction)
        ok = Feasibility(Verdict.OK, extra_it_w=w)
        if w:
            if len(_OK) >= 4096:
                _OK.clear()
            _OK[w] = ok
    return ok


#: extra IT power (W) -> the ``ok`` verdict with it (see :func:`evaluate`)
_OK: dict[float, Feasibility] = {}


def sovereignty_refusal(job: TrainingJob, factory: Factory) -> str | None:
    """Why ``job`` may not run in ``factory`` under sovereignty rules, or ``None`` if it may."""
    missing = job.sovereignty - factory.clearances
    if missing:
        return f"{factory.id} lacks clearance for {', '.join(sorted(missing))}"
    return None


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
