"""The big gangs' lane of the ``gang`` policy (``lane``, off by default; pure, numpy).

The clairvoyant plan of :mod:`superfactory.policy.offline_schedule` keeps the widest gangs in a *lane*: a fixed
set of NVLink domains where each big gang takes its domains from the one before it, so no big start drains the
whole factory. Online, with ``lane: true``, gang keeps such a lane too:

- **Which domains**: ``lane_spare`` more than the widest big gang seen needs (a gang of at least
  ``lane_min_gpus`` GPUs, in whole TP units per domain: :func:`~superfactory.policy.gang_rolling.lane_width`),
  chosen at every decision as the *healthiest* domains (:func:`choose_lane`): domains running a big gang first
  (a lane never moves under one), then last decision's lane domains still healthy enough for a big gang's unit,
  then the most nodes neither down nor on a probed-degraded domain. So a domain with nodes down, or degraded,
  leaves the lane for a healthy one instead of blocking the widest gang (which needs every lane domain but the
  spares).
- **Big gangs** are placed, reserved and preempt only inside the lane (``GangSite.lane``, honoured by
  ``_reservation`` and ``_search_victims``); their reservation's drain is then a hand-off from the big gang
  before them whenever one is running there.
- **Other jobs** take nodes outside the lane first (``lane_last``) and enter it only when they fit nowhere
  else; inside it, the big gang's reservation admits them only if they are expected to end before its start
  (gang's EASY rule).

Also here: short work saved for drain windows (``save_short_s``, :meth:`GangLane._place_saving`). Both are off by
default; measured on the Kalos day, neither beat gang's default (docs/gang.md, "Eighth session").
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from superfactory.domain.fleet import NODE_DOWN, FleetSnapshot, JobView, Place
from superfactory.policy.gang_placement import GangPlacement
from superfactory.policy.gang_site import BoolArray, GangSite, expected_run_s
from superfactory.policy.gangfit import GangShape


def lane_width(shape: GangShape, per_domain: int) -> int:
    """The fewest domains of ``per_domain`` nodes that hold ``shape`` (whole units per domain)."""
    per = max(1, per_domain // shape.unit_nodes)
    return -(-shape.units // per)


def choose_lane(healthy: npt.NDArray[np.int_], big_held: npt.NDArray[np.bool_], previous: npt.NDArray[np.bool_],
                size: int, need: int) -> npt.NDArray[np.bool_]:
    """The lane's domains (a mask over domains): ``size`` of them, ranked by (running a big gang now, in the
    ``previous`` lane with at least ``need`` healthy nodes, at least ``need`` healthy nodes, most healthy nodes,
    lowest index). ``healthy[d]``: nodes of domain ``d`` neither down nor on a probed-degraded domain;
    ``big_held[d]``: a big gang runs there. ``size`` is clipped to the number of domains."""
    if healthy.shape != big_held.shape or healthy.shape != previous.shape:
        raise ValueError("healthy, big_held and previous must have one entry per domain")
    n = healthy.size
    ok = healthy >= need
    rank = np.lexsort((np.arange(n), -healthy, ~ok, ~(previous & ok), ~big_held))
    lane = np.zeros(n, dtype=bool)
    lane[rank[: max(0, min(size, n))]] = True
    return lane


class GangLane(GangPlacement):
    """The ``gang`` scheduler's lane (its knobs are set by :class:`superfactory.policy.gang.GangScheduler`)."""

    lane: bool
    lane_spare: int
    lane_last: bool
    _lane_width: int
    _lane_prev: npt.NDArray[np.bool_] | None
    _lane_need: int
    save_short_s: float
    save_short_wait_s: float
    _hole_misses: dict[tuple[str, GangShape], tuple[float, str]]  # ``misses`` of the drain-window pass
    _outside_misses: dict[tuple[str, GangShape], tuple[float, str]]  # ``misses`` of the outside-the-lane pass

    def _set_lane(self, snapshot: FleetSnapshot, sites: list[GangSite]) -> None:
        """Mark this decision's lane on ``sites[0].lane`` (node mask), or leave it ``None`` where the lane's model
        does not apply (several factories or clusters, one-node domains) or no big gang was seen yet."""
        if len(sites) != 1 or len(sites[0].factory.clusters) != 1:
            return
        site = sites[0]
        system = site.factory.clusters[0].system
        per_domain = system.nodes_per_domain
        if per_domain <= 1:
            return
        big_running = []
        for v in (*snapshot.pending, *snapshot.running):
            if v.job.gpus >= self.lane_min_gpus:
                sh = self._shape(site, v.job)
                if sh is not None and sh.unit_nodes <= per_domain:
                    self._lane_width = max(self._lane_width, lane_width(sh, per_domain))
                    self._lane_need = max(self._lane_need, sh.unit_nodes)
                    if v.nodes and v.factory_id == site.factory.id:
                        big_running.append(v.nodes)
        if self._lane_width == 0:
            return
        dom = site.topo.node_domain
        domains = int(dom.max()) + 1
        ok = site.status != NODE_DOWN
        if site.bad_domains:
            ok &= ~site.bad_nodes()
        healthy = np.bincount(dom[ok], minlength=domains)
        held = np.zeros(domains, dtype=bool)
        for nodes in big_running:
            held[dom[list(nodes)]] = True
        prev = self._lane_prev if self._lane_prev is not None and self._lane_prev.size == domains \
            else np.zeros(domains, dtype=bool)
        lane = choose_lane(healthy, held, prev, self._lane_width + self.lane_spare, self._lane_need)
        self._lane_prev = lane
        site.lane = lane[dom]

    def _place_lane(self, snapshot: FleetSnapshot, sites: list[GangSite], view: JobView,
                    refusals: list[tuple[str, str, str]]) -> tuple[Place | None, str]:
        """Place ``view`` with the lane: a big gang only inside it; another job outside it first (no slow
        fallback onto degraded domains in that pass), then anywhere."""
        site = sites[0]
        lane: BoolArray | None = site.lane
        if lane is None:
            return self._place(snapshot, sites, view, refusals)
        if self._lane_of(site, view.job) is not None:
            site.only = lane
            try:
                return self._place(snapshot, sites, view, refusals)
            finally:
                site.only = None
        if self.lane_last:
            kept, site.misses = site.misses, self._outside_misses
            site.only, site.slow_ok = ~lane, False
            try:
                placed, _ = self._place(snapshot, sites, view, [])
            finally:
                self._outside_misses, site.misses = site.misses, kept
                site.only, site.slow_ok = None, True
            if placed is not None:
                return placed, ""
        return self._place(snapshot, sites, view, refusals)

    def _place_saving(self, snapshot: FleetSnapshot, sites: list[GangSite], view: JobView,
                      refusals: list[tuple[str, str, str]], top: int) -> tuple[Place | None, str] | None:
        """Short work saved for drain windows (``save_short_s``): a job expected to run at most ``save_short_s``,
        below the top priority ``top`` and waiting less than ``save_short_wait_s``, is placed only into the free
        nodes of a reservation that starts after it ends (a waiting gang's drain window), and otherwise waits, so
        the queue keeps short work for the windows before big starts (longer work takes the other free nodes).
        ``None``: the rule does not apply to this job (place it as usual)."""
        job = view.job
        run_s = expected_run_s(job, view.progress_s)
        waited_s = snapshot.now_s - view.waiting_since_s if view.waiting_since_s >= 0 else 0
        if (run_s > self.save_short_s or job.priority >= top or waited_s >= self.save_short_wait_s
                or len(sites) != 1):
            return None
        site = sites[0]
        end_s = snapshot.now_s + run_s
        holes = np.zeros(site.factory.nodes, dtype=bool)
        for nodes, start_s, owner in site.reserved:
            if owner != job.id and end_s <= start_s < float("inf"):
                holes |= nodes
        reason = (f"saved for a drain window: a short job ({run_s / 60:.0f} min) waits up to "
                  f"{self.save_short_wait_s / 3600:.1f} h for a waiting gang's reserved nodes")
        if not (holes & site.free).any():
            return None, reason
        kept, site.misses = site.misses, self._hole_misses
        site.only, site.slow_ok = holes, False
        try:
            placed, _ = self._place(snapshot, sites, view, refusals)
        finally:
            self._hole_misses, site.misses = site.misses, kept
            site.only, site.slow_ok = None, True
        return (placed, "") if placed is not None else (None, reason)
