"""A pushed price is on /metrics at the next scrape, whoever read the signals in between.

The scheduler's cycle reads the signal histories too; it must not swallow the news of a push that the metrics fold
(in-process or in the worker) has not seen yet. Before the generation counter, a cycle between the push and the
scrape cleared a shared "dirty" flag and the scrape served the cached price for up to its 30 s TTL."""

from __future__ import annotations

from pathlib import Path

import pytest
from live_harness import FLEET, METRICS_TOKEN, Plane, make_live, parse_exposition

PRICE = "superfactory_factory_energy_price_usd_per_megawatt_hour"


def _price(plane: Plane, factory: str) -> float:
    r = plane.metrics({"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert r.status_code == 200, r.text
    return next(v for lb, v in parse_exposition(r.text)[PRICE] if lb["factory"] == factory)


@pytest.mark.parametrize("worker", [False, True], ids=["in-process", "worker"])
def test_a_push_shows_at_the_next_scrape_even_after_a_cycle(tmp_path: Path, worker: bool) -> None:
    plane = Plane(make_live(tmp_path, manual=True, worker=worker))
    try:
        plane.call("POST", "/v1/fleet/import", json={"yaml": FLEET})
        before = _price(plane, "texas")  # caches the current prices in the fold
        for n, value in enumerate((before + 1234.5, before + 777.25), start=1):
            plane.call("POST", "/v1/signals", json={"points": [{"kind": "price", "key": "ERCOT", "value": value,
                                                                 "hour": 0}]})
            plane.cycle()  # the scheduler reads the histories first
            assert _price(plane, "texas") == value, f"push {n}"
            assert _price(plane, "virginia") != value  # only the pushed market moved
    finally:
        plane.stop()
        plane.live.engine.dispose()
