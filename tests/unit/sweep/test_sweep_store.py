"""The journal and the results table."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from superfactory.sweep.store import ResultStore, read_table, timing_column


def _row(cid: str, status: str = "ok", at: str = "2026-01-01T00:00:00", **kw: object) -> dict[str, object]:
    return {"cell_id": cid, "scenario": "s", "scenario_hash": "h", "policy": "p", "seed": 0, "status": status,
            "error": None if status == "ok" else "ScenarioError: bad", "cell_wall_s": 0.1, "completed_at": at, **kw}


def test_latest_row_wins_and_ok_beats_failed(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "sw")
    store.append([_row("a", "failed", at="2026-01-01T00:00:00"), _row("b", ettr=0.9)])
    store.append([_row("a", "ok", at="2026-01-01T00:00:05", ettr=0.8)])
    (store.parts / "junk.json").write_text("{not json")  # a damaged part is ignored, not fatal
    rows = store.rows()
    assert rows["a"]["status"] == "ok" and rows["a"]["ettr"] == 0.8
    assert store.done_ids() == {"a", "b"}


def test_table_keeps_cell_order_types_and_only_current_cells(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    store.append([_row("b", **{"set:workload.load": 0.5, "jobs": 3, "ettr": 1, "causes": {"x": 1}}),
                  _row("a", "failed", **{"set:workload.load": 9}),
                  _row("stale", ettr=0.1)])
    path, n = store.write_table(["a", "b"], {"spec": "x"})
    assert n == 2
    table = pq.read_table(path)
    assert table.column_names[:7] == ["cell_id", "scenario", "scenario_hash", "policy", "seed",
                                      "set:workload.load", "status"]
    assert table.column_names[-2:] == ["cell_wall_s", "completed_at"]  # (startup_wall_s only from workers)
    assert str(table.schema.field("ettr").type) == "int64"
    assert str(table.schema.field("causes").type) == "string"
    rows = read_table(path)
    assert [r["cell_id"] for r in rows] == ["a", "b"]  # the sweep's order, not the journal's; "stale" left out
    assert rows[0]["ettr"] is None and rows[1]["causes"] == '{"x": 1}'
    assert b"superfactory.sweep" in table.schema.metadata


def test_compaction_loses_nothing(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    for cid in "abc":
        store.append([_row(cid)])
    before = store.rows()
    store.compact()
    assert len(list(store.parts.glob("*.json"))) == 1
    assert store.rows() == before


def test_timing_columns() -> None:
    assert all(timing_column(c) for c in ("wall_seconds", "cell_wall_s", "events_per_second", "completed_at",
                                          "simulated_seconds_per_wall_second"))
    assert not any(timing_column(c) for c in ("ettr", "seed", "power_cost_usd", "scenario_hash"))
