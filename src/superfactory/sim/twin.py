"""The twin: wire a scenario, a policy and the simulated fleet to the decision loop, run, collect results.

``run_twin(scenario, seed)`` is a pure function of its arguments (plus the policy's code): the same scenario
and seed give the same event log, byte for byte. *When* to decide is the loop's business
(:class:`~superfactory.loop.decision.DecisionLoop`): the twin only provides the ports. Its clock is the event
kernel (:class:`KernelClock`: the loop's wake-ups run at ``PRIO_DECIDE``, after everything else at an instant),
its view and actuator the simulated fleet, its event sink an append-only list.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from superfactory.domain.events import Event, EventKind
from superfactory.domain.fleet import FleetSnapshot, Plan
from superfactory.domain.outcome import ActionOutcome
from superfactory.domain.transfer import RouteTransfer, WanSettings
from superfactory.errors import PolicyError
from superfactory.loop.decision import DecisionLoop, ShadowStats
from superfactory.policy.registry import TRAINING, Policy, UnknownPolicyError, available, make_policy
from superfactory.scenario.model import Scenario, ScenarioEvent
from superfactory.sim.collector import quiet_collector
from superfactory.sim.factorystate import HourRow
from superfactory.sim.fleet import SimulatedFleet
from superfactory.sim.inference import InferenceResult, ServingActuator
from superfactory.sim.jobstate import JobRuntime
from superfactory.sim.kernel import PRIO_DECIDE, PRIO_FAILURE, PRIO_SIGNAL, Kernel
from superfactory.sim.wan import WanFabric, WanReport
from superfactory.sim.wan_replication import CheckpointReplication, ReplicationReport


@dataclass(frozen=True, slots=True)
class TwinResult:
    """Everything a run produced: events, per-job and per-factory-hour records, and run facts."""

    scenario: Scenario
    policy: str
    seed: int
    events: tuple[Event, ...]
    jobs: tuple[JobRuntime, ...]
    hours: tuple[HourRow, ...]
    factory_busy_gpu_s: dict[str, float]
    factory_gpu_s: dict[str, float]
    waiting_reasons: dict[str, str]
    reason_history: dict[str, list[tuple[int, str]]]
    decisions: int
    kernel_events: int
    wall_seconds: float
    inference: InferenceResult | None = None
    shadow: dict[str, ShadowStats] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    wan: WanResult | None = None


@dataclass(frozen=True, slots=True)
class WanResult:
    """The WAN side of a run that modelled it: the wan policy, what the links did, checkpoint durability."""

    policy: str
    fabric: WanReport
    replication: ReplicationReport
    decisions: int


#: the policy that places inference replicas when a scenario serves services
INFERENCE_POLICY = "preplacer"


class KernelClock:
    """The twin's :class:`~superfactory.loop.ports.Clock`: simulated time on the event kernel."""

    __slots__ = ("k",)

    #: a callback runs exactly at the instant asked (the loop then checks quiet periodic ticks ahead instead of
    #: waking for each: loop/decision.py ``DecisionLoop._wake_exact``)
    exact = True

    def __init__(self, kernel: Kernel) -> None:
        self.k = kernel

    def now_s(self) -> int:
        return self.k.now  # (the attribute: one call fewer per request and wake)

    def call_at(self, time_s: int, callback: Callable[[], None]) -> None:
        self.k.at(time_s, PRIO_DECIDE, callback)


class _EventLog:
    """The twin's EventSink: an append-only list."""

    __slots__ = ("events",)

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)


def build_policy(name: str, params: dict[str, object] | None = None) -> Policy:
    """Construct a policy by name, turning an unknown name into a user-facing :class:`PolicyError`."""
    try:
        return make_policy(name, **(params or {}))
    except UnknownPolicyError as e:
        raise PolicyError(str(e.args[0])) from None
    except TypeError as e:
        raise PolicyError(f"policy {name!r}: bad parameters: {e}") from None


