"""Synthetic WAN fabrics and checkpoint-replication workloads, calibrated on measured inter-region RTTs.

Two generators for the transfer planner's tests and benchmark:

* :func:`region_fabric` — ``n`` sites placed on distinct cloud regions of the skyplane RTT matrix (in
  ``../shared/data/skyplane/latency.csv``), each linked to its nearest neighbours by RTT (3–5 links per site,
  connected), one-way latency half the measured RTT. Without the matrix, sites sit on a seeded ring with
  synthetic latencies (said so in the returned ``source``).
* :func:`checkpoint_herd` — the "checkpoint thundering herd": every factory's training jobs checkpoint on
  15-minute barriers (aligned, or jittered by factory hash), and each checkpoint's critical tier must reach
  three other regions within a durability deadline, with inference traffic on the same links. Sizes follow the
  source material (70B ≈ 0.75 TB, 405B ≈ 4.5 TB per replica).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from superfactory.domain.factory import WanLink
from superfactory.domain.transfer import TrafficClass, Transfer
from superfactory.scenario.traces import data_dirs, load_rtt_matrix

TB_GBIT = 8000.0  # one terabyte in gigabits

#: critical-tier checkpoint sizes of the job mix, TB per replica, with their shares (70B-, 175B-, 405B-class)
CHECKPOINT_TB = (0.75, 2.0, 4.5)
CHECKPOINT_SHARE = (0.4, 0.35, 0.25)
#: GPUs of a job of each size class (its stall cost while its checkpoint is late)
JOB_GPUS = (1024, 4096, 16384)


@dataclass(frozen=True, slots=True)
class GeneratedFabric:
    """Sites, their links, the RTT source, and the region each site sits in."""

    sites: tuple[str, ...]
    links: tuple[WanLink, ...]
    regions: tuple[str, ...]
    source: str


def _rtt_matrix() -> dict[tuple[str, str], float] | None:
    for d in data_dirs():
        p = Path(d) / "skyplane" / "latency.csv"
        if p.is_file():
            return load_rtt_matrix(p)
    return None


def region_fabric(n_sites: int, seed: int, bandwidth_gbps: tuple[float, ...] = (400.0, 800.0),
                  min_links: int = 3, max_links: int = 5) -> GeneratedFabric:
    """``n_sites`` factories on distinct measured regions, each linked to its ``min_links``..``max_links``
    nearest sites by RTT (the union of these choices, so the fabric is connected if the nearest-neighbour graph
    is; a ring of nearest unlinked pairs is added otherwise). Deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    matrix = _rtt_matrix()
    if matrix is not None:
        regions_all = sorted({a for a, _ in matrix})
        if n_sites > len(regions_all):
            raise ValueError(f"{n_sites} sites asked for; the RTT matrix has {len(regions_all)} regions")
        pick = sorted(rng.choice(len(regions_all), size=n_sites, replace=False))
        regions = tuple(regions_all[i] for i in pick)

        def rtt(i: int, j: int) -> float:
            return matrix.get((regions[i], regions[j]), matrix.get((regions[j], regions[i]), 300.0))

        source = "skyplane latency.csv (measured RTT)"
    else:
        angle = np.sort(rng.uniform(0, 2 * np.pi, n_sites))
        regions = tuple(f"synthetic-{i}" for i in range(n_sites))

        def rtt(i: int, j: int) -> float:
            d = abs(angle[i] - angle[j])
            return 5.0 + 120.0 * min(d, 2 * np.pi - d) / np.pi

        source = "synthetic ring (../shared/data/skyplane absent)"
    sites = tuple(f"f{i:02d}" for i in range(n_sites))
    return GeneratedFabric(sites, nearest_links(sites, rtt, rng, bandwidth_gbps, min_links, max_links), regions,
                           source)


