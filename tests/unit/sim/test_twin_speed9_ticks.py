"""Issue 12, session 9: on the twin's exact clock the decision loop checks quiet periodic ticks ahead instead of
waking for each (loop/decision.py ``_wake_exact``), and the kernel drops planned stops that can no longer happen
(``Kernel.prune``, ``SimulatedFleet._prune_stops``). Both must leave every decision, and so every event, where it
was."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from superfactory.domain.events import EventKind, event_log_digest
from superfactory.domain.fleet import FleetSnapshot, Plan
from superfactory.domain.outcome import ActionOutcome
from superfactory.loop.decision import DecisionLoop
from superfactory.policy.registry import PolicyBase
from superfactory.scenario.loader import parse_scenario
from superfactory.sim import fleet as fleet_mod
from superfactory.sim.kernel import PRIO_JOB, Kernel
from superfactory.sim.twin import KernelClock, run_twin

from scenario_builders import factory, job, scenario


class _Eager(KernelClock):
    """The kernel clock without the ``exact`` promise: the loop wakes at every periodic tick, as before."""

    __slots__ = ()
    exact = False


class _Stub:
    """A world that shows an empty fleet (the policy below reads only the time)."""

    def __init__(self, k: Kernel) -> None:
        self.k = k

    def snapshot(self) -> FleetSnapshot:
        return FleetSnapshot(self.k.now, (), (), (), (), ())

    def apply(self, plan: Plan) -> Sequence[ActionOutcome]:
        del plan
        return ()


class _Moody(PolicyBase):
    """A periodic policy whose wish for a cycle depends on its state and the time (like geo's): it wants one when
    ``now`` reaches a deadline it drew at its last decision, or every ``every`` ticks while it has "work"."""

    def __init__(self, cycle: int, every: int) -> None:
        self.cycle_s = cycle
        self.every = every
        self.deadline = 10**18
        self.busy = True
        self.last = -10**9
        self.seen: list[tuple[int, int]] = []

    def wants_cycle(self, now_s: int) -> bool:  # not monotone in time: a tick may want a cycle, the next not
        return now_s >= self.deadline or (self.busy and (now_s - self.last) % (self.every * self.cycle_s) == 0)

    def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
        now = snapshot.now_s
        self.seen.append((now, int(rng.integers(1000))))
        self.last = now
        self.busy = bool(rng.integers(2))
        self.deadline = now + int(rng.integers(1, 40 * self.cycle_s))
        return Plan()


def _decisions(clock_cls: type[KernelClock], cycle: int, every: int, requests: list[int], until: int
               ) -> list[tuple[int, int]]:
    k = Kernel()
    world = _Stub(k)
    pol = _Moody(cycle, every)
    loop = DecisionLoop([pol], world, world, clock_cls(k), _Sink(), seed=3)
    for t in requests:
        k.at(t, PRIO_JOB, loop.request)
    loop.start()
    k.run(until)
    return pol.seen


class _Sink:
    def emit(self, event: object) -> None:
        del event


@settings(max_examples=60, deadline=None)
@given(cycle=st.integers(1, 60), every=st.integers(1, 40),
       requests=st.lists(st.integers(0, 20_000), max_size=40), until=st.integers(1, 30_000))
def test_quiet_ticks_checked_ahead_decide_exactly_when_every_tick_woke(cycle: int, every: int, requests: list[int],
                                                                       until: int) -> None:
    eager = _decisions(_Eager, cycle, every, requests, until)
    exact = _decisions(KernelClock, cycle, every, requests, until)
    assert exact == eager  # the same instants, the same draws of the policy's generator


def test_quiet_ticks_are_not_kernel_events() -> None:
    k1, k2 = Kernel(), Kernel()
    for k, cls in ((k1, _Eager), (k2, KernelClock)):
        pol = _Moody(30, 30)
        pol.busy = False
        loop = DecisionLoop([pol], _Stub(k), _Stub(k), cls(k), _Sink(), seed=3)
        loop.start()
        k.run(86_400)
    assert k1.processed == 86_400 // 30
    assert k2.processed < k1.processed // 4


def _geo_small() -> str:
    return scenario([factory("a", nodes=16), factory("b", nodes=16, market="ERCOT")],
                    [job(f"j{i}", gpus=32 + 32 * (i % 3), work=f"{2 + i % 5}h", submit=f"{i * 23}min")
                     for i in range(24)], duration="2d", policy="geo",
                    failures={"rate_scale": 30.0, "planned": True})


def test_geo_twin_same_log_with_and_without_checking_ahead(monkeypatch: object) -> None:
    sc = parse_scenario(_geo_small())
    fast = run_twin(sc)
    import superfactory.sim.twin as twin_mod
    mp = monkeypatch
    mp.setattr(twin_mod, "KernelClock", _Eager)  # type: ignore[attr-defined]
    slow = run_twin(sc)
    assert event_log_digest(fast.events) == event_log_digest(slow.events)
    assert fast.decisions == slow.decisions
    assert fast.kernel_events < slow.kernel_events


def test_prune_removes_only_dead_entries_and_keeps_the_pop_order() -> None:
    rng = np.random.default_rng(5)
    k = Kernel()
    popped: list[int] = []

    def live(i: int) -> None:
        popped.append(i)

    def maybe(i: int) -> None:
        popped.append(i)

    for i in range(3000):
        fn = live if rng.random() < 0.5 else maybe
        k.at(int(rng.integers(0, 500)), int(rng.integers(0, 3)), fn, i)
    expect = [e[4][0] for e in sorted(k.heap) if e[3] is live or e[4][0] % 3]
    dead = sum(1 for e in k.heap if e[3] is maybe and e[4][0] % 3 == 0)
    removed = k.prune(maybe, lambda i: i % 3 == 0)
    assert removed == dead > 0
    assert len(k.heap) == 3000 - dead
    assert all(k.heap[(i - 1) // 2] <= k.heap[i] for i in range(1, len(k.heap)))  # a heap again
    k.run(10**6)
    assert popped == expect  # every other entry in its order
    assert k.prune(maybe, lambda i: True) == 0  # nothing left to remove


def test_dead_planned_stops_are_pruned_and_the_log_is_unchanged(monkeypatch: object) -> None:
    text = scenario([factory("a", nodes=64)],
                    [job(f"j{i}", gpus=64, work=f"{1 + i % 4}h", submit=f"{i * 7}min") for i in range(300)],
                    duration="3d", failures={"rate_scale": 300.0, "planned": True})
    sc = parse_scenario(text)
    pruned: list[int] = []
    real = fleet_mod.SimulatedFleet._prune_stops

    def spy(self: fleet_mod.SimulatedFleet) -> None:
        before = len(self._heap)
        real(self)
        pruned.append(before - len(self._heap))
        self._prune_at = 0  # prune again at the next start: every stop scheduled is tested as early as can be

    mp = monkeypatch
    mp.setattr(fleet_mod, "_PRUNE_MIN", 64)  # type: ignore[attr-defined]
    mp.setattr(fleet_mod.SimulatedFleet, "_prune_stops", spy)  # type: ignore[attr-defined]
    fast = run_twin(sc, policy="greedy")
    mp.setattr(fleet_mod, "_PRUNE_MIN", 10**9)  # type: ignore[attr-defined]
    plain = run_twin(sc, policy="greedy")
    assert sum(pruned) > 0
    assert any(e.kind is EventKind.JOB_PLANNED_STOP for e in plain.events)  # live stops stayed and happened
    assert event_log_digest(fast.events) == event_log_digest(plain.events)
    assert fast.kernel_events < plain.kernel_events
