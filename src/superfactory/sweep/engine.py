"""Run a sweep: plan the cells, skip those already done, batch the rest onto a runner, journal every batch.

Batching: a batch holds consecutive cells of one scenario text and one policy (it runs in one fresh process,
which parses the scenario once). Its size adapts: before any batch has finished, ``ceil(cells / (4 · slots))``
capped at 4; afterwards, enough cells that the measured process start (:data:`STARTUP_SHARE`) is at most 5 % of
the batch's time at the mean cell time so far — short runs share a process, long runs get one each — but at most
``MAX_BATCH_S`` of work (a kill loses at most that per slot), and at most ``ceil(left / (2 · slots))`` so batches
shrink towards the end and no slot idles long while another finishes. ``batch_size`` fixes it instead.

A batch whose process dies (crash, timeout) is split into single cells that run again, so one bad cell cannot
take its neighbours down; a single cell that dies is recorded as failed with the reason. Ctrl-C stops the
runner; the journal keeps every finished batch and the table is written from it.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from superfactory.sweep.cells import Cell, ScenarioSource, expand, load_source
from superfactory.sweep.progress import SweepProgress
from superfactory.sweep.runners import Runner, make_runner
from superfactory.sweep.spec import SweepSpec
from superfactory.sweep.store import ResultStore

STARTUP_SHARE = 0.05  # target share of a batch's time spent starting its process (~1 s on an idle machine)
MAX_BATCH_S = 60.0
MAX_BATCH = 64
POLL_S = 0.5
NOTED_FAILURES = 5  # failures printed as they happen; the table has them all


@dataclass
class SweepOutcome:
    """What a sweep did: counts, where the table is, which runner ran it."""

    out_dir: Path
    table: Path
    cells: int
    skipped: int
    ran: int
    failed: int
    wall_s: float
    runner: str
    slots: int
    batches: int
    failures: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"out": str(self.out_dir), "table": str(self.table), "cells": self.cells, "skipped": self.skipped,
                "ran": self.ran, "failed": self.failed, "wall_s": self.wall_s, "runner": self.runner,
                "slots": self.slots, "batches": self.batches, "failures": self.failures}


def plan(spec: SweepSpec) -> tuple[list[ScenarioSource], list[Cell]]:
    """Read and validate every scenario of ``spec`` and list its cells.

    Raises:
        ScenarioError: a scenario is invalid. SweepError: the grid names a cell twice.
    """
    sources = [load_source(ref, spec.base_dir) for ref in spec.scenarios]
    return sources, expand(spec, sources)


def run_sweep(spec: SweepSpec, out_dir: Path, runner: Runner | None = None, *, runner_kind: str = "auto",
              address: str | None = None, slots: int | None = None, batch_size: int | None = None,
              cell_timeout_s: float | None = None, progress: bool = True) -> SweepOutcome:
    """Run (or resume) the sweep into ``out_dir`` and write ``results.parquet``.

    Args:
        runner: a runner to use (left open); else one is made from ``runner_kind``/``address``/``slots`` and
            closed at the end.
        batch_size: cells per process; None adapts (module docstring).
        cell_timeout_s: wall-time limit per cell (a batch gets this times its size); None: no limit.
        progress: render progress on stderr.
    """
    t0 = time.perf_counter()
    sources, cells = plan(spec)
    store = ResultStore(out_dir)
    done = store.done_ids()
    todo = [c for c in cells if c.cell_id not in done]
    by_label = {s.label: s for s in sources}
    bar = SweepProgress(len(cells), len(cells) - len(todo), enabled=progress)
    own = runner is None
    stats = _Stats()
    failures: list[dict[str, Any]] = []
    name, n_slots = "none (nothing to run)", 0
    try:
        if todo:
            if runner is None:
                runner = make_runner(runner_kind, address, slots, note=bar.note if progress else None)
            name, n_slots = runner.name, runner.slots
            bar.note(f"sweep: {len(cells)} cells, {len(todo)} to run on {name} ({n_slots} slots); "
                     f"{len(cells) - len(todo)} already done in {out_dir}")
            _drive(runner, todo, by_label, store, bar, stats, failures, batch_size, cell_timeout_s)
    finally:
        if own and runner is not None:
            runner.close()
        bar.close()
        meta = {"spec": _spec_dict(spec), "runner": name, "slots": n_slots, "cells": len(cells),
                "skipped": len(cells) - len(todo), "ran": bar.done, "failed": bar.failed,
                "batches": stats.batches, "finished_at": datetime.now(UTC).isoformat(),
                "wall_s": time.perf_counter() - t0}
        table, _ = store.write_table([c.cell_id for c in cells], meta)
        store.compact()
        store.write_meta(meta)
    return SweepOutcome(out_dir, table, len(cells), len(cells) - len(todo), bar.done, bar.failed,
                        time.perf_counter() - t0, name, n_slots, stats.batches, failures)


@dataclass
class _Stats:
    batches: int = 0
    cell_s: float = 0.0
    cells: int = 0
    startup_s: float = 0.0
    finished_batches: int = 0

    def mean_cell_s(self) -> float | None:
        return self.cell_s / self.cells if self.cells else None

    def size(self, initial: int, left: int, slots: int) -> int:
        """Cells for the next batch (module docstring)."""
        mean = self.mean_cell_s()
        if mean is None or not self.finished_batches:
            size = initial
        else:
            startup = self.startup_s / self.finished_batches
            mean = max(mean, 1e-3)
            size = min(math.ceil(startup / (STARTUP_SHARE * mean)), max(1, math.floor(MAX_BATCH_S / mean)))
        return max(1, min(size, MAX_BATCH, math.ceil(left / (2 * slots))))


def _drive(runner: Runner, todo: list[Cell], sources: dict[str, ScenarioSource], store: ResultStore,
           bar: SweepProgress, stats: _Stats, failures: list[dict[str, Any]], batch_size: int | None,
           cell_timeout_s: float | None) -> None:
    queue: deque[list[Cell]] = deque()  # each item: cells that must run as one batch (or be split)
    pending: deque[Cell] = deque(todo)
    in_flight: dict[Any, list[Cell]] = {}
    initial = max(1, min(4, math.ceil(len(todo) / (4 * runner.slots))))

    def next_batch() -> list[Cell]:
        if queue:
            return queue.popleft()
        size = batch_size if batch_size is not None else stats.size(initial, len(pending), runner.slots)
        first = pending.popleft()
        batch = [first]
        while pending and len(batch) < size and pending[0].group == first.group:
            batch.append(pending.popleft())
        return batch

    while pending or queue or in_flight:
        while (pending or queue) and len(in_flight) < runner.slots:
            batch = next_batch()
            timeout = cell_timeout_s * len(batch) if cell_timeout_s else None
            in_flight[runner.submit(payload(batch, sources), timeout)] = batch
            stats.batches += 1
        bar.running = sum(len(b) for b in in_flight.values())
        bar.update()
        for handle, result in runner.wait(list(in_flight), POLL_S):
            batch = in_flight.pop(handle)
            if isinstance(result, BaseException):
                if len(batch) > 1:
                    bar.note(f"sweep: a batch of {len(batch)} cells died ({_short(result)}); "
                             "running its cells one by one")
                    queue.extend([c] for c in batch)
                    continue
                rows = [{**batch[0].coordinates(), "status": "failed", "error": f"{type(result).__name__}: "
                         f"{result}", "cell_wall_s": None, "completed_at": datetime.now(UTC).isoformat()}]
            else:
                rows = result
                stats.finished_batches += 1
                stats.startup_s += sum(float(r.get("startup_wall_s") or 0.0) for r in rows)
            store.append(rows)
            for row in rows:
                if row.get("cell_wall_s") is not None:
                    stats.cell_s += float(row["cell_wall_s"])
                    stats.cells += 1
                if row.get("status") == "ok":
                    bar.ok += 1
                else:
                    bar.failed += 1
                    failures.append({k: row.get(k) for k in ("cell_id", "scenario", "policy", "seed", "error")})
                    if len(failures) <= NOTED_FAILURES:
                        bar.note(f"sweep: cell {row.get('cell_id')} ({row.get('scenario')}, {row.get('policy')}, "
                                 f"seed {row.get('seed')}) failed: {_short(row.get('error'))}"
                                 + (" (further failures: see the table's error column)"
                                    if len(failures) == NOTED_FAILURES else ""))
            bar.running = sum(len(b) for b in in_flight.values())
            bar.update()


def payload(batch: list[Cell], sources: dict[str, ScenarioSource]) -> dict[str, Any]:
    """The JSON-able batch a worker runs (see :func:`superfactory.sweep.worker.run_batch`)."""
    src = sources[batch[0].scenario]
    return {"scenario": {"text": src.text, "source": src.source, "base_dir": src.base_dir},
            "cells": [{"coordinates": c.coordinates(), "fields": [list(p) for p in c.fields], "policy": c.policy,
                       "params": [list(p) for p in c.params], "seed": c.seed} for c in batch]}


def _spec_dict(spec: SweepSpec) -> dict[str, Any]:
    return {"name": spec.name, "scenarios": list(spec.scenarios), "policies": list(spec.policies),
            "seeds": list(spec.seeds), "set": spec.fields, "params": spec.params}


def _short(value: object, limit: int = 300) -> str:
    text = str(value).replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."
