"""GET /metrics on the control plane: refused without a token, tenant-scoped with one, and its values follow
the store's event log (placements, checkpoints, measured efficiency, interruptions, completions)."""

from __future__ import annotations

from pathlib import Path

import pytest
from live_harness import FLEET, METRICS_TOKEN, Plane, make_live, parse_exposition

from superfactory.live.metrics import LiveMetrics, Scope, render
from superfactory.observe.metrics_catalog import BY_NAME, produced_by


def _scene(plane: Plane) -> dict[str, int]:
    """acme runs 'acme-secret-run' at texas (progress at 80 % of theoretical between two checkpoints);
    beta's 'beta-private-run' runs too; a third job fails once and a fourth completes."""
    acme, beta = plane.tenant("acme"), plane.tenant("beta")
    plane.agent("texas")
    plane.agent("virginia")
    ids = {"acme": plane.submit(acme, "acme-secret-run"), "beta": plane.submit(beta, "beta-private-run"),
           "flaky": plane.submit(acme, "flaky"), "short": plane.submit(beta, "short")}
    plane.cycle()
    assert all(plane.job(i)["state"] == "assigned" for i in ids.values())
    where = {k: plane.job(i)["factory_id"] for k, i in ids.items()}
    for k, i in ids.items():
        plane.report(i, where[k], state="running", progress_s=0, tokens_per_s=1000.0)
    plane.checkpoint(ids["acme"], where["acme"], 10, 100.0)
    plane.live.clock.advance(100)
    plane.checkpoint(ids["acme"], where["acme"], 18, 180.0)  # 80 progress-seconds in 100 s
    plane.report(ids["flaky"], where["flaky"], state="failed", message="NCCL timeout")
    plane.report(ids["short"], where["short"], state="succeeded", progress_s=172800)
    plane.heartbeat("texas")
    plane.heartbeat("virginia", down_nodes=[3])
    return ids


def test_metrics_need_a_token(plane: Plane) -> None:
    r = plane.metrics(None)
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
    assert plane.metrics({"Authorization": "Bearer sft_nope.nope"}).status_code == 401
    assert plane.metrics({"Authorization": "Bearer not-the-metrics-token"}).status_code == 401
    agent = plane.agent("texas")
    r = plane.metrics(agent)
    assert r.status_code == 403 and r.json()["error"]["code"] == "wrong_role"


def test_job_labels_only_where_the_token_allows(plane: Plane) -> None:
    _scene(plane)
    acme = plane.tenant("acme2")  # a tenant with no jobs sees fleet series and no job at all
    texts = {who: plane.metrics(tok).text for who, tok in (
        ("admin", plane.admin), ("metrics", {"Authorization": f"Bearer {METRICS_TOKEN}"}), ("empty", acme))}
    for who in ("admin", "metrics"):
        assert "acme-secret-run" in texts[who] and "beta-private-run" in texts[who]
    assert "acme-secret-run" not in texts["empty"] and "beta-private-run" not in texts["empty"]
    assert 'tenant="acme"' not in texts["empty"] and 'tenant="beta"' not in texts["empty"]
    assert "superfactory_factory_gpus" in texts["empty"]


def test_tenant_token_sees_its_own_jobs_only(tmp_path: Path) -> None:
    plane = Plane(make_live(tmp_path, manual=True))
    plane.call("POST", "/v1/fleet/import", json={"yaml": FLEET})
    acme, beta = plane.tenant("acme"), plane.tenant("beta")
    plane.agent("texas")
    plane.submit(acme, "acme-secret-run")
    plane.submit(beta, "beta-private-run")
    plane.cycle()
    mine = parse_exposition(plane.metrics(acme).text)
    theirs = parse_exposition(plane.metrics(beta).text)
    assert {s[0]["job_name"] for s in mine["superfactory_job_gpus"]} == {"acme-secret-run"}
    assert {s[0]["job_name"] for s in theirs["superfactory_job_gpus"]} == {"beta-private-run"}
    assert {s[0]["tenant"] for s in mine["superfactory_jobs"]} == {"acme"}
    assert "beta" not in plane.metrics(acme).text
    plane.live.engine.dispose()


