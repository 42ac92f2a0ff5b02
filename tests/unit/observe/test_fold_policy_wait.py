"""failure-ETTR (productive / time holding nodes) and the policy-wait share (time a started job spends not holding
nodes) from events, per job and GPU-weighted."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from superfactory.domain.events import Event, EventKind
from superfactory.observe.fold import fold_metrics


def test_policy_wait_and_failure_ettr_are_split() -> None:
    jobs = [SimpleNamespace(id="a", gpus=8), SimpleNamespace(id="b", gpus=16), SimpleNamespace(id="c", gpus=4)]
    ev = [
        Event(0, EventKind.JOB_PLACED, "a", "f"),
        Event(0, EventKind.JOB_PLACED, "b", "f"),
        Event(100, EventKind.JOB_PREEMPTED, "a", "f"),  # paused by the policy for 200 s
        Event(300, EventKind.JOB_PLACED, "a", "g"),
        Event(400, EventKind.JOB_COMPLETED, "a", "g", value=150.0),
        Event(400, EventKind.JOB_PROGRESS, "b", "f", value=300.0),
    ]
    m = fold_metrics(ev, jobs, 400)  # c never starts: in neither figure
    # a: holds 200 of 400 s, 150 productive; b: holds 400 of 400 s, 300 productive
    assert m["policy_wait_share"] == pytest.approx(1 - (8 * 200 + 16 * 400) / (8 * 400 + 16 * 400))
    assert m["failure_ettr"] == pytest.approx((8 * 150 + 16 * 300) / (8 * 200 + 16 * 400))
    assert m["policy_wait_share_job_mean"] == pytest.approx((0.5 + 0.0) / 2)
    assert m["failure_ettr_job_mean"] == pytest.approx((150 / 200 + 300 / 400) / 2)
    # the classic ETTR mixes both: productive over wall since first start
    assert m["ettr"] == pytest.approx((8 * 150 + 16 * 300) / (8 * 400 + 16 * 400))
