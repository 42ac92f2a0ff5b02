"""Checkpoint-mesh throughput benchmark: one run, ratios against baselines measured in the same run.

Measures, on the same disk and the same state dict (default 1 GiB of float32 tensors):

* raw durable sequential write bandwidth (write 16 MiB blocks, then fsync);
* ``torch.save`` + fsync, and DCP ``save`` (one plain copy; DCP fsyncs its files);
* mesh save: RS(4+2) + AES-256-GCM to 6 local directory targets, with fsync (1.5× the bytes hit the disk);
* mesh restore (no fragment lost: no decoding) and restore with 2 of 6 fragments missing (decoding);
* async stall: mesh ``save_async`` vs DCP ``async_save`` (time until control returns to training);
* the cost of authentication on restore: manifest copies authenticated and cross-checked, the commit ledger
  read for rollback detection (``Restored.authenticate_s``), and an authenticated ``ls``;
* what the commit ledger adds to each save (lease, check, commit: two fsync-ed keyring rewrites).

Goals (issue 3): mesh input rate ≥ 70 % of raw bandwidth ÷ 1.5; mesh save ≤ 1.5 × DCP save time; mesh async
stall ≤ DCP async_save stall. Prints a table, writes benchmarks/results/mesh.json and the line
``mesh_save_efficiency=<mesh input rate / (raw bandwidth / 1.5)>``.

Usage: ``.venv/bin/python benchmarks/mesh_bench.py [--size 1GiB] [--dir /tmp/x]``.
Restores read what was just written, so they mostly come from the page cache (stated in the output).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

#: every save method runs this many times and reports its best (the same rule for all of them)
REPEATS = 3
RESULTS = Path(__file__).resolve().parent / "results" / "mesh.json"


def _parse_size(text: str) -> int:
    units = {"gib": 2**30, "mib": 2**20, "kib": 2**10, "gb": 10**9, "mb": 10**6, "b": 1}
    t = text.strip().lower()
    for suffix, mult in units.items():
        if t.endswith(suffix):
            return int(float(t[: -len(suffix)]) * mult)
    return int(t)


def _fsync_tree(path: Path) -> None:
    for p in path.rglob("*"):
        if p.is_file():
            fd = os.open(p, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)


def raw_write(path: Path, size: int, early_writeback: bool = False) -> float:
    """Seconds to write ``size`` bytes sequentially and fsync (optionally kicking writeback as the mesh does)."""
    from superfactory.mesh import backend

    block = np.random.default_rng(0).integers(0, 256, 16 * 2**20, dtype=np.uint8)
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    left = size
    done = 0
    while left > 0:
        n = min(left, block.size)
        os.write(fd, memoryview(block)[:n])
        if early_writeback and backend._SYNC_FILE_RANGE is not None:
            backend._SYNC_FILE_RANGE(fd, done, n, backend._SYNC_FILE_RANGE_WRITE)
        done += n
        left -= n
    os.fsync(fd)
    os.close(fd)
    return time.perf_counter() - t0


def make_state(size: int) -> dict[str, Any]:
    import torch

    n = 16
    per = size // n // 4
    gen = torch.Generator().manual_seed(0)
    return {"model": {f"layer{i}.weight": torch.rand(per, generator=gen) for i in range(n)}, "step": 1}


def mesh_config(root: Path, chunk_bytes: int) -> Any:
    from superfactory.mesh import config_from_dict

    regions = ("r0", "r1", "r2")
    return config_from_dict(
        {
            "name": "bench",
            "chunk_bytes": chunk_bytes,
            "fsync": True,
            "keyring": {"path": "keyring.json"},
            "audit_log": "audit.jsonl",
            "tiers": [{"name": "nvme"}],
            "targets": [
                {"name": f"t{i}", "url": f"t{i}", "region": regions[i % 3], "jurisdiction": "EU", "tier": "nvme"}
                for i in range(6)
            ],
        },
        root,
    )


def dcp_async_stall(state: dict[str, Any], path: Path) -> tuple[float, float]:
    """(stall_s, total_s) of DCP async_save; initialises a 1-process gloo group if DCP needs one."""
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    if not dist.is_initialized():
        store = dist.FileStore(str(path.parent / "pg-store"), 1)
        dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    t0 = time.perf_counter()
    future = dcp.async_save(state, checkpoint_id=str(path))
    stall = time.perf_counter() - t0
    future.result()
    return stall, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="1GiB", help="state dict size (default 1GiB; e.g. 128MiB for a quick run)")
    parser.add_argument("--dir", default=None, help="scratch directory on the disk to test (default: a temp dir)")
    parser.add_argument("--chunk-bytes", type=int, default=4 * 2**20, help="mesh chunk size (default 4 MiB)")
    parser.add_argument("--out", default=str(RESULTS), help="JSON results path")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed memory and disk warm-up")
    args = parser.parse_args()
    size = _parse_size(args.size)
    warnings.simplefilter("ignore")  # DCP warns about single-process use; irrelevant for timing

    import torch
    import torch.distributed.checkpoint as dcp

    from superfactory.mesh import CheckpointMesh
    from superfactory.mesh.erasure import isal_available
    from superfactory.mesh.torch_state import load_state_dict, save_state_dict

    scratch = Path(tempfile.mkdtemp(prefix="mesh-bench-", dir=args.dir))
    results: dict[str, Any] = {
        "size_bytes": size,
        "engine": "isal" if isal_available() else "numpy",
        "cores": os.cpu_count(),
    }
    try:
        if not args.no_warmup:
            # On a VM the first touch of guest memory and the first write to thin-provisioned blocks run at a
            # fraction of steady speed and would penalise whichever method runs first or writes most. Touch
            # 4x the state size of memory and write 2x to disk once, untimed, so every method meets the same
            # warm machine.
            warm = np.ones(4 * size, dtype=np.uint8)
            del warm
            raw_write(scratch / "warm.bin", 2 * size)
            (scratch / "warm.bin").unlink()
        # best of plain write+fsync and write with early writeback (the technique the mesh uses), twice each
        raw_write(scratch / "raw.bin", size)
        raw_runs = [raw_write(scratch / "raw.bin", size, early) for early in (False, True, False, True)]
        (scratch / "raw.bin").unlink()
        raw_s = min(raw_runs)
        raw_gbps = size / raw_s / 1e9
        results["raw_write"] = {"seconds": raw_s, "gbps": raw_gbps, "runs_s": raw_runs}

        state = make_state(size)
        actual = sum(t.numel() * t.element_size() for t in state["model"].values())
        results["state_bytes"] = actual

        torch_runs = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            with open(scratch / "torch.pt", "wb") as fh:
                torch.save(state, fh)
                fh.flush()
                os.fsync(fh.fileno())
            torch_runs.append(time.perf_counter() - t0)
            (scratch / "torch.pt").unlink()
        torch_s = min(torch_runs)
        results["torch_save_fsync"] = {"runs_s": torch_runs, "seconds": torch_s, "gbps": actual / torch_s / 1e9}

        dcp_runs = []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            dcp.save(state, checkpoint_id=str(scratch / "dcp"))
            dcp_runs.append(time.perf_counter() - t0)
            shutil.rmtree(scratch / "dcp")
        dcp_s = min(dcp_runs)
        results["dcp_save"] = {"runs_s": dcp_runs, "seconds": dcp_s, "gbps": actual / dcp_s / 1e9}

        mesh = CheckpointMesh(mesh_config(scratch / "mesh", args.chunk_bytes))
        mesh_runs = []
        for _ in range(REPEATS):
            mesh.gc(keep=1)
            receipt = save_state_dict(mesh, state, step=1)
            mesh_runs.append(receipt.total_s)
        mesh_s = min(mesh_runs)
        results["mesh_save"] = {
            "runs_s": mesh_runs,
            "seconds": mesh_s,
            "input_gbps": actual / mesh_s / 1e9,
            "stored_bytes": receipt.stored_bytes,
            "quorum_s": receipt.quorum_s,
            "disk_gbps": receipt.stored_bytes / mesh_s / 1e9,
        }

        restore_runs = []
        ok = True
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            loaded = load_state_dict(mesh, step=1)
            restore_runs.append(time.perf_counter() - t0)
            ok = ok and all(torch.equal(loaded["model"][k], v) for k, v in state["model"].items())
            del loaded
        restore_s = min(restore_runs)
        results["mesh_restore"] = {
            "runs_s": restore_runs,
            "seconds": restore_s,
            "gbps": actual / restore_s / 1e9,
            "bit_exact": ok,
        }
        # the cost of trusting nothing on the targets: on every restore each checkpoint's manifest copy is
        # authenticated (key unwrap + HMAC), cross-checked with its id, and the commit ledger is read for
        # rollback detection, before any fragment is read
        auth_runs = []
        listed_runs = []
        for _ in range(REPEATS):
            restored = mesh.restore(step=1)
            auth_runs.append(restored.authenticate_s)
            t0 = time.perf_counter()
            mesh.list()
            listed_runs.append(time.perf_counter() - t0)
            del restored
        results["mesh_restore_auth"] = {
            "authenticate_s_runs": auth_runs,
            "authenticate_s": min(auth_runs),
            "list_s": min(listed_runs),
            "share_of_restore": min(auth_runs) / restore_s,
        }
        # what the commit ledger adds to every save: lease taken, checked, then the commit (two fsync-ed
        # keyring rewrites), measured on the same disk as the fragments
        from superfactory.mesh.ledger import Lease, LeaseOwner

        ledger_runs = []
        for i in range(10):
            cid = f"step-{900 + i:012d}-00000000"
            t0 = time.perf_counter()
            mesh.keys.begin_save(Lease("bench-ledger", cid, 900 + i, LeaseOwner.current(), time.time() + 600))
            mesh.keys.check_lease("bench-ledger", cid, None)
            mesh.keys.commit_save("bench-ledger", cid, 900 + i, None)
            ledger_runs.append(time.perf_counter() - t0)
        results["mesh_ledger"] = {"per_save_s_runs": ledger_runs, "per_save_s": float(np.median(ledger_runs))}
        for name in ("t0", "t3"):  # lose two data fragments: every stripe is decoded
            shutil.rmtree(scratch / "mesh" / name / "bench")
        t0 = time.perf_counter()
        loaded = load_state_dict(mesh, step=1)
        degraded_s = time.perf_counter() - t0
        ok = all(torch.equal(loaded["model"][k], v) for k, v in state["model"].items())
        results["mesh_restore_2_lost"] = {"seconds": degraded_s, "gbps": actual / degraded_s / 1e9, "bit_exact": ok}
        del loaded
        mesh.gc(keep=1)

        stalls = []
        for step in (2, 3):  # the first async save allocates the snapshot buffer; the second reuses it
            handle = save_state_dict(mesh, state, step=step, asynchronous=True)
            stalls.append(handle.stall_s)
            handle.result()
            mesh.gc(keep=1)
        mesh.close()
        shutil.rmtree(scratch / "mesh")
        results["mesh_async"] = {"stall_first_s": stalls[0], "stall_steady_s": stalls[1]}

        dcp_stalls = []
        for i in (1, 2):
            stall, _total = dcp_async_stall(state, scratch / f"dcp-async-{i}")
            dcp_stalls.append(stall)
            shutil.rmtree(scratch / f"dcp-async-{i}")
        results["dcp_async"] = {"stall_first_s": dcp_stalls[0], "stall_steady_s": dcp_stalls[1]}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        try:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
        except Exception:
            pass

    target_gbps = raw_gbps / 1.5
    efficiency = results["mesh_save"]["input_gbps"] / target_gbps
    results["ratios"] = {
        "mesh_save_efficiency": efficiency,
        "mesh_save_time_vs_dcp": results["mesh_save"]["seconds"] / results["dcp_save"]["seconds"],
        "mesh_async_stall_vs_dcp": results["mesh_async"]["stall_steady_s"] / results["dcp_async"]["stall_steady_s"],
    }
    results["goals_met"] = {
        "efficiency>=0.70": efficiency >= 0.70,
        "save_time<=1.5xDCP": results["ratios"]["mesh_save_time_vs_dcp"] <= 1.5,
        "async_stall<=DCP": results["ratios"]["mesh_async_stall_vs_dcp"] <= 1.0,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))

    gib = actual / 2**30
    print(
        f"checkpoint mesh benchmark — {gib:.2f} GiB state dict, {results['cores']} cores, EC engine {results['engine']}"
    )
    rows = [
        ("raw write + fsync", raw_s, raw_gbps, "baseline disk"),
        ("torch.save + fsync", torch_s, results["torch_save_fsync"]["gbps"], "1 plain copy"),
        ("DCP save", dcp_s, results["dcp_save"]["gbps"], "1 plain copy"),
        ("mesh save RS(4,2)+AES-GCM", mesh_s, results["mesh_save"]["input_gbps"], "6 targets, 1.5x bytes"),
        (
            "mesh restore",
            restore_s,
            results["mesh_restore"]["gbps"],
            f"page cache; no decode; first run {restore_runs[0]:.2f} s",
        ),
        ("mesh restore, 2 lost", degraded_s, results["mesh_restore_2_lost"]["gbps"], "page cache; decode all"),
    ]
    print(f"{'operation':<28}{'seconds':>9}{'GB/s':>8}  note")
    for name, secs, gbps, note in rows:
        print(f"{name:<28}{secs:>9.3f}{gbps:>8.2f}  {note}")
    auth = results["mesh_restore_auth"]
    print(
        f"{'restore: authenticate':<28}{auth['authenticate_s']:>9.4f}{'':>8}  manifests + commit record, "
        f"{100 * auth['share_of_restore']:.1f} % of the restore; `ls` {auth['list_s'] * 1e3:.1f} ms"
    )
    print(
        f"{'async stall: mesh':<28}{results['mesh_async']['stall_steady_s']:>9.3f}{'':>8}  "
        f"first call {results['mesh_async']['stall_first_s']:.3f} s (allocates snapshot buffer)"
    )
    print(
        f"{'async stall: DCP':<28}{results['dcp_async']['stall_steady_s']:>9.3f}{'':>8}  "
        f"first call {results['dcp_async']['stall_first_s']:.3f} s"
    )
    r = results["ratios"]
    print(f"mesh save time / DCP save time = {r['mesh_save_time_vs_dcp']:.2f} (goal ≤ 1.5)")
    print(f"mesh async stall / DCP async stall = {r['mesh_async_stall_vs_dcp']:.2f} (goal ≤ 1.0)")
    print(f"restores bit-exact: {results['mesh_restore']['bit_exact'] and results['mesh_restore_2_lost']['bit_exact']}")
    print(
        f"commit ledger per save: {results['mesh_ledger']['per_save_s'] * 1e3:.1f} ms median "
        f"({100 * results['mesh_ledger']['per_save_s'] / mesh_s:.1f} % of the best mesh save)"
    )
    print(f"mesh_save_efficiency={efficiency:.3f}")
    print(f"mesh_save_vs_dcp={r['mesh_save_time_vs_dcp']:.3f}")
    print(f"mesh_async_stall_vs_dcp={r['mesh_async_stall_vs_dcp']:.3f}")
    print(f"mesh_restore_authenticate_s={auth['authenticate_s']:.5f}")
    print(f"mesh_restore_authenticate_share={auth['share_of_restore']:.4f}")


if __name__ == "__main__":
    main()
