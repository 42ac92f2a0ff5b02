"""Generated WAN fabrics and the checkpoint-herd workload."""

from __future__ import annotations

from superfactory.policy.wan_planner import barrier_offset_s
from superfactory.scenario.fabric import checkpoint_herd, region_fabric


def _connected(sites, links) -> bool:
    adj = {s: set() for s in sites}
    for lk in links:
        adj[lk.a].add(lk.b)
        adj[lk.b].add(lk.a)
    seen, todo = {sites[0]}, [sites[0]]
    while todo:
        for n in adj[todo.pop()]:
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return len(seen) == len(sites)


def test_fifty_site_fabric_is_connected_with_three_to_five_links_chosen_per_site():
    gen = region_fabric(50, seed=0)
    assert len(gen.sites) == 50 and len(set(gen.regions)) == 50
    assert _connected(gen.sites, gen.links)
    degree = dict.fromkeys(gen.sites, 0)
    for lk in gen.links:
        degree[lk.a] += 1
        degree[lk.b] += 1
        assert lk.latency_ms > 0
    assert min(degree.values()) >= 3
    assert region_fabric(50, seed=0) == gen  # deterministic
    assert region_fabric(50, seed=1).links != gen.links


def test_herd_overloads_shared_links_in_the_barrier_window():
    herd = checkpoint_herd(seed=0)
    assert len(herd.fabric.sites) == 12
    assert herd.barrier_demand_ratio() >= 3.0
    jittered = checkpoint_herd(seed=0, jitter=barrier_offset_s)
    assert {t.release_s for t in jittered.transfers} != {0}
    assert [t.size_gbit for t in jittered.transfers] == [t.size_gbit for t in herd.transfers]
