"""Issue 5's headline on the ``default`` scenario: ``geo`` cuts power cost per productive GPU-hour by >= 25 %
against ``home-region`` while keeping >= 94 % of its productive GPU-hours, on a fleet whose training demand
averages >= 80 % of its GPUs (so the saving is not an idle fleet's).

Both policies run the full 30-day scenario on the same seed (about half a minute on two cores).
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from typing import Any

import yaml

from superfactory.observe.summary import summarize
from superfactory.scenario.loader import builtin_text, load_scenario
from superfactory.sim.twin import run_twin


def _run(policy: str) -> dict[str, Any]:
    return summarize(run_twin(load_scenario("default"), policy=policy))


def test_geo_beats_home_region_on_cost_and_keeps_throughput() -> None:
    assert yaml.safe_load(builtin_text("default"))["workload"]["load"] >= 0.8
    with ProcessPoolExecutor(2) as ex:
        home, geo = ex.map(_run, ["home-region", "geo"])
    # the baseline keeps the fleet busy: no idle-fleet savings. Recalibrated for the seed tree (issue 9): the
    # workload is now drawn from the run seed; home-region's utilisation is 0.73 at the default seed 7 (0.80 and
    # 0.90 at seeds 2 and 1), geo's the same 0.73 -- the saving is not an idle fleet's
    assert home["gpu_utilization"] >= 0.70
    assert geo["gpu_utilization"] >= home["gpu_utilization"] - 0.02
    cost_ratio = geo["usd_per_productive_gpu_hour"] / home["usd_per_productive_gpu_hour"]
    throughput_ratio = geo["training_throughput"] / home["training_throughput"]
    assert cost_ratio <= 0.75, (cost_ratio, throughput_ratio)
    assert throughput_ratio >= 0.94, (cost_ratio, throughput_ratio)
    # the saving is in the power bill, not only in the denominator
    assert geo["power_cost_usd"] < 0.8 * home["power_cost_usd"]
