"""geo's size-aligned placement option (``align_big_gangs``, off by default; issue 18, session 8).

The hindsight bound's edge over geo is the cheap sites' packing: they run fuller in the bound, because it fills
them with whole big gangs, while geo leaves holes there (fewer free nodes than the smallest big gang) made by
small and mid-size jobs placed at the cheapest site with room. When the pending work is mostly big gangs, such a
hole stays idle. This option prices that: a job smaller than a site's *block* (the node count of the smallest big
gang that wants the site) that would break a whole free block there pays, in its run column at that site,

    penalty (USD/h) = weight x gap (USD/MWh) x block MW per node x (block nodes - its nodes)

where ``gap`` is the largest 24-h cost difference, per MWh, between a wanting gang's alternative and this site
(a running gang: where it runs; a pending gang: its dearest lawful site that is up), and the MW per node are the
job's own (extra facility power per node of its accelerator at the site). That is the power a block of big-gang
work would pay extra for running elsewhere while the job holds the block, less the job's own nodes (which are
busy in either case). A job that fits into the site's fragment (free nodes mod block >= its nodes: it takes no
whole free block) pays nothing; nor does a job of at least the block, nor one at a site that no gang wants, nor a job
with no unpenalised site that has room for it now at a cost below its wait (or pause) column (the option moves
small jobs; it never makes one wait for price).

A gang *wants* a site when it has at least ``min_gpus`` GPUs, the job's accelerator, the site among its lawful
sites, and either is pending, or runs at a site whose 24-h cost is higher than this one's. With weight 1 a small
job of ``n`` nodes avoids a block of ``B`` when ``n < B - n`` (the power its own run saves at the cheap site is
less than the block's). Pure: reads the snapshot and geo's columns, changes nothing on the policy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from superfactory.domain.fleet import FleetSnapshot, JobView
from superfactory.domain.job import TrainingJob
from superfactory.policy.geo_columns import _Col

__all__ = ["AlignParams", "align_columns"]

_Sites = tuple[tuple[tuple[int, int, float, float], ...], tuple[tuple[str, str], ...]]


class _Geo(Protocol):
    """What the option reads from geo: its lawful sites per job and its free-node counts."""

    def _sites(self, snap: FleetSnapshot, job: TrainingJob) -> _Sites: ...

    def _free_nodes(self, snap: FleetSnapshot, i: int, acc: str) -> int: ...


@dataclass(frozen=True)
class AlignParams:
    """The option's knobs: ``min_gpus`` (a gang of at least this many GPUs is a *big gang*: it defines blocks)
    and ``weight`` (a multiplier on the penalty; 0 turns the penalty off). Validated on construction
    (ValueError naming the parameter)."""

    min_gpus: int = 4096
    weight: float = 1.0

    def __post_init__(self) -> None:
        if self.min_gpus < 1:
            raise ValueError("align_min_gpus must be >= 1")
        if not self.weight >= 0.0:
            raise ValueError("align_weight must be >= 0")


def _demand(geo: _Geo, snap: FleetSnapshot, views: list[JobView], rate24: list[float],
            min_gpus: int) -> dict[tuple[int, str], tuple[int, float]]:
    """Per (site, accelerator) that some big gang wants (module docstring): (the smallest wanting gang's nodes
    there, the largest gap in USD/MWh between a wanting gang's alternative and the site)."""
    fids = {f.id: i for i, f in enumerate(snap.factories)}
    up = [st.up for st in snap.states]
    out: dict[tuple[int, str], tuple[int, float]] = {}
    gangs = [(v, True) for v in snap.pending] + [(v, False) for v in snap.running]
    for v, pending in gangs:
        job = v.job
        if job.gpus < min_gpus:
            continue
        sites = geo._sites(snap, job)[0]
        if pending:
            dear = [rate24[i] for i, _n, _w, _mw in sites if up[i]]
            if not dear:
                continue
            alt = max(dear)
        else:
            at = fids.get(v.factory_id) if v.factory_id is not None else None
            if at is None:
                continue
            alt = rate24[at]
        for i, n, _w, _mw in sites:
            gap = alt - rate24[i]
            if not up[i] or gap <= 0.0:
                continue
            key = (i, job.accelerator)
            hit = out.get(key)
            out[key] = (n, gap) if hit is None else (min(hit[0], n), max(hit[1], gap))
    return out


def align_columns(geo: _Geo, params: AlignParams, snap: FleetSnapshot, views: list[JobView],
                  cols: list[_Col], rate24: list[float]) -> list[_Col]:
    """``cols`` with the block penalty (module docstring) added to every run or move column (a factory and
    nodes) of a job smaller than the block of a wanted site, where it would break a whole free block. Staying
    and wait columns are unchanged; so is the list when no site is wanted. ``views``: the jobs the columns index;
    ``rate24``: geo's 24-h mean cost per factory (USD/MWh)."""
    if params.weight == 0.0:
        return cols
    demand = _demand(geo, snap, views, rate24, params.min_gpus)
    if not demand:
        return cols
    free: dict[tuple[int, str], int] = {}

    def free_at(i: int, acc: str) -> int:
        got = free.get((i, acc))
        if got is None:
            got = free[(i, acc)] = geo._free_nodes(snap, i, acc)
        return got

    penalty: dict[int, float] = {}  # column index -> its penalty
    alt: dict[int, float] = {}  # job -> its cheapest unpenalised column at a site with room for it now, or stay
    for k, c in enumerate(cols):
        if c.factory < 0:
            continue
        if c.nodes == 0:  # a running job's staying column: always open to it
            if c.cost < alt.get(c.job, math.inf):
                alt[c.job] = c.cost
            continue
        job = views[c.job].job
        acc = job.accelerator
        want = demand.get((c.factory, acc))
        room = free_at(c.factory, acc)
        if want is None or c.nodes >= want[0] or room % want[0] >= c.nodes:  # no block broken
            if room >= c.nodes and c.cost < alt.get(c.job, math.inf):
                alt[c.job] = c.cost
            continue
        block, gap = want
        mw_per_node = next(mw for i, _n, _w, mw in geo._sites(snap, job)[0] if i == c.factory) / c.nodes
        penalty[k] = params.weight * gap * mw_per_node * (block - c.nodes)
    if not penalty:
        return cols
    # only a job with somewhere else to go now, cheaper than its wait (or pause) column, is penalised: the
    # option moves small jobs, it never makes one wait for price
    wait = {c.job: c.cost for c in cols if c.factory < 0}
    return [c._replace(cost=c.cost + penalty[k])
            if k in penalty and alt.get(c.job, math.inf) < wait.get(c.job, math.inf) else c
            for k, c in enumerate(cols)]
