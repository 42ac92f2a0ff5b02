"""Headroom table for inference pre-placement on real traces (issue 6).

For headroom 1.0, 1.1, 1.3, 1.5 it runs the built-in ``inference-azure`` and ``inference-mooncake`` scenarios
(one simulated day, same seed, only the headroom changed) and reports SLO attainment (share of PoP-minutes
whose P99 TTFT met the SLO), idle GPU share of the reserved inference capacity, cold starts (replicas that
waited for a WAN weight sync), cold-spike minutes, median per-minute P99 and the load / pre-headroom
capacity ratio. Writes benchmarks/results/inference.json. Run: ``.venv/bin/python benchmarks/inference_bench.py``.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from superfactory.scenario.loader import load_scenario
from superfactory.sim.twin import run_twin

HEADROOMS = (1.0, 1.1, 1.3, 1.5)
SCENARIOS = ("inference-azure", "inference-mooncake")


def main() -> None:
    rows = []
    for name in SCENARIOS:
        sc = load_scenario(name)
        assert sc.inference is not None
        for h in HEADROOMS:
            run = dataclasses.replace(sc, inference=dataclasses.replace(sc.inference, headroom=h))
            s = run_twin(run).inference
            assert s is not None
            summ = s.summary()
            rows.append({
                "scenario": name, "headroom": h,
                "slo_attainment": summ["inference_slo_attainment"],
                "idle_share": summ["inference_idle_share"],
                "cold_starts": summ["inference_cold_starts"],
                "cold_spike_minutes": summ["inference_cold_spike_minutes"],
                "weight_syncs": summ["inference_weight_syncs"],
                "p99_ttft_ms_median": summ["inference_p99_ttft_ms_median"],
                "load_vs_provisioned": summ["inference_load_vs_provisioned"],
                "forecast_mape": summ["inference_forecast_mape"],
                "preemptions": summ["inference_preemptions"],
                "gpu_hours": summ["inference_gpu_hours"],
            })
    head = (f"{'scenario':<20}{'headroom':>9}{'SLO min %':>11}{'idle %':>8}{'cold st':>8}{'spike min':>10}"
            f"{'P99 med ms':>11}{'load/prov':>10}{'fc MAPE %':>10}")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['scenario']:<20}{r['headroom']:>9.1f}{100 * r['slo_attainment']:>11.2f}"
              f"{100 * r['idle_share']:>8.1f}{r['cold_starts']:>8d}{r['cold_spike_minutes']:>10d}"
              f"{r['p99_ttft_ms_median']:>11.0f}{r['load_vs_provisioned']:>10.3f}{100 * r['forecast_mape']:>10.2f}")
    out = Path(__file__).parent / "results" / "inference.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"headrooms": list(HEADROOMS), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
