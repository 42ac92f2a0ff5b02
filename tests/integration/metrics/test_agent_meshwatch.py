"""What an agent reads of its jobs' checkpoint replication from the targets (agent/meshwatch.py), checked against
real mesh saves: a save held mid-write shows its fragment uploads per site and a growing quorum wait; a finished
one shows none, and its facts (bytes per site, time to quorum) agree with the mesh's own receipt."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from superfactory.agent.meshconf import StorageTarget, job_mesh_dict, write_job_mesh_config
from superfactory.agent.meshwatch import checkpoint_facts, local_root, mesh_status
from superfactory.mesh import CheckpointMesh, load_config

SITES = ("texas", "virginia", "ohio")


def _mesh(root: Path, job_id: str) -> tuple[CheckpointMesh, list[StorageTarget]]:
    targets = [StorageTarget(f"{s}-a", str(root / s / "a"), f"region-{i}", "US", site=s) for i, s in enumerate(SITES)]
    for tg in targets:
        Path(tg.url).mkdir(parents=True)
    cfg = write_job_mesh_config(root / "mesh.yaml", job_mesh_dict(job_id, targets, root / "keys.json", fsync=False))
    return CheckpointMesh(load_config(cfg)), targets


def test_a_finished_save_leaves_no_queue_and_its_facts_match_the_receipt(tmp_path: Path) -> None:
    mesh, targets = _mesh(tmp_path, "7")
    since = time.time() - 5
    payload = np.arange(300_000, dtype=np.uint8)
    receipt = mesh.save(payload, 3)
    assert receipt.committed
    status = mesh_status(targets, {"7": since}, time.time())
    assert status == {"sync_queue": dict.fromkeys(SITES, 0), "quorum_wait_s": 0.0, "unreachable": []}
    facts = checkpoint_facts(targets, "7", receipt.checkpoint_id, 0.25)
    site_of = {tg.name: tg.site for tg in targets}
    expected: dict[str, float] = {}
    for frag in receipt.fragments:
        if frag.durable:
            expected[site_of[frag.target]] = expected.get(site_of[frag.target], 0.0) + frag.size_bytes
    assert facts["replicated_bytes"] == pytest.approx(expected)
    assert sum(expected.values()) == receipt.stored_bytes
    assert facts["duration_s"] == 0.25
    assert 0.0 <= facts["quorum_s"] <= receipt.total_s + 1.0  # file times have coarse resolution
    assert checkpoint_facts(targets, "7", "step-000000000099-deadbeef", None) == {
        "duration_s": None, "quorum_s": None, "replicated_bytes": {}}


def test_a_save_held_mid_write_shows_its_uploads_and_quorum_wait(tmp_path: Path) -> None:
    mesh, targets = _mesh(tmp_path, "8")
    since = time.time() - 5
    release, holding = threading.Event(), threading.Event()

    def hold(done_bytes: int) -> None:  # the encoder stops after the first stripe until released
        holding.set()
        assert release.wait(60)

    saver = threading.Thread(target=mesh.save, args=(np.zeros(2_000_000, dtype=np.uint8), 5),
                             kwargs={"progress": hold})
    saver.start()
    try:
        assert holding.wait(60)
        deadline = time.monotonic() + 30
        while True:  # every fragment thread has opened its temporary file
            status = mesh_status(targets, {"8": since}, time.time() + 40)
            if sum(status["sync_queue"].values()) == 3 or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        assert status["sync_queue"] == dict.fromkeys(SITES, 1)  # RS 2+1 over three sites: one fragment each
        assert status["quorum_wait_s"] >= 40.0  # INTENT written, no MANIFEST yet: waits since the save began
        assert mesh_status(targets, {"8": time.time() + 10}, time.time())["quorum_wait_s"] == 0.0  # older
        # incarnation's save: ignored
    finally:
        release.set()
        saver.join(60)
    after = mesh_status(targets, {"8": since}, time.time())
    assert after["sync_queue"] == dict.fromkeys(SITES, 0) and after["quorum_wait_s"] == 0.0


def test_unreachable_storage_and_remote_urls(tmp_path: Path) -> None:
    targets = [StorageTarget("t1", str(tmp_path / "here"), "r", "US", site="texas"),
               StorageTarget("t2", str(tmp_path / "gone"), "r", "US", site="virginia"),
               StorageTarget("t3", "s3://bucket/ckpt", "r", "US", site="ohio")]
    (tmp_path / "here").mkdir()
    status = mesh_status(targets, {}, time.time())
    assert status == {"sync_queue": {"texas": 0}, "quorum_wait_s": 0.0, "unreachable": ["virginia"]}
    assert local_root("file:///data/x") == Path("/data/x") and local_root("gs://b/x") is None
