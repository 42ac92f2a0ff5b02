"""Time series that drive the fleet: power prices and grid carbon intensity.

A :class:`StepSeries` holds one value per fixed step starting at simulated time 0; lookups past the end wrap
around (a month of prices can drive a longer run without a cliff), so a series is total over time.
"""

from __future__ import annotations

from dataclasses import dataclass

from superfactory.domain.units import HOUR_S


@dataclass(frozen=True, slots=True)
class StepSeries:
    """A piecewise-constant series.

    Attributes:
        name: what it is (e.g. ``"price:ERCOT"``).
        unit: unit of the values (``"USD/MWh"``, ``"gCO2/kWh"``).
        step_s: length of each step, s.
        values: one value per step, starting at t = 0.
    """

    name: str
    unit: str
    step_s: int
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.step_s <= 0 or not self.values:
            raise ValueError(f"series {self.name}: needs step_s > 0 and at least one value")

    def index(self, t_s: int) -> int:
        return (t_s // self.step_s) % len(self.values)

    def at(self, t_s: int) -> float:
        """The value in force at simulated time ``t_s``."""
        return self.values[self.index(t_s)]

    def mean(self) -> float:
        return sum(self.values) / len(self.values)


def hourly(name: str, unit: str, values: tuple[float, ...]) -> StepSeries:
    """A series with one value per hour."""
    return StepSeries(name, unit, HOUR_S, values)