def run_twin(
    scenario: Scenario,
    seed: int | None = None,
    policy: str | None = None,
    policy_params: dict[str, object] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    check_invariants: bool = False,
    shadow: tuple[str, ...] = (),
    wan_policy: str | None = None,
    wan_params: dict[str, object] | None = None,
    fold_checkpoints: bool = True,
) -> TwinResult:
    """Simulate ``scenario`` and return its results.

    Args:
        scenario: a validated scenario.
        seed: root of the seed tree: failures, the policy's generator and every random input of the scenario
            (synthetic prices, carbon, workload, demand; see :meth:`Scenario.reseeded`); default the scenario's.
        policy: placement policy name; defaults to the scenario's.
        policy_params: keyword parameters for the policy; default the scenario's when the policy is too.
        on_progress: called as ``on_progress(now_s, until_s)`` while running.
        check_invariants: verify fleet invariants after every event (slow; for tests).
        shadow: names of policies (default parameters) that decide in shadow beside the acting policy of their
            role: their plans are recorded and scored, never applied (``TwinResult.shadow``).
        wan_policy, wan_params: the ``wan`` role's policy and parameters instead of the scenario's ``wan:`` block
            (a scenario without one then models its WAN with default settings; see docs/wan.md).
        fold_checkpoints: fold each periodic checkpoint's unblock into its begin (one kernel event fewer per
            checkpoint; sim/jobstate.py). Off, every checkpoint is three events as before issue 12's fold: the
            same run, except that checkpoint commits of different jobs in the same second may be logged in
            another order (docs/performance.md). Always off when the WAN is modelled.
    """
    with quiet_collector():  # the run's long-lived heap makes full collections expensive (sim/collector.py)
        return _run(scenario, seed, policy, policy_params, on_progress, check_invariants, shadow, wan_policy,
                    wan_params, fold_checkpoints)


def _run(
    scenario: Scenario,
    seed: int | None,
    policy: str | None,
    policy_params: dict[str, object] | None,
    on_progress: Callable[[int, int], None] | None,
    check_invariants: bool,
    shadow: tuple[str, ...],
    wan_policy: str | None,
    wan_params: dict[str, object] | None,
    fold_checkpoints: bool,
) -> TwinResult:
    """:func:`run_twin`'s body, run with the cyclic collector held back."""
    t0 = time.perf_counter()
    if seed is not None and seed != scenario.seed:
        scenario = scenario.reseeded(seed)  # the run seed redraws every random input (scenario/seeds.py)
    seed = scenario.seed
    policy_name = policy or scenario.policy
    params = policy_params if policy_params is not None else (
        scenario.policy_params if policy_name == scenario.policy else {}
    )
    pol = build_policy(policy_name, params)
    if pol.role != TRAINING:
        raise PolicyError(f"policy {policy_name!r} places {pol.role}, not training jobs; choose a training policy "
                          f"({', '.join(available(TRAINING))})")
    # each on its own stream of the scenario's seed tree (a scenario may pin failures.seed)
    fleet_seed, policy_seed = scenario.component_seed("failures"), scenario.component_seed("policy")
    kernel = Kernel()
    log = _EventLog()
    fleet = SimulatedFleet(
        kernel, scenario.factories, scenario.links, scenario.jobs, dict(scenario.prices),
        dict(scenario.carbon), scenario.failure_model, np.random.default_rng(fleet_seed), log.events.append,
    )
    policies = [pol]
    serving = None
    if scenario.inference is not None:  # training-only scenarios never build the inference layer
        inf = scenario.inference
        serving = ServingActuator(kernel, fleet, inf, scenario.duration_s, log.emit)
        fleet.serving = serving
        policies.append(build_policy(INFERENCE_POLICY, {
            "headroom": inf.headroom, "horizon_s": inf.horizon_s, "hysteresis": inf.hysteresis,
            "queue_margin": inf.queue_margin}))
    world: SimulatedFleet | _WanWorld = fleet
    fabric = replication = None
    settings = scenario.wan
    if wan_policy is not None:
        settings = dataclasses.replace(settings or WanSettings(), policy=wan_policy,
                                       policy_params=tuple(sorted((wan_params or {}).items())))
    if settings is not None:  # links carry checkpoint replication, scheduled by the wan role (sim/wan.py)
        fabric = WanFabric(kernel, scenario.links, settings, log.emit)
        replication = fleet.wan = CheckpointReplication(fleet, fabric, settings, log.emit)
        fold_checkpoints = False  # the replication barrier may hold a checkpoint at its begin
        wan_pol = build_policy(settings.policy, dict(settings.policy_params))
        if wan_pol.role != "wan":
            raise PolicyError(f"policy {settings.policy!r} places {wan_pol.role}, not WAN transfers; choose a wan "
                              f"policy ({', '.join(available('wan'))})")
        policies.append(wan_pol)
        world = _WanWorld(fleet, fabric)
    try:
        loop = DecisionLoop(policies, world, world, KernelClock(kernel), log, policy_seed,
                            shadows=tuple(build_policy(n) for n in shadow))
    except ValueError as e:  # a second acting policy of a role, or a shadow with no acting policy of its role
        raise PolicyError(str(e)) from None
    fleet.fold_checkpoints = fold_checkpoints
    fleet.request_decision = loop.request
    fleet.periodic = loop.periodic
    if fabric is not None:
        fabric.request_plan = lambda: loop.request("wan")
    for ev in scenario.events:
        kernel.at(ev.at_s, PRIO_SIGNAL, _scenario_event, fleet, ev, fabric)
    if serving is not None:
        serving.start()
    loop.start()
    fleet.start()
    until = scenario.duration_s
    kernel.run(until, (lambda now: on_progress(now, until)) if on_progress else None,
               fleet.check_invariants if check_invariants else None)
    fleet.end_run(until)
    wan_result = None
    if fabric is not None and replication is not None and settings is not None:
        fabric.close(until)
        wan_result = WanResult(settings.policy, fabric.report(), replication.report(),
                               loop.decisions_by_policy.get(settings.policy, 0))
    if on_progress:
        on_progress(until, until)
    if serving is not None:  # preemptions the pre-placer's actions caused, from the record
        prefix = f"{INFERENCE_POLICY}:"
        serving.result.preemptions = sum(1 for e in log.events
                                         if e.kind is EventKind.ACTION_APPLIED and e.action.startswith(prefix)
                                         and e.job not in serving.svcs)
    return TwinResult(
        scenario=scenario,
        policy=policy_name,
        seed=seed,
        events=tuple(log.events),
        jobs=tuple(fleet.jobs),
        hours=tuple(fleet.hour_rows),
        factory_busy_gpu_s={r.factory.id: r.total_busy_gpu_s for r in fleet.rt},
        factory_gpu_s={r.factory.id: r.total_gpu_s for r in fleet.rt},
        waiting_reasons=dict(loop.waiting_reasons),
        reason_history={k: list(v) for k, v in loop.reason_history.items()},
        decisions=loop.cycles,
        kernel_events=kernel.processed,
        wall_seconds=time.perf_counter() - t0,
        inference=serving.result if serving is not None else None,
        shadow=dict(loop.shadow_stats),
        outcomes=dict(loop.outcomes),
        wan=wan_result,
    )