def nearest_links(sites: tuple[str, ...], rtt: Callable[[int, int], float], rng: np.random.Generator,
                   bandwidth_gbps: tuple[float, ...], min_links: int, max_links: int) -> tuple[WanLink, ...]:
    """Link each site to its ``min_links``..``max_links`` nearest others by ``rtt(i, j)`` (ms; the count drawn
    per site from ``rng``), then join any disconnected components by their nearest pair; latency = RTT / 2,
    bandwidth drawn from ``bandwidth_gbps``. Deterministic in ``rng``."""
    n = len(sites)
    pairs: set[tuple[int, int]] = set()
    for i in range(n):
        want = int(rng.integers(min_links, max_links + 1))
        near = sorted((j for j in range(n) if j != i), key=lambda j: (rtt(i, j), j))
        for j in near[:want]:
            pairs.add((min(i, j), max(i, j)))
    # connect components (rarely needed): link each component to the nearest site outside it
    comp = list(range(n))

    def find(x: int) -> int:
        while comp[x] != x:
            comp[x] = comp[comp[x]]
            x = comp[x]
        return x

    for i, j in pairs:
        comp[find(i)] = find(j)
    while len({find(i) for i in range(n)}) > 1:
        root = find(0)
        inside = [i for i in range(n) if find(i) == root]
        outside = [j for j in range(n) if find(j) != root]
        i, j = min(((i, j) for i in inside for j in outside), key=lambda p: (rtt(*p), p))
        pairs.add((min(i, j), max(i, j)))
        comp[find(j)] = root
    links = []
    for i, j in sorted(pairs):
        bw = float(bandwidth_gbps[int(rng.integers(len(bandwidth_gbps)))])
        links.append(WanLink(sites[i], sites[j], bw, round(rtt(i, j) / 2.0, 3)))
    return tuple(links)


@dataclass(frozen=True, slots=True)
class HerdWorkload:
    """A checkpoint-herd instance: the fabric, the replication transfers of one barrier interval, and the
    inference load per link (Gb/s, in each direction)."""

    fabric: GeneratedFabric
    transfers: tuple[Transfer, ...]
    inference_gbps: dict[tuple[str, str], float]
    interval_s: int
    window_s: int

    def barrier_demand_ratio(self) -> float:
        """Replication demand offered to the busiest link direction in the barrier window (every transfer's
        direct path, bits due to start in the window) ÷ that direction's capacity over the window."""
        cap = {}
        for lk in self.fabric.links:
            cap[(lk.a, lk.b)] = cap[(lk.b, lk.a)] = lk.bandwidth_gbps * self.window_s
        demand: dict[tuple[str, str], float] = {}
        for tr in self.transfers:
            if tr.release_s < self.window_s and (tr.src, tr.dst) in cap:
                demand[(tr.src, tr.dst)] = demand.get((tr.src, tr.dst), 0.0) + tr.size_gbit
        return max((d / cap[k] for k, d in demand.items()), default=0.0)


def checkpoint_herd(n_factories: int = 12, seed: int = 0, hot_share: float = 0.25, hot_jobs: int = 10,
                    cold_jobs: int = 2, copies: int = 3, interval_s: int = 900, deadline_s: int = 480,
                    link_gbps: float = 400.0, inference_share: float = 0.3,
                    jitter: Callable[[str, int], int] | None = None, window_s: int = 60) -> HerdWorkload:
    """One barrier interval of checkpoint replication across ``n_factories``.

    A ``hot_share`` of the factories (the large training sites) run ``hot_jobs`` jobs each, the others
    ``cold_jobs``. Every job checkpoints at its factory's barrier (time 0, plus ``jitter(factory, interval_s)``
    when given); its critical tier goes to the ``copies`` nearest directly linked factories by RTT (the natural
    choice, and the one that overloads the hot sites' links); each copy must arrive within ``deadline_s`` of the
    barrier (a durability SLO shorter than the interval). Inference traffic takes ``inference_share`` of every
    link in both directions. Sites have 4–5 links, so a hot site has links to spare beyond its three targets.
    """
    rng = np.random.default_rng(seed)
    fab = region_fabric(n_factories, seed, bandwidth_gbps=(link_gbps,), min_links=4, max_links=5)
    neighbours: dict[str, list[tuple[float, str]]] = {s: [] for s in fab.sites}
    for lk in fab.links:
        neighbours[lk.a].append((lk.latency_ms, lk.b))
        neighbours[lk.b].append((lk.latency_ms, lk.a))
    n_hot = max(1, round(hot_share * n_factories))
    hot = set(rng.choice(n_factories, size=n_hot, replace=False).tolist())
    transfers: list[Transfer] = []
    for i, site in enumerate(fab.sites):
        barrier = 0 if jitter is None else jitter(site, interval_s)
        targets = [s for _, s in sorted(neighbours[site])][:copies]
        for j in range(hot_jobs if i in hot else cold_jobs):
            cls = int(rng.choice(len(CHECKPOINT_TB), p=CHECKPOINT_SHARE))
            size = CHECKPOINT_TB[cls] * TB_GBIT
            for dst in targets:
                transfers.append(Transfer(f"{site}-job{j}->{dst}", site, dst, size, barrier,
                                          barrier + deadline_s, TrafficClass.CHECKPOINT, JOB_GPUS[cls]))
    infer = {}
    for lk in fab.links:
        infer[(lk.a, lk.b)] = infer[(lk.b, lk.a)] = inference_share * lk.bandwidth_gbps
    return HerdWorkload(fab, tuple(transfers), infer, interval_s, window_s)


