"""Market signals: hourly electricity prices (per market) and grid carbon intensity (per grid).

Two sources, one history: series **replayed** from the imported scenario (hour ``h`` of the fleet takes the
series' value at ``h`` hours, wrapping like :class:`~superfactory.domain.signals.StepSeries`), and values
**pushed** by a feed (``POST /v1/signals``), which override the replay for their hour. The history a snapshot
carries runs from hour 0 to the current hour, exactly like the twin's, so ``geo`` forecasts from the same kind
of data in both worlds. An hour with neither source carries the previous hour's value forward.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from superfactory.domain.signals import StepSeries
from superfactory.domain.units import HOUR_S
from superfactory.live.context import Live
from superfactory.live.errors import ApiError
from superfactory.live.store import tables as t

KINDS = {"price": "USD/MWh", "carbon": "gCO2/kWh"}
MAX_BATCH = 10_000
#: ``live.extras`` key of the push counter: every reader compares the value it cached against it, so one reader
#: (the scheduler's cycle) can never consume the news of a push that another (the metrics fold) has not seen yet,
#: as a shared "dirty" flag that the first reader cleared did.
GENERATION = "signals_generation"


def generation(live: Live) -> int:
    """How many pushes ``live`` has stored so far; a reader whose cache is of an older generation re-reads."""
    return int(live.extras.get(GENERATION, 0))


def push(live: Live, points: list[dict[str, Any]]) -> dict[str, Any]:
    """Store pushed values ``{kind, key, value, at_unix_s | hour}``; a later push for the same hour wins."""
    if not 1 <= len(points) <= MAX_BATCH:
        raise ApiError(422, "invalid_request", f"send 1..{MAX_BATCH} signal points per request, got {len(points)}")
    epoch = live.clock.unix_s() - live.clock.now_s()
    rows: dict[tuple[str, str, int], float] = {}
    for i, p in enumerate(points):
        if p["kind"] not in KINDS:
            raise ApiError(422, "invalid_request", f"points[{i}].kind: {p['kind']!r} is not one of {sorted(KINDS)}")
        hour = p.get("hour")
        if hour is None:
            if p.get("at_unix_s") is None:
                raise ApiError(422, "invalid_request", f"points[{i}]: give 'hour' (fleet hour) or 'at_unix_s'")
            hour = int((p["at_unix_s"] - epoch) // HOUR_S)
        if hour < 0:
            raise ApiError(422, "invalid_request", f"points[{i}]: the hour is before the fleet's epoch")
        rows[(p["kind"], p["key"], int(hour))] = float(p["value"])
    with live.engine.begin() as conn:
        for kind, key, hour in rows:
            conn.execute(t.signals.delete().where(t.signals.c.kind == kind, t.signals.c.key == key,
                                                  t.signals.c.hour == hour))
        conn.execute(t.signals.insert(), [{"kind": k, "key": key, "hour": h, "value": v}
                                          for (k, key, h), v in rows.items()])
    with live.lock:  # bumped after the commit, so a reader that sees the new generation sees the new rows
        live.extras[GENERATION] = generation(live) + 1
    live.wake.set()
    return {"stored": len(rows)}


def histories(live: Live, now_s: int) -> tuple[dict[str, tuple[float, ...]], dict[str, tuple[float, ...]],
                                               dict[str, float], dict[str, float]]:
    """``(price_history, carbon_history, price_now, carbon_now)`` at fleet time ``now_s`` (cached per hour)."""
    hour = now_s // HOUR_S
    # the generation is read before the rows: a push committed after this read bumps it past the cached one
    key = (hour, now_s if _sub_hourly(live) else -1, generation(live))
    cache = live.extras.get("signals_cache")
    if cache is not None and cache[0] == key:
        return cache[1]
    with live.engine.connect() as conn:
        series = {(r.kind, r.key): StepSeries(f"{r.kind}:{r.key}", r.unit, r.step_s, tuple(r.points))
                  for r in conn.execute(sa.select(t.series))}
        pushed: dict[tuple[str, str], dict[int, float]] = {}
        for r in conn.execute(sa.select(t.signals).where(t.signals.c.hour <= hour)):
            pushed.setdefault((r.kind, r.key), {})[r.hour] = r.value
    live.extras["sub_hourly"] = any(s.step_s < HOUR_S for s in series.values())
    out: dict[str, dict[str, tuple[float, ...]]] = {"price": {}, "carbon": {}}
    current: dict[str, dict[str, float]] = {"price": {}, "carbon": {}}
    for kind, key in sorted(set(series) | set(pushed)):
        s = series.get((kind, key))
        p = pushed.get((kind, key), {})
        values: list[float] = []
        last = 0.0
        for h in range(hour + 1):
            if h in p:
                last = p[h]
            elif s is not None:
                last = s.at(now_s if h == hour else h * HOUR_S)
            values.append(last)
        out[kind][key] = tuple(values)
        current[kind][key] = values[-1]
    result = (out["price"], out["carbon"], current["price"], current["carbon"])
    live.extras["signals_cache"] = (key, result)
    return result


def _sub_hourly(live: Live) -> bool:
    return bool(live.extras.get("sub_hourly", False))


def history_doc(live: Live, kind: str, key: str) -> dict[str, Any]:
    if kind not in KINDS:
        raise ApiError(422, "invalid_request", f"kind must be one of {sorted(KINDS)}")
    prices, carbon, _, _ = histories(live, live.clock.now_s())
    values = (prices if kind == "price" else carbon).get(key)
    if values is None:
        known = sorted(prices if kind == "price" else carbon)
        raise ApiError(404, "signal_not_found", f"no {kind} signal {key!r}; known: {', '.join(known) or 'none'}")
    return {"kind": kind, "key": key, "unit": KINDS[kind], "hourly": list(values)}
