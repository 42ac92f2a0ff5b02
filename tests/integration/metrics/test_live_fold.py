"""The /metrics fold on PostgreSQL, where concurrent writers commit events out of id order: an event whose
transaction commits after a later event was folded is still counted (the fold looks for such gaps again)."""

from __future__ import annotations

from pathlib import Path

import pytest
from live_harness import FLEET, Plane, make_live, parse_exposition

from live_pg import pg_cluster, store_url  # noqa: F401  (fixtures)
from superfactory.live.metrics import Scope, metrics_for, render
from superfactory.live.services.jobs_common import add_event


def _refusals(plane: Plane) -> float:
    m = parse_exposition(render(plane.live, Scope(None)).decode())
    return sum(v for lb, v in m["superfactory_audit_refusals_total"] if lb["factory"] == "texas")


def test_an_event_committed_after_a_later_one_is_still_folded(tmp_path: Path, store_url: str) -> None:  # noqa: F811
    if store_url.startswith("sqlite"):
        pytest.skip("SQLite has one writer at a time, so its event ids commit in order (nothing to test)")
    plane = Plane(make_live(tmp_path, manual=True, url=store_url))
    try:
        plane.call("POST", "/v1/fleet/import", json={"yaml": FLEET})
        plane.agent("texas")
        job = plane.submit(plane.tenant("acme"), "run")
        assert _refusals(plane) == 0
        engine, now = plane.live.engine, plane.live.clock.unix_s()
        with engine.connect() as slow:
            tx = slow.begin()
            add_event(slow, job, now, "audit_refusal", {"factory_id": "texas", "rule": "first, committed last"})
            with engine.begin() as fast:
                add_event(fast, job, now, "audit_refusal", {"factory_id": "texas", "rule": "second"})
            assert _refusals(plane) == 1  # the later id is folded; the earlier one is not committed yet
            assert len(metrics_for(plane.live).gaps) == 1
            tx.commit()
        assert _refusals(plane) == 2
        assert not metrics_for(plane.live).gaps
        assert _refusals(plane) == 2  # folded once
    finally:
        plane.live.engine.dispose()
