"""The results of a sweep on disk: a journal of finished cells and the Parquet table made from it.

Layout of a sweep folder::

    results.parquet     one row per cell of the sweep as last run (coordinates, status, error, summary fields)
    parts/*.json        the journal: the rows of each finished batch, written atomically (temp file + rename)
    sweep.json          the spec, the runner and the counts of the last run

A batch's rows reach the journal the moment it finishes, so a sweep killed at any point keeps every finished
cell; re-running it reads the journal, skips the cells whose id (coordinates + scenario content) has an ``ok``
row and runs the rest. Failed cells are retried. The table is rewritten from the journal, in the sweep's cell
order, so an interrupted-and-resumed sweep and an uninterrupted one give the same table (up to the timing
columns: :func:`timing_column`). Rows of cells that are no longer in the sweep (an edited scenario, a changed
spec) stay in the journal but not in the table.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from superfactory.sweep.spec import SweepError

COORDINATES = ("cell_id", "scenario", "scenario_hash", "policy", "seed")
TAIL = ("cell_wall_s", "startup_wall_s", "completed_at")
TABLE = "results.parquet"


def timing_column(name: str) -> bool:
    """Columns that measure the run rather than the fleet (wall time, rates, timestamps): they differ between
    two runs of the same cell; everything else is deterministic."""
    return "wall" in name or name.endswith("_per_second") or name == "completed_at"


class ResultStore:
    """A sweep folder (created if missing)."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.parts = out_dir / "parts"
        try:
            self.parts.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SweepError(f"--out {out_dir}: cannot create the sweep folder: {e}") from None
        if not os.access(self.parts, os.W_OK):
            raise SweepError(f"--out {out_dir}: the folder is not writable")

    @property
    def table_path(self) -> Path:
        return self.out_dir / TABLE

    def append(self, rows: list[dict[str, Any]]) -> None:
        """Journal the rows of one finished batch (atomically: a kill leaves the whole file or none of it)."""
        if not rows:
            return
        name = f"{rows[0].get('completed_at', '')[:19].replace(':', '')}-{uuid.uuid4().hex[:12]}.json"
        _atomic_write(self.parts / name, json.dumps(rows, default=str, allow_nan=True))

    def rows(self) -> dict[str, dict[str, Any]]:
        """The latest row of every journaled cell id (an ``ok`` row beats a ``failed`` one of the same time)."""
        latest: dict[str, dict[str, Any]] = {}
        for part in sorted(self.parts.glob("*.json")):
            try:
                rows = json.loads(part.read_text())
            except (OSError, ValueError):
                continue  # not ours or damaged by hand: the cells in it simply run again
            for row in rows if isinstance(rows, list) else []:
                cid = row.get("cell_id") if isinstance(row, dict) else None
                if cid is None:
                    continue
                old = latest.get(cid)
                if old is None or _rank(row) >= _rank(old):
                    latest[cid] = row
        return latest

    def done_ids(self) -> set[str]:
        """Cell ids with an ``ok`` row: what a re-run skips."""
        return {cid for cid, row in self.rows().items() if row.get("status") == "ok"}

    def write_table(self, cell_ids: list[str], metadata: dict[str, Any]) -> tuple[Path, int]:
        """Write ``results.parquet``: the journaled rows of ``cell_ids``, in that order; returns (path, rows)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        latest = self.rows()
        rows = [latest[c] for c in cell_ids if c in latest]
        columns = column_order(rows)
        arrays = {name: _column([r.get(name) for r in rows]) for name in columns}
        table = pa.table(arrays) if columns else pa.table({"cell_id": pa.array([], pa.string())})
        table = table.replace_schema_metadata({"superfactory.sweep": json.dumps(metadata, default=str)})
        tmp = self.table_path.with_suffix(f".tmp-{uuid.uuid4().hex[:8]}")
        pq.write_table(table, tmp)
        os.replace(tmp, self.table_path)
        return self.table_path, len(rows)

    def compact(self) -> None:
        """Fold the journal into one file (written before the old ones are removed: a kill loses nothing)."""
        parts = sorted(self.parts.glob("*.json"))
        if len(parts) <= 1:
            return
        rows = list(self.rows().values())
        _atomic_write(self.parts / f"compacted-{uuid.uuid4().hex[:12]}.json", json.dumps(rows, default=str))
        for p in parts:
            p.unlink(missing_ok=True)

    def write_meta(self, meta: dict[str, Any]) -> None:
        _atomic_write(self.out_dir / "sweep.json", json.dumps(meta, indent=2, default=str) + "\n")


def column_order(rows: list[dict[str, Any]]) -> list[str]:
    """Coordinates, then ``set:``/``param:`` columns, status and error, summary fields in first-seen order, then
    the per-cell timing columns."""
    seen: list[str] = []
    for r in rows:
        seen.extend(k for k in r if k not in seen)
    axes = [k for k in seen if k.startswith(("set:", "param:"))]
    head = [*COORDINATES, *axes, "status", "error"]
    return [k for k in head if k in seen] + [k for k in seen if k not in head and k not in TAIL] + \
        [k for k in TAIL if k in seen]


def _column(values: list[Any]) -> Any:
    """A typed Arrow column: bool, int64, float64 or string; dicts and lists as JSON text; a mix as text."""
    import pyarrow as pa

    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return pa.array(values, pa.bool_())
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pa.array(values, pa.int64()) if present else pa.array(values, pa.string())
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    return pa.array([v if v is None or isinstance(v, str) else json.dumps(v, sort_keys=True, default=str)
                     for v in values], pa.string())


def _rank(row: dict[str, Any]) -> tuple[str, int]:
    return (str(row.get("completed_at", "")), 1 if row.get("status") == "ok" else 0)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_table(path: Path) -> list[dict[str, Any]]:
    """The rows of a results table as dicts.

    Raises:
        SweepError: no table at ``path``.
    """
    import pyarrow.parquet as pq

    if not path.is_file():
        raise SweepError(f"{path}: no results table here (run `superfactory sweep ... --out {path.parent}` first)")
    rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    return rows
