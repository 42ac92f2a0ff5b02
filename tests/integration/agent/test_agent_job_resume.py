"""The example job, killed with SIGKILL mid-interval and restarted, ends bit-identical to a failure-free run;
SIGTERM checkpoints first; a superseded (zombie) process's late commit is refused by the mesh."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import torch

from superfactory.agent.runtime import EXIT_STOPPED
from superfactory.mesh import CheckpointMesh, load_config
from superfactory.mesh.torch_state import state_dict_from_bytes


def _final_state(mesh_config: Path) -> dict[str, Any]:
    restored = CheckpointMesh(load_config(mesh_config)).restore()
    return state_dict_from_bytes(restored.data)


def test_sigkill_mid_interval_then_resume_is_bit_identical(start_job: Any, reference_digest: Any,
                                                           job_params: dict[str, Any]) -> None:
    first = start_job("j", 1)
    first.wait_for(lambda r: r["kind"] == "checkpoint" and r["step"] == 10)
    first.wait_for(lambda r: r["kind"] == "progress" and r["step"] == 15)  # middle of the 10..20 interval
    first.proc.send_signal(signal.SIGKILL)
    assert first.finish() == -signal.SIGKILL
    assert not any(r["kind"] == "checkpoint" and r["step"] == 20 for r in first.records)

    second = start_job("j", 2)
    started = second.wait_for(lambda r: r["kind"] == "started")
    assert started["step"] == 10 and started["restored_checkpoint"].startswith("step-000000000010-")
    assert second.finish() == 0, second.stderr()
    done = [r for r in second.records if r["kind"] == "completed"]
    assert done[0]["step"] == job_params["steps"]
    assert done[0]["state_sha256"] == reference_digest
    # and tensor by tensor, from the final checkpoints in the two meshes
    a, b = _final_state(reference_digest.mesh_config), _final_state(second.assignment.mesh_config)
    assert a["step"] == b["step"] == job_params["steps"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    for index, slots in a["optim"]["state"].items():
        for key, value in slots.items():
            assert torch.equal(value, b["optim"]["state"][index][key]), (index, key)
    assert torch.equal(a["rng"], b["rng"])


def test_sigterm_checkpoints_the_current_step_and_exits_stopped(start_job: Any, reference_digest: Any) -> None:
    first = start_job("t", 1)
    first.wait_for(lambda r: r["kind"] == "progress" and r["step"] == 13)
    first.proc.send_signal(signal.SIGTERM)
    assert first.finish() == EXIT_STOPPED
    kinds = [r["kind"] for r in first.records]
    assert kinds[-2:] == ["stopping", "checkpoint"]
    stopped_at = first.records[-1]["step"]
    assert stopped_at % 10 != 0  # the stop checkpoint is off the interval: nothing was lost
    second = start_job("t", 2)
    assert second.wait_for(lambda r: r["kind"] == "started")["step"] == stopped_at
    assert second.finish() == 0
    assert second.records[-1]["state_sha256"] == reference_digest


def test_zombie_process_cannot_commit_after_its_successor_started(start_job: Any, job_params: dict[str, Any]) -> None:
    zombie = start_job("z", 1, dict(job_params, step_sleep_s=0.05))
    zombie.wait_for(lambda r: r["kind"] == "checkpoint" and r["step"] == 10)
    zombie.proc.send_signal(signal.SIGSTOP)  # e.g. partitioned: its lease expires, the job is placed again
    successor = start_job("z", 2, dict(job_params, step_sleep_s=0.05))
    successor.wait_for(lambda r: r["kind"] == "started")
    zombie.proc.send_signal(signal.SIGCONT)
    fenced = zombie.wait_for(lambda r: r["kind"] == "fenced")
    assert "older than the mesh's fence 2" in fenced["error"]
    assert zombie.finish() == 3
    mine = [r for r in successor.records if r["pid"] == successor.proc.pid]
    assert all(r["fencing_token"] == 2 for r in mine)
    assert successor.finish() == 0
    mesh = CheckpointMesh(load_config(successor.assignment.mesh_config))
    tokens = {c.step: mesh.catalog.load(c.checkpoint_id, mesh.keys)[0].metadata["fencing_token"]
              for c in mesh.list()}
    assert all(tok == 2 for step, tok in tokens.items() if step > 10), tokens
