"""The twin holds Python's cyclic collector back during a run and gives it back as it found it (sim/collector.py)."""

from __future__ import annotations

import gc

import pytest

from superfactory.scenario.loader import load_scenario
from superfactory.sim.collector import RUN_THRESHOLDS, quiet_collector
from superfactory.sim.fleet import SimulatedFleet
from superfactory.sim.kernel import Kernel
from superfactory.sim.twin import run_twin


def _gc_state() -> tuple[tuple[int, ...], int, bool]:
    return gc.get_threshold(), gc.get_freeze_count(), gc.isenabled()


def test_run_twin_restores_the_collector_and_holds_it_back_meanwhile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SUPERFACTORY_RUN_GC", raising=False)
    sc = load_scenario("llama3-405b")
    old = gc.get_threshold()
    gc.set_threshold(700, 9, 11)  # something the run cannot guess
    try:
        before = _gc_state()
        seen: list[tuple[tuple[int, ...], int, bool]] = []
        result = run_twin(sc, on_progress=lambda now, until: seen.append(
            (gc.get_threshold(), gc.get_freeze_count(), gc.isenabled())))
        assert _gc_state() == before
    finally:
        gc.set_threshold(*old)
    assert result.kernel_events > 4096  # on_progress ran inside the kernel loop, not only at the end
    inside = seen[:-1]
    assert inside and all(t == RUN_THRESHOLDS for t, _, _ in inside)
    assert all(frozen > 0 for _, frozen, _ in inside)  # the scenario and the rest of the heap were frozen
    assert not any(enabled for _, _, enabled in inside)  # the collector paused (session 7)


def test_a_disabled_collector_stays_disabled_and_the_runs_objects_go_to_the_oldest_generation() -> None:
    """A caller that disabled the collector finds it disabled after a run; what a run keeps leaves the young
    generations untraversed (moved to the oldest one) and nothing stays frozen."""
    sc = load_scenario("llama3-405b")
    before = _gc_state()
    gc.disable()
    try:
        result = run_twin(sc)
        assert not gc.isenabled()
        assert gc.get_freeze_count() == before[1]
        # the run's ~20k events are kept (tracked) but not young: no young collection will traverse them
        assert len(result.events) > 10_000 and gc.is_tracked(result.events[-1])
        assert len(gc.get_objects(generation=0)) < 10_000
    finally:
        if before[2]:
            gc.enable()
    assert _gc_state() == before


def test_collector_is_restored_when_the_run_fails() -> None:
    sc = load_scenario("llama3-405b")
    before = _gc_state()

    def boom(now: int, until: int) -> None:
        raise RuntimeError("progress bar broke")

    with pytest.raises(RuntimeError, match="progress bar broke"):
        run_twin(sc, on_progress=boom)
    assert _gc_state() == before


def test_nested_pauses_restore_once_and_keep_a_callers_frozen_objects() -> None:
    before = _gc_state()
    gc.freeze()  # a caller (e.g. a server after start-up) froze its own heap
    assert gc.get_freeze_count() > 0
    try:
        with quiet_collector():
            assert gc.get_threshold() == RUN_THRESHOLDS and not gc.isenabled()
            with quiet_collector():
                assert gc.get_threshold() == RUN_THRESHOLDS
            assert gc.get_threshold() == RUN_THRESHOLDS and not gc.isenabled()  # the outer pause stays in force
        assert gc.get_threshold() == before[0]
        assert gc.get_freeze_count() > 0  # not unfrozen: this pause did not freeze them
    finally:
        gc.unfreeze()
    assert _gc_state() == before


def test_a_runs_heap_is_reclaimed_after_it() -> None:
    """Nothing of a run outlives it: once its result is dropped, a collection reclaims the fleet, its kernel and
    its jobs (they refer to each other, so only the cyclic collector can), and nothing stays frozen."""
    sc = load_scenario("llama3-405b")

    def alive() -> int:
        # type(), not isinstance(): isinstance reads ``__class__``, which some tracked objects turn into a
        # deprecation warning (torch.distributed's reduce_op, once another test imported torch)
        return sum(1 for o in gc.get_objects() if type(o) in (SimulatedFleet, Kernel))

    gc.collect()
    base, frozen = alive(), gc.get_freeze_count()
    result = run_twin(sc)
    assert len(result.events) > 10_000
    del result
    gc.collect()
    assert alive() == base
    assert gc.get_freeze_count() == frozen


def test_an_unknown_mode_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPERFACTORY_RUN_GC", "sometimes")
    with pytest.raises(ValueError, match="SUPERFACTORY_RUN_GC='sometimes'"), quiet_collector():
        pass
