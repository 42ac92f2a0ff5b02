"""Parsing quantities with units: durations, sizes, bandwidths, power.

Accepted forms are a number followed by a unit, with optional space: ``54d``, ``30min``, ``1.5h``, ``90s``,
``1.5TB``, ``512GiB``, ``400Gbps``, ``50GB/s``, ``300MW``, ``120kW``. Sizes and rates use decimal SI
prefixes (1 TB = 10^12 B) and binary ones with ``i`` (1 TiB = 2^40 B). A bare number is refused for
quantities whose unit is ambiguous, with a message that shows a correct example.
"""

from __future__ import annotations

import math
import re

_NUM = r"([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)"
_RE = re.compile(rf"^\s*{_NUM}\s*([A-Za-z/]+)\s*$")

DURATION_UNITS_S = {
    "s": 1, "sec": 1, "second": 1, "seconds": 1,
    "min": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
    "ms": 0.001,
}
SIZE_UNITS_B = {
    "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "PB": 1e15,
    "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50,
}
RATE_UNITS_GBPS = {
    "bps": 1e-9, "Kbps": 1e-6, "Mbps": 1e-3, "Gbps": 1.0, "Tbps": 1e3,
    "B/s": 8e-9, "KB/s": 8e-6, "MB/s": 8e-3, "GB/s": 8.0, "TB/s": 8e3,
}
POWER_UNITS_W = {"W": 1.0, "kW": 1e3, "MW": 1e6, "GW": 1e9}
#: no quantity in a scenario needs more than 1e30 base units (1e30 FLOP is 10^4 x Llama 3 405B; durations,
#: sizes and rates are far smaller): bigger values are typos, and infinite ones cannot be simulated
MAX_QUANTITY = 1e30


class UnitError(ValueError):
    """A quantity string could not be parsed; the message says what was expected."""


def _parse(text: object, units: dict[str, float], what: str, example: str) -> float:
    if isinstance(text, bool):
        raise UnitError(f"expected {what} like {example!r}, got {text!r}")
    if isinstance(text, int | float):
        if text == 0:
            return 0.0
        raise UnitError(f"{what} needs a unit, e.g. {example!r} (got bare number {text!r})")
    if not isinstance(text, str):
        raise UnitError(f"expected {what} like {example!r}, got {type(text).__name__}")
    m = _RE.match(text)
    if not m:
        raise UnitError(f"expected {what} like {example!r}, got {text!r}")
    value, unit = float(m.group(1)), m.group(2)
    if unit not in units:
        allowed = ", ".join(units)
        raise UnitError(f"unknown unit {unit!r} for {what} in {text!r}; allowed units: {allowed}")
    out = value * units[unit]
    if not math.isfinite(out) or out > MAX_QUANTITY:
        raise UnitError(f"{what} {text!r} is out of range (at most {MAX_QUANTITY:.0e} in base units)")
    return out


def parse_duration_s(text: object) -> int:
    """A duration in whole seconds (rounded)."""
    return round(_parse(text, DURATION_UNITS_S, "a duration", "30min"))


def parse_size_bytes(text: object) -> float:
    return _parse(text, SIZE_UNITS_B, "a size", "1.5TB")


def parse_bandwidth_gbps(text: object) -> float:
    return _parse(text, RATE_UNITS_GBPS, "a bandwidth", "400Gbps")


def parse_power_w(text: object) -> float:
    return _parse(text, POWER_UNITS_W, "a power", "300MW")


def parse_flop(text: object) -> float:
    """Compute in FLOP: a plain number (``3.8e25``) or with a suffix ``FLOP``/``PFLOP``/``EFLOP``/``ZFLOP``."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if not text > 0 or not math.isfinite(text) or text > MAX_QUANTITY:
            raise UnitError(f"work must be a positive number of FLOP up to {MAX_QUANTITY:.0e}, got {text!r}")
        return float(text)
    return _parse(text, {"FLOP": 1.0, "PFLOP": 1e15, "EFLOP": 1e18, "ZFLOP": 1e21, "YFLOP": 1e24},
                  "compute", "3.8e25FLOP")


def parse_latency_ms(text: object) -> float:
    """A latency in milliseconds (float), e.g. ``"15ms"`` or ``"0.2s"``."""
    return _parse(text, {"us": 1e-3, "ms": 1.0, "s": 1e3}, "a latency", "15ms")
