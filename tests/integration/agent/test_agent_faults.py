"""Real processes, real faults: a control plane, three agents and the example job. For each fault kind —
kill -9 the job, kill -9 its agent, kill -9 the control plane, cut the agent's heartbeats past the lost timeout,
fail the job's node, hang the job (SIGSTOP) — injected in the middle of a checkpoint interval (10 steps), the
job completes with a final state (parameters and AdamW state, SHA-256) bit-identical to a failure-free run of
the same spec, and the process table never shows two live processes of the job."""

from __future__ import annotations

from typing import Any

import pytest

from superfactory.agent.drills import DRILL_JOB, FAULT_KINDS, reference_run, run_drill


@pytest.fixture(scope="module")
def reference(fleet: Any) -> str:
    return reference_run(fleet, DRILL_JOB)


@pytest.mark.parametrize("kind", FAULT_KINDS)
def test_fault_mid_interval_recovers_bit_identical(fleet: Any, reference: str, kind: str) -> None:
    result = run_drill(fleet, kind, DRILL_JOB)
    assert result.state == "succeeded", result
    assert result.digest == reference, result
    assert fleet.watch.max_live.get(str(result.job_id), 0) == 1, (fleet.watch.max_live, result)
    if kind in ("job", "node", "hang"):  # a new incarnation resumed from the last committed checkpoint
        assert len(result.tokens) == 2 and result.resumed_step == result.fault_step // 10 * 10, result
        assert 0 < result.lost_steps < 10
    elif kind == "heartbeat":  # the cut-off incarnation checkpointed when its lease ran out: nothing lost
        assert len(result.tokens) == 2 and len(result.sites) == 2, result
        assert result.resumed_step is not None and result.resumed_step > result.fault_step, result
    else:  # agent or control plane killed: the job never stopped
        assert len(result.tokens) == 1 and result.resumed_step is None and result.lost_steps == 0, result
