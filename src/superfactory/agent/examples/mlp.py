"""The built-in example job: a small MLP regression trained on CPU, checkpointed through the mesh.

Run by an agent as ``python -m superfactory.agent.examples.mlp`` with an assignment in the environment
(:mod:`superfactory.agent.runtime`). Everything that decides the result is deterministic: one CPU thread,
deterministic algorithms, the model initialised from ``seed``, the batch of step ``s`` generated from
``(seed, s)`` (so the data position is the step), dropout drawing from the global torch RNG whose state is
checkpointed. Therefore a run that is killed and resumed from its last committed checkpoint ends with
parameters and AdamW state bit-identical to an uninterrupted run with the same seed.

Job parameters (``SUPERFACTORY_JOB_PARAMS``, all optional):

* ``steps`` (200) — total optimizer steps; ``checkpoint_interval_steps`` (10) — save every N steps
* ``seed`` (0); ``batch_size`` (32); ``features`` (16); ``hidden`` (64); ``lr`` (0.01)
* ``step_sleep_s`` (0.0) — pause after each step (lets a demo or a test inject a fault mid-interval)
* ``tokens_per_sample`` (128) — what one sample counts for in the tokens/s figure

The job also stops (checkpoint first) when its agent's lease file (``SUPERFACTORY_LEASE_PATH``) expired: an
agent that died or was cut off stops renewing it shortly before the control plane gives the job to another
site, so the old incarnation is gone before the new one starts.

On start the job raises the mesh's fence to its fencing token (a stale placement exits with code 3), restores
the newest committed checkpoint (if any) and trains to ``steps``. SIGTERM: checkpoint the current step, report
``stopping`` and exit with :data:`~superfactory.agent.runtime.EXIT_STOPPED`. At the end it saves the final
checkpoint and reports ``completed`` with the SHA-256 of its final state (:func:`state_digest`).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from typing import Any

from superfactory.agent.runtime import (
    EXIT_STOPPED,
    Assignment,
    AssignmentError,
    ProgressWriter,
    StopFlag,
    lease_expired,
)

__all__ = ["DEFAULTS", "build", "main", "state_digest", "train_step"]

DEFAULTS: dict[str, Any] = {
    "steps": 200,
    "checkpoint_interval_steps": 10,
    "seed": 0,
    "batch_size": 32,
    "features": 16,
    "hidden": 64,
    "lr": 0.01,
    "step_sleep_s": 0.0,
    "tokens_per_sample": 128,
}

EXIT_FENCED = 3


def build(params: dict[str, Any]) -> tuple[Any, Any]:
    """The model and AdamW optimizer, initialised from ``params['seed']``; seeds the global RNG too."""
    import torch

    torch.manual_seed(int(params["seed"]))
    f, h = int(params["features"]), int(params["hidden"])
    model = torch.nn.Sequential(
        torch.nn.Linear(f, h), torch.nn.ReLU(), torch.nn.Dropout(0.1), torch.nn.Linear(h, h), torch.nn.ReLU(),
        torch.nn.Linear(h, 1),
    )
    optim = torch.optim.AdamW(model.parameters(), lr=float(params["lr"]))
    torch.manual_seed(int(params["seed"]) + 1)  # the training RNG (dropout), checkpointed with the state
    return model, optim


def batch(params: dict[str, Any], step: int) -> tuple[Any, Any]:
    """The batch of ``step``: a pure function of (seed, step), so the data position is the step."""
    import torch

    gen = torch.Generator().manual_seed(int(params["seed"]) * 1_000_003 + step)
    x = torch.randn(int(params["batch_size"]), int(params["features"]), generator=gen)
    y = torch.sin(x.sum(dim=1, keepdim=True)) + 0.1 * torch.randn(x.shape[0], 1, generator=gen)
    return x, y


def train_step(model: Any, optim: Any, params: dict[str, Any], step: int) -> float:
    """One optimizer step on the batch of ``step``; returns the loss."""
    import torch

    x, y = batch(params, step)
    optim.zero_grad(set_to_none=True)
    loss = torch.nn.functional.mse_loss(model(x), y)
    loss.backward()
    optim.step()
    return float(loss.detach())


def state_digest(model: Any, optim: Any) -> str:
    """SHA-256 over every parameter and every AdamW state tensor and step count, in a fixed order."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().view(torch.uint8).numpy().tobytes())
    optim_state = optim.state_dict()
    for index in sorted(optim_state["state"]):
        for key, value in sorted(optim_state["state"][index].items()):
            h.update(f"{index}.{key}".encode())
            if isinstance(value, torch.Tensor):
                h.update(value.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
            else:
                h.update(repr(value).encode())
    return h.hexdigest()


def _save(mesh: Any, assignment: Assignment, model: Any, optim: Any, step: int, out: ProgressWriter) -> None:
    import torch

    from superfactory.mesh.torch_state import save_state_dict

    t0 = time.monotonic()
    state = {"model": model.state_dict(), "optim": optim.state_dict(), "rng": torch.get_rng_state(),
             "step": step, "data_position": step, "job_id": assignment.job_id}
    receipt = save_state_dict(mesh, state, step, sovereignty=assignment.sovereignty,
                              fencing_token=assignment.fencing_token, metadata={"job_id": assignment.job_id})
    out.emit("checkpoint", step=step, checkpoint_id=receipt.checkpoint_id, payload_bytes=receipt.payload_bytes,
             save_s=round(time.monotonic() - t0, 4), durable=True)
    print(f"step {step}: checkpoint {receipt.checkpoint_id} committed ({receipt.payload_bytes} B, "
          f"{time.monotonic() - t0:.3f} s)", flush=True)


def run(assignment: Assignment) -> int:
    """Train under ``assignment``; returns the process exit code."""
    import torch

    from superfactory.mesh import CheckpointMesh, CheckpointNotFoundError, StaleFencingTokenError, load_config
    from superfactory.mesh.torch_state import state_dict_from_bytes

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    params = {**DEFAULTS, **assignment.params}
    stop = StopFlag().install()
    out = ProgressWriter(assignment)
    from superfactory.agent.kms import provider_from_env

    mesh = CheckpointMesh(load_config(assignment.mesh_config), keys=provider_from_env(
        assignment, on_wait=lambda why: out.emit("waiting", reason=why[:300])))
    try:
        mesh.raise_fence(assignment.fencing_token)
    except StaleFencingTokenError as exc:
        out.emit("fenced", error=str(exc), durable=True)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FENCED
    model, optim = build(params)
    start, restored = 0, None
    try:
        restored_ckpt = mesh.restore()
    except CheckpointNotFoundError:
        restored_ckpt = None
    if restored_ckpt is not None:
        state = state_dict_from_bytes(restored_ckpt.data)
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optim"])
        torch.set_rng_state(state["rng"].clone())
        start = int(state["data_position"])
        restored = restored_ckpt.manifest.checkpoint_id
    print(f"job {assignment.job_id} (fencing token {assignment.fencing_token}): "
          + (f"resumed from {restored} at step {start}" if restored else "fresh start"), flush=True)
    out.emit("started", step=start, restored_checkpoint=restored, resume_step_hint=assignment.resume_step,
             attempt=assignment.attempt, durable=True)
    steps, interval = int(params["steps"]), int(params["checkpoint_interval_steps"])
    tokens_per_step = int(params["batch_size"]) * int(params["tokens_per_sample"])
    t_start, tokens = time.monotonic(), 0
    step = start
    try:
        while step < steps:
            if not stop.requested and lease_expired(assignment.lease_path):
                stop.requested, stop.signal_name = True, "lease_expired"
            if stop.requested:
                print(f"stopping at step {step} ({stop.signal_name}): checkpoint first", flush=True)
                out.emit("stopping", step=step, reason=stop.signal_name, durable=True)
                _save(mesh, assignment, model, optim, step, out)
                return EXIT_STOPPED
            loss = train_step(model, optim, params, step)
            step += 1
            tokens += tokens_per_step
            out.emit("progress", step=step, tokens=tokens, loss=round(loss, 6),
                     tokens_per_s=round(tokens / max(time.monotonic() - t_start, 1e-9), 1))
            if step % interval == 0 or step == steps:
                _save(mesh, assignment, model, optim, step, out)
            if float(params["step_sleep_s"]) > 0 and step < steps:
                time.sleep(float(params["step_sleep_s"]))
    except StaleFencingTokenError as exc:
        out.emit("fenced", step=step, error=str(exc), durable=True)
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FENCED
    finally:
        mesh.close()
    digest = state_digest(model, optim)
    out.emit("completed", step=step, state_sha256=digest, durable=True)
    print(f"completed {step} steps; final state sha256 {digest}", flush=True)
    out.close()
    return 0


def main() -> None:
    """Entry point: parse the assignment (exit 2 with a message when it is invalid) and train."""
    try:
        assignment = Assignment.from_env()
    except AssignmentError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    code = run(assignment)
    sys.stdout.flush()
    sys.stderr.flush()
    # every report is written and every checkpoint committed by now; skip the interpreter's teardown of torch
    # (seconds on a loaded machine), which only delays the agent seeing the exit
    os._exit(code)


if __name__ == "__main__":
    main()
