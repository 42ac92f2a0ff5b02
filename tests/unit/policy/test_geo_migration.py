"""Migration governor: once per hour per job, quota with a 20 % emergency reserve, exponential backoff."""

from __future__ import annotations

import numpy as np

from superfactory.policy.migration import MigrationGovernor


def test_once_per_hour_and_quota_reserve() -> None:
    g = MigrationGovernor(quota_share=0.25)
    assert g.may_move("j", 0)
    assert g.quota_left_gpus("d", 1000, 0, emergency=False) == 200.0
    assert g.quota_left_gpus("d", 1000, 0, emergency=True) == 250.0
    g.record_move("j", "d", 150, 10)
    assert not g.may_move("j", 10 + 3599)
    assert g.may_move("j", 10 + 3600)
    assert g.quota_left_gpus("d", 1000, 20, emergency=False) == 50.0
    assert g.quota_left_gpus("d", 1000, 20, emergency=True) == 100.0
    assert g.quota_left_gpus("d", 1000, 10 + 3600, emergency=False) == 200.0  # window slid past


def test_backoff_mean_60s_and_doubling() -> None:
    rng = np.random.default_rng(0)
    first = []
    for k in range(4000):
        g = MigrationGovernor()
        first.append(g.refuse(f"j{k}", "d", 0, rng))
    assert 55 <= float(np.mean(first)) <= 65
    g = MigrationGovernor()
    d1 = np.mean([MigrationGovernor().refuse("j", "d", 0, rng) for _ in range(2000)])
    for _ in range(3):
        g.refuse("j", "d", 0, rng)
    assert g.backing_off("j", "d", 1)
    d4 = np.mean([_fourth(rng) for _ in range(2000)])
    assert d4 > 6 * d1  # 2**3 = 8x the mean after three earlier refusals


def _fourth(rng: np.random.Generator) -> int:
    g = MigrationGovernor()
    for _ in range(3):
        g.refuse("j", "d", 0, rng)
    return g.refuse("j", "d", 0, rng)


def test_a_job_bigger_than_the_quota_may_move_alone() -> None:
    g = MigrationGovernor(quota_share=0.25)
    assert g.quota_left_gpus("d", 64, 0, emergency=False, largest_job_gpus=64) == 64.0
    g.record_move("j", "d", 64, 0)
    assert g.quota_left_gpus("d", 64, 10, emergency=False, largest_job_gpus=64) == 0.0  # one per window
    assert g.quota_left_gpus("d", 64, 3600, emergency=False, largest_job_gpus=64) == 64.0
