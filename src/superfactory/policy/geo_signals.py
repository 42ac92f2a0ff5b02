"""geo's cost signals: forecast power and carbon cost per factory, and the value of a GPU-hour (:class:`GeoSignals`,
a part of :class:`~superfactory.policy.geo.GeoPolicy`).

- **cost signals**: per factory, the effective cost of a facility MWh (``alpha`` x price + ``beta`` x carbon
  price x intensity) for the current hour (realised) and the next 23 (forecast from history only,
  :class:`~superfactory.policy.forecast.SeasonalForecaster`), cached per hour and value;
- **the value of a GPU-hour** ``lambda_a`` per accelerator: ``value_usd_per_gpu_hour`` when set, else the
  catalog's capital rate, else (a system without a list price) a quantile of next-day GPU-hour power costs.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from superfactory.domain.fleet import NODE_DOWN, FleetSnapshot
from superfactory.models.tco import capital_usd_per_gpu_hour
from superfactory.policy.forecast import SeasonalForecaster, SignalWindows
from superfactory.policy.geo_columns import _BIG, _system


class GeoSignals:
    """Forecast cost signals and the value of a GPU-hour (module docstring); state lives on the policy."""

    alpha: float
    beta: float
    horizon_h: int
    capacity_share: float
    value_usd_per_gpu_hour: float | None
    forecaster: SeasonalForecaster
    _fc_cache: dict[tuple[str, str, int, float], tuple[float, npt.NDArray[np.float64]]]
    _carbon_mean: list[float]
    _carbon_of: FleetSnapshot | None  # the snapshot the cost signals were last made from

    def _signal(self, kind: str, name: str, history: tuple[float, ...], now_value: float
                ) -> tuple[float, npt.NDArray[np.float64]]:
        """(mean over the next ``horizon_h`` hours, 24-hour path) of a signal, current hour = ``now_value``.

        Forecasts come from ``history`` (past and current hour only) and are cached per hour.
        """
        key = (kind, name, len(history), now_value)
        hit = self._fc_cache.get(key)
        if hit is not None:
            return hit
        if len(history) == 0:
            path = np.full(24, now_value)
        else:
            hist = list(history[-(5 * 168 + 1):])  # what the forecaster reads (its window_h), current hour last
            hist[-1] = now_value
            path = np.concatenate([[now_value], self.forecaster.forecast(hist, 23)])
        path = np.maximum(path, 0.0)
        out = (float(path[: self.horizon_h].mean()), path)
        if len(self._fc_cache) > 4096:
            self._fc_cache.clear()
        self._fc_cache[key] = out
        return out

    def _prefetch(self, asks: list[tuple[str, str, tuple[float, ...], float]]) -> None:
        """Forecast, in one batch (:meth:`~.forecast.SeasonalForecaster.forecast_windows`), the signals of
        ``asks`` (kind, name, history, current value) that :meth:`_signal` has not cached, and cache them as it
        would: the same paths and means, bit for bit, in the same order (issue 12: the windows are kept from hour
        to hour, :class:`~.forecast.SignalWindows`, and the paths made as rows of one array)."""
        todo: dict[tuple[str, str, int, float], tuple[tuple[float, ...], float]] = {}
        for kind, name, history, now_value in asks:
            key = (kind, name, len(history), now_value)
            if len(history) and key not in self._fc_cache:
                todo.setdefault(key, (history, now_value))
        if len(todo) < 2:
            return  # nothing to batch: _signal forecasts it alone
        # each series' window as the forecaster reads it (the last window_h of the last 5 * 168 + 1 hours, the
        # current one at ``now_value``), kept from hour to hour by SignalWindows (the same float64 values)
        wins = self.__dict__.get("_fc_windows")
        if wins is None:
            cut = self.forecaster.window_h
            wins = self.__dict__["_fc_windows"] = SignalWindows(5 * 168 + 1 if cut is None else min(cut, 5 * 168 + 1))
        windows = [wins.window(key[:2], history, now_value) for key, (history, now_value) in todo.items()]
        fc = self.forecaster.forecast_windows(windows, 23)
        # the paths as rows of one array: np.maximum of [now_value, forecast...] with 0.0, and the horizon means
        # as row means of a contiguous copy (numpy sums each row as it sums that row alone: the same bits)
        paths = np.empty((len(windows), 24))
        paths[:, 0] = [now_value for _h, now_value in todo.values()]
        paths[:, 1:] = fc
        np.maximum(paths, 0.0, out=paths)
        means = np.ascontiguousarray(paths[:, : self.horizon_h]).mean(axis=1).tolist()
        for r, key in enumerate(todo):
            if len(self._fc_cache) > 4096:
                self._fc_cache.clear()
            self._fc_cache[key] = (means[r], paths[r])

    def _usd_per_mwh(self, snap: FleetSnapshot) -> tuple[list[float], list[npt.NDArray[np.float64]]]:
        """Per factory: forecast-mean effective cost (USD per facility MWh) and its 24 h path.

        With no carbon price (``beta`` 0) the carbon forecasts do not enter the cost and are not made here; a job
        with a carbon budget asks for them (:meth:`_carbon_means`). The paths are the same values: ``alpha`` x
        price + 0.0 (a zero carbon term added element by element)."""
        means: list[float] = []
        paths: list[npt.NDArray[np.float64]] = []
        carbon = self.beta != 0.0
        asks: list[tuple[str, str, tuple[float, ...], float]] = []
        # each history read once per factory (the snapshot may build the tuple on every read)
        price_h = [snap.price_history.get(f.market, ()) for f in snap.factories]
        carbon_h = [snap.carbon_history.get(f.grid, ()) for f in snap.factories] if carbon else []
        for i, (f, st) in enumerate(zip(snap.factories, snap.states, strict=True)):
            asks.append(("p", f.market, price_h[i], st.price_usd_per_mwh))
            if carbon:
                asks.append(("c", f.grid, carbon_h[i], st.carbon_g_per_kwh))
        self._prefetch(asks)
        self._carbon_mean.clear()
        self._carbon_of = snap
        for i, (f, st) in enumerate(zip(snap.factories, snap.states, strict=True)):
            pm, pp = self._signal("p", f.market, price_h[i], st.price_usd_per_mwh)
            if not carbon:
                means.append(self.alpha * pm + 0.0)
                paths.append(self.alpha * pp + 0.0)
                continue
            cm, cp = self._signal("c", f.grid, carbon_h[i], st.carbon_g_per_kwh)
            self._carbon_mean.append(cm)
            # carbon: g/kWh == kg/MWh -> t/MWh is /1000
            means.append(self.alpha * pm + self.beta * cm / 1000.0)
            paths.append(self.alpha * pp + self.beta * cp / 1000.0)
        return means, paths

    def _carbon_means(self) -> list[float]:
        """Forecast gCO2/kWh per factory (mean over the next ``horizon_h`` hours) of the snapshot the cost signals
        were last made from (:meth:`_usd_per_mwh`): made then when carbon has a price, else on first ask (carbon
        budgets), from the same histories."""
        if not self._carbon_mean and self._carbon_of is not None:
            snap = self._carbon_of
            self._carbon_mean.extend(
                self._signal("c", f.grid, snap.carbon_history.get(f.grid, ()), st.carbon_g_per_kwh)[0]
                for f, st in zip(snap.factories, snap.states, strict=True))
        return self._carbon_mean

    def _lambdas(self, snap: FleetSnapshot, paths: list[npt.NDArray[np.float64]]) -> dict[str, float]:
        """Value of a GPU-hour per accelerator (USD/GPU-h).

        ``value_usd_per_gpu_hour`` when set; otherwise what the hardware costs its owner per hour, the
        catalog's capital rate (:func:`~superfactory.models.tco.capital_usd_per_gpu_hour`: list price with
        networking and storage, straight line over the depreciation period), so an owned GPU idles only when
        its power costs more than its capital (scarcity hours). Only for a system without a list price does
        the wave-1 rule remain: a quantile of next-day forecast GPU-hour costs (``capacity_share``).
        """
        lam: dict[str, float] = {}
        accs = sorted({a for f in snap.factories for a in f.accelerators})
        demand: dict[str, int] = {}
        for a in accs:
            value = self._value_of(snap, a)
            if value is not None:
                lam[a] = value
                continue
            if not demand:  # the quantile rule only: GPUs asked for per accelerator
                demand = dict.fromkeys(accs, 0)
                for v in (*snap.pending, *snap.running):
                    demand[v.job.accelerator] = demand.get(v.job.accelerator, 0) + v.job.gpus
            costs: list[npt.NDArray[np.float64]] = []
            weights: list[float] = []
            for i, (f, st) in enumerate(zip(snap.factories, snap.states, strict=True)):
                sysinfo = _system(f, a)
                if sysinfo is None or not st.up:
                    continue
                gpn, dw = sysinfo
                status = np.frombuffer(st.node_status, dtype=np.uint8)
                healthy = sum(int((status[c.node_offset:c.node_end] != NODE_DOWN).sum()) for c in f.clusters_of(a))
                costs.append(paths[i] * dw / gpn * f.pue / 1e6)
                weights.append(float(healthy * gpn))
            cap = sum(weights)
            if cap <= 0:
                lam[a] = _BIG
                continue
            q = demand[a] / cap
            if q >= 1.0 and self.capacity_share >= 1.0:
                lam[a] = _BIG
                continue
            q = min(q * 1.05, self.capacity_share)  # a little slack above demand so queues drain
            c = np.concatenate(costs)
            w = np.repeat(np.asarray(weights) / 24.0, 24)
            order = np.argsort(c, kind="stable")
            cw = np.cumsum(w[order]) / w.sum()
            k = int(np.searchsorted(cw, q))
            lam[a] = float(c[order][min(k, c.size - 1)])
        return lam

    def _value_of(self, snap: FleetSnapshot, acc: str) -> float | None:
        """The configured or catalog (capital) value of a GPU-hour of ``acc``, or ``None`` if unknown."""
        if self.value_usd_per_gpu_hour is not None:
            return self.value_usd_per_gpu_hour
        rates = [r for f in snap.factories for c in f.clusters_of(acc)
                 if (r := capital_usd_per_gpu_hour(c.system)) is not None]
        return max(rates) if rates else None
