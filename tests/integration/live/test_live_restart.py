"""Restart safety: kill -9 the server in the middle of a burst of submissions with idempotency keys, restart
it, resubmit the whole burst: every job exists exactly once, and answers given before the crash still hold."""

from __future__ import annotations

import threading
import time

import httpx
import sqlalchemy as sa

from superfactory.live.context import Live, ManualClock, ensure_epoch
from superfactory.live.services.auth import bootstrap_admin
from superfactory.live.services.fleet import import_scenario
from superfactory.live.services.tenants import create_tenant
from superfactory.live.store import tables as t
from superfactory.live.store.db import open_store

BURST = 90
THREADS = 6
SMALL = """
name: crash
duration: 1d
factories:
  - {id: texas, region: r, market: ERCOT, power_cap: 50MW, cooling_capacity: 50MW,
     systems: [{system: dgx-h100, nodes: 16}]}
"""


def _prepare(url: str) -> str:
    engine = open_store(url)
    clock = ManualClock(epoch_unix_s=time.time())
    ensure_epoch(engine, clock.unix_s())
    live = Live(engine, clock)
    bootstrap_admin(engine, clock.unix_s())
    import_scenario(live, text=SMALL)
    token = create_tenant(live, "acme", 0, {})["token"]
    engine.dispose()
    return token


def _burst(url: str, token: str, keys: list[str], results: dict[str, int], stop_after: int | None,
           on_threshold: threading.Event) -> None:
    """Submit every key (THREADS in parallel); record the job id of each answered request."""
    lock = threading.Lock()
    todo = list(keys)

    def worker() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10) as c:
            while True:
                with lock:
                    if not todo:
                        return
                    key = todo.pop(0)
                job = {"id": f"j-{key}", "accelerator": "H100-SXM", "gpus": 8, "work": "1h"}
                try:
                    r = c.post("/v1/jobs", json=job, headers={"Idempotency-Key": key})
                except httpx.HTTPError:
                    continue  # the server died under us: this key's fate is unknown
                assert r.status_code in (200, 201), r.text
                with lock:
                    results[key] = r.json()["id"]
                    if stop_after is not None and len(results) >= stop_after:
                        on_threshold.set()

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()


def test_kill9_mid_burst_then_resubmit_makes_each_job_once(store_url, server_factory):
    token = _prepare(store_url)
    keys = [f"key-{i:04d}" for i in range(BURST)]
    server = server_factory.make(store_url).start()
    before: dict[str, int] = {}
    threshold = threading.Event()
    killer = threading.Thread(target=lambda: (threshold.wait(60), server.kill9()))
    killer.start()
    _burst(server.url, token, keys, before, stop_after=BURST // 3, on_threshold=threshold)
    killer.join()
    assert BURST // 3 <= len(before) < BURST, "the kill must land mid-burst"

    server = server_factory.make(store_url).start()
    after: dict[str, int] = {}
    _burst(server.url, token, keys, after, stop_after=None, on_threshold=threading.Event())
    assert len(after) == BURST
    assert all(after[k] == before[k] for k in before), "an answer given before the crash changed"
    assert len(set(after.values())) == BURST
    engine = open_store(store_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.select(t.jobs.c.idempotency_key, sa.func.count()).group_by(
            t.jobs.c.idempotency_key)).all()
    engine.dispose()
    assert len(rows) == BURST and all(n == 1 for _, n in rows)
