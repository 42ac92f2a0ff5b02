"""Strict validation at every entry point (library and CLI), unknown entries on a target, restored file modes,
and ``--json`` on every ckpt command printing pure JSON."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import mesh_dict
from superfactory.mesh import (
    CheckpointMesh,
    InvalidRequestError,
    MeshConfigError,
    config_from_dict,
)
from superfactory.mesh.naming import MAX_STEP

runner = CliRunner()
DATA = os.urandom(5000)


def _cli(*args: str) -> tuple[int, str, str]:
    from superfactory.cli.ckpt import app

    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mesh.yaml"
    path.write_text(yaml.safe_dump(mesh_dict()))
    return path


@pytest.mark.parametrize("name", ["..", ".", "a/b", "a\0b", "", "a\\b", "x" * 129, "-rf", "tab\there"])
def test_bad_mesh_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(MeshConfigError, match="mesh name"):
        config_from_dict(mesh_dict(name=name), tmp_path)
    assert not (tmp_path / "sites").exists()


def test_bad_mesh_names_in_a_config_file_exit_2_without_traceback(tmp_path: Path) -> None:
    for name in ("..", "a/b", "a\0b", ""):
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(mesh_dict(name=name)))
        code, _, stderr = _cli("ls", "-c", str(path))
        assert code == 2 and "mesh name" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("step", [-5, -1, MAX_STEP + 1, 10**30, True, 1.5, "7"])
def test_bad_steps_are_refused_before_anything_is_written(mesh: CheckpointMesh, tmp_path: Path, step: object) -> None:
    with pytest.raises(InvalidRequestError, match="step"):
        mesh.save(DATA, step=step)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError):
        mesh.save_async(DATA, step=step)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError):
        mesh.restore(step=step)  # type: ignore[arg-type]
    with pytest.raises(InvalidRequestError):
        mesh.verify(step=step)  # type: ignore[arg-type]
    assert not (tmp_path / "sites").exists() or not any((tmp_path / "sites").rglob("frag-*"))
    mesh.close()


def test_the_largest_step_and_step_zero_round_trip(mesh: CheckpointMesh) -> None:
    mesh.save(DATA, step=0)
    mesh.save(DATA[::-1], step=MAX_STEP)
    assert [i.step for i in mesh.list()] == [0, MAX_STEP]
    assert mesh.restore().tobytes() == DATA[::-1]
    assert mesh.restore(step=0).tobytes() == DATA


def test_bad_arguments_on_the_cli_exit_2(config: Path, tmp_path: Path) -> None:
    src = tmp_path / "state.bin"
    src.write_bytes(DATA)
    cases = [
        ("save", str(src), "--step", "-5", "-c", str(config)),
        ("save", str(src), "--step", str(10**13), "-c", str(config)),
        ("restore", "-c", str(config), "--out", str(tmp_path / "o"), "--step", "-1"),
        ("restore", "-c", str(config), "--out", str(tmp_path / "o"), "--id", "../../etc"),
        ("restore", "-c", str(config), "--out", str(tmp_path / "o"), "--mode", "999"),
        ("verify", "-c", str(config), "--id", "step-1"),
        ("shred", "-c", str(config), "--id", "../x", "--yes"),
        ("save", str(src), "--step", "1", "-c", str(config), "--fencing-token", "-3"),
    ]
    for args in cases:
        code, _, stderr = _cli(*args)
        assert code == 2 and "Traceback" not in stderr, (args, stderr)
    assert not list((tmp_path / "sites").rglob("frag-*")) if (tmp_path / "sites").exists() else True


def test_unknown_entries_are_reported_never_fatal(mesh: CheckpointMesh, tmp_path: Path) -> None:
    kept = mesh.save(DATA, step=1).checkpoint_id
    newest = mesh.save(DATA[::-1], step=2).checkpoint_id
    root = tmp_path / "sites" / "t1" / "test"
    (root / "step--00000000005-abcd1234").mkdir()  # what `save --step -5` used to commit
    (root / "step-xyz").mkdir()
    (root / "junk").write_bytes(b"?")
    (root / "step-000000000009-deadbeef").write_bytes(b"a file where a directory should be")
    (root / newest / "notes.txt").write_bytes(b"stray")
    assert [i.checkpoint_id for i in mesh.list()] == [kept, newest]
    notes = " ".join(mesh.catalog.notes)
    assert "step-xyz" in notes and "junk" in notes and "notes.txt" in notes and "step--00000000005" in notes
    assert mesh.restore().tobytes() == DATA[::-1]
    assert mesh.verify().restorable and "junk" in " ".join(mesh.verify().notes)
    assert mesh.gc(keep=1, incomplete_grace_s=0.0).deleted == (kept,)
    assert mesh.rotate_keys(rewrap=True).complete
    mesh.shred_checkpoint(newest)
    assert (root / "junk").exists()  # reported, never touched


def test_restored_files_are_private_by_default_or_get_the_mode_asked(config: Path, tmp_path: Path) -> None:
    src = tmp_path / "state.bin"
    src.write_bytes(DATA)
    assert _cli("save", str(src), "--step", "3", "-c", str(config))[0] == 0
    old = os.umask(0o022)
    try:
        out = tmp_path / "restored.bin"
        code, _, _ = _cli("restore", "-c", str(config), "--out", str(out))
        assert code == 0 and stat.S_IMODE(out.stat().st_mode) == 0o600 and out.read_bytes() == DATA
        code, _, _ = _cli("restore", "-c", str(config), "--out", str(out), "--mode", "640")
        assert code == 0 and stat.S_IMODE(out.stat().st_mode) == 0o640
    finally:
        os.umask(old)
    code, _, stderr = _cli("restore", "-c", str(config), "--out", str(tmp_path / "no" / "dir" / "x"))
    assert code == 2 and "cannot write" in stderr and "Traceback" not in stderr
    (tmp_path / "a-dir").mkdir()
    code, _, stderr = _cli("restore", "-c", str(config), "--out", str(tmp_path / "a-dir"))
    assert code == 2 and "cannot write" in stderr
    assert not list(tmp_path.glob(".*partial*"))


def test_every_ckpt_command_prints_pure_json(config: Path, tmp_path: Path) -> None:
    src = tmp_path / "state.bin"
    src.write_bytes(DATA)
    docs = {}
    for step in ("1", "2"):
        code, stdout, _ = _cli("save", str(src), "--step", step, "-c", str(config), "--json")
        assert code == 0
        docs["save" + step] = json.loads(stdout)
    out = tmp_path / "r.bin"
    runs = {
        "restore": ("restore", "-c", str(config), "--out", str(out), "--step", "1", "--json"),
        "ls": ("ls", "-c", str(config), "--json"),
        "keys": ("ls", "-c", str(config), "--keys", "--json"),
        "verify": ("verify", "-c", str(config), "--json"),
        "rotate": ("rotate-keys", "-c", str(config), "--rewrap", "--json"),
        "gc": ("gc", "-c", str(config), "--keep", "1", "--json"),
    }
    for key, args in runs.items():
        code, stdout, stderr = _cli(*args)
        assert code == 0, (key, stderr)
        docs[key] = json.loads(stdout)
    assert docs["restore"]["step"] == 1 and docs["restore"]["mode"] == "0600" and out.read_bytes() == DATA
    assert docs["verify"]["healthy"] and docs["rotate"]["complete"] and len(docs["gc"]["deleted"]) == 1
    old_key = docs["keys"][0]["id"]
    code, stdout, _ = _cli("shred", "-c", str(config), "--key", old_key, "--yes", "--json")
    assert code == 0 and json.loads(stdout)["unrecoverable"] == []
    code, stdout, _ = _cli("shred", "-c", str(config), "--id", docs["save2"]["checkpoint_id"], "--yes", "--json")
    assert code == 0 and json.loads(stdout)["unrecoverable"] == [docs["save2"]["checkpoint_id"]]
