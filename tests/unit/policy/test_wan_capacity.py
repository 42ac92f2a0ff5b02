"""Checkpoint-sync bandwidth as a capacity row of geo's assignment (policy/wan_capacity.py), end to end in the
twin: a cheap factory whose links cannot replicate a job's checkpoints does not get the job once the WAN is
modelled, and does without it."""

from __future__ import annotations

from superfactory.domain.events import EventKind
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.twin import run_twin


def geo_scenario(wan: bool) -> str:
    def fac(fid: str, market: str) -> str:
        return (f"  - {{id: {fid}, region: {fid}, market: {market}, power_cap: 20MW, cooling_capacity: 20MW, "
                f"systems: [{{system: dgx-h100, nodes: 64}}]}}\n")

    return (
        "name: geo-wan\nduration: 1h\npolicy: geo\nfactories:\n" + fac("a", "ERCOT") + fac("b", "PJM")
        + fac("c", "PJM")
        + "links:\n  - {a: a, b: b, bandwidth: 1Gbps, latency: 5ms}\n  - {a: a, b: c, bandwidth: 1Gbps, latency: 5ms}\n"
        + "  - {a: b, b: c, bandwidth: 400Gbps, latency: 5ms}\n"
        + "markets: {ERCOT: {mean_usd_per_mwh: 5}, PJM: {mean_usd_per_mwh: 60}}\n"
        + "jobs:\n  - {id: big, accelerator: H100-SXM, gpus: 256, work: 30d,"
          " checkpoint: {interval: 15min, blocking: 10s, size: 2TB, write_bandwidth: 800Gbps}}\n"
        + "failures: {rate_scale: 0, planned: false}\n"
        + ("wan: {policy: wan-naive}\n" if wan else "")
    )


def placed_at(wan: bool) -> str:
    r = run_twin(parse_scenario(geo_scenario(wan), "geo-wan.yaml"))
    return next(e.factory for e in r.events if e.kind is EventKind.JOB_PLACED and e.job == "big")


def test_geo_keeps_checkpointing_work_off_a_site_whose_links_cannot_replicate_it() -> None:
    # 3 copies of 2 TB every 15 min = 53 Gb/s of sync; a has 2 Gb/s of WAN egress
    assert placed_at(wan=False) == "a"  # cheapest power wins when the WAN is not modelled
    assert placed_at(wan=True) in {"b", "c"}
