from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from superfactory.errors import SimulationError
from superfactory.sim.kernel import Kernel


def test_order_is_time_then_priority_then_sequence() -> None:
    k = Kernel()
    seen: list[str] = []
    k.at(10, 5, seen.append, "t10-p5-a")
    k.at(10, 1, seen.append, "t10-p1")
    k.at(5, 9, seen.append, "t5")
    k.at(10, 5, seen.append, "t10-p5-b")
    k.run(100)
    assert seen == ["t5", "t10-p1", "t10-p5-a", "t10-p5-b"]
    assert k.now_s() == 100


def test_until_is_exclusive_and_clock_advances() -> None:
    k = Kernel()
    seen: list[int] = []
    k.at(50, 0, lambda: seen.append(k.now_s()))
    k.at(100, 0, lambda: seen.append(k.now_s()))
    k.run(100)
    assert seen == [50]
    k.run(101)
    assert seen == [50, 100]


def test_cannot_schedule_in_the_past() -> None:
    k = Kernel()
    k.run(10)
    with pytest.raises(SimulationError, match="before now"):
        k.at(5, 0, lambda: None)


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 3)), max_size=60))
def test_processing_order_is_sorted(items: list[tuple[int, int]]) -> None:
    k = Kernel()
    seen: list[tuple[int, int, int]] = []
    for seq, (t, p) in enumerate(items):
        k.at(t, p, seen.append, (t, p, seq))
    k.run(1000)
    assert seen == sorted(seen)
    assert k.processed == len(items)
