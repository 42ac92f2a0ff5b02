"""Price and carbon forecasters backtested on the real 2023 series (green-dcc-2023), against naive baselines.

For every real price market (9) and carbon grid (8): a rolling-origin backtest over 2023. From day 28 on (four
weeks of history, so the weekly profile is learnt), every ``--step`` hours the forecaster sees the past only and
forecasts the next 24 hours; the forecast ``k`` hours ahead (k = 1, 6, 24) is scored against the truth.
Baselines on the same origins and targets:
- persistence: the last observed value;
- same hour yesterday: the value 24 h before the target (at k = 24 this *is* the last value, so the two
  baselines coincide there);
- same hour last week: the value 168 h before the target (a stronger seasonal baseline, for reference).

Error: MAPE, with the denominator floored at ``--floor`` USD/MWh (or gCO2/kWh): European prices cross zero (DE-LU
has 292 negative hours in 2023) and |error| / |~0| would let a handful of hours dominate the mean. The floor is
small next to the series' levels (US ~$35-60, EU ~$100, SG ~$185/MWh) and applies to every method alike.

Goal (issue 17): the forecaster beats both persistence and same-hour-yesterday at 24 h on at least 7 of the 9
price series. Methods: ``seasonal`` is policy/forecast.py's SeasonalForecaster as the twin's geo policy uses it.

Usage: python benchmarks/forecast_backtest.py [--step 3] [--markdown docs/forecast-2023.md]
(writes benchmarks/results/forecast_2023.json; needs ../shared/data, exits 0 with a message without it)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from superfactory.policy.forecast import SeasonalForecaster
from superfactory.policy.forecast_seasonal import LagRegressionForecaster
from superfactory.scenario.market_data import CARBON_ZONES, PRICE_ZONES, data_root, load_carbon, load_prices

LEADS = (1, 6, 24)
HORIZON = 24
TRAIN_H = 28 * 24

Forecast = Callable[[np.ndarray], np.ndarray]


def methods() -> dict[str, Forecast]:
    """The forecasters under test, by name (each: history -> forecasts at LEADS)."""
    seasonal = SeasonalForecaster()
    lagreg = LagRegressionForecaster()
    per_hour = LagRegressionForecaster(window_days=112, per_hour=True)
    return {
        "seasonal": lambda h: seasonal.forecast(h, HORIZON)[np.asarray(LEADS) - 1],
        "lag-regression": lambda h: lagreg.forecast_at(h, LEADS),
        "lag-regression-per-hour": lambda h: per_hour.forecast_at(h, LEADS),
    }


def backtest(y: np.ndarray, forecast: Forecast, step_h: int, floor: float) -> dict[str, dict[int, float]]:
    """MAPE (%) by method and lead for one series (see the module docstring)."""
    errs: dict[str, dict[int, list[float]]] = {
        m: {k: [] for k in LEADS} for m in ("forecaster", "persistence", "same_hour_yesterday", "same_hour_last_week")
    }
    for t in range(TRAIN_H, y.size - HORIZON + 1, step_h):
        pred = forecast(y[:t])
        for i, k in enumerate(LEADS):
            target = t - 1 + k
            truth = y[target]
            den = max(abs(truth), floor)
            errs["forecaster"][k].append(abs(pred[i] - truth) / den)
            errs["persistence"][k].append(abs(y[t - 1] - truth) / den)
            errs["same_hour_yesterday"][k].append(abs(y[target - 24] - truth) / den)
            errs["same_hour_last_week"][k].append(abs(y[target - 168] - truth) / den)
    return {m: {k: float(np.mean(v) * 100.0) for k, v in by.items()} for m, by in errs.items()}


def run(step_h: int, floor: float, method: str) -> list[dict[str, object]]:
    fc = methods()[method]
    rows: list[dict[str, object]] = []
    series = [("price", m, load_prices(m)) for m in PRICE_ZONES] + [("carbon", g, load_carbon(g)) for g in CARBON_ZONES]
    for kind, name, data in series:
        t0 = time.perf_counter()
        res = backtest(data.values, fc, step_h, floor)
        f24, p24, s24 = (res[m][24] for m in ("forecaster", "persistence", "same_hour_yesterday"))
        rows.append({"kind": kind, "series": name, "zone": data.zone, "unit": data.unit, "mape": res,
                     "beats_both_at_24h": f24 < p24 and f24 < s24, "seconds": time.perf_counter() - t0})
    return rows


def markdown(rows: list[dict[str, object]], step_h: int, floor: float, method: str) -> str:
    out = ["| series | zone | lead | forecaster | persistence | same hour yesterday | same hour last week |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        mape = r["mape"]
        assert isinstance(mape, dict)
        for k in LEADS:
            cells = [mape[m][k] for m in ("forecaster", "persistence", "same_hour_yesterday", "same_hour_last_week")]
            best = min(cells)
            txt = [f"**{c:.1f} %**" if c == best else f"{c:.1f} %" for c in cells]
            out.append(f"| {r['kind']} {r['series']} | {r['zone']} | {k} h | " + " | ".join(txt) + " |")
    wins = sum(1 for r in rows if r["kind"] == "price" and r["beats_both_at_24h"])
    cwins = sum(1 for r in rows if r["kind"] == "carbon" and r["beats_both_at_24h"])
    out.append("")
    out.append(f"Forecaster `{method}`; origins every {step_h} h from 2023-01-29 to the end of 2023; MAPE with the "
               f"denominator floored at {floor:g}. At 24 h the forecaster beats both persistence and same hour "
               f"yesterday on **{wins} of 9** price series and {cwins} of 8 carbon series.")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--step", type=int, default=3, help="hours between forecast origins")
    ap.add_argument("--floor", type=float, default=5.0, help="MAPE denominator floor (USD/MWh or gCO2/kWh)")
    ap.add_argument("--method", default="seasonal", choices=sorted(methods()))
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "forecast_2023.json")
    ap.add_argument("--markdown", type=Path, default=None, help="also write the table to this file")
    args = ap.parse_args()
    if data_root() is None:
        print("forecast_backtest: ../shared/data/green-dcc-2023 is absent; nothing to measure")
        return 0
    t0 = time.perf_counter()
    rows = run(args.step, args.floor, args.method)
    wall = time.perf_counter() - t0
    print(f"{'series':24s} {'lead':>4s} {'fcst':>7s} {'persist':>8s} {'yday':>7s} {'week':>7s}")
    for r in rows:
        mape = r["mape"]
        assert isinstance(mape, dict)
        for k in LEADS:
            print(f"{r['kind'] + ' ' + str(r['series']):24s} {k:>3d}h "
                  f"{mape['forecaster'][k]:6.1f}% {mape['persistence'][k]:7.1f}% "
                  f"{mape['same_hour_yesterday'][k]:6.1f}% {mape['same_hour_last_week'][k]:6.1f}%")
    wins = [str(r["series"]) for r in rows if r["kind"] == "price" and r["beats_both_at_24h"]]
    losses = [str(r["series"]) for r in rows if r["kind"] == "price" and not r["beats_both_at_24h"]]
    cwins = sum(1 for r in rows if r["kind"] == "carbon" and r["beats_both_at_24h"])
    print(f"method={args.method}")
    print(f"price_series_beating_both_at_24h={len(wins)}/9")
    print(f"price_series_not_beating={','.join(losses) or '-'}")
    print(f"carbon_series_beating_both_at_24h={cwins}/8")
    print(f"goal_met={len(wins) >= 7}")
    print(f"wall_s={wall:.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"method": args.method, "step_h": args.step, "floor": args.floor,
                                    "leads_h": list(LEADS), "train_h": TRAIN_H, "rows": rows,
                                    "price_wins_at_24h": len(wins), "carbon_wins_at_24h": cwins}, indent=2) + "\n")
    if args.markdown is not None:
        args.markdown.write_text(markdown(rows, args.step, args.floor, args.method) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
