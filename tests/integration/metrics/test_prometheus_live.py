"""A real Prometheus scraping a running control plane (uvicorn on loopback) while agents report a job's progress
and its checkpoints (real mesh saves on directory targets at both sites, measured by the agent's own
``meshwatch`` and sent with the agent's HTTP client); then every PromQL query of the generated dashboards
evaluated through Prometheus' HTTP API: each must return data.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from live_harness import FLEET, METRICS_TOKEN, Plane, make_live
from prometheus_harness import Prometheus, binaries

from superfactory.agent.client import ControlPlane
from superfactory.agent.meshconf import StorageTarget, job_mesh_dict, write_job_mesh_config
from superfactory.agent.meshwatch import checkpoint_facts, mesh_status
from superfactory.live.store import tables as t
from superfactory.mesh import CheckpointMesh, load_config
from superfactory.observe.dashboards import VIEWS, expand, metrics_used, queries
from superfactory.observe.metrics_catalog import produced_by

LIVE = produced_by("live")
SCRAPE_S = 2  # the scrape interval (and timeout): generous for a loaded CI machine


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Plane, Prometheus, dict[str, int]]]:
    binaries()
    folder = tmp_path_factory.mktemp("prom-live")
    plane = Plane(make_live(folder, manual=False, worker=True), serve=True)
    prom = Prometheus(folder / "prom", scrape=[{
        "job_name": "superfactory", "metrics_path": "/metrics",
        "scrape_interval": f"{SCRAPE_S}s", "scrape_timeout": f"{SCRAPE_S}s",
        "authorization": {"type": "Bearer", "credentials": METRICS_TOKEN},
        "static_configs": [{"targets": [f"127.0.0.1:{plane.port}"]}]}])
    targets = [StorageTarget(f"{site}-{x}", str(folder / "ckpt" / site / x), f"region-{site}", "US", site=site)
               for site in ("texas", "virginia") for x in "ab"]
    clients: dict[str, ControlPlane] = {}
    try:
        plane.call("POST", "/v1/fleet/import", json={"yaml": FLEET})
        acme, beta = plane.tenant("acme"), plane.tenant("beta")
        for site in ("texas", "virginia"):
            token = plane.agent(site)["Authorization"].removeprefix("Bearer ")
            clients[site] = ControlPlane(plane.url, token)
        for tg in targets:
            Path(tg.url).mkdir(parents=True)
        prom.start()
        ids = {"train": plane.submit(acme, "train"), "flaky": plane.submit(beta, "flaky"),
               "short": plane.submit(acme, "short")}
        plane.cycle()
        where = {k: plane.job(i)["factory_id"] for k, i in ids.items()}
        for k, i in ids.items():
            plane.report(i, where[k], state="running", progress_s=0, tokens_per_s=2500.0)
        train, home = ids["train"], where["train"]
        mesh = CheckpointMesh(load_config(write_job_mesh_config(folder / "train.mesh.yaml", job_mesh_dict(
            str(train), targets, folder / "keys.json", fsync=False))))
        incarnation = time.time()

        def save(step: int, progress_s: float) -> None:  # as the job and its agent do: save, measure, commit
            t_save = time.monotonic()
            receipt = mesh.save(bytes(range(256)) * 2048, step)
            facts = checkpoint_facts(targets, str(train), receipt.checkpoint_id, time.monotonic() - t_save)
            plane.checkpoint(train, home, step, progress_s, mesh=facts)
            for site, client in clients.items():  # as each agent does after its heartbeat
                plane.heartbeat(site)
                jobs = {str(train): incarnation} if site == home else {}
                client.mesh_status(plane.agents[site][1], mesh_status(targets, jobs, time.time()))

        save(1, 0.0)
        plane.report(ids["flaky"], where["flaky"], state="failed", message="NCCL timeout")
        plane.report(ids["short"], where["short"], state="succeeded", progress_s=172800)
        t0 = time.time()
        for step in range(2, 5):  # the job progresses at ~90 % of theoretical, checkpointing every second
            time.sleep(1.0)
            save(step, 0.9 * (time.time() - t0))
            plane.report(train, home, state="running", progress_s=0.9 * (time.time() - t0), tokens_per_s=2500.0)
        last_report = time.time()
        deadline = time.monotonic() + 90
        while True:  # two successful scrapes after the last report, so rate()/increase() windows see it (a scrape
            # that timed out on a loaded machine stores nothing, so counting the samples is what tells)
            window_s = max(1, int(time.time() - last_report))
            got = prom.api("query", query=f"min(count_over_time(superfactory_factory_gpus[{window_s}s]))")["result"]
            if got and float(got[0]["value"][1]) >= 2:
                break
            assert time.monotonic() < deadline, f"no scrape after the last report; targets {prom.api('targets')}"
            time.sleep(0.5)
        yield plane, prom, ids
    finally:
        for client in clients.values():
            client.close()
        prom.stop()
        plane.stop()
        plane.live.engine.dispose()


def test_prometheus_scrapes_with_the_metrics_token(fleet: tuple[Plane, Prometheus, dict[str, int]]) -> None:
    plane, prom, _ = fleet
    up = prom.targets_up()
    assert len(up) == 1 and up[0]["scrapeUrl"].endswith("/metrics")
    assert plane.metrics(None).status_code == 401


def test_every_dashboard_query_against_the_live_fleet(fleet: tuple[Plane, Prometheus, dict[str, int]]) -> None:
    _, prom, _ = fleet
    end = time.time()
    problems, total = [], 0
    for view in VIEWS:
        for title, expr in queries(view):
            total += 1
            assert metrics_used(expr) <= LIVE, f"{view} / {title} reads metrics the catalog says live lacks"
            result = prom.query_range(expand(expr), end - 20, end, SCRAPE_S)
            if not any(series["values"] for series in result):
                problems.append(f"{view} / {title}: no data for {expr}")
    assert not problems, f"{len(problems)} of {total} queries without data:\n" + "\n".join(problems)
    assert total >= 30


def test_efficiency_and_job_labels_in_prometheus(fleet: tuple[Plane, Prometheus, dict[str, int]]) -> None:
    plane, prom, ids = fleet
    ratio = prom.api("query", query="superfactory_job_flop_per_second / superfactory_job_theoretical_flop_per_second")
    (only,) = ratio["result"]
    assert only["metric"]["job_id"] == str(ids["train"]) and only["metric"]["tenant"] == "acme"
    with plane.live.engine.connect() as conn:  # what the server recorded: the last two checkpoint commits
        commits = conn.execute(sa.select(t.job_events.c.at_unix_s, t.job_events.c.data).where(
            t.job_events.c.job_id == ids["train"], t.job_events.c.kind == "checkpoint").order_by(t.job_events.c.id)
        ).all()[-2:]
    (a_s, a), (b_s, b) = commits
    expected = (b["progress_s"] - a["progress_s"]) / (b_s - a_s)  # ~0.9: the client reported 90 % progress rate
    assert float(only["value"][1]) == pytest.approx(expected, rel=1e-9)
    assert 0.3 < expected < 3
    assert only["metric"]["job"] == "superfactory"  # the scrape job keeps its label: ours is job_id
    failed = prom.api("query", query='sum(superfactory_interruptions_total{cause="job_failed"})')["result"]
    assert float(failed[0]["value"][1]) == 1
