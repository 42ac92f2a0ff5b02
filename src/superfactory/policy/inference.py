"""Inference pre-placement: how many replicas of each service to hold where, for the next horizon.

Registered as policy ``preplacer`` in role ``inference``: the decision loop runs it every ``cycle_s`` (the
horizon, default 15 min), before training placement at the same instant. :meth:`PrePlacer.decide` reads a
:class:`~superfactory.domain.fleet.FleetSnapshot` (free and preemptible nodes from node states and running
jobs, demand, replicas and weights from ``snapshot.inference``) and returns a plan of ``Allocate`` (the
service's whole allocation), ``SyncWeights`` and ``Preempt`` actions (victims for replicas free nodes cannot
hold), plus the forecasts behind it. :meth:`PrePlacer.plan` is the pure core over an :class:`InferenceView`
(no I/O, no clock, no randomness): the same view gives the same :class:`InferencePlan`.

Steps, per (service, PoP):

1. **Forecast** the arrival rate for the next horizon from the realised per-minute history only: Holt's linear
   exponential smoothing (level ``alpha``, trend ``beta``) over the last ``window_min`` minutes; the forecast
   is the largest of ``level + h * trend`` for ``h = 1 .. horizon`` minutes, i.e. the horizon's peak under a
   linear trend (a rising demand is provisioned for where it will be at the end of the horizon). The twin
   scores it against the realised mean and peak of each horizon and reports the error.
2. **Capacity before headroom** = forecast rate x mean prefill service time = Erlangs = replicas that would be
   100 % busy. **Target** = ``ceil(before_headroom x headroom)``.
3. **Scale down with hysteresis**: a lower target is adopted only when it is below the current allocation by
   more than ``hysteresis`` (fraction); otherwise the current allocation is kept. Scale-ups are immediate.
4. **Latency filter**: a factory is eligible for a PoP when it is up, has the service's accelerator, and
   ``RTT(PoP, factory) + P99 prefill time <= SLO x (1 - queue_margin)`` (the rest is left for queueing).
   When prefill alone breaks that (long prompts), no factory can meet the SLO: the PoP is served best effort
   from the factories whose RTT alone fits, and the plan reports it in ``unserved``.
5. **Choose by spare capacity, not distance**: the allocation the PoP already holds at eligible factories is
   kept (no churn, no new cold starts); any extra replicas go to the eligible factory with the most spare
   nodes (free nodes not yet promised this cycle), then the next; if free nodes run out, to the factory with
   the most preemptible training nodes (inference wins capacity over training). Scale-downs remove replicas
   from the factory with the least spare capacity first.
6. **Weights**: every factory that gets replicas but lacks the service's weights starts a sync (the twin
   charges ``weights / bandwidth`` and counts a cold start until it completes).
7. **Preemption** (in :meth:`PrePlacer.decide`): where a factory's free nodes cannot hold the replicas wanted
   there, preemptible training jobs of the accelerator are preempted (lowest priority, smallest first, then
   earliest submitted) until enough nodes are on their way (jobs already draining count). Inference wins
   capacity over training through the same ``Preempt`` action a training policy would use.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from superfactory.domain.fleet import NODE_FREE, Allocate, FleetSnapshot, Plan, Preempt, SyncWeights
from superfactory.domain.inference import WEIGHTS_ABSENT, WEIGHTS_PRESENT, WEIGHTS_SYNCING, PopDemand, ServiceProfile
from superfactory.domain.lifecycle import MOVABLE, JobLifecycle
from superfactory.policy.registry import INFERENCE, PolicyBase, register

#: the reason a Preempt of the inference pre-placer carries
PREEMPT_REASON = "inference capacity"

__all__ = ["WEIGHTS_ABSENT", "WEIGHTS_PRESENT", "WEIGHTS_SYNCING", "FactoryCapacity", "InferencePlan", "InferenceView",
           "PopDemand", "PopForecast", "PrePlacer", "ServiceProfile", "holt_peak"]


@dataclass(frozen=True, slots=True)
class FactoryCapacity:
    """What one factory can give inference now.

    Attributes:
        factory_id: which factory.
        up: False during an outage.
        free_nodes: free, healthy nodes per accelerator.
        preemptible_nodes: nodes held by preemptible training jobs per accelerator.
        weights: per service id, ``present`` / ``syncing`` / ``absent``.
    """

    factory_id: str
    up: bool
    free_nodes: Mapping[str, int]
    preemptible_nodes: Mapping[str, int]
    weights: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class InferenceView:
    """Everything the pre-placer sees.

    Attributes:
        now_s: simulated (or wall) time, s.
        services: the services with their serving profile.
        demands: per (service, PoP) realised history.
        factories: per-factory capacity.
        rtt_ms: ``(pop, factory_id) -> measured round-trip time, ms``.
        allocation: ``(service_id, pop, factory_id) -> replicas`` held now.
    """

    now_s: int
    services: tuple[ServiceProfile, ...]
    demands: tuple[PopDemand, ...]
    factories: tuple[FactoryCapacity, ...]
    rtt_ms: Mapping[tuple[str, str], float]
    allocation: Mapping[tuple[str, str, str], int]


@dataclass(frozen=True, slots=True)
class PopForecast:
    """The forecast behind one (service, PoP) decision.

    Attributes:
        rate_rps: forecast peak arrival rate over the horizon, req/s.
        before_headroom: replicas that forecast keeps 100 % busy (Erlangs).
        target: replicas decided (headroom and hysteresis applied).
        eligible: factories that meet the latency SLO, in the order considered.
    """

    service_id: str
    pop: str
    rate_rps: float
    before_headroom: float
    target: int
    eligible: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class InferencePlan:
    """The decision: replicas per (service, PoP, factory), weight syncs to start, forecasts, problems."""

    allocation: Mapping[tuple[str, str, str], int]
    syncs: tuple[tuple[str, str], ...]
    forecasts: tuple[PopForecast, ...]
    unserved: tuple[tuple[str, str, str], ...] = ()

    def replicas_at(self, service_id: str, factory_id: str) -> int:
        """Replicas of a service wanted at a factory (over all PoPs)."""
        return sum(n for (s, _, f), n in self.allocation.items() if s == service_id and f == factory_id)


def holt_peak(history: tuple[float, ...], horizon_min: int, alpha: float, beta: float) -> float:
    """Peak of a Holt linear forecast over ``1..horizon_min`` minutes ahead (0 with no history)."""
    if not history:
        return 0.0
    level, trend = history[0], 0.0
    for x in history[1:]:
        prev = level
        level = alpha * x + (1 - alpha) * (level + trend)
        trend = beta * (level - prev) + (1 - beta) * trend
    return max(0.0, level + trend, level + horizon_min * trend)


@register("preplacer", role=INFERENCE)
class PrePlacer(PolicyBase):
    """Inference pre-placement: replicas per service, PoP and factory within a P99 TTFT SLO.

    Args:
        headroom: reserve ``forecast x headroom`` (>= 1).
        horizon_s: planning horizon and decision cycle, s.
        hysteresis: relative drop of the target needed before scaling down.
        queue_margin: share of the SLO left for queueing when filtering factories by latency.
        alpha, beta: Holt smoothing constants for level and trend.
        window_min: minutes of history the forecast uses.
    """

    event_driven = False  # decides on its horizon only; the world keeps the allocation between cycles

    def __init__(self, headroom: float = 1.3, horizon_s: int = 900, hysteresis: float = 0.1,
                 queue_margin: float = 0.2, alpha: float = 0.3, beta: float = 0.05, window_min: int = 60) -> None:
        if headroom < 1.0:
            raise ValueError(f"headroom must be >= 1, got {headroom}")
        if horizon_s < 60:
            raise ValueError(f"horizon must be at least 60 s, got {horizon_s}")
        if not 0 <= hysteresis < 1 or not 0 <= queue_margin < 1:
            raise ValueError("hysteresis and queue_margin are fractions in [0, 1)")
        self.headroom = headroom
        self.horizon_s = horizon_s
        self.hysteresis = hysteresis
        self.queue_margin = queue_margin
        self.alpha = alpha
        self.beta = beta
        self.window_min = window_min
        self.cycle_s = horizon_s

    # == the loop's entry point ===============================================================================
    def view_of(self, snapshot: FleetSnapshot) -> InferenceView:
        """What the pre-placer sees, from a fleet snapshot (which must carry ``inference``)."""
        inf = snapshot.inference
        if inf is None:
            raise ValueError("the pre-placer needs a snapshot with an inference section")
        accs = {p.service.accelerator for p in inf.services}
        caps = []
        for f, st in zip(snapshot.factories, snapshot.states, strict=True):
            free = dict.fromkeys(accs, 0)
            pre = dict.fromkeys(accs, 0)
            if st.up:
                status = np.frombuffer(st.node_status, dtype=np.uint8)
                for a in accs:
                    free[a] = sum(int(np.count_nonzero(status[c.node_offset:c.node_end] == NODE_FREE))
                                  for c in f.clusters_of(a))
            for v in snapshot.running:
                if (v.factory_id == f.id and v.job.preemptible and v.job.accelerator in pre
                        and v.state in MOVABLE):
                    pre[v.job.accelerator] += len(v.nodes)
            caps.append(FactoryCapacity(f.id, st.up, free, pre,
                                        {p.service.id: inf.weights.get((p.service.id, f.id), WEIGHTS_ABSENT)
                                         for p in inf.services}))
        return InferenceView(snapshot.now_s, inf.services, inf.demands, tuple(caps), inf.rtt_ms,
                             dict(inf.allocation))

    def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
        """Plan replicas, weight syncs and the preemptions that free nodes for them (module docstring)."""
        del rng  # deterministic
        inf = snapshot.inference
        if inf is None:
            return Plan()
        view = self.view_of(snapshot)
        ip = self.plan(view)
        actions: list[Allocate | SyncWeights | Preempt] = []
        for prof in inf.services:
            sid = prof.service.id
            mine = tuple(sorted((p, f, n) for (s, p, f), n in ip.allocation.items() if s == sid))
            actions.append(Allocate(sid, mine))
        actions.extend(SyncWeights(s, f) for s, f in ip.syncs)
        actions.extend(self._victims(snapshot, view, ip))
        forecasts = tuple(x for fc in ip.forecasts for x in (
            (f"{fc.service_id}/{fc.pop}", "rate_rps", fc.rate_rps),
            (f"{fc.service_id}/{fc.pop}", "erlangs", fc.before_headroom)))
        waiting = tuple((f"{s}/{p}", why) for s, p, why in ip.unserved)
        return Plan(tuple(actions), waiting, forecasts=forecasts)

    def _victims(self, snapshot: FleetSnapshot, view: InferenceView, ip: InferencePlan) -> list[Preempt]:
        """Preempt preemptible training where free nodes cannot hold the replicas wanted (module docstring, 7)."""
        inf = snapshot.inference
        assert inf is not None
        free = {(fc.factory_id, a): n for fc in view.factories for a, n in fc.free_nodes.items()}
        up = {fc.factory_id: fc.up for fc in view.factories}
        chosen: set[str] = set()
        out: list[Preempt] = []
        for prof in inf.services:
            sid, acc, npr = prof.service.id, prof.service.accelerator, prof.nodes_per_replica
            for f in snapshot.factories:
                want = ip.replicas_at(sid, f.id)
                have = inf.replicas.get((sid, f.id), 0)
                if want < have:
                    free[(f.id, acc)] = free.get((f.id, acc), 0) + (have - want) * npr
                    continue
                whole = min(free.get((f.id, acc), 0) // npr, want - have)
                free[(f.id, acc)] = free.get((f.id, acc), 0) - whole * npr
                short = want - have - whole
                if short <= 0 or not up[f.id]:
                    continue
                running = [v for v in snapshot.running if v.factory_id == f.id and v.job.accelerator == acc]
                need = short * npr - sum(len(v.nodes) for v in running
                                         if v.state is JobLifecycle.DRAINING or v.job.id in chosen)
                victims = sorted((v for v in running if v.job.preemptible and v.state in MOVABLE
                                  and v.job.id not in chosen),
                                 key=lambda v: (v.job.priority, len(v.nodes), v.job.submit_s, v.job.id))
                for v in victims:
                    if need <= 0:
                        break
                    chosen.add(v.job.id)
                    out.append(Preempt(v.job.id, PREEMPT_REASON))
                    need -= len(v.nodes)
        return out

    def forecast_rps(self, history: tuple[float, ...]) -> float:
        """Forecast peak arrival rate over the next horizon from a per-minute history, req/s."""
        return holt_peak(history[-self.window_min:], self.horizon_s // 60, self.alpha, self.beta)

    def eligible(self, view: InferenceView, prof: ServiceProfile, pop: str,
                 network_only: bool = False) -> list[FactoryCapacity]:
        """Factories whose network + prefill latency leaves the queueing margin of the SLO (``network_only``:
        whose RTT alone does, the best-effort fallback when prefill alone breaks the SLO)."""
        budget_ms = prof.service.slo_p99_ms * (1 - self.queue_margin) - (
            0.0 if network_only else prof.p99_service_s * 1000.0)
        acc = prof.service.accelerator
        return [
            fc for fc in view.factories
            if fc.up and (fc.free_nodes.get(acc, 0) + fc.preemptible_nodes.get(acc, 0) > 0
                          or any(n > 0 for (s, _, f), n in view.allocation.items()
                                 if s == prof.service.id and f == fc.factory_id))
            and view.rtt_ms.get((pop, fc.factory_id), math.inf) <= budget_ms
        ]

    def plan(self, view: InferenceView) -> InferencePlan:
        """Decide replicas per (service, PoP, factory) for the next horizon."""
        profiles = {p.service.id: p for p in view.services}
        free = {(fc.factory_id, a): n for fc in view.factories for a, n in fc.free_nodes.items()}
        preempt = {(fc.factory_id, a): n for fc in view.factories for a, n in fc.preemptible_nodes.items()}
        alloc: dict[tuple[str, str, str], int] = {}
        weights = {fc.factory_id: fc.weights for fc in view.factories}
        forecasts: list[PopForecast] = []
        unserved: list[tuple[str, str, str]] = []
        # big demands first: they need the large pools
        order = sorted(view.demands, key=lambda d: (-(d.history_rps[-1] if d.history_rps else 0.0), d.pop))
        for d in order:
            prof = profiles[d.service_id]
            acc = prof.service.accelerator
            npr = prof.nodes_per_replica
            rate = self.forecast_rps(d.history_rps)
            erlangs = rate * prof.mean_service_s
            need = math.ceil(erlangs * self.headroom - 1e-9) if rate > 0 else 0
            current = {f: n for (s, p, f), n in view.allocation.items() if s == d.service_id and p == d.pop and n > 0}
            have = sum(current.values())
            target = need if need >= have or need < have * (1 - self.hysteresis) else have
            elig = self.eligible(view, prof, d.pop)
            if not elig and target > 0:
                # prefill alone exceeds the SLO: serve best effort from factories the network allows and say so
                elig = self.eligible(view, prof, d.pop, network_only=True)
                unserved.append((d.service_id, d.pop, f"SLO infeasible: P99 prefill {prof.p99_service_s * 1e3:.0f} ms"
                                 f" alone exceeds {1 - self.queue_margin:.0%} of the {prof.service.slo_p99_ms:g} ms "
                                 "SLO; serving best effort"))
            names = [fc.factory_id for fc in elig]
            kept = {f: n for f, n in current.items() if f in names}
            for f, n in sorted(kept.items(), key=lambda kv: (free.get((kv[0], acc), 0), kv[0])):
                excess = sum(kept.values()) - target
                if excess <= 0:
                    break
                drop = min(n, excess)
                kept[f] = n - drop
            missing = target - sum(kept.values())  # includes replicas lost at factories no longer eligible
            warm_w = {f: weights[f].get(d.service_id, WEIGHTS_ABSENT) != WEIGHTS_ABSENT for f in names}
            while missing > 0 and names:
                # spare capacity decides; among factories with room, those holding (or fetching) the weights
                # first, so a choice does not cost a cold start when a warm factory has room
                by_free = max(names, key=lambda f: (free.get((f, acc), 0) // npr > 0, warm_w[f],
                                                    free.get((f, acc), 0) // npr, -names.index(f)))
                room = free.get((by_free, acc), 0) // npr
                if room > 0:
                    take = min(room, missing)
                    free[(by_free, acc)] -= take * npr
                else:
                    by_free = max(names, key=lambda f: (preempt.get((f, acc), 0) // npr, -names.index(f)))
                    room = preempt.get((by_free, acc), 0) // npr
                    if room <= 0:
                        unserved.append((d.service_id, d.pop, f"{missing} replicas: no eligible factory has "
                                         "free or preemptible nodes"))
                        break
                    take = min(room, missing)
                    preempt[(by_free, acc)] -= take * npr
                kept[by_free] = kept.get(by_free, 0) + take
                missing -= take
            if target > 0 and not names:
                unserved.append((d.service_id, d.pop, "no factory meets the latency SLO"))
            for f, n in kept.items():
                if n > 0:
                    alloc[(d.service_id, d.pop, f)] = n
            forecasts.append(PopForecast(d.service_id, d.pop, rate, erlangs, target, tuple(names)))
        syncs = sorted({(s, f) for (s, _, f), n in alloc.items()
                        if n > 0 and weights.get(f, {}).get(s, WEIGHTS_ABSENT) == WEIGHTS_ABSENT})
        return InferencePlan(alloc, tuple(syncs), tuple(forecasts), tuple(unserved))
