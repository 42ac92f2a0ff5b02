"""Loaders of public data formats used to calibrate and drive scenarios."""

from __future__ import annotations

import csv
from pathlib import Path


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
