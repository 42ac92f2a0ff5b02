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