def test_values_follow_the_event_log(plane: Plane) -> None:
    ids = _scene(plane)
    m = parse_exposition(plane.metrics(plane.admin).text)

    def one(name: str, **labels: str) -> float:
        hits = [v for lb, v in m[name] if all(lb.get(k) == x for k, x in labels.items())]
        assert len(hits) == 1, (name, labels, m.get(name))
        return hits[0]

    acme = str(ids["acme"])
    ratio = one("superfactory_job_flop_per_second", job_id=acme) / one(
        "superfactory_job_theoretical_flop_per_second", job_id=acme)
    assert ratio == pytest.approx(0.8)
    assert one("superfactory_job_checkpoints_total", job_id=acme) == 2
    assert one("superfactory_job_tokens_per_second", job_id=acme) == 1000.0
    assert one("superfactory_job_restarts_total", job_id=acme) == 0
    assert sum(v for _, v in m["superfactory_placements_total"]) == 4
    assert sum(v for _, v in m["superfactory_job_completions_total"]) == 1
    assert one("superfactory_interruptions_total", cause="job_failed") == 1
    assert one("superfactory_node_failures_total", factory="virginia") == 1
    assert one("superfactory_factory_failed_nodes", factory="virginia") == 1
    assert one("superfactory_factory_lease_up", factory="texas") == 1
    held = {lb["factory"]: v for lb, v in m["superfactory_factory_allocated_gpus"]}
    assert sum(held.values()) == 64 * 2  # acme and beta still hold; flaky was requeued, short finished
    states = {lb["state"]: v for lb, v in m["superfactory_jobs"] if lb["tenant"] == "acme"}
    assert states == {"running": 1, "pending": 1}
    assert len(m["superfactory_migrations_total"]) == 2 * 2  # both directions, both outcomes, initialised at 0
    for name in m:
        assert name.removesuffix("_total") in {d.family for d in BY_NAME.values()} or name in BY_NAME, name
    assert set(m) - {"superfactory_scheduler_cycles_total"} <= produced_by("live") | {
        n.removesuffix("_total") for n in produced_by("live")}


def test_a_restarted_server_folds_the_same_counters(plane: Plane) -> None:
    _scene(plane)
    before = render(plane.live, Scope(None)).decode()
    fresh = LiveMetrics(plane.live)
    plane.live.extras["metrics"] = fresh
    after = render(plane.live, Scope(None)).decode()

    metered = ("superfactory_factory_energy_", "superfactory_factory_carbon_grams")  # the power meter's totals
    # start with the process (documented; Prometheus sees a counter reset): everything else is re-folded

    def counters(text: str) -> dict[str, float]:
        return {line.rpartition(" ")[0]: float(line.rpartition(" ")[2]) for line in text.splitlines()
                if line.startswith("superfactory_") and "_total{" in line and not line.startswith(metered)}

    assert counters(before) and counters(after) == counters(before)


def test_migration_outcomes_and_costs_are_folded_from_the_event_log(plane: Plane) -> None:
    """A move that starts at the destination counts as succeeded and costs its checkpoint and the GPUs held
    meanwhile; one requeued instead counts as failed (events written as the scheduler and agents write them)."""
    import sqlalchemy as sa

    from superfactory.live.codec import decode_job
    from superfactory.live.services.jobs_common import add_event
    from superfactory.live.store import tables as t

    ids = _scene(plane)
    acme, beta = ids["acme"], ids["beta"]
    t0 = plane.live.clock.unix_s()
    with plane.live.engine.begin() as conn:
        add_event(conn, acme, t0, "stopping", {"reason": "migrate", "factory_id": "texas", "to": "virginia"})
        add_event(conn, acme, t0 + 30, "assigned", {"factory_id": "virginia", "fencing_token": 99,
                                                    "from": "texas", "cause": "migrate"})
        add_event(conn, beta, t0, "stopping", {"reason": "migrate", "factory_id": "virginia", "to": "texas"})
        add_event(conn, beta, t0 + 5, "requeued", {"cause": "migrate", "factory_id": "virginia"})
        spec = conn.execute(sa.select(t.jobs.c.spec).where(t.jobs.c.id == acme)).scalar_one()
    job = decode_job(str(acme), spec["job"], 0, 0)
    m = parse_exposition(plane.metrics(plane.admin).text)

    def pair(name: str, src: str, dst: str, **more: str) -> float:
        (v,) = [v for lb, v in m[name] if lb["source"] == src and lb["destination"] == dst
                and all(lb[k] == x for k, x in more.items())]
        return v

    assert pair("superfactory_migrations_total", "texas", "virginia", outcome="succeeded") == 1
    assert pair("superfactory_migrations_total", "virginia", "texas", outcome="failed") == 1
    assert pair("superfactory_migrations_total", "virginia", "texas", outcome="succeeded") == 0
    assert pair("superfactory_migration_transfer_bytes_total", "texas", "virginia") == job.checkpoint.size_bytes
    assert pair("superfactory_migration_gpu_seconds_total", "texas", "virginia") == pytest.approx(64 * 30)
    assert pair("superfactory_migration_transfer_bytes_total", "virginia", "texas") == 0
    ckpt = [v for lb, v in m["superfactory_job_checkpoint_bytes_total"] if lb["job_id"] == str(acme)]
    assert ckpt == [2 * job.checkpoint.size_bytes]


