"""Domain values <-> JSON documents for the store (factories, links, compiled jobs, signal series).

Round trips are exact: ``decode_factory(encode_factory(f)) == f`` (floats survive JSON unchanged), which is what
lets the live scheduler hand policies the very same :class:`~superfactory.domain.factory.Factory` values the
twin does. Systems are stored by catalog name and looked up again, so a factory always refers to the catalog.
"""

from __future__ import annotations

from typing import Any

from superfactory.domain.accelerator import SYSTEMS
from superfactory.domain.factory import Cluster, Factory, WanLink
from superfactory.domain.job import CheckpointSpec, RecoverySpec, TrainingJob


def encode_factory(f: Factory) -> dict[str, Any]:
    return {
        "id": f.id, "region": f.region, "market": f.market, "grid": f.grid, "power_cap_w": f.power_cap_w,
        "cooling_capacity_w": f.cooling_capacity_w, "pue": f.pue, "clearances": sorted(f.clearances),
        "jurisdiction": f.jurisdiction, "cloud_region": f.cloud_region, "timezone_offset_h": f.timezone_offset_h,
        "clusters": [
            {"system": c.system.name, "nodes": c.nodes, "node_offset": c.node_offset,
             "domain_offset": c.domain_offset, "nodes_per_rack": c.nodes_per_rack, "nodes_per_leaf": c.nodes_per_leaf,
             "leaves_per_hall": c.leaves_per_hall, "oversubscription": c.oversubscription}
            for c in f.clusters
        ],
    }


def decode_factory(d: dict[str, Any]) -> Factory:
    clusters = tuple(
        Cluster(SYSTEMS[c["system"]], c["nodes"], c["node_offset"], c["domain_offset"], c["nodes_per_rack"],
                c["nodes_per_leaf"], c["leaves_per_hall"], c["oversubscription"])
        for c in d["clusters"]
    )
    return Factory(d["id"], d["region"], d["market"], d["grid"], d["power_cap_w"], d["cooling_capacity_w"], d["pue"],
                   frozenset(d["clearances"]), d["jurisdiction"], clusters, d["cloud_region"], d["timezone_offset_h"])


def encode_link(lk: WanLink) -> dict[str, Any]:
    return {"a": lk.a, "b": lk.b, "bandwidth_gbps": lk.bandwidth_gbps, "latency_ms": lk.latency_ms,
            "egress_usd_per_gb": lk.egress_usd_per_gb}


def encode_job(j: TrainingJob) -> dict[str, Any]:
    """The compiled job minus its id, submit time and priority (those live in their own columns)."""
    return {
        "accelerator": j.accelerator, "gpus": j.gpus, "work_flop": j.work_flop, "mfu": j.mfu,
        "checkpoint": [j.checkpoint.interval_s, j.checkpoint.blocking_s, j.checkpoint.size_bytes,
                       j.checkpoint.write_bandwidth_gbps],
        "recovery": [j.recovery.detect_s, j.recovery.restart_s, j.recovery.hot_swap_s],
        "migratable": j.migratable, "sovereignty": sorted(j.sovereignty), "carbon_budget_tco2": j.carbon_budget_tco2,
        "home_factory": j.home_factory, "tp_size": j.tp_size, "segment_gpus": j.segment_gpus,
        "preemptible": j.preemptible,
    }


def decode_job(job_id: str, d: dict[str, Any], submit_s: int, priority: int) -> TrainingJob:
    return TrainingJob(
        id=job_id, accelerator=d["accelerator"], gpus=d["gpus"], work_flop=d["work_flop"], mfu=d["mfu"],
        submit_s=submit_s, checkpoint=CheckpointSpec(*d["checkpoint"]), recovery=RecoverySpec(*d["recovery"]),
        priority=priority, migratable=d["migratable"], sovereignty=frozenset(d["sovereignty"]),
        carbon_budget_tco2=d["carbon_budget_tco2"], home_factory=d["home_factory"], tp_size=d["tp_size"],
        segment_gpus=d["segment_gpus"], preemptible=d["preemptible"],
    )
