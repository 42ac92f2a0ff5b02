"""Does scraping /metrics every second slow the live scheduler's placements? (issue 15: goal <= 5 %)

Set-up: a control plane (uvicorn on loopback, store on SQLite by default or ``--db URL``) with the built-in
``default`` fleet (5 factories, 96,800 GPUs) imported and an agent lease on every factory; ``--tracked`` jobs
(default 1,000) placed and holding GPUs, so every scrape renders their job-level series. Then alternating
phases, without and with a scraper process that GETs /metrics every second over HTTP (the metrics token, like
Prometheus): each phase submits ``--batch`` 8-GPU jobs (not timed) and times the scheduler cycles that place
them; then the batch's agents report its jobs finished (not timed), so every phase runs with the same
``--tracked`` jobs holding GPUs. Each round is a pair of phases, in the order A B in even rounds and B A in odd
ones (A = no scraping), so a drift of the machine or of the growing store cancels over the rounds; every figure
is a median over rounds of the round's ratio B / A:

- ``slowdown_pct`` (the goal's figure, <= 5 %): the increase of the control-plane **process's CPU time per
  placement** (``time.process_time`` over the phase: the scheduler, and while scraping also the server threads
  that answer the scrapes; the scraper is another process, as Prometheus is). The scheduler and the scrape
  handler share one interpreter (and its GIL), so on a machine with a free core this is what scraping takes
  from placements; unlike wall time it hardly depends on what else a shared machine runs.
- ``scheduler_thread_slowdown_pct``: the same for the scheduler thread's own CPU time per placement (cache and
  lock effects of the scrapes on the scheduler's code).
- ``wall_slowdown_pct``: 1 - the median ratio of placements per wall second; meaningful on a quiet machine only.

"Median over rounds" is order-balanced: the median over consecutive pairs of rounds (one A B, one B A) of the
geometric mean of their two ratios, since the first phase of a round can differ systematically from the second
(``slowdown_unbalanced_pct`` is the plain median of the per-round ratios). ``--recompute FILE`` re-summarises
the phases saved in a results file without measuring again.

    nice -n 5 .venv/bin/python benchmarks/metrics_scrape_bench.py [--tracked 1000] [--batch 1500] [--rounds 8]

Prints a table and key=value lines; writes benchmarks/results/metrics_scrape.json.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

TOKEN = "bench-metrics-token"
JOB = {"accelerator": "H100-SXM", "gpus": 8, "work": "60d"}
RESULTS = Path(__file__).resolve().parent / "results" / "metrics_scrape.json"


def _scrape_loop(url: str, interval_s: float, active: Any, done: Any, out: Any) -> None:
    """In its own process (Prometheus is not in the server's process either): while ``active`` is set, GET
    /metrics every ``interval_s``; after each active spell put ``(durations_s, bytes, samples)`` on ``out``;
    exit when ``done`` is set."""
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        while not done.is_set():
            if not active.wait(0.05):
                continue
            durations: list[float] = []
            size = samples = 0
            while active.is_set():
                t0 = time.perf_counter()
                r = c.get(url)
                r.raise_for_status()
                durations.append(time.perf_counter() - t0)
                size = len(r.content)
                samples = sum(1 for line in r.text.splitlines() if line and not line.startswith("#"))
                time.sleep(max(0.0, interval_s - (time.perf_counter() - t0)))
            out.put((durations, size, samples))


class Scraper:
    """One scraping process for the whole run, switched on and off between phases (so its start-up, which
    imports httpx in a fresh interpreter, never lands inside a timed phase)."""

    def __init__(self, url: str, interval_s: float = 1.0) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.active, self.done, self.out = ctx.Event(), ctx.Event(), ctx.Queue()
        self.proc = ctx.Process(target=_scrape_loop, args=(url, interval_s, self.active, self.done, self.out),
                                daemon=True)
        self.proc.start()
        self.durations_s: list[float] = []
        self.bytes = self.series = 0

    def on(self) -> None:
        self.active.set()

    def off(self) -> None:
        self.active.clear()
        durations, self.bytes, self.series = self.out.get(timeout=60)
        self.durations_s += durations

    def close(self) -> None:
        self.done.set()
        self.proc.join(timeout=30)


def _start(db: str) -> tuple[Any, Any, str]:
    """A control plane on ``db`` served by uvicorn on a free loopback port: ``(live, server, url)``.
    (Imports here, not at the top, so the spawned scraper process starts with httpx only.)"""
    import uvicorn

    from superfactory.live.api.app import create_app
    from superfactory.live.context import Live, Settings, WallClock, ensure_epoch
    from superfactory.live.services.auth import bootstrap_admin
    from superfactory.live.store.db import open_store

    engine = open_store(db)
    clock = WallClock(time.time())
    ensure_epoch(engine, clock.epoch_unix_s)
    live = Live(engine, clock, Settings(suspect_after_s=1e6, lost_after_s=2e6, cycle_s=3600))
    live.extras["admin_token"] = bootstrap_admin(engine, clock.unix_s())
    live.extras["metrics_token"] = TOKEN
    app = create_app(live, scheduler=False)
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return live, server, f"http://127.0.0.1:{port}"


def _call(c: httpx.Client, method: str, path: str, expect: int = 200, **kw: Any) -> Any:
    r = c.request(method, path, **kw)
    if r.status_code != expect:
        raise SystemExit(f"{method} {path}: {r.status_code} {r.text[:300]}")
    return r.json()


def _submit(c: httpx.Client, tenant_hdr: dict[str, str], n: int, prefix: str) -> list[int]:
    return [int(_call(c, "POST", "/v1/jobs", 201, headers=tenant_hdr, json={**JOB, "id": f"{prefix}{i}"})["id"])
            for i in range(n)]


def _place_all(live: Any, n_pending: int) -> dict[str, float]:
    """Run scheduler cycles until no job is pending; return wall seconds, process and scheduler-thread CPU
    seconds, and placements."""
    sched = live.extras["scheduler"]
    t0, p0, th0 = time.perf_counter(), time.process_time(), time.thread_time()
    placed = 0
    for _ in range(100):
        plan = sched.cycle()
        got = sum(1 for a in plan.actions if type(a).__name__ == "Place")
        placed += got
        if placed >= n_pending or got == 0:
            break
    return {"seconds": time.perf_counter() - t0, "process_cpu_s": time.process_time() - p0,
            "thread_cpu_s": time.thread_time() - th0, "placed": placed}


def _finish(live: Any, agents: dict[str, dict[str, str]], job_ids: list[int]) -> None:
    """The agents report the batch's jobs running, then succeeded (not timed; through the agent service in
    process, the same code the HTTP route calls, to keep the untimed part of the run short)."""
    import sqlalchemy as sa

    from superfactory.live.services import agents as agent_service
    from superfactory.live.services.auth import authenticate
    from superfactory.live.store import tables as t

    who = {fid: authenticate(live.engine, hdr["Authorization"]) for fid, hdr in agents.items()}
    with live.engine.connect() as conn:
        rows = conn.execute(sa.select(t.jobs.c.id, t.jobs.c.factory_id, t.jobs.c.fencing_token).where(
            t.jobs.c.id.in_(job_ids), t.jobs.c.state == "assigned")).all()
    for jid, fid, token in rows:
        for state in ("running", "succeeded"):
            agent_service.report(live, who[fid], jid, {"fencing_token": token, "state": state})


def _render_cpu_ms(live: Any, repeat: int = 21) -> list[float]:
    """CPU time of the server thread rendering one full scrape (admin scope), ms, ``repeat`` times: the share
    of a core a 1 Hz scrape takes from the process, which bounds what it can take from the scheduler thread
    (they share the GIL); CPU time, unlike wall time, hardly depends on what else the machine runs."""
    from superfactory.live.metrics import Scope, render

    out = []
    for _ in range(repeat):
        t0 = time.thread_time()
        render(live, Scope(None))
        out.append(1000 * (time.thread_time() - t0))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracked", type=int, default=1000, help="jobs placed and holding GPUs before measuring")
    ap.add_argument("--batch", type=int, default=1500, help="jobs placed per measured phase")
    ap.add_argument("--rounds", type=int, default=8, help="pairs of phases (without, with scraping)")
    ap.add_argument("--db", default="", help="store URL (default: a SQLite file in a temporary folder)")
    ap.add_argument("--recompute", type=Path, help="re-summarise the phases of a results file; measure nothing")
    args = ap.parse_args()
    if args.recompute is not None:
        try:
            saved = json.loads(args.recompute.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"--recompute {args.recompute}: cannot read a results file ({exc})") from None
        _report(saved)
        return
    tmp = tempfile.TemporaryDirectory(prefix="sf-metrics-bench-")
    live, server, url = _start(args.db or f"sqlite:///{tmp.name}/store.db")
    admin = {"Authorization": f"Bearer {live.extras['admin_token']}"}
    with httpx.Client(base_url=url, timeout=60, headers=admin) as c:
        _call(c, "POST", "/v1/fleet/import", json={"scenario": "default"})
        agents: dict[str, dict[str, str]] = {}
        for f in _call(c, "GET", "/v1/factories"):
            fid = f["id"]
            tok = _call(c, "POST", f"/v1/factories/{fid}/tokens", 201)["token"]
            agents[fid] = {"Authorization": f"Bearer {tok}"}
            _call(c, "POST", "/v1/agent/register", headers=agents[fid], json={"agent_id": f"agent-{fid}"})
        tenant = {"Authorization": f"Bearer {_call(c, 'POST', '/v1/tenants', 201, json={'id': 'bench'})['token']}"}
        _submit(c, tenant, args.tracked, "tracked-")
        placed = _place_all(live, args.tracked)["placed"]
        if placed < args.tracked:
            raise SystemExit(f"only {placed} of {args.tracked} tracked jobs placed")
        rows = []
        scraper = Scraper(f"{url}/metrics")
        load = [os.getloadavg()[0]]
        for r in range(args.rounds):
            for scraping in ((False, True) if r % 2 == 0 else (True, False)):
                batch = _submit(c, tenant, args.batch, f"r{r}{'s' if scraping else 'n'}-")
                if scraping:
                    scraper.on()
                time.sleep(2.0)  # both kinds of phase start alike: settled, and (B) with scraping under way
                m = _place_all(live, args.batch)
                if scraping:
                    scraper.off()
                n = m["placed"]
                rows.append({"round": r, "scraping": scraping, **m, "placements_per_s": n / m["seconds"],
                             "process_cpu_ms_per_placement": 1000 * m["process_cpu_s"] / n,
                             "thread_cpu_ms_per_placement": 1000 * m["thread_cpu_s"] / n})
                _finish(live, agents, batch)  # back to exactly --tracked jobs holding GPUs for the next phase
            load.append(os.getloadavg()[0])
        scraper.close()
        cpu_ms = _render_cpu_ms(live)
    server.should_exit = True
    scrapes = scraper.durations_s
    result = {
        "tracked_jobs": args.tracked, "batch": args.batch, "rounds": args.rounds, "load_average_1m": load,
        "scrapes": len(scrapes), "scrape_p50_ms": 1000 * statistics.median(scrapes) if scrapes else None,
        "scrape_max_ms": 1000 * max(scrapes) if scrapes else None,
        "render_cpu_ms_p50": statistics.median(cpu_ms),
        "render_cpu_share_at_1hz_pct": statistics.median(cpu_ms) / 10.0,
        "series_per_scrape": scraper.series, "bytes_per_scrape": scraper.bytes,
        "phases": rows, "store": args.db.split(":")[0] if args.db else "sqlite",
        "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
    }
    _report(result)
    tmp.cleanup()


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The figures of the measured phases (see the module docstring).

    Per round, the ratio scraping / not scraping. The order alternates (A B, then B A), and the first phase of a
    round may differ systematically from the second, so ``slowdown_pct`` is the median over consecutive pairs of
    rounds of the geometric mean of their two ratios (one of each order: the order effect cancels);
    ``slowdown_unbalanced_pct`` is the plain median of the per-round ratios."""

    def med(key: str, scraping: bool) -> float:
        return statistics.median(x[key] for x in rows if x["scraping"] is scraping)

    def ratios(key: str) -> list[float]:  # per round: the scraping phase over the other one
        by_round: dict[int, dict[bool, float]] = {}
        for x in rows:
            by_round.setdefault(x["round"], {})[x["scraping"]] = x[key]
        return [v[True] / v[False] for _, v in sorted(by_round.items())]

    def balanced(rs: list[float]) -> float:
        pairs = [math.sqrt(a * b) for a, b in zip(rs[::2], rs[1::2], strict=False)]
        return statistics.median(pairs or rs)

    cpu = ratios("process_cpu_ms_per_placement")
    slowdown = balanced(cpu) - 1.0
    wall = ratios("placements_per_s")
    return {
        "slowdown_pct": 100 * slowdown, "goal_pct": 5.0, "met": slowdown <= 0.05,
        "slowdown_unbalanced_pct": 100 * (statistics.median(cpu) - 1.0), "process_cpu_ratios": cpu,
        "process_cpu_ms_per_placement_no_scrape": med("process_cpu_ms_per_placement", False),
        "process_cpu_ms_per_placement_scraping": med("process_cpu_ms_per_placement", True),
        "scheduler_thread_slowdown_pct": 100 * (balanced(ratios("thread_cpu_ms_per_placement")) - 1.0),
        "wall_slowdown_pct": 100 * (1.0 - balanced(wall)), "wall_ratios": wall,
        "placements_per_s_no_scrape": med("placements_per_s", False),
        "placements_per_s_scraping": med("placements_per_s", True),
    }


