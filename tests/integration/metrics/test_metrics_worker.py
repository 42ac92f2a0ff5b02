"""/metrics rendered by the metrics worker process: the same exposition as in-process rendering (scopes, mesh
reports, cycles forwarded), a 503 with a clear message while a dead worker restarts, and no orphan process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from live_harness import FLEET, METRICS_TOKEN, Plane, make_live, parse_exposition
from test_live_metrics import _scene

from live_pg import pg_cluster, store_url  # noqa: F401  (fixtures)
from superfactory.live.metrics import Scope, metrics_for
from superfactory.live.metrics_worker import worker_for

ROOT = Path(__file__).resolve().parents[3]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def _wait_gone(pid: int, within_s: float = 20.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    m = parse_exposition(text)
    m.pop("superfactory_metrics_scrape_duration_seconds", None)
    return m


def test_the_worker_renders_what_the_server_would(tmp_path: Path, store_url: str) -> None:  # noqa: F811
    """SQLite and PostgreSQL: the worker opens the same store (schema included) on its own connection."""
    plane = Plane(make_live(tmp_path, manual=True, url=store_url, worker=True))
    try:
        plane.call("POST", "/v1/fleet/import", json={"yaml": FLEET})
        _scene(plane)
        plane.mesh_status("texas", sync_queue={"virginia": 7}, quorum_wait_s=3.5)
        acme = plane.tenant("acme3")
        scopes = {"metrics": {"Authorization": f"Bearer {METRICS_TOKEN}"}, "tenant": acme}
        got = {k: plane.metrics(tok) for k, tok in scopes.items()}
        worker = worker_for(plane.live)
        assert worker is not None and worker.pid is not None and worker.pid != os.getpid()
        assert worker.scrapes_done == 2
        assert all(r.status_code == 200 for r in got.values())
        inproc = metrics_for(plane.live)  # the same fold, in this process, for comparison
        want = {"metrics": inproc.render(Scope(None)).decode(), "tenant": inproc.render(Scope("acme3")).decode()}
        for k in scopes:
            assert _samples(got[k].text) == _samples(want[k]), k
        m = _samples(got["metrics"].text)
        assert [v for lb, v in m["superfactory_checkpoint_sync_queue_depth"]] == [7]
        assert "acme-secret-run" not in got["tenant"].text
        assert plane.metrics(None).status_code == 401  # authentication stays in the server
        pid = worker.pid
    finally:
        plane.stop()
        plane.live.engine.dispose()
    assert worker.proc is None and _wait_gone(pid)


def test_a_dead_worker_gives_503_then_restarts_and_exits_with_the_server(plane: Plane) -> None:
    plane.live.extras["metrics_worker"] = True
    _scene(plane)
    admin = plane.admin
    first = plane.metrics(admin)
    assert first.status_code == 200
    worker = worker_for(plane.live)
    assert worker is not None
    old = worker.pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    assert _wait_gone(old)
    r = plane.metrics(admin)
    assert r.status_code == 503
    err = r.json()["error"]
    assert err["code"] == "metrics_worker_restarting" and "scrape again" in err["message"]
    again = plane.metrics(admin)
    assert again.status_code == 200
    assert worker.pid not in (None, old)
    assert _samples(again.text) == _samples(first.text)  # a new worker re-folds the store to the same counters
    new = worker.pid
    assert new is not None
    plane.stop()
    assert _wait_gone(new)


def test_the_worker_exits_when_its_server_is_killed(tmp_path: Path) -> None:
    """A server killed outright (SIGKILL: no shutdown code runs) leaves no metrics worker behind."""
    script = textwrap.dedent(f"""
        import sys
        sys.path[:0] = [{str(Path(__file__).parent)!r}, {str(ROOT / "tests")!r}]
        from pathlib import Path
        from live_harness import FLEET, Plane, make_live
        from superfactory.live.metrics_worker import worker_for
        plane = Plane(make_live(Path({str(tmp_path)!r}), manual=True, worker=True))
        plane.call("POST", "/v1/fleet/import", json={{"yaml": FLEET}})
        assert plane.metrics(plane.admin).status_code == 200
        print(worker_for(plane.live).pid, flush=True)
        import time
        time.sleep(600)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        line = proc.stdout.readline() if proc.stdout is not None else ""
        assert line.strip().isdigit(), f"the server did not report its worker (exit {proc.poll()})"
        pid = int(line)
        assert _alive(pid)
    finally:
        proc.kill()
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()
    assert _wait_gone(pid), "the metrics worker outlived its server"
