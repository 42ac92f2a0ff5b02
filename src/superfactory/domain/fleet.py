"""What a policy sees (:class:`FleetSnapshot`) and what it returns (:class:`Plan`).

A snapshot is an immutable picture of the fleet at ``now_s``. Per-node state is a ``bytes`` string per
factory (one byte per node, :data:`NODE_FREE` / :data:`NODE_BUSY` / :data:`NODE_DOWN`): cheap to copy, cheap
to scan with numpy, and impossible for a policy to mutate. A plan is a tuple of typed actions plus the
reason each unplaced job waits; the actuator of each world (twin or live) carries the actions out and
reports each action's fate as an :class:`~superfactory.domain.outcome.ActionOutcome`.

Every action has an ``action_id``. Policies leave it empty; the decision loop stamps a unique id
(``"<policy>:<decision>:<index>"``) before the plan reaches a world, and outcomes refer to it.

What a snapshot shows is what an operator could measure: node states, prices, power, and for NVLink domains
only the latest *probe* readings (:class:`LinkProbe`, with the time they were taken), never the world's
hidden truth about a degraded link.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import overload

from superfactory.domain.factory import Factory, WanLink
from superfactory.domain.inference import InferenceState
from superfactory.domain.job import TrainingJob
from superfactory.domain.lifecycle import JobLifecycle
from superfactory.domain.transfer import RouteTransfer, WanState

NODE_FREE = 0
NODE_BUSY = 1
NODE_DOWN = 2


@dataclass(frozen=True, slots=True)
class LinkProbe:
    """An all-reduce probe's reading of one NVLink domain.

    Attributes:
        domain: the NVLink domain index inside the factory.
        ratio: measured effective bandwidth / nominal (1.0 = healthy).
        measured_at_s: when the probe ran; a policy may distrust an old reading.
    """

    domain: int
    ratio: float
    measured_at_s: int


@dataclass(frozen=True, slots=True)
class FactoryState:
    """Dynamic state of one factory.

    Attributes:
        factory_id: which factory.
        up: False during a whole-factory outage.
        node_status: one byte per node (``NODE_FREE``, ``NODE_BUSY``, ``NODE_DOWN``).
        price_usd_per_mwh: electricity price in force now.
        carbon_g_per_kwh: grid carbon intensity now.
        it_power_w: current IT load, W.
        link_probes: the latest probe reading of every domain whose last probe measured below nominal (empty
            when every probe found its domain healthy). A degradation no probe has measured yet is not here.
    """

    factory_id: str
    up: bool
    node_status: bytes
    price_usd_per_mwh: float
    carbon_g_per_kwh: float
    it_power_w: float
    link_probes: tuple[LinkProbe, ...] = ()

    @property
    def link_factors(self) -> dict[int, float]:
        """``domain -> measured bandwidth ratio`` for the probed-degraded domains."""
        return {p.domain: p.ratio for p in self.link_probes}


@dataclass(frozen=True, slots=True)
class JobView:
    """A job as the policy sees it.

    Attributes:
        job: the declared job.
        factory_id: where it runs, or ``None`` while pending.
        nodes: node indices it holds in that factory (empty while pending).
        progress_s: productive seconds retained (lost work already subtracted).
        waiting_since_s: when it last became pending (pending jobs only; else -1).
        last_factory_id: where it last ran, if anywhere.
        last_nodes: the nodes it held there (lets a policy hot-swap only the failed ones).
        interrupted: True if the job is pending because a failure interrupted it.
        committed_progress_s: productive seconds covered by its last durable checkpoint.
        state: where the job is in its lifecycle (:class:`~superfactory.domain.lifecycle.JobLifecycle`).
        carbon_spent_tco2: emissions attributed to the job so far (closed accounting hours), tCO2.
    """

    job: TrainingJob
    factory_id: str | None
    nodes: tuple[int, ...]
    progress_s: float
    waiting_since_s: int
    last_factory_id: str | None = None
    last_nodes: tuple[int, ...] = ()
    interrupted: bool = False
    committed_progress_s: float = 0.0
    state: JobLifecycle = JobLifecycle.PENDING
    carbon_spent_tco2: float = 0.0


class LazyViews(Sequence[JobView]):
    """A read-only sequence of job views built on first use (a world's snapshot can offer its running jobs this
    way: a policy that never looks at them, like ``greedy``, does not pay for them). Behaves like a tuple: index,
    iterate, ``len``, ``+`` with tuples, equality with sequences."""

    __slots__ = ("_build", "_items")

    def __init__(self, build: Callable[[], tuple[JobView, ...]]) -> None:
        self._build: Callable[[], tuple[JobView, ...]] | None = build
        self._items: tuple[JobView, ...] | None = None

    def items(self) -> tuple[JobView, ...]:
        """The views, as a tuple (built now if not yet)."""
        if self._items is None:
            assert self._build is not None
            self._items = self._build()
            self._build = None
        return self._items

    @overload
    def __getitem__(self, i: int) -> JobView: ...

    @overload
    def __getitem__(self, i: slice) -> tuple[JobView, ...]: ...

    def __getitem__(self, i: int | slice) -> JobView | tuple[JobView, ...]:
        return self.items()[i]

    def __len__(self) -> int:
        return len(self.items())

    def __iter__(self) -> Iterator[JobView]:
        return iter(self.items())

    def __add__(self, other: Sequence[JobView]) -> tuple[JobView, ...]:
        return self.items() + tuple(other)

    def __radd__(self, other: Sequence[JobView]) -> tuple[JobView, ...]:
        return tuple(other) + self.items()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and self.items() == tuple(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"LazyViews({self.items()!r})"


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    """The fleet at one instant, aligned by index: ``states[i]`` describes ``factories[i]``.

    ``price_history[market]`` / ``carbon_history[grid]`` hold one value per hour from hour 0 up to and
    including the current hour, as realised (price shocks included). The snapshot carries no future signal
    values at all: a policy that wants the future must forecast it from this history. ``inference`` is the
    serving side (services, demand, replicas, weights), or ``None`` when the fleet serves nothing.
    """

    now_s: int
    factories: tuple[Factory, ...]
    states: tuple[FactoryState, ...]
    links: tuple[WanLink, ...]
    pending: tuple[JobView, ...]
    running: Sequence[JobView]  # a tuple, or LazyViews (built on first use)
    price_history: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    carbon_history: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    inference: InferenceState | None = None
    wan: WanState | None = None  # the WAN fabric (transfers, links), when the world models it (issue 16)

    def factory_index(self, factory_id: str) -> int:
        for i, f in enumerate(self.factories):
            if f.id == factory_id:
                return i
        raise KeyError(factory_id)


@dataclass(frozen=True, slots=True)
class Place:
    """Start (or restart) a pending job on ``nodes`` of ``factory_id``.

    ``hot_swap=True`` restarts an interrupted job on its previous nodes with only the failed (down) ones
    replaced, in the same factory; it pays ``RecoverySpec.hot_swap_s`` instead of the full ``restart_s``.
    """

    job_id: str
    factory_id: str
    nodes: tuple[int, ...]
    hot_swap: bool = False
    action_id: str = ""


@dataclass(frozen=True, slots=True)
class Migrate:
    """Move a running job to ``nodes`` of ``factory_id``: final checkpoint at the source, transfer of the
    checkpoint over the WAN (size / link bandwidth), restart at the destination. The destination nodes are
    reserved from the moment of the decision."""

    job_id: str
    factory_id: str
    nodes: tuple[int, ...]
    reason: str = ""
    action_id: str = ""


@dataclass(frozen=True, slots=True)
class SwapNodes:
    """Hot-swap some ranks of a *running* job onto other free nodes of the same factory, without a restart from a
    checkpoint: each ``(old, new)`` pair moves the ranks on node ``old`` (which the job holds) to node ``new``
    (free, same accelerator). The job pauses for ``RecoverySpec.hot_swap_s`` while the moved ranks take over
    their state from their peers (no progress lost beyond that pause), then runs on the new node set; the old
    nodes are freed. Used to take a gang's TP groups off an NVLink domain whose probes read degraded. A world
    that cannot do this refuses it (outcome ``refused``)."""

    job_id: str
    factory_id: str
    swaps: tuple[tuple[int, int], ...]
    reason: str = ""
    action_id: str = ""


@dataclass(frozen=True, slots=True)
class Preempt:
    """Stop a running job after a checkpoint and return it to the queue."""

    job_id: str
    reason: str
    action_id: str = ""


@dataclass(frozen=True, slots=True)
class Allocate:
    """Hold ``replicas`` of inference service ``job_id`` for each ``(pop, factory_id, replicas)`` listed
    (declarative: the service's whole allocation; pairs not listed hold none). The world reserves whole free
    nodes per replica, claims nodes that training jobs release for the rest (outcome ``partial`` until they
    arrive) and starts replicas after loading weights. ``job_id`` is the service id (outcomes refer to it)."""

    job_id: str
    replicas: tuple[tuple[str, str, int], ...]
    action_id: str = ""


@dataclass(frozen=True, slots=True)
class SyncWeights:
    """Copy inference service ``job_id``'s weights to ``factory_id`` over the WAN (the world picks the
    route; see :func:`superfactory.models.wan.route_bandwidth_gbps`)."""

    job_id: str
    factory_id: str
    action_id: str = ""


Action = Place | Preempt | Migrate | SwapNodes | Allocate | SyncWeights | RouteTransfer


@dataclass(frozen=True, slots=True)
class Plan:
    """A policy's decision.

    Attributes:
        actions: what to do, in order.
        waiting: ``(job_id, reason)`` for every pending job left unplaced, in words a user can read.
        refusals: ``(job_id, factory_id, rule)`` for every placement a hard rule forbade (sovereignty, carbon
            budget); the world records each distinct refusal once as an ``AuditRefusal`` event.
        forecasts: ``(subject, quantity, value)`` estimates the policy based its plan on (e.g. the inference
            pre-placer's ``(service/pop, "rate_rps", 12.5)``); recorded so forecast error can be scored.
    """

    actions: tuple[Action, ...] = ()
    waiting: tuple[tuple[str, str], ...] = ()
    refusals: tuple[tuple[str, str, str], ...] = ()
    forecasts: tuple[tuple[str, str, float], ...] = ()
