"""Loaders of public data formats used to calibrate and drive scenarios."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from superfactory.errors import ScenarioError


def csv_rows(path: Path, required: set[str], what: str) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line number, row)`` for every data row of a CSV, after checking that it has the ``required`` columns.

    Raises:
        ScenarioError: the file cannot be read, or lacks columns (the message says ``what`` it should be).
    """
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = required - set(reader.fieldnames or ())
            if missing:
                raise ScenarioError(f"{path}: not {what}: missing column(s) {sorted(missing)}")
            yield from enumerate(reader, start=2)
    except OSError as e:
        raise ScenarioError(f"cannot read {what} {path}: {e}") from None


def read_interruption_table(path: Path) -> tuple[tuple[str, str, int], ...]:
    """Load a table in the Llama 3 CSV format (columns ``component,category,interruption_count``).

    A custom table is interpreted over the same exposure as Llama 3 405B (16,384 GPUs, 54 days).
    """
    with path.open(newline="") as fh:
        return tuple(
            (row["component"], row["category"], int(row["interruption_count"])) for row in csv.DictReader(fh)
        )


def read_allreduce_profile(path: Path) -> tuple[tuple[int, float, float], ...]:
    """Load a vidur collective profile (``vidur-h100/all_reduce.csv``) as ``(workers, size_bytes, time_s)`` rows.

    Columns used: ``num_workers``, ``size`` (bytes) and ``time_stats.all_reduce.median`` (ms); rows of other
    collectives are skipped. Raises KeyError naming a missing column.
    """
    with path.open(newline="") as fh:
        return tuple(
            (int(row["num_workers"]), float(row["size"]), float(row["time_stats.all_reduce.median"]) * 1e-3)
            for row in csv.DictReader(fh)
            if row.get("collective", "all_reduce") == "all_reduce"
        )
