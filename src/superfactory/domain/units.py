"""Unit constants. Simulated time is an integer number of seconds everywhere in the twin."""

from __future__ import annotations

SECOND_S = 1
MINUTE_S = 60
HOUR_S = 3600
DAY_S = 86_400

KB = 1_000
MB = 1_000_000
GB = 1_000_000_000
TB = 1_000_000_000_000

W_PER_MW = 1_000_000.0
WH_PER_MWH = 1_000_000.0


def gbps_to_bytes_per_s(bandwidth_gbps: float) -> float:
    """Convert a line rate in gigabits per second to bytes per second (decimal units)."""
    return bandwidth_gbps * 1e9 / 8.0
