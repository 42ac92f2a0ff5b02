"""The job's assignment, its progress file, the lease file, an agent's config and how a spec becomes a plan."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from superfactory.agent.config import AgentConfigError, agent_config_from_dict, load_agent_config
from superfactory.agent.launch import LaunchError, plan_job, process_spec
from superfactory.agent.meshconf import StorageTarget, job_mesh_dict, lawful_targets
from superfactory.agent.runtime import (
    Assignment,
    AssignmentError,
    ProgressReader,
    ProgressWriter,
    lease_expired,
    write_lease,
)
from superfactory.mesh import config_from_dict


def test_assignment_round_trips_through_the_environment(tmp_path: Path) -> None:
    a = Assignment("42", 7, tmp_path / "mesh.yaml", tmp_path / "p.jsonl", attempt=2, rank=1, world_size=4,
                   resume_step=30, sovereignty=("EU_PERSONAL",), params={"steps": 9}, devices=("0:0", "0:1"),
                   lease_path=tmp_path / "lease.json")
    assert Assignment.from_env(a.to_env()) == a


@pytest.mark.parametrize(("change", "message"), [
    ({"SUPERFACTORY_FENCING_TOKEN": "x"}, "SUPERFACTORY_FENCING_TOKEN='x' is not an integer"),
    ({"SUPERFACTORY_FENCING_TOKEN": ""}, "SUPERFACTORY_FENCING_TOKEN is not set"),
    ({"SUPERFACTORY_RANK": "4"}, "must be < SUPERFACTORY_WORLD_SIZE=4"),
    ({"SUPERFACTORY_JOB_PARAMS": "[1]"}, "must be a JSON object"),
    ({"SUPERFACTORY_JOB_ID": ""}, "missing environment variable(s) SUPERFACTORY_JOB_ID"),
])
def test_a_bad_assignment_names_the_variable(tmp_path: Path, change: dict[str, str], message: str) -> None:
    env = Assignment("1", 1, tmp_path / "m.yaml", tmp_path / "p", world_size=4).to_env()
    with pytest.raises(AssignmentError) as exc:
        Assignment.from_env({**env, **change})
    assert message in str(exc.value)


def test_progress_reader_returns_whole_records_once(tmp_path: Path) -> None:
    a = Assignment("1", 3, tmp_path / "m.yaml", tmp_path / "p.jsonl")
    reader = ProgressReader(a.progress_path)
    assert reader.poll() == []
    w = ProgressWriter(a)
    w.emit("progress", step=1)
    with open(a.progress_path, "ab") as fh:
        fh.write(b'{"kind": "progress", "st')  # a record being written
    got = reader.poll()
    assert [(r["kind"], r["step"], r["fencing_token"]) for r in got] == [("progress", 1, 3)]
    with open(a.progress_path, "ab") as fh:
        fh.write(b'ep": 2}\nnot json\n')
    assert [r["step"] for r in reader.poll()] == [2]
    assert reader.poll() == []
    w.close()


def test_lease_file(tmp_path: Path) -> None:
    path = tmp_path / "lease.json"
    assert not lease_expired(path) and not lease_expired(None)  # no agent: never expired
    write_lease(path, time.time() + 60)
    assert not lease_expired(path)
    assert lease_expired(path, time.time() + 61)


def _cfg(tmp_path: Path, **extra: object) -> dict[str, object]:
    return {"factory": "texas", "token": "sft_x.y", "state_dir": "state", "keyring": "keys/k.json",
            "storage": [{"name": f"t{i}", "url": f"store/t{i}", "region": f"r{i % 3}"} for i in range(6)], **extra}


def test_agent_config_resolves_paths_and_reports_bad_fields(tmp_path: Path) -> None:
    cfg = agent_config_from_dict(_cfg(tmp_path), tmp_path)
    assert cfg.state_dir == tmp_path / "state" and cfg.storage[0].url == str(tmp_path / "store" / "t0")
    assert cfg.resolved_token() == "sft_x.y"
    (tmp_path / "a.yaml").write_text("factory: texas\ntimeouts: {hang_s: -1}\n")
    with pytest.raises(AgentConfigError, match=r"a.yaml: timeouts.hang_s: Input should be greater than 0"):
        load_agent_config(tmp_path / "a.yaml")
    with pytest.raises(AgentConfigError, match="node indices must be unique"):
        agent_config_from_dict(_cfg(tmp_path, nodes=[{"index": 0, "accelerator": "H100", "gpus": 8, "domain": 0}] * 2),
                               tmp_path)
    bare = agent_config_from_dict({"factory": "texas"}, tmp_path)
    env = os.environ.pop("SUPERFACTORY_AGENT_TOKEN", None)
    try:
        with pytest.raises(AgentConfigError, match="no agent token for factory texas"):
            bare.resolved_token()
    finally:
        if env is not None:
            os.environ["SUPERFACTORY_AGENT_TOKEN"] = env


def test_a_spec_becomes_steps_interval_and_a_seed_shared_by_every_incarnation(tmp_path: Path) -> None:
    cfg = agent_config_from_dict(_cfg(tmp_path, job={"seconds_per_step": 0.5}), tmp_path)
    a = {"job_id": 5, "fencing_token": 9, "spec": {"id": "llm", "work": "60s", "checkpoint": {"interval": 5}},
         "resume_checkpoint": {"step": 20, "progress_s": 10.0, "location": "mesh://…"}}
    plan = plan_job(cfg, a)
    assert (plan.steps, plan.checkpoint_interval_steps, plan.progress_s(20)) == (120, 10, 10.0)
    assert plan.seed == plan_job(cfg, {**a, "job_id": 6, "fencing_token": 10}).seed  # same spec id, same seed
    assert plan.seed != plan_job(cfg, {**a, "spec": {**a["spec"], "id": "other"}}).seed
    spec, job = process_spec(cfg, a, plan, attempt=1, devices=("0:0",))
    assert job.resume_step == 20 and job.fencing_token == 9 and job.params["steps"] == 120
    assert spec.env["SUPERFACTORY_FENCING_TOKEN"] == "9" and spec.log_path == cfg.state_dir / "jobs" / "5" / "job.log"
    mesh = config_from_dict(__import__("yaml").safe_load(job.mesh_config.read_text()), tmp_path)
    assert mesh.name == "job-5" and len(mesh.targets) == 6  # the same namespace at every site
    with pytest.raises(LaunchError, match="is compute"):
        plan_job(cfg, {**a, "spec": {**a["spec"], "work": "3.8e25FLOP"}})


def test_sovereignty_keeps_only_lawful_targets(tmp_path: Path) -> None:
    targets = [StorageTarget("us", "/u", "r0", "US"), StorageTarget("eu1", "/e1", "r1", "EU"),
               StorageTarget("eu2", "/e2", "r2", "EU")]
    rules = {"EU_PERSONAL": ["EU"]}
    assert [t.name for t in lawful_targets(targets, rules, ("EU_PERSONAL",))] == ["eu1", "eu2"]
    assert lawful_targets(targets, rules, ("UNKNOWN",)) == []  # an unknown class clears nothing
    assert len(lawful_targets(targets, rules, ())) == 3
    small = job_mesh_dict("j", targets, tmp_path / "k.json")
    assert small["data_classes"]["critical"]["k"] == 2  # three targets: RS(2+1) instead of RS(4+2)
    cfg = agent_config_from_dict(_cfg(tmp_path), tmp_path)
    with pytest.raises(LaunchError, match="none of the agent's 6 storage targets is cleared"):
        process_spec(cfg, {"job_id": 1, "fencing_token": 1, "spec": {"id": "x", "work": "1s",
                                                                      "sovereignty": ["EU_PERSONAL"]}},
                     plan_job(cfg, {"job_id": 1, "spec": {"id": "x", "work": "1s"}}), 0, ())
