"""When geo solves its global assignment, and when a cheap placement of new work is enough.

Geo's full solve (columns for every pending and running job, LP, rounding, repair) is what moves and pauses
running jobs; it is worth its cost only when its inputs changed materially since the last one. Between full
solves geo places pending jobs (arrivals, restarts after failures) by the same columns and a greedy that keeps
running jobs where they are (:mod:`superfactory.policy.geo`).

:class:`SolveCadence` decides, from what the last full solve saw, whether a decision must be a full solve:

- at once: a factory went down or came up; or the current hour's cost of some factory moved by more than
  ``spike_change`` of the fleet's mean 24-hour cost since the last full solve (a price shock or a scarcity hour:
  what a pause or a move out of a site answers);
- from the next clock hour (the price hour) after the last full solve, so at most once an hour:
  - the cost signal moved materially: some factory's effective cost (USD per facility MWh), averaged over the
    next 24 hours (the span most jobs are priced over), moved by more than ``material_change`` of the fleet's
    mean since the last full solve (prices and forecasts move with the hour anyway);
  - free capacity moved materially *where work is known to want it*: some factory gained free GPUs worth more
    than ``capacity_change`` of its size, enough for the smallest job that wants it, and the last full solve
    left a running job in place whose move there was cheaper than staying (no room, or the migration quota), or
    a placement since then started a job elsewhere while that factory, cheaper by the hysteresis margin, was full
    (:meth:`SolveCadence.want`). Freed capacity no job was seen to want triggers nothing: pending work is placed
    there by the cheap placement (same columns) at the decision that sees it, and a running job whose move there
    pays only because the hours moved on is moved at the next full solve;
- the safety net: ``full_resolve_s`` since the last full solve, whatever changed.

A waiting job at its wait bound needs no full solve: its wait column is priced at the starved rate on the cheap
path, which places it wherever lawful capacity exists (the full solve cannot free nodes for it either).

Why (issue 12, geo's fleet-year): under the previous rule (a full solve for any 10 % freed at a site cheaper than
the dearest by the move margin, at any time, and one whenever a job reached its wait bound) 822 of the 1,175
full solves of the first 30 days were capacity triggers, few of which moved anything; this rule makes ~430, and
as many migrations (``docs/geo.md``, "When geo solves").

Pure: no clock, no I/O; the caller passes the figures of the snapshot it decides on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

_HOUR_S = 3600


@dataclass(slots=True)
class SolveCadence:
    """Material-change test for geo's full solve (module docstring).

    Attributes:
        material_change: share of the fleet's mean 24-hour cost by which one factory's 24-hour cost must move.
        spike_change: share of the fleet's mean 24-hour cost by which one factory's current-hour cost must move.
        capacity_change: share of a factory's GPUs that must become free to count as a capacity change; only
            at a factory some job wants (:meth:`want`, :meth:`solved`), and only once the free GPUs reach the
            smallest such job's GPUs.
        full_resolve_s: the longest time between two full solves.
    """

    material_change: float = 0.05
    spike_change: float = 0.5
    capacity_change: float = 0.10
    full_resolve_s: int = 4 * 3600
    last_s: int = -(10**12)
    _up: tuple[bool, ...] = ()
    _rate24: tuple[float, ...] = ()
    _rate0: tuple[float, ...] = ()
    _free_gpus: list[int] = field(default_factory=list)
    _wanted: dict[int, int] = field(default_factory=dict)  # factory index -> GPUs of the smallest job wanting it
    full_solves: int = 0
    _calm: tuple[list[float], ...] = ()  # (rate24, rate0) last found within the material bounds (copies)
    reason: str = ""  # why the last :meth:`due` asked for a full solve ("" when it did not)

    def __post_init__(self) -> None:
        if self.material_change < 0 or self.spike_change < 0 or self.capacity_change < 0:
            raise ValueError("material_change, spike_change and capacity_change must be >= 0")
        if self.full_resolve_s <= 0:
            raise ValueError("full_resolve_s must be > 0")

    def due(self, now_s: int, up: tuple[bool, ...], rate24: Sequence[float], rate0: Sequence[float],
            free_gpus: Sequence[int] | Callable[[], Sequence[int]], size_gpus: Sequence[int]) -> bool:
        """Whether a decision at ``now_s`` on a snapshot with these figures (per factory: up, mean cost over
        the next 24 hours, cost this hour, free GPUs, GPUs) needs a full solve; :attr:`reason` says why.
        ``free_gpus`` may be a function giving them: called only when the answer depends on them."""
        self.reason = self._why(now_s, up, rate24, rate0, free_gpus, size_gpus)
        return bool(self.reason)

    def _why(self, now_s: int, up: tuple[bool, ...], rate24: Sequence[float], rate0: Sequence[float],
             free_gpus: Sequence[int] | Callable[[], Sequence[int]], size_gpus: Sequence[int]) -> str:
        if now_s - self.last_s >= self.full_resolve_s:
            return "timer"
        if up != self._up or len(rate24) != len(self._rate24):
            return "up/down"
        calm = self._calm  # copies of the rates last found calm against this solve's: the same values are calm
        new_hour = now_s // _HOUR_S != self.last_s // _HOUR_S
        if not calm or calm[0] != rate24 or calm[1] != rate0:
            scale = max(1e-9, sum(self._rate24) / max(1, len(self._rate24)))
            if any(abs(a - b) > self.spike_change * scale for a, b in zip(rate0, self._rate0, strict=True)):
                return "spike"
            if any(abs(a - b) > self.material_change * scale for a, b in zip(rate24, self._rate24, strict=True)):
                return "cost" if new_hour else ""  # (not calm: asked again at the next decision)
            self._calm = (list(rate24), list(rate0))
        # freed capacity matters where a job is known to want it (a move, or a start it was denied for room), and
        # at most once per clock hour (the price hour)
        wanted = self._wanted
        if not (wanted and new_hour):
            return ""
        free = free_gpus() if callable(free_gpus) else free_gpus
        if any(g - g0 > self.capacity_change * n and i in wanted and g >= wanted[i]
               for i, (g, g0, n) in enumerate(zip(free, self._free_gpus, size_gpus, strict=True))):
            return "capacity"
        return ""

    def want(self, factory: int, gpus: int) -> None:
        """A job of ``gpus`` GPUs would run in factory index ``factory`` if it had room (until the next full
        solve, which re-decides every running job): capacity freed there may trigger a full solve."""
        got = self._wanted.get(factory)
        if got is None or gpus < got:
            self._wanted[factory] = gpus

    def solved(self, now_s: int, up: tuple[bool, ...], rate24: Sequence[float], rate0: Sequence[float],
               free_gpus: Sequence[int], wanted: Mapping[int, int] | None = None) -> None:
        """A full solve ran at ``now_s`` on these figures: later decisions are measured against them.
        ``wanted``: factory index -> GPUs of the smallest running job the solve left in place although a move
        there was cheaper than staying (the factories where freed capacity may pay for a full solve)."""
        self._wanted = dict(wanted) if wanted else {}
        self.last_s = now_s
        self._up = up
        self._rate24 = tuple(rate24)
        self._rate0 = tuple(rate0)
        self._free_gpus = list(free_gpus)
        self._calm = ()
        self.full_solves += 1
