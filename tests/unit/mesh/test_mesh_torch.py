"""PyTorch: train, save through the mesh (async), crash, restore — bit-identical to an uninterrupted run."""

from __future__ import annotations

import sys

import pytest

from superfactory.mesh import CheckpointMesh

torch = pytest.importorskip("torch")

from superfactory.mesh.torch_state import load_state_dict, save_state_dict  # noqa: E402


def _model() -> tuple[object, object]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    optim = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return model, optim


def _batches(n: int) -> list[tuple[object, object]]:
    gen = torch.Generator().manual_seed(1)
    return [(torch.randn(32, 8, generator=gen), torch.randn(32, 2, generator=gen)) for _ in range(n)]


def _train(model: object, optim: object, batches: list[tuple[object, object]]) -> None:
    for x, y in batches:
        optim.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optim.step()


def test_import_mesh_does_not_import_torch() -> None:
    import subprocess

    code = "import sys, superfactory.mesh; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_resume_after_crash_is_bit_identical(mesh: CheckpointMesh) -> None:
    batches = _batches(20)
    ref_model, ref_optim = _model()
    _train(ref_model, ref_optim, batches)

    model, optim = _model()
    _train(model, optim, batches[:10])
    state = {"model": model.state_dict(), "optim": optim.state_dict(), "step": 10, "note": ("resume", 1.5)}
    handle = save_state_dict(mesh, state, step=10, asynchronous=True)
    _train(model, optim, batches[10:12])  # training continues while the save finishes in the background
    assert handle.result(timeout=60).committed
    del model, optim  # "crash"

    model, optim = _model()
    loaded = load_state_dict(mesh)
    assert loaded["step"] == 10 and loaded["note"] == ("resume", 1.5)
    model.load_state_dict(loaded["model"])
    optim.load_state_dict(loaded["optim"])
    _train(model, optim, batches[10:])
    for a, b in zip(ref_model.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    ref_state, state_after = ref_optim.state_dict()["state"], optim.state_dict()["state"]
    for key, entry in ref_state.items():
        for name, value in entry.items():
            assert torch.equal(value, state_after[key][name]), (key, name)
    mesh.close()


def test_dtypes_shapes_and_shared_tensors_roundtrip(mesh: CheckpointMesh) -> None:
    shared = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    state = {
        "bf16": torch.randn(3, 5).to(torch.bfloat16),
        "i64": torch.arange(7),
        "bool": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.25, dtype=torch.float64),
        "empty": torch.empty(0, 4),
        "strided": torch.arange(20, dtype=torch.int16).reshape(4, 5).t(),
        "a": shared,
        "b": shared,
        "nested": [{"x": torch.ones(2, dtype=torch.uint8)}, None, "text"],
    }
    save_state_dict(mesh, state, step=1)
    out = load_state_dict(mesh, step=1)
    for key in ("bf16", "i64", "bool", "scalar", "empty", "strided", "a"):
        assert out[key].dtype == state[key].dtype and torch.equal(out[key], state[key]), key
    assert out["a"] is out["b"]
    assert torch.equal(out["nested"][0]["x"], state["nested"][0]["x"]) and out["nested"][1:] == [None, "text"]