def _report(result: dict[str, Any]) -> None:
    """Add the summary to ``result``, print the table and key=value lines, write the JSON."""
    rows = result["phases"]
    result.update(summarize(rows))
    print(f"{'round':>5} {'scraping':>8} {'placed':>6} {'seconds':>8} {'placements/s':>13} {'cpu ms/pl':>10} "
          f"{'thread ms/pl':>12}")
    for x in rows:
        print(f"{x['round']:>5} {x['scraping']!s:>8} {x['placed']:>6} {x['seconds']:>8.3f} "
              f"{x['placements_per_s']:>13.1f} {x['process_cpu_ms_per_placement']:>10.3f} "
              f"{x['thread_cpu_ms_per_placement']:>12.3f}")
    for k in ("tracked_jobs", "slowdown_pct", "met", "slowdown_unbalanced_pct",
              "process_cpu_ms_per_placement_no_scrape",
              "process_cpu_ms_per_placement_scraping", "scheduler_thread_slowdown_pct", "wall_slowdown_pct",
              "placements_per_s_no_scrape", "placements_per_s_scraping",
              "scrapes", "scrape_p50_ms", "scrape_max_ms", "render_cpu_ms_p50", "render_cpu_share_at_1hz_pct",
              "series_per_scrape", "bytes_per_scrape"):
        v = result[k]
        print(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
