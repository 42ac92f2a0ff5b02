"""Adaptive batch sizes: amortise the process start, cap the work per batch, shrink towards the end."""

from __future__ import annotations

from superfactory.sweep.engine import _Stats


def _stats(cell_s: float, startup_s: float) -> _Stats:
    return _Stats(batches=1, cell_s=cell_s * 4, cells=4, startup_s=startup_s, finished_batches=1)


def test_before_any_measurement_the_initial_size_is_used() -> None:
    assert _Stats().size(initial=4, left=64, slots=2) == 4


def test_short_runs_share_a_process_long_runs_get_one_each() -> None:
    # 1 s start, 2.5 s cells: 5 % share needs ceil(1 / 0.125) = 8 cells
    assert _stats(2.5, 1.0).size(initial=4, left=200, slots=2) == 8
    assert _stats(0.01, 1.0).size(initial=4, left=10_000, slots=2) == 64  # capped at MAX_BATCH
    assert _stats(120.0, 1.0).size(initial=4, left=200, slots=2) == 1
    assert _stats(20.0, 5.0).size(initial=4, left=200, slots=2) == 3  # capped at a minute of work


def test_batches_shrink_towards_the_end() -> None:
    s = _stats(0.5, 1.0)
    assert [s.size(initial=4, left=left, slots=2) for left in (40, 12, 4, 1)] == [10, 3, 1, 1]
