"""The control plane's power meter: facility power, energy, cost and carbon per factory, from what it placed.

The control plane knows where every job holds GPUs, each factory's declared systems (training and idle power
per node, PUE, power cap, cooling capacity, tariff) and the market price and grid carbon intensity now, so it
meters the way the twin accounts (``sim/accounting.py``):

- IT power = busy nodes x training power per node + idle, up nodes x idle power per node, per cluster; capped by
  what the power cap (over PUE) and the cooling capacity allow; 0 while the factory's lease is lost (the site is
  treated as down, as the twin treats a lost site). Busy nodes of a cluster = GPUs held by jobs of its
  accelerator / GPUs per node (clusters of one accelerator fill in declaration order). Facility power = IT x PUE.
- Energy, cost and carbon are integrated at each reading (every ``/metrics`` scrape): the facility power read at
  the previous reading x the time since, priced at the effective price (PPA share at its fixed price, the rest
  at the market price now) and the grid's carbon intensity now. Totals start at 0 with the server process
  (Prometheus treats the restart as a counter reset).

Contract: :meth:`PowerMeter.read` is called with monotonically non-decreasing ``now_unix_s``; an earlier time
integrates nothing.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from superfactory.domain.factory import Factory
from superfactory.models.tariff import effective_price_usd_per_mwh

J_PER_MWH = 3.6e9


@dataclass(frozen=True, slots=True)
class Reading:
    """One factory's power now: IT and facility (IT x PUE), W."""

    it_power_w: float
    power_w: float


def it_power_w(f: Factory, busy_gpus: Mapping[str, int], down_nodes: set[int]) -> float:
    """IT power of ``f`` with ``busy_gpus`` (by accelerator) held by jobs and ``down_nodes`` failed, W, capped."""
    left = dict(busy_gpus)
    total = 0.0
    for c in f.clusters:
        per_node = c.system.gpus_per_node
        down = sum(1 for n in down_nodes if c.node_offset <= n < c.node_end)
        up = c.nodes - down
        busy = min(up, -(-left.get(c.accelerator, 0) // per_node))
        left[c.accelerator] = max(0, left.get(c.accelerator, 0) - busy * per_node)
        total += busy * c.system.training_power_per_node_w + (up - busy) * c.system.idle_power_per_node_w
    return min(total, f.power_cap_w / f.pue, f.cooling_capacity_w)


class PowerMeter:
    """Power now and energy, cost and carbon so far, per factory id (see the module docstring)."""

    def __init__(self) -> None:
        self.at_unix_s: float | None = None
        self.readings: dict[str, Reading] = {}
        self.energy_j: Counter[str] = Counter()
        self.cost_usd: Counter[str] = Counter()
        self.carbon_g: Counter[str] = Counter()

    def read(self, now_unix_s: float, factories: list[Factory], busy: Mapping[tuple[str, str], int],
             down: Mapping[str, set[int]], up: Mapping[str, bool], price_now: Mapping[str, float],
             carbon_now: Mapping[str, float]) -> dict[str, Reading]:
        """Integrate since the last reading at the previous power, then read the power now.

        ``busy``: GPUs held by jobs per ``(factory, accelerator)``; ``down``: failed nodes per factory; ``up``:
        whether the factory holds its lease; ``price_now`` by market (USD/MWh), ``carbon_now`` by grid
        (gCO2/kWh). A factory without a price or carbon figure accrues no cost or carbon."""
        dt = 0.0 if self.at_unix_s is None else max(0.0, now_unix_s - self.at_unix_s)
        for f in factories:
            prev = self.readings.get(f.id)
            if prev is not None and dt > 0:
                joules = prev.power_w * dt
                mwh = joules / J_PER_MWH
                self.energy_j[f.id] += joules
                if f.market in price_now:
                    self.cost_usd[f.id] += mwh * effective_price_usd_per_mwh(price_now[f.market], f.ppa_share,
                                                                             f.ppa_usd_per_mwh)
                if f.grid in carbon_now:
                    self.carbon_g[f.id] += mwh * 1000.0 * carbon_now[f.grid]
        self.at_unix_s = now_unix_s if self.at_unix_s is None else max(self.at_unix_s, now_unix_s)
        readings = {}
        for f in factories:
            gpus = {acc: n for (fid, acc), n in busy.items() if fid == f.id}
            it = it_power_w(f, gpus, down.get(f.id, set())) if up.get(f.id, False) else 0.0
            readings[f.id] = Reading(it, it * f.pue)
        self.readings = readings
        return readings
