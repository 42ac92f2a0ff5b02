"""A save killed with SIGKILL at random points leaves the previous checkpoint restorable and the torn one
invisible (or listed as incomplete) — tested with a real child process writing to real directories."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from superfactory.mesh import CheckpointMesh, IncompleteCheckpointError, load_config

CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from superfactory.mesh import CheckpointMesh, load_config

    mesh = CheckpointMesh(load_config(sys.argv[1]))
    step = int(sys.argv[2])
    while True:
        data = np.random.default_rng(step).integers(0, 256, 3 * 2**20 + step, dtype=np.uint8)
        mesh.save(data, step=step)
        print(step, flush=True)
        step += 1
    """
)


def _payload(step: int) -> bytes:
    return np.random.default_rng(step).integers(0, 256, 3 * 2**20 + step, dtype=np.uint8).tobytes()


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    regions = ("eu-west", "eu-central", "eu-north")
    raw = {
        "name": "crash",
        "chunk_bytes": 65536,
        "fsync": False,  # SIGKILL kills the process, not the kernel: the page cache survives it
        "keyring": {"path": "keyring.json"},
        "audit_log": "audit.jsonl",
        "tiers": [{"name": "nvme"}],
        "targets": [
            {
                "name": f"t{i}",
                "url": f"sites/t{i}",
                "region": regions[i % 3],
                "jurisdiction": "EU",
                "tier": "nvme",
            }
            for i in range(6)
        ],
    }
    path = tmp_path / "mesh.yaml"
    path.write_text(yaml.safe_dump(raw))
    (tmp_path / "child.py").write_text(CHILD)
    return path


def test_sigkill_mid_save_never_corrupts_what_restore_returns(config_path: Path) -> None:
    rng = random.Random(1234)
    next_step = 1
    torn_rounds = 0
    for _round in range(6):
        child = subprocess.Popen(
            [sys.executable, str(config_path.parent / "child.py"), str(config_path), str(next_step)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        committed_line = child.stdout.readline()  # one full save committed in this round
        assert committed_line.strip() == str(next_step), committed_line
        time.sleep(rng.uniform(0.0, 0.08))  # then kill it somewhere inside a later save
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()

        mesh = CheckpointMesh(load_config(config_path))
        committed = mesh.list()
        assert committed, "the save that reported success must be listed"
        newest = committed[-1]
        restored = mesh.restore()
        assert restored.manifest.step == newest.step
        assert restored.tobytes() == _payload(newest.step)
        torn = [i for i in mesh.list(include_incomplete=True) if i.state != "committed"]
        torn_rounds += bool(torn)
        for info in torn:
            assert info.state == "incomplete"
            assert info.step > newest.step
            with pytest.raises(IncompleteCheckpointError):
                mesh.restore(checkpoint_id=info.checkpoint_id)
        # every committed checkpoint (not only the newest) is intact
        for info in committed:
            assert mesh.restore(checkpoint_id=info.checkpoint_id).tobytes() == _payload(info.step)
        mesh.gc(keep=1, incomplete_grace_s=0.0)
        assert [i.state for i in mesh.list(include_incomplete=True)] == ["committed"]
        next_step = newest.step + 1
    # the kill points are random, but with ~5 saves per 80 ms most rounds tear a save in flight
    assert torn_rounds >= 1