def test_exposition_parses_with_prometheus_client(plane: Plane) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    _scene(plane)
    text = plane.metrics(plane.admin).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["superfactory_placements"].type == "counter"
    assert families["superfactory_job_gpus"].type == "gauge"
    n = sum(len(f.samples) for f in families.values())
    assert n == sum(len(v) for v in parse_exposition(text).values())


def test_scrapes_reuse_unchanged_job_lines_and_fold_each_event_once(plane: Plane,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Between scrapes only the jobs whose figures changed are rendered again, and what a scrape returns always
    equals what a fresh fold of the whole log renders (folded in spans of 3 event ids here, to cross them)."""
    import sqlalchemy as sa

    import superfactory.live.metrics as live_metrics
    from superfactory.live import job_series
    from superfactory.live.metrics import STATE_NAMES
    from superfactory.live.store import tables as t

    ids = _scene(plane)
    monkeypatch.setattr(live_metrics, "FOLD_SPAN", 3)
    lm = LiveMetrics(plane.live)
    plane.live.extras["metrics"] = lm

    def job_lines(text: str) -> list[str]:  # the samples a restart would not reproduce are left out
        return [line for line in text.splitlines() if line.startswith("superfactory_job")]

    def fresh() -> str:
        again = LiveMetrics(plane.live)
        monkeypatch.setattr(live_metrics, "FOLD_SPAN", 10_000)
        try:
            return again.render(Scope(None)).decode()
        finally:
            monkeypatch.setattr(live_metrics, "FOLD_SPAN", 3)

    first = render(plane.live, Scope(None)).decode()
    holding = len(lm.series.figures)
    assert holding == 2 and lm.series.rendered == 2  # acme's and beta's jobs; flaky was requeued, short finished
    cursor = lm.cursor
    second = render(plane.live, Scope(None)).decode()
    assert lm.series.rendered == 2 and lm.cursor == cursor  # nothing new: no job rendered, no event read again
    assert job_lines(second) == job_lines(first) == job_lines(fresh())
    acme_where = plane.job(ids["acme"])["factory_id"]
    plane.report(ids["acme"], acme_where, state="running", progress_s=50_000.0, tokens_per_s=1234.0)
    render(plane.live, Scope("beta"))  # a tenant's scrape renders only its own jobs, and forgets no other
    third = render(plane.live, Scope(None)).decode()
    assert lm.series.rendered == 3  # acme's job only
    assert job_lines(third) == job_lines(fresh()) != job_lines(second)
    assert f'superfactory_job_tokens_per_second{{job_id="{ids["acme"]}",' in third
    assert any(line.endswith(" 1234.0") for line in job_lines(third))
    plane.checkpoint(ids["acme"], acme_where, 30, 50_000.0)
    fourth = render(plane.live, Scope(None)).decode()
    assert lm.series.rendered == 4 and job_lines(fourth) == job_lines(fresh())
    plane.report(ids["acme"], acme_where, state="succeeded", progress_s=172800)
    plane.call("POST", f"/v1/jobs/{ids['flaky']}/cancel")
    jobs = {(lb["state"], lb["tenant"]): v for lb, v in parse_exposition(
        render(plane.live, Scope(None)).decode())["superfactory_jobs"]}
    with plane.live.engine.connect() as conn:  # ended jobs are counted from their events: the same as the table
        table = {(STATE_NAMES.get(s, s), tenant): n for s, tenant, n in conn.execute(
            sa.select(t.jobs.c.state, t.jobs.c.tenant_id, sa.func.count()).group_by(t.jobs.c.state,
                                                                                     t.jobs.c.tenant_id))}
    assert jobs == table and ("completed", "acme") in jobs and ("cancelled", "acme") in jobs
    assert set(lm.series.figures) == {ids["acme"], ids["beta"]}  # kept while holding (below the slack)
    monkeypatch.setattr(job_series, "FORGET_SLACK", 0)
    render(plane.live, Scope(None))
    assert set(lm.series.figures) == {ids["beta"]}  # acme's job ended: its figures are forgotten
