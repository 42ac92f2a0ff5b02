"""Run a batch of cells, each batch in a fresh Python process.

:func:`run_batch_in_subprocess` is what every runner executes (a Ray task, a local thread): it starts
``python -m superfactory.sweep.worker``, sends the batch as JSON on stdin and reads the rows back. So no two batches
ever share a process — HiGHS and OR-tools never meet, no solver state or leaked memory crosses runs — and a crash
(segfault, out of memory) kills one batch, not the runner. A batch holds cells of one scenario text and one
policy; the scenario is parsed once per batch.

Inside the child, stdout is pointed at stderr before anything is imported (solver banners cannot corrupt the
result stream) and every cell runs under ``try``: a failing cell yields a row with ``status = "failed"`` and its
error, and the next cell runs.

This module imports only the standard library at the top: a Ray worker that imports it stays light.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from datetime import UTC, datetime
from typing import Any

STDERR_TAIL_CHARS = 2000


class WorkerCrashedError(RuntimeError):
    """The worker process died or timed out before returning its rows (message: exit code and stderr tail)."""


def run_batch_in_subprocess(batch: dict[str, Any], timeout_s: float | None = None) -> list[dict[str, Any]]:
    """Run ``batch`` (see :func:`run_batch`) in a new ``python -m superfactory.sweep.worker`` process.

    Each row gets ``startup_wall_s``: its share of the process's time outside the cells (start, imports).

    Raises:
        WorkerCrashedError: the process exited non-zero, wrote no rows, or ran past ``timeout_s``.
    """
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "superfactory.sweep.worker"], input=json.dumps(batch),
                              capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise WorkerCrashedError(f"timed out after {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        tail = proc.stderr[-STDERR_TAIL_CHARS:].strip()
        raise WorkerCrashedError(f"worker process exited with code {proc.returncode}" + (f": {tail}" if tail else ""))
    try:
        rows: list[dict[str, Any]] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise WorkerCrashedError(f"worker process returned no readable rows: {proc.stdout[:200]!r}") from None
    # what the process cost beyond its cells (start, imports, parsing the scenario), shared among them: the
    # engine sizes batches from it
    overhead = time.perf_counter() - t0 - sum(r.get("cell_wall_s") or 0.0 for r in rows)
    for r in rows:
        r["startup_wall_s"] = max(0.0, overhead) / max(1, len(rows))
    return rows


def run_batch(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """Run every cell of ``batch`` in this process and return one row per cell.

    ``batch`` is ``{"scenario": {"text", "source", "base_dir"}, "cells": [{"coordinates": {...}, "fields":
    [[path, value], ...], "policy", "params": [[key, value], ...], "seed"}]}``; all cells share the scenario text,
    field values and policy. A row is the cell's coordinates, ``status`` (``ok``/``failed``), ``error``, every
    summary field, ``cell_wall_s`` and ``completed_at`` (UTC, ISO 8601).
    """
    from pathlib import Path

    from superfactory.observe.summary import summarize
    from superfactory.scenario.loader import parse_scenario
    from superfactory.sim.twin import run_twin
    from superfactory.sweep.cells import apply_fields

    src = batch["scenario"]
    base_dir = Path(src["base_dir"]) if src.get("base_dir") else None
    parsed: dict[str, Any] = {}
    rows = []
    for cell in batch["cells"]:
        t0 = time.perf_counter()
        row: dict[str, Any] = dict(cell["coordinates"])
        try:
            fields = tuple((k, v) for k, v in cell["fields"])
            if "scenario" not in parsed:
                where = src["source"] + "".join(f" {k}={v!r}" for k, v in fields)
                parsed["scenario"] = parse_scenario(apply_fields(src["text"], fields), source=where,
                                                    base_dir=base_dir)
            sc = parsed["scenario"]
            params = dict(cell["params"])
            if cell["policy"] == sc.policy:
                params = {**sc.policy_params, **params}  # as `simulate -p` does: override the scenario's own
            summary = summarize(run_twin(sc, seed=cell["seed"], policy=cell["policy"], policy_params=params))
            row.update(status="ok", error=None)
            row.update(summary_fields(summary))
        except Exception as e:  # a failed cell is a result, not the end of the sweep
            row.update(status="failed", error=error_text(e))
        row["cell_wall_s"] = time.perf_counter() - t0
        row["completed_at"] = datetime.now(UTC).isoformat()
        rows.append(row)
    return rows


def summary_fields(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary as table columns: the coordinate keys ``policy``/``seed`` dropped (the cell has them),
    ``scenario`` kept as ``scenario_name`` (the name inside the file)."""
    out = {k: v for k, v in summary.items() if k not in ("scenario", "policy", "seed")}
    out["scenario_name"] = summary.get("scenario")
    return out


def error_text(e: BaseException) -> str:
    """``Type: message`` for errors superfactory raises on purpose; with the innermost frame for others (a bug)."""
    from superfactory.errors import SuperfactoryError

    text = f"{type(e).__name__}: {e}"
    if not isinstance(e, SuperfactoryError):
        frames = traceback.extract_tb(e.__traceback__)
        if frames:
            f = frames[-1]
            text += f" (at {_short_path(f.filename)}:{f.lineno} in {f.name})"
    return text


def _short_path(filename: str) -> str:
    parts = filename.replace("\\", "/").split("/")
    return "/".join(parts[-3:])


def main() -> None:
    """``python -m superfactory.sweep.worker``: a batch as JSON on stdin, its rows as JSON on stdout."""
    result_fd = os.dup(1)
    os.dup2(2, 1)  # anything printed from here on (solver banners, warnings) goes to stderr
    batch = json.loads(sys.stdin.read())
    rows = run_batch(batch)
    with os.fdopen(result_fd, "w") as out:
        json.dump(rows, out, default=_jsonable)


def _jsonable(value: Any) -> Any:
    """JSON fallback for numpy scalars and other odd values a summary may carry."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


if __name__ == "__main__":
    main()
