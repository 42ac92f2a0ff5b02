"""The inference layer of the twin: replicas on reserved nodes, per-minute TTFT against the SLO, cold starts.

Wiring (only when a scenario serves a service, see :mod:`superfactory.scenario.demand`):
- the pre-placer (policy ``preplacer``, role ``inference``, :class:`~superfactory.policy.inference.PrePlacer`)
  runs in the decision loop every ``horizon`` (default 15 min, first at t=0 before training is placed) on a
  snapshot whose ``inference`` section this layer builds (:meth:`ServingActuator.state`). Its ``Preempt``
  actions go to the fleet like any training policy's; its ``Allocate`` and ``SyncWeights`` come here
  (:meth:`ServingActuator.apply`): this layer reserves whole free nodes through
  :meth:`SimulatedFleet.reserve_nodes` (busy to training policies) and claims the nodes preempted jobs release
  (:meth:`SimulatedFleet.set_claim`) for the replicas free nodes could not hold (outcome ``partial``).
- a new replica serves after ``replica_start`` (loading weights from the factory's storage); when the factory
  lacks the weights it first syncs them over the WAN (``weights / bandwidth``: the best link from a factory
  that has them, or the registry pull bandwidth) and counts a cold start until the sync completes. Replicas
  present at t=0 where the weights already are start warm (the service was running before the window).
- every minute it evaluates the queueing model of :mod:`superfactory.models.serving` per pool (service,
  factory) with the warm replicas, the PoP demand routed there (PoPs split their requests in proportion to
  their replicas at each warm factory) and a fluid backlog carried across overloaded minutes; it records each
  PoP's P99 TTFT (RTT included) and whether it met the SLO, idle replica-GPU time, and cold-start minutes.
- a replica with a failed node is released and replaced at the next minute (a new replica, with start time)
  from free nodes, else by a claim; preempting training for it is the pre-placer's call at its next cycle.

Metrics (in :class:`InferenceResult`): ``slo_attainment`` = share of (service, PoP, minute) with P99 <= SLO;
``idle_share`` = reserved-but-not-serving GPU time / reserved GPU time (cold replicas count as idle);
``load_vs_provisioned`` = offered Erlangs / the before-headroom Erlangs the policy provisioned, over the run;
``cold_starts`` = replicas that had to wait for a WAN weight sync; ``cold_spike_minutes`` = PoP-minutes that
missed the SLO while one of the PoP's replicas was still starting.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from superfactory.domain.accelerator import SYSTEMS
from superfactory.domain.events import Event, EventKind
from superfactory.domain.fleet import Allocate, SyncWeights
from superfactory.domain.inference import (
    WEIGHTS_ABSENT,
    WEIGHTS_PRESENT,
    WEIGHTS_SYNCING,
    InferenceState,
    PopDemand,
    ServiceProfile,
)
from superfactory.domain.outcome import ActionOutcome, OutcomeStatus
from superfactory.models.serving import (
    PrefillModel,
    WaitTail,
    equal_qos_split,
    service_quantiles,
    ttft_quantile,
    wait_tail,
)
from superfactory.scenario.demand import InferenceSetup, ServedService
from superfactory.sim.fleet import SimulatedFleet
from superfactory.sim.kernel import PRIO_DECIDE, PRIO_METRICS, Kernel

MINUTE_S = 60
#: P99 recorded for a minute whose requests found no warm replica or an overloaded pool (a timeout), ms
UNSERVED_MS = 60_000.0
#: minutes of demand history the policy is given at t=0 (the day profile repeats, so "yesterday" is known)
WARM_HISTORY_MIN = 60
#: minutes of realised demand a snapshot shows (the pre-placer's forecast window is 60 by default)
HISTORY_MIN = 1440


@dataclass(slots=True)
class Replica:
    nodes: tuple[int, ...]
    ready_s: int
    cold: bool  # waited for a WAN weight sync


@dataclass(slots=True)
class _Svc:
    """Per-service constants of the run."""

    served: ServedService
    profile: ServiceProfile
    quantiles: np.ndarray
    mean_s: float
    cs2: float


@dataclass(slots=True)
class InferenceResult:
    """What the inference layer measured (see the module docstring for definitions)."""

    minutes: int
    p99_ms: dict[tuple[str, str], np.ndarray]
    ok: dict[tuple[str, str], np.ndarray]
    slo_ms: dict[str, float]
    reserved_gpu_s: float = 0.0
    busy_gpu_s: float = 0.0
    offered_erlang_min: float = 0.0
    provisioned_erlang_min: float = 0.0
    cold_starts: int = 0
    weight_syncs: int = 0
    cold_spike_minutes: int = 0
    preemptions: int = 0
    replica_failures: int = 0
    forecast_abs_pct_err: list[float] = field(default_factory=list)
    forecast_pct_err: list[float] = field(default_factory=list)
    peak_replicas: dict[str, int] = field(default_factory=dict)
    #: per (service, factory): warm replicas and offered Erlangs in each minute (pools)
    pool_warm: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    pool_erlangs: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)

    @property
    def slo_attainment(self) -> float:
        total = sum(v.size for v in self.ok.values())
        return sum(int(v.sum()) for v in self.ok.values()) / total if total else 1.0

    @property
    def idle_share(self) -> float:
        return 1.0 - self.busy_gpu_s / self.reserved_gpu_s if self.reserved_gpu_s > 0 else 0.0

    @property
    def load_vs_provisioned(self) -> float:
        return self.offered_erlang_min / self.provisioned_erlang_min if self.provisioned_erlang_min else 0.0

    def summary(self) -> dict[str, float | int]:
        mape = float(np.mean(self.forecast_abs_pct_err)) if self.forecast_abs_pct_err else 0.0
        bias = float(np.mean(self.forecast_pct_err)) if self.forecast_pct_err else 0.0
        all_p99 = np.concatenate(list(self.p99_ms.values())) if self.p99_ms else np.zeros(1)
        return {
            "inference_slo_attainment": self.slo_attainment,
            "inference_idle_share": self.idle_share,
            "inference_load_vs_provisioned": self.load_vs_provisioned,
            "inference_cold_starts": self.cold_starts,
            "inference_weight_syncs": self.weight_syncs,
            "inference_cold_spike_minutes": self.cold_spike_minutes,
            "inference_preemptions": self.preemptions,
            "inference_replica_failures": self.replica_failures,
            "inference_p99_ttft_ms_median": float(np.median(all_p99)),
            "inference_p99_ttft_ms_max": float(np.max(all_p99)),
            "inference_forecast_mape": mape,
            "inference_forecast_bias": bias,
            "inference_gpu_hours": self.reserved_gpu_s / 3600.0,
        }


class ServingActuator:
    """The twin's serving layer: carries out the pre-placer's actions, shows the serving state in snapshots and
    runs the per-minute serving model (the ground truth of TTFT) on the twin's kernel and fleet."""

    def __init__(self, kernel: Kernel, fleet: SimulatedFleet, setup: InferenceSetup, duration_s: int,
                 emit: Callable[[Event], None]) -> None:
        self.k = kernel
        self.fleet = fleet
        self.setup = setup
        self.emit = emit
        self._version = 0  # bumped on every change of replicas, weights or allocation (snapshot cache key)
        self._state_cache: tuple[tuple[int, int], InferenceState] | None = None
        self.svcs: dict[str, _Svc] = {}
        for ss in setup.services:
            svc = ss.service
            pm = PrefillModel(ss.model, svc.accelerator, svc.gpus_per_replica, ss.prefill_mfu)
            s = pm.service_s(ss.prefill_tokens)
            mean = float(s.mean())
            system = next(SYSTEMS[c.system.name] for f in fleet.factories for c in f.clusters
                          if c.accelerator == svc.accelerator)
            npr = math.ceil(svc.gpus_per_replica / system.gpus_per_node)
            prof = ServiceProfile(svc, npr, mean, float(np.quantile(s, 0.99)))
            self.svcs[svc.id] = _Svc(ss, prof, service_quantiles(s), mean, float(s.var() / mean**2))
        self.replicas: dict[tuple[str, int], list[Replica]] = {}
        self.claimed: dict[tuple[str, int], int] = {}
        self.weights: dict[tuple[str, int], str] = {}
        self.sync_done_s: dict[tuple[str, int], int] = {}
        for sid, sv in self.svcs.items():
            for fi, f in enumerate(fleet.factories):
                self.weights[(sid, fi)] = WEIGHTS_PRESENT if f.id in sv.served.weights_at else WEIGHTS_ABSENT
        self.allocation: dict[tuple[str, str, str], int] = {}
        self.history: dict[tuple[str, str], list[float]] = {}
        for sid, sv in self.svcs.items():
            for pop, prof in sv.served.demand.items():
                self.history[(sid, pop)] = [prof.at_minute(m) for m in range(-WARM_HISTORY_MIN, 0)]
        self.backlog: dict[tuple[str, int], float] = {}
        self.before_headroom: dict[tuple[str, str], float] = {}
        self.forecasts: list[tuple[str, str, int, float]] = []
        minutes = duration_s // MINUTE_S
        keys = [(sid, pop) for sid, sv in self.svcs.items() for pop in sv.served.demand]
        self.result = InferenceResult(
            minutes, {k: np.zeros(minutes) for k in keys}, {k: np.zeros(minutes, dtype=bool) for k in keys},
            {sid: sv.served.service.slo_p99_ms for sid, sv in self.svcs.items()})

    # == schedule ============================================================================================
    def start(self) -> None:
        """Start the per-minute serving model (decisions come from the pre-placer through the loop)."""
        if self.result.minutes > 0:
            self.k.at(MINUTE_S - 1, PRIO_METRICS, self._minute)

    # == FleetView part: the serving state in snapshots =====================================================
    def state(self) -> InferenceState:
        """Services, realised demand (the last :data:`HISTORY_MIN` minutes), allocation, weights, replicas."""
        now = self.k.now_s()
        key = (now // MINUTE_S, self._version)
        if self._state_cache is not None and self._state_cache[0] == key:
            return self._state_cache[1]
        fids = [f.id for f in self.fleet.factories]
        st = InferenceState(
            tuple(sv.profile for sv in self.svcs.values()),
            tuple(PopDemand(sid, pop, tuple(h[-HISTORY_MIN:])) for (sid, pop), h in self.history.items()),
            self.setup.rtt_ms,
            dict(self.allocation),
            {(sid, fids[fi]): w for (sid, fi), w in self.weights.items()},
            {(sid, fids[fi]): len(reps) for (sid, fi), reps in self.replicas.items()},
        )
        self._state_cache = (key, st)
        return st

    # == Actuator part: Allocate and SyncWeights ============================================================
    def apply(self, actions: list[Allocate | SyncWeights],
              forecasts: tuple[tuple[str, str, float], ...]) -> list[ActionOutcome]:
        """Carry out the pre-placer's actions: weight syncs first, then every service's new allocation (release
        surplus replicas, reserve free nodes for new ones, claim released nodes for the rest). Outcomes:
        ``applied``, ``partial`` (replicas still waiting for nodes, with how many and where) or ``refused``."""
        now = self.k.now_s()
        self._version += 1
        out: list[ActionOutcome] = []
        for subject, quantity, value in forecasts:
            sid, _, pop = subject.partition("/")
            if quantity == "erlangs":
                self.before_headroom[(sid, pop)] = value
            elif quantity == "rate_rps":
                self.forecasts.append((sid, pop, now, value))
        allocs: list[Allocate] = []
        for a in actions:
            if isinstance(a, SyncWeights):
                fi = self.fleet.by_id.get(a.factory_id)
                if a.job_id not in self.svcs or fi is None:
                    out.append(ActionOutcome(a.action_id, OutcomeStatus.REFUSED, a.job_id, a.factory_id,
                                             "unknown service or factory", now))
                elif self.weights[(a.job_id, fi)] != WEIGHTS_ABSENT:
                    out.append(ActionOutcome(a.action_id, OutcomeStatus.REFUSED, a.job_id, a.factory_id,
                                             f"weights already {self.weights[(a.job_id, fi)]} there", now))
                else:
                    self._start_sync(a.job_id, fi)
                    out.append(ActionOutcome(a.action_id, OutcomeStatus.APPLIED, a.job_id, a.factory_id, "", now))
            else:
                allocs.append(a)
        for a in allocs:
            if a.job_id not in self.svcs:
                out.append(ActionOutcome(a.action_id, OutcomeStatus.REFUSED, a.job_id, "", "unknown service", now))
                continue
            for k in [k for k in self.allocation if k[0] == a.job_id]:
                del self.allocation[k]
            for pop, f_id, n in a.replicas:
                if n > 0:
                    self.allocation[(a.job_id, pop, f_id)] = n
        for sid, sv in self.svcs.items():
            for fi, f in enumerate(self.fleet.factories):
                want = sum(n for (s, _, fx), n in self.allocation.items() if s == sid and fx == f.id)
                self._resize(sid, fi, want, sv.profile.nodes_per_replica)
        for a in allocs:
            if a.job_id not in self.svcs:
                continue
            short = [f"{self.claimed[(a.job_id, fi)]} at {f.id}" for fi, f in enumerate(self.fleet.factories)
                     if self.claimed.get((a.job_id, fi), 0) > 0]
            if short:
                out.append(ActionOutcome(a.action_id, OutcomeStatus.PARTIAL, a.job_id, "",
                                         "replicas waiting for nodes: " + ", ".join(short), now))
            else:
                out.append(ActionOutcome(a.action_id, OutcomeStatus.APPLIED, a.job_id, "", "", now))
        return out

    def _start_sync(self, sid: str, fi: int) -> None:
        now = self.k.now_s()
        sv = self.svcs[sid]
        dst = self.fleet.factories[fi].id
        bw = sv.served.weights_bandwidth_gbps
        for pi, f in enumerate(self.fleet.factories):
            if self.weights[(sid, pi)] == WEIGHTS_PRESENT and pi != fi and self.fleet.rt[pi].up:
                bw = max(bw, self.fleet.link_bandwidth_gbps(f.id, dst))
        seconds = math.ceil(sv.served.service.weights_bytes * 8 / (bw * 1e9))
        self.weights[(sid, fi)] = WEIGHTS_SYNCING
        self.sync_done_s[(sid, fi)] = now + seconds
        self.result.weight_syncs += 1
        self.emit(Event(now, EventKind.WEIGHT_SYNC_STARTED, sid, dst, value=float(seconds)))
        self.k.after(seconds, PRIO_DECIDE - 3, self._sync_done, sid, fi)

    def _sync_done(self, sid: str, fi: int) -> None:
        self._version += 1
        self.weights[(sid, fi)] = WEIGHTS_PRESENT
        self.emit(Event(self.k.now_s(), EventKind.WEIGHT_SYNC_COMPLETED, sid, self.fleet.factories[fi].id))

    def _ready_at(self, sid: str, fi: int) -> tuple[int, bool]:
        now = self.k.now_s()
        if now == 0 and self.weights[(sid, fi)] == WEIGHTS_PRESENT:
            return 0, False  # warm start: the service was already running here
        start = self.setup.replica_start_s
        if self.weights[(sid, fi)] == WEIGHTS_PRESENT:
            return now + start, False
        return max(now, self.sync_done_s.get((sid, fi), now)) + start, True

    def _resize(self, sid: str, fi: int, want: int, npr: int) -> None:
        key = (sid, fi)
        reps = self.replicas.setdefault(key, [])
        acc = self.svcs[sid].served.service.accelerator
        if want != len(reps):
            self.emit(Event(self.k.now_s(), EventKind.REPLICAS_SCALED, sid, self.fleet.factories[fi].id,
                            cause=f"{len(reps)}->{want}", value=float(want)))
        if want < len(reps):
            # release the latest-ready (coldest) first
            reps.sort(key=lambda rp: rp.ready_s)
            for rp in reps[want:]:
                self.fleet.release_reserved(fi, rp.nodes)
            del reps[want:]
        short = want - len(reps)
        if short > 0:
            nodes = self.fleet.reserve_nodes(fi, acc, short * npr)
            self._adopt(sid, fi, nodes, npr)
            short = want - len(reps)
        self.fleet.set_claim(fi, acc, max(short, 0) * npr)
        self.claimed[key] = max(short, 0)

    def _adopt(self, sid: str, fi: int, nodes: tuple[int, ...], npr: int) -> None:
        reps = self.replicas.setdefault((sid, fi), [])
        whole = len(nodes) // npr * npr
        if whole < len(nodes):
            self.fleet.release_reserved(fi, nodes[whole:])
        for i in range(0, whole, npr):
            ready, cold = self._ready_at(sid, fi)
            reps.append(Replica(nodes[i:i + npr], ready, cold))
            self.result.cold_starts += int(cold)

    # == per-minute serving model ============================================================================
    def _minute(self) -> None:
        now = self.k.now_s()
        m = (now + 1) // MINUTE_S - 1  # evaluated in its last second (so the run's last minute counts too)
        self._heal()
        mid = now + 1 - MINUTE_S // 2
        res = self.result
        for sid, sv in self.svcs.items():
            gpus = sv.served.service.gpus_per_replica
            warm: dict[int, int] = {}
            starting: set[int] = set()
            for fi in range(len(self.fleet.factories)):
                reps = self.replicas.get((sid, fi), [])
                up = self.fleet.rt[fi].up
                warm[fi] = sum(1 for rp in reps if rp.ready_s <= mid) if up else 0
                if any(rp.ready_s > mid for rp in reps) or self.claimed.get((sid, fi), 0) > 0:
                    starting.add(fi)
                res.reserved_gpu_s += len(reps) * gpus * MINUTE_S
                res.peak_replicas[sid] = max(res.peak_replicas.get(sid, 0), sum(
                    len(self.replicas.get((sid, x), [])) for x in range(len(self.fleet.factories))))
            rates = {pop: prof.at_minute(m) for pop, prof in sv.served.demand.items()}
            shares: dict[str, dict[int, float]] = {}
            pool_rate: dict[int, float] = {}
            # a pool's warm replicas are shared by the PoPs allocated there in proportion to their allocation;
            # each PoP splits its requests over its pools for equal queueing margin (equal_qos_split): a
            # least-loaded balancer sends small pools less than their share
            pool_alloc: dict[int, int] = {}
            for (s, _, f), n in self.allocation.items():
                if s == sid:
                    pool_alloc[self.fleet.by_id[f]] = pool_alloc.get(self.fleet.by_id[f], 0) + n
            for pop, lam in rates.items():
                mine = {self.fleet.by_id[f]: n * warm.get(self.fleet.by_id[f], 0) / pool_alloc[self.fleet.by_id[f]]
                        for (s, p, f), n in self.allocation.items() if s == sid and p == pop and n > 0}
                fis = [fi for fi, w in mine.items() if w > 0]
                split = equal_qos_split([mine[fi] for fi in fis], lam * sv.mean_s)
                tot = sum(split)
                shares[pop] = {fi: x / tot for fi, x in zip(fis, split, strict=True)} if tot > 0 else {}
                for fi, sh in shares[pop].items():
                    pool_rate[fi] = pool_rate.get(fi, 0.0) + sh * lam
                res.offered_erlang_min += lam * sv.mean_s
                res.provisioned_erlang_min += self.before_headroom.get((sid, pop), 0.0)
                self.history[(sid, pop)].append(lam)
            tails: dict[int, tuple[float, WaitTail]] = {}
            for fi, lam in pool_rate.items():
                c = warm[fi]
                a = lam * sv.mean_s
                b0 = self.backlog.get((sid, fi), 0.0)
                b1 = max(0.0, b0 + (a - c) * MINUTE_S)
                self.backlog[(sid, fi)] = b1
                res.busy_gpu_s += min(a, c) * gpus * MINUTE_S
                fid = self.fleet.factories[fi].id
                if m < res.minutes:
                    res.pool_warm.setdefault((sid, fid), np.zeros(res.minutes))[m] = c
                    res.pool_erlangs.setdefault((sid, fid), np.zeros(res.minutes))[m] = a
                ca2 = sv.served.demand[next(iter(sv.served.demand))].dispersion
                tails[fi] = ((b0 + b1) / 2 / c if c else math.inf, wait_tail(c, lam, sv.mean_s, ca2, sv.cs2))
            for pop, lam in rates.items():
                slo = sv.served.service.slo_p99_ms
                parts = [(sh, self.setup.rtt_ms[(pop, self.fleet.factories[fi].id)] / 1000 + tails[fi][0],
                          tails[fi][1]) for fi, sh in shares[pop].items() if math.isfinite(tails[fi][0])]
                if lam <= 0:
                    p99 = 0.0
                elif not parts:
                    p99 = UNSERVED_MS
                else:
                    p99 = ttft_quantile(parts, sv.quantiles, hi_s=UNSERVED_MS / 1000) * 1000.0
                if m < res.minutes:
                    res.p99_ms[(sid, pop)][m] = p99
                    ok = p99 <= slo
                    res.ok[(sid, pop)][m] = ok
                    mine = {self.fleet.by_id[f] for (s, p, f) in self.allocation if s == sid and p == pop}
                    if not ok and mine & starting:
                        res.cold_spike_minutes += 1
        if now + MINUTE_S <= res.minutes * MINUTE_S:
            self.k.after(MINUTE_S, PRIO_METRICS, self._minute)
        else:
            self._score_forecasts()

    def _heal(self) -> None:
        """Adopt nodes handed over by preempted jobs; replace replicas that lost a node (from free nodes, else
        by claiming released ones; preempting for them is the pre-placer's decision at its next cycle)."""
        self._version += 1
        for (sid, fi), reps in self.replicas.items():
            acc = self.svcs[sid].served.service.accelerator
            npr = self.svcs[sid].profile.nodes_per_replica
            got = self.fleet.take_claimed(fi, acc)
            if got:
                self._adopt(sid, fi, got, npr)
                self.claimed[(sid, fi)] = max(0, self.claimed.get((sid, fi), 0) - len(got) // npr)
            r = self.fleet.rt[fi]
            dead = [rp for rp in reps if np.any(r.down[np.asarray(rp.nodes, dtype=np.intp)])]
            if dead:
                self.result.replica_failures += len(dead)
                want = len(reps)
                for rp in dead:
                    self.fleet.release_reserved(fi, rp.nodes)
                    reps.remove(rp)
                self._resize(sid, fi, want, npr)

    def _score_forecasts(self) -> None:
        """Forecast error: forecast peak rate vs the realised mean rate over each horizon."""
        h = self.setup.horizon_s // MINUTE_S
        for sid, pop, t, rate in self.forecasts:
            start = WARM_HISTORY_MIN + t // MINUTE_S
            real = self.history[(sid, pop)][start:start + h]
            if len(real) == h and np.mean(real) > 0:
                err = (rate - float(np.mean(real))) / float(np.mean(real))
                self.result.forecast_pct_err.append(err)
                self.result.forecast_abs_pct_err.append(abs(err))


#: the wave-1 name of the serving layer
InferenceServing = ServingActuator
