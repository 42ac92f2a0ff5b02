"""When geo solves its global assignment, and when a cheap placement of new work is enough.

Geo's full solve (columns for every pending and running job, LP, rounding, repair) is what moves and pauses
running jobs; it is worth its cost only when its inputs changed materially since the last one. Between full
solves geo places pending jobs (arrivals, restarts after failures) by the same columns and a greedy that keeps
running jobs where they are (:mod:`superfactory.policy.geo`).

:class:`SolveCadence` decides, from what the last full solve saw, whether a decision must be a full solve:

- a factory went down or came up;
- the cost signal moved materially: some factory's effective cost (USD per facility MWh) moved, since the last
  full solve, by more than ``material_change`` of the fleet's mean cost, averaged over the next 24 hours
  (the span most jobs are priced over), or by more than ``spike_change`` of it in the current hour (a price
  shock or a scarcity hour: what a pause or a move out of a site answers);
- free capacity moved materially: some factory gained free GPUs worth more than ``capacity_change`` of its
  size, at a factory cheap enough for a move into it to pay (work may move into it);
- the safety net: ``full_resolve_s`` since the last full solve, whatever changed;
- the caller's own reasons (a waiting job reaches its wait bound; the first decision).

Pure: no clock, no I/O; the caller passes the figures of the snapshot it decides on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(slots=True)
class SolveCadence:
    """Material-change test for geo's full solve (module docstring).

    Attributes:
        material_change: share of the fleet's mean 24-hour cost by which one factory's 24-hour cost must move.
        spike_change: share of the fleet's mean 24-hour cost by which one factory's current-hour cost must move.
        capacity_change: share of a factory's GPUs that must become free to count as a capacity change; only
            at a factory whose 24-hour cost, raised by ``move_margin`` (geo's hysteresis), is below the dearest
            factory's (elsewhere freed capacity draws no move).
        full_resolve_s: the longest time between two full solves.
    """

    material_change: float = 0.05
    spike_change: float = 0.5
    capacity_change: float = 0.10
    full_resolve_s: int = 4 * 3600
    move_margin: float = 0.15
    last_s: int = -(10**12)
    _up: tuple[bool, ...] = ()
    _rate24: tuple[float, ...] = ()
    _rate0: tuple[float, ...] = ()
    _free_gpus: list[int] = field(default_factory=list)
    full_solves: int = 0
    _calm: tuple[list[float], ...] = ()  # (rate24, rate0) last found within the material bounds (copies)
    reason: str = ""  # why the last :meth:`due` asked for a full solve ("" when it did not)

    def __post_init__(self) -> None:
        if self.material_change < 0 or self.spike_change < 0 or self.capacity_change < 0:
            raise ValueError("material_change, spike_change and capacity_change must be >= 0")
        if self.full_resolve_s <= 0:
            raise ValueError("full_resolve_s must be > 0")

    def due(self, now_s: int, up: tuple[bool, ...], rate24: Sequence[float], rate0: Sequence[float],
            free_gpus: Sequence[int], size_gpus: Sequence[int]) -> bool:
        """Whether a decision at ``now_s`` on a snapshot with these figures (per factory: up, mean cost over
        the next 24 hours, cost this hour, free GPUs, GPUs) needs a full solve; :attr:`reason` says why."""
        self.reason = self._why(now_s, up, rate24, rate0, free_gpus, size_gpus)
        return bool(self.reason)

    def _why(self, now_s: int, up: tuple[bool, ...], rate24: Sequence[float], rate0: Sequence[float],
             free_gpus: Sequence[int], size_gpus: Sequence[int]) -> str:
        if now_s - self.last_s >= self.full_resolve_s:
            return "timer"
        if up != self._up or len(rate24) != len(self._rate24):
            return "up/down"
        calm = self._calm  # copies of the rates last found calm against this solve's: the same values are calm
        if not calm or calm[0] != rate24 or calm[1] != rate0:
            scale = max(1e-9, sum(self._rate24) / max(1, len(self._rate24)))
            if any(abs(a - b) > self.material_change * scale for a, b in zip(rate24, self._rate24, strict=True)):
                return "cost"
            if any(abs(a - b) > self.spike_change * scale for a, b in zip(rate0, self._rate0, strict=True)):
                return "spike"
            self._calm = (list(rate24), list(rate0))
        # freed capacity matters where work could move to: a factory cheaper, by the move margin, than the
        # dearest one
        top = max(rate24, default=0.0)
        if any(g - g0 > self.capacity_change * n and r * (1.0 + self.move_margin) < top
               for g, g0, n, r in zip(free_gpus, self._free_gpus, size_gpus, rate24, strict=True)):
            return "capacity"
        return ""

    def solved(self, now_s: int, up: tuple[bool, ...], rate24: Sequence[float], rate0: Sequence[float],
               free_gpus: Sequence[int]) -> None:
        """A full solve ran at ``now_s`` on these figures: later decisions are measured against them."""
        self.last_s = now_s
        self._up = up
        self._rate24 = tuple(rate24)
        self._rate0 = tuple(rate0)
        self._free_gpus = list(free_gpus)
        self._calm = ()
        self.full_solves += 1
