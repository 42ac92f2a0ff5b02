"""geo on ``default`` (issue 18's outcomes, replacing issue 5's calibration-pinned headline): with a GPU-hour
valued at the hardware's capital rate, geo never buys a power saving with idle accelerators:

- total cost (capital + power) per productive GPU-hour is not above home-region's;
- productive GPU-hours are at least 99 % of home-region's, and work left pending at the end no larger;
- power cost per productive GPU-hour is still lower (the saving comes from *where* work runs);
- no job waits for price (the fleet is loaded; waiting costs more than any hour's power), and started jobs spend
  under 10 % of their time off their nodes (``policy_wait_share``, 7.6 % measured, all of it re-placement after
  failures; wave-1 geo spent ~40 % there).

Both policies run the full 30-day scenario on the same seed (a minute or two on two cores).
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from typing import Any

from superfactory.observe.summary import summarize
from superfactory.scenario.loader import load_scenario
from superfactory.sim.twin import run_twin


def _run(policy: str) -> dict[str, Any]:
    r = run_twin(load_scenario("default"), policy=policy)
    s = summarize(r)
    s["pending_work_gpu_h"] = sum(jr.job.gpus * max(0.0, jr.job.work_s - jr.progress_s) / 3600 for jr in r.jobs
                                  if jr.submitted and jr.completed_s < 0)
    s["price_waits"] = sum("cheaper power" in why for hist in r.reason_history.values() for _, why in hist)
    return s


def test_geo_costs_no_more_in_total_and_keeps_throughput() -> None:
    with ProcessPoolExecutor(2) as ex:
        home, geo = ex.map(_run, ["home-region", "geo"])
    assert geo["total_usd_per_productive_gpu_hour"] <= home["total_usd_per_productive_gpu_hour"]
    assert geo["training_throughput"] >= 0.99 * home["training_throughput"]
    assert geo["pending_work_gpu_h"] <= home["pending_work_gpu_h"]
    assert geo["usd_per_productive_gpu_hour"] < home["usd_per_productive_gpu_hour"]
    assert geo["price_waits"] == 0
    assert geo["policy_wait_share"] <= 0.10  # measured 0.076 (seed 7): waits for capacity after failures
    assert geo["failure_ettr"] >= 0.85