class _WanWorld:
    """The fleet's view and actuator with the WAN added: snapshots carry the fabric's state
    (``FleetSnapshot.wan``), and the wan role's ``RouteTransfer`` actions go to the fabric."""

    __slots__ = ("fabric", "fleet")

    def __init__(self, fleet: SimulatedFleet, fabric: WanFabric) -> None:
        self.fleet = fleet
        self.fabric = fabric

    def snapshot(self) -> FleetSnapshot:
        return dataclasses.replace(self.fleet.snapshot(), wan=self.fabric.state())

    def apply(self, plan: Plan) -> Sequence[ActionOutcome]:
        routes = [a for a in plan.actions if isinstance(a, RouteTransfer)]
        if not routes:
            return self.fleet.apply(plan)
        rest = dataclasses.replace(plan, actions=tuple(a for a in plan.actions if not isinstance(a, RouteTransfer)))
        return [*self.fleet.apply(rest), *self.fabric.route(routes)]


def _scenario_event(fleet: SimulatedFleet, ev: ScenarioEvent, fabric: WanFabric | None = None) -> None:
    if fabric is not None and ev.kind in ("factory_outage", "partition"):  # the WAN loses the site's or link's arcs
        if ev.kind == "partition":
            fabric.set_link(ev.link[0], ev.link[1], False)
            fleet.k.after(ev.duration_s, PRIO_FAILURE, fabric.set_link, ev.link[0], ev.link[1], True)
        else:
            fabric.set_site(ev.factory, False)
            fleet.k.after(ev.duration_s, PRIO_FAILURE, fabric.set_site, ev.factory, True)
    if ev.kind == "factory_outage":
        fleet.factory_outage(ev.factory, ev.duration_s)
    elif ev.kind == "partition":
        fleet.partition(ev.link[0], ev.link[1], ev.duration_s)
    elif ev.kind == "price_shock":
        fleet.price_shock(ev.market, ev.factor, ev.duration_s)
    elif ev.kind == "link_degradation":
        fleet.degrade_domain(ev.factory, ev.domain, ev.factor, ev.duration_s)
    else:  # validated at the edge; reaching here is a bug
        raise AssertionError(f"unhandled scenario event kind {ev.kind!r}")
