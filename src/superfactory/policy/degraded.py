"""What to do with a running gang on an NVLink domain the probes read degraded: stay, hot-swap or move (pure).

A gang whose TP groups ride a degraded domain runs at ``speed`` < 1 of nominal (``placement_throughput``). Its
remedies, each costed in wall seconds of the gang (all its GPUs wait alike):

- **stay**: it loses ``remaining_s x (1 / speed - 1)`` seconds over the rest of its run (the degradation is
  assumed to last: probes cannot tell when a switch will be repaired);
- **hot-swap** (:class:`~superfactory.domain.fleet.SwapNodes`): only the TP groups on degraded domains move, each
  to free healthy nodes inside one NVLink domain; the gang pauses ``RecoverySpec.hot_swap_s`` and keeps its
  progress. Possible only where free healthy whole TP groups exist for every affected group *now*;
- **move** (drain + restart elsewhere, a ``Preempt`` with nodes promised): final checkpoint + full restart. Needs a
  whole healthy placement now (free nodes plus its own healthy ones).

:func:`choose_remedy` takes the cheapest remedy that is possible and costs less than staying (by ``margin``);
:func:`swap_plan` finds the node pairs of a hot swap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from superfactory.domain.topology import FactoryTopology
from superfactory.policy.gangfit import GangShape, place_gang

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Remedy:
    """The choice for one degraded gang: ``kind`` is ``"stay"``, ``"swap"`` or ``"move"``; ``cost_s`` the wall
    seconds it costs the gang; ``stay_s`` what staying would cost; ``why`` a sentence for the event/waiting log."""

    kind: str
    cost_s: float
    stay_s: float
    why: str


def stay_cost_s(remaining_s: float, speed: float) -> float:
    """Wall seconds a gang with ``remaining_s`` of nominal-speed run left loses by running on at ``speed``."""
    if speed <= 0:
        return float("inf")
    return max(0.0, remaining_s) * max(0.0, 1.0 / speed - 1.0)


def choose_remedy(remaining_s: float, speed: float, swap_s: float | None, move_s: float | None,
                  margin: float = 1.0) -> Remedy:
    """The cheapest possible remedy that pays: ``swap_s`` / ``move_s`` are the costs of a hot swap / a move, or
    ``None`` when that remedy is not possible now. A remedy pays when ``stay > margin x cost``."""
    stay = stay_cost_s(remaining_s, speed)
    options = [(c, k) for c, k in ((swap_s, "swap"), (move_s, "move")) if c is not None]
    if not options:
        return Remedy("stay", stay, stay, "no healthy nodes free for a hot swap or a move")
    cost, kind = min(options)
    if stay <= margin * cost:
        return Remedy("stay", stay, stay, f"staying costs {stay:.0f} s <= {margin:g} x {kind} {cost:.0f} s")
    return Remedy(kind, cost, stay, f"{kind} costs {cost:.0f} s < staying {stay:.0f} s at {speed:.2f} speed")


def swap_plan(topo: FactoryTopology, usable: BoolArray, nodes: tuple[int, ...], unit_nodes: int,
              bad_domains: set[int]) -> tuple[tuple[int, int], ...] | None:
    """``(old, new)`` node pairs that take every TP group of a gang on ``nodes`` (rank order: groups of
    ``unit_nodes`` consecutive nodes, each inside one domain) off ``bad_domains`` onto ``usable`` nodes, each
    group inside one healthy NVLink domain; the replacements sit in the smallest subtree that holds them (as a
    placement would). ``None`` if no group is affected or there is no room now."""
    if unit_nodes <= 0 or len(nodes) % unit_nodes:
        return None
    groups = [nodes[i : i + unit_nodes] for i in range(0, len(nodes), unit_nodes)]
    hit = [g for g in groups if bad_domains.intersection(topo.node_domain[list(g)].tolist())]
    if not hit:
        return None
    pool = usable.copy()
    if bad_domains:
        pool &= ~np.isin(topo.node_domain, list(bad_domains))
    pool[list(nodes)] = False
    if int(pool.sum()) < len(hit) * unit_nodes:
        return None
    target = place_gang(topo, pool, GangShape(len(hit), unit_nodes))
    if target is None:
        return None
    pairs: list[tuple[int, int]] = []
    for gi, g in enumerate(hit):
        pairs.extend(zip(g, target[gi * unit_nodes : (gi + 1) * unit_nodes], strict=True))
    return tuple(pairs)
