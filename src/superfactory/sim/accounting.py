"""Hourly energy, cost and carbon accounting, price events and scripted price shocks.

Part of :class:`~superfactory.sim.fleet.SimulatedFleet` (a mixin over its state). Each simulated hour closes
into one :class:`~superfactory.sim.factorystate.HourRow` per factory; job energy is attributed from the
training power of the nodes a job holds.
"""

from __future__ import annotations

from collections.abc import Mapping

from superfactory.domain.events import EventKind
from superfactory.domain.units import HOUR_S
from superfactory.models.tariff import effective_price_usd_per_mwh
from superfactory.sim.factorystate import HourRow
from superfactory.sim.jobstate import JobRuntime
from superfactory.sim.kernel import PRIO_SIGNAL
from superfactory.sim.records import new_event


class AccountingMixin:
    """Hourly energy/cost/carbon rows, per-job energy, price events and shocks (uses SimulatedFleet's state)."""

    _hist_cache: tuple[int, Mapping[str, tuple[float, ...]], Mapping[str, tuple[float, ...]]] | None
    _signals: tuple[int, int, dict[str, float], dict[str, float]] | None

    def _accrue_job_energy(self, jr: JobRuntime, now: int,
                           memo: dict[tuple[int, int], tuple[float, float]] | None = None) -> None:
        """Attribute facility energy, cost and carbon of the job's nodes since max(hold start, hour start).
        ``memo``: (factory index, start) -> (effective price, carbon intensity), shared by the jobs of one
        accounting close (every job in a factory mostly starts at the hour's start: one price lookup, not one
        per job)."""
        start = max(jr.held_since_s, self._hour_start_s)
        dt = now - start
        if dt <= 0 or jr.factory < 0:
            return
        r = self.rt[jr.factory]
        f = r.factory
        if jr.held_power_w < 0:  # cached per placement: summing 2,048 nodes every hour adds up
            jr.held_power_w = float(r.node_power_busy_w[jr.node_array()].sum())
        power_w = jr.held_power_w * f.pue if r.up else 0.0
        e_j = power_w * dt
        jr.energy_j += e_j
        mwh = e_j / 3.6e9
        key = (jr.factory, start)
        signal = memo.get(key) if memo is not None else None
        if signal is None:
            signal = (effective_price_usd_per_mwh(self.price_at(f.market, start), f.ppa_share, f.ppa_usd_per_mwh),
                      self.carbon[f.grid].at(start))
            if memo is not None:
                memo[key] = signal
        jr.cost_usd += mwh * signal[0]
        jr.carbon_g += mwh * 1000.0 * signal[1]  # MWh -> kWh, x g/kWh

    def _accrue_holding_energy(self, now: int) -> None:
        """:meth:`_accrue_job_energy` of every job holding nodes, at an accounting close (the same arithmetic,
        in the same order, inlined: ~10^6 job-hours a fleet-year). One price and carbon look-up per factory."""
        hour_start = self._hour_start_s
        rt = self.rt
        # per factory: its PUE (None while down: no energy) and the (price, carbon) in force at the hour's start,
        # which is where almost every job's period starts; a job placed during the hour looks its start up once
        pue = [r.factory.pue if r.up else None for r in rt]
        at_start: list[tuple[float, float] | None] = [None] * len(rt)
        signal: dict[tuple[int, int], tuple[float, float]] = {}
        for jr in self.holding.values():
            fi = jr.factory
            start = jr.held_since_s
            start = start if start > hour_start else hour_start
            dt = now - start
            if dt <= 0 or fi < 0:
                continue
            if jr.held_power_w < 0:
                jr.held_power_w = float(rt[fi].node_power_busy_w[jr.node_array()].sum())
            p = pue[fi]
            e_j = (jr.held_power_w * p if p is not None else 0.0) * dt
            jr.energy_j += e_j
            mwh = e_j / 3.6e9
            sig = at_start[fi] if start == hour_start else signal.get((fi, start))
            if sig is None:
                sig = self._signal_at(fi, start)
                if start == hour_start:
                    at_start[fi] = sig
                else:
                    signal[(fi, start)] = sig
            jr.cost_usd += mwh * sig[0]
            jr.carbon_g += mwh * 1000.0 * sig[1]

    def _signal_at(self, fi: int, t_s: int) -> tuple[float, float]:
        """Factory ``fi``'s effective energy price (PPA blended) and grid carbon intensity in force at ``t_s``."""
        f = self.rt[fi].factory
        return (effective_price_usd_per_mwh(self.price_at(f.market, t_s), f.ppa_share, f.ppa_usd_per_mwh),
                self.carbon[f.grid].at(t_s))

    def _emit_prices(self, now: int) -> None:
        for market, series in sorted(self.prices.items()):
            if now == 0 or series.index(now) != series.index(now - 1):
                self.emit(new_event(now, EventKind.PRICE_CHANGED, "", market, value=self.price_at(market, now)))

    def price_shock(self, market: str, factor: float, duration_s: int) -> None:
        """Multiply ``market``'s price by ``factor`` from now for ``duration_s`` (whole hours)."""
        self.price_factor[market] *= factor
        self._hist_cache = None
        self._signals = None
        self.emit(new_event(self.k.now_s(), EventKind.PRICE_CHANGED, "", market, cause=f"shock x{factor:g}",
                        value=self.price_at(market, self.k.now_s())))
        self.k.after(duration_s, PRIO_SIGNAL - 1, self._end_shock, market, factor)
        self.request_decision()

    def _end_shock(self, market: str, factor: float) -> None:
        self.price_factor[market] /= factor
        self._hist_cache = None
        self._signals = None
        self.emit(new_event(self.k.now_s(), EventKind.PRICE_CHANGED, "", market, cause="shock ends",
                        value=self.price_at(market, self.k.now_s())))
        self.request_decision()

    def _hour_tick(self) -> None:
        now = self.k.now_s()
        self.close_hour(now)
        self._emit_prices(now)
        self.k.after(HOUR_S, PRIO_SIGNAL, self._hour_tick)
        if self.pending or self.periodic:  # new prices matter to waiting jobs and to periodic (geo) policies
            self.request_decision()

    def close_hour(self, now: int) -> None:
        """Close the accounting period [hour start, now): one HourRow per factory."""
        start = self._hour_start_s
        span = now - start
        if span <= 0:
            return
        self._accrue_holding_energy(now)
        for r in self.rt:
            r.accrue(now)
            f = r.factory
            # nodes beyond what the power cap and cooling allow are dark: never bill more than the caps permit
            # (only an idle floor above the cap can get here; placements are checked against it)
            it_mwh = min(r.hour_energy_j, min(f.power_cap_w / f.pue, f.cooling_capacity_w) * span) / 3.6e9
            fac_mwh = it_mwh * f.pue
            price = self.price_at(f.market, start)
            ci = self.carbon[f.grid].at(start)
            gpus = f.gpus
            self.hour_rows.append(
                HourRow(
                    f.id, start // HOUR_S, it_mwh, fac_mwh, price, ci,
                    fac_mwh * effective_price_usd_per_mwh(price, f.ppa_share, f.ppa_usd_per_mwh),
                    fac_mwh * ci / 1000.0,
                    r.hour_busy_gpu_s / (gpus * span) if gpus else 0.0, r.hour_busy_gpu_s / span,
                )
            )
            row = self.hour_rows[-1]
            for quantity, value in (("facility_mwh", row.facility_energy_mwh), ("it_mwh", row.it_energy_mwh),
                                    ("usd", row.cost_usd), ("tco2", row.carbon_t),
                                    ("busy_gpu_s", r.hour_busy_gpu_s), ("gpu_s", float(gpus * span))):
                self.emit(new_event(start, EventKind.METERED, "", f.id, span, quantity, value))
            r.total_busy_gpu_s += r.hour_busy_gpu_s
            r.total_gpu_s += gpus * span
            r.hour_energy_j = 0.0
            r.hour_busy_gpu_s = 0.0
        for m, hist in self._price_hist.items():
            hist.extend(self.price_at(m, h * HOUR_S) for h in range(len(hist), now // HOUR_S))
        for g, hist in self._carbon_hist.items():
            hist.extend(self.carbon[g].at(h * HOUR_S) for h in range(len(hist), now // HOUR_S))
        self._hour_start_s = now