#: GPUs of a job of each checkpoint class in the built-in twin scenario (smaller gangs than JOB_GPUS: the twin
#: holds every node of every factory)
HERD_JOB_GPUS = (1024, 2048, 4096)


def checkpoint_herd_scenario(n_factories: int = 12, seed: int = 0, hot_share: float = 0.25, hot_jobs: int = 10,
                             cold_jobs: int = 2, link_gbps: float = 400.0, inference_share: float = 0.3,
                             duration: str = "2h") -> dict[str, object]:
    """The built-in ``checkpoint-herd`` twin scenario as a YAML-ready document (``scripts/gen_checkpoint_herd.py``
    writes it): the fabric and job mix of :func:`checkpoint_herd` with aligned 15-minute barriers (every job
    starts at t=0 on its home factory under ``home-region``), checkpoints of 0.75/2/4.5 TB replicated to 3
    regions, inference on 30 % of every link. One job of the first cold factory carries EU personal data that
    only one other (linked) factory is cleared for, so its checkpoints have reduced durability (1 of 3 regions);
    the first hot factory also runs ``<site>-sync1tb``, whose 1 TB checkpoints time "1 TB to 3 regions under herd
    load"."""
    rng = np.random.default_rng(seed)
    fab = region_fabric(n_factories, seed, bandwidth_gbps=(link_gbps,), min_links=4, max_links=5)
    n_hot = max(1, round(hot_share * n_factories))
    hot = set(rng.choice(n_factories, size=n_hot, replace=False).tolist())
    cold = [i for i in range(n_factories) if i not in hot]
    eu_home = fab.sites[cold[0]]
    eu_peer = min((lk.latency_ms, lk.b if lk.a == eu_home else lk.a) for lk in fab.links if eu_home in (lk.a, lk.b))[1]
    factories = []
    jobs = []
    for i, (site, region) in enumerate(zip(fab.sites, fab.regions, strict=True)):
        n_jobs = hot_jobs if i in hot else cold_jobs
        gpus = 0
        for j in range(n_jobs):
            cls = int(rng.choice(len(CHECKPOINT_TB), p=CHECKPOINT_SHARE))
            job = {"id": f"{site}-job{j}", "accelerator": "H100-SXM", "gpus": HERD_JOB_GPUS[cls], "work": "30d",
                   "home": site, "preemptible": False,
                   "checkpoint": {"interval": "15min", "blocking": "10s", "size": f"{CHECKPOINT_TB[cls]}TB",
                                  "write_bandwidth": "3.2Tbps"}}
            if site == eu_home and j == 0:
                job["sovereignty"] = ["EU_PERSONAL"]
            jobs.append(job)
            gpus += HERD_JOB_GPUS[cls]
        if i == min(hot):  # the must-show's 1 TB checkpoint to 3 regions, under the herd's load
            jobs.append({"id": f"{site}-sync1tb", "accelerator": "H100-SXM", "gpus": 1024, "work": "30d",
                         "home": site, "preemptible": False,
                         "checkpoint": {"interval": "15min", "blocking": "10s", "size": "1TB",
                                        "write_bandwidth": "3.2Tbps"}})
            gpus += 1024
        nodes = gpus // 8 + 64  # every job of the site fits at t=0, with spares for failed nodes
        factories.append({
            "id": site, "region": region, "market": "PJM", "jurisdiction": "US",
            "power_cap": f"{round(nodes * 0.02)}MW", "cooling_capacity": f"{round(nodes * 0.018)}MW", "pue": 1.2,
            "clearances": ["US", "EU_PERSONAL"] if site in (eu_home, eu_peer) else ["US"],
            "systems": [{"system": "dgx-h100", "nodes": nodes}]})
    links = [{"a": lk.a, "b": lk.b, "bandwidth": f"{lk.bandwidth_gbps:g}Gbps", "latency": f"{lk.latency_ms:g}ms"}
             for lk in fab.links]
    return {
        "name": "checkpoint-herd",
        "description": (f"{n_factories} factories on measured cloud regions, every job checkpointing on aligned "
                        "15-minute barriers to 3 regions over shared 400 Gb/s links carrying inference traffic"),
        "seed": seed, "duration": duration, "policy": "home-region",
        "factories": factories, "links": links, "jobs": jobs,
        "failures": {"table": "llama3-405b", "planned": False},
        "wan": {"policy": "wan-planner", "copies": 3, "inference_share": inference_share, "barrier_jitter": True,
                "durability_slo": "8min", "policy_params": {"slot_s": 10, "horizon_s": 1200}},
    }
