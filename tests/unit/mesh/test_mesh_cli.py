"""The ``ckpt`` CLI end to end on directory targets: save, ls, restore, verify/repair, gc, rotate, shred."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from conftest import mesh_dict
from superfactory.cli.ckpt import app

runner = CliRunner()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mesh.yaml"
    path.write_text(yaml.safe_dump(mesh_dict()))
    return path


def _run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_save_ls_restore_verify_roundtrip(config: Path, tmp_path: Path) -> None:
    src = tmp_path / "state.bin"
    src.write_bytes(os.urandom(50_000))
    code, stdout, _ = _run("save", str(src), "--step", "7", "-c", str(config), "--json")
    assert code == 0, stdout
    receipt = json.loads(stdout)
    assert receipt["committed"] and receipt["step"] == 7 and len(receipt["fragments"]) == 6
    code, stdout, _ = _run("ls", "-c", str(config), "--json")
    assert [c["step"] for c in json.loads(stdout)] == [7]
    out = tmp_path / "restored.bin"
    code, stdout, _ = _run("restore", "-c", str(config), "--out", str(out))
    assert code == 0 and out.read_bytes() == src.read_bytes()
    frag = Path(receipt["fragments"][2]["path"])
    (tmp_path / "sites" / receipt["fragments"][2]["target"] / frag).unlink()
    code, stdout, _ = _run("verify", "-c", str(config))
    assert code == 1 and "missing" in stdout
    code, stdout, _ = _run("verify", "-c", str(config), "--repair")
    assert code == 0 and "repaired" in stdout
    code, _, _ = _run("verify", "-c", str(config))
    assert code == 0


def test_keys_rotate_shred_and_gc(config: Path, tmp_path: Path) -> None:
    src = tmp_path / "state.bin"
    src.write_bytes(b"abc")
    assert _run("save", str(src), "--step", "1", "-c", str(config))[0] == 0
    code, stdout, _ = _run("ls", "-c", str(config), "--keys", "--json")
    old_key = json.loads(stdout)[0]["id"]
    assert _run("rotate-keys", "-c", str(config))[0] == 0
    assert _run("save", str(src), "--step", "2", "-c", str(config))[0] == 0
    code, stdout, _ = _run("shred", "-c", str(config), "--key", old_key, "--yes")
    assert code == 0 and "1 checkpoint(s) are now unrecoverable" in stdout
    code, _, stderr = _run("restore", "-c", str(config), "--step", "1", "--out", str(tmp_path / "x"))
    assert code == 2 and "crypto-shredded" in stderr and "Traceback" not in stderr
    assert _run("gc", "-c", str(config), "--keep", "1")[0] == 0
    code, stdout, _ = _run("ls", "-c", str(config), "--json")
    assert [c["step"] for c in json.loads(stdout)] == [2]


def test_errors_are_one_paragraph_and_exit_2(config: Path, tmp_path: Path) -> None:
    code, _, stderr = _run("restore", "-c", str(config), "--out", str(tmp_path / "x"))
    assert code == 2 and "no committed checkpoint" in stderr and "Traceback" not in stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("tiers: [{name: nvme, interval_steps: 0}]\ntargets: []\n")
    code, _, stderr = _run("ls", "-c", str(bad))
    assert code == 2 and "interval_steps" in stderr
    code, _, stderr = _run("save", str(tmp_path / "nope.bin"), "--step", "1", "-c", str(config))
    assert code == 2 and "cannot read" in stderr
    code, _, stderr = _run("save", str(config), "--step", "1", "-c", str(config), "--sovereignty", "US_ONLY")
    assert code == 2 and "Nothing was written" in stderr
