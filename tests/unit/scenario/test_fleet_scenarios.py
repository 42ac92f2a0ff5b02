"""The fleet-scale built-ins of issue 12 (``fleet-year``, ``fleet-200``) load and have the stated sizes.

Validation and compilation only: no simulation (benchmarks/twin_bench.py --fleet times them).
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

from superfactory.scenario.loader import builtin_text, load_scenario

ROOT = Path(__file__).resolve().parents[3]
DAY_S = 86_400


def _connected(sites: set[str], links: tuple) -> bool:
    adj: dict[str, set[str]] = {s: set() for s in sites}
    for lk in links:
        adj[lk.a].add(lk.b)
        adj[lk.b].add(lk.a)
    seen, todo = set(), [next(iter(sites))]
    while todo:
        s = todo.pop()
        if s not in seen:
            seen.add(s)
            todo.extend(adj[s] - seen)
    return seen == sites


def test_fleet_year_is_the_default_fleet_for_a_year_with_a_small_heavy_job_mix() -> None:
    year, default = load_scenario("fleet-year"), load_scenario("default")
    assert year.duration_s == 365 * DAY_S
    assert [(f.id, f.gpus) for f in year.factories] == [(f.id, f.gpus) for f in default.factories]
    assert {(lk.a, lk.b) for lk in year.links} == {(lk.a, lk.b) for lk in default.links}
    assert 20_000 <= len(year.jobs) <= 30_000, len(year.jobs)
    assert year.generated_jobs == frozenset(j.id for j in year.jobs)
    sizes = Counter(j.gpus for j in year.jobs)
    assert min(sizes) == 8 and max(sizes) == 8192
    small = sum(n for g, n in sizes.items() if g <= 128)
    large = sum(n for g, n in sizes.items() if g >= 2048)
    assert small >= 3 * large, sizes  # several small jobs for each large one
    assert year.policy == "greedy"
    assert max(j.submit_s for j in year.jobs) > 300 * DAY_S  # arrivals span the year, not only a backlog


def test_fleet_200_has_200_factories_and_about_a_million_gpus() -> None:
    sc = load_scenario("fleet-200")
    assert sc.duration_s == 30 * DAY_S
    assert len(sc.factories) == 200
    gpus = sum(f.gpus for f in sc.factories)
    assert 950_000 <= gpus <= 1_000_000, gpus
    assert len({f.cloud_region for f in sc.factories}) == 69  # every region of the skyplane matrix
    ids = {f.id for f in sc.factories}
    degree = Counter(x for lk in sc.links for x in (lk.a, lk.b))
    assert min(degree[i] for i in ids) >= 3
    assert _connected(ids, sc.links)
    assert sc.policy == "greedy"
    assert 5_000 <= len(sc.jobs) <= 50_000


def test_fleet_200_yaml_is_what_the_generator_writes(shared_data: Path) -> None:
    spec = importlib.util.spec_from_file_location("gen_fleet200", ROOT / "scripts" / "gen_fleet200.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.generate() == builtin_text("fleet-200"), "regenerate with: python scripts/gen_fleet200.py"
