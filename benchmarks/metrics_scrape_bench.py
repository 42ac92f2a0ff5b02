"""Does scraping /metrics every second slow the live scheduler's placements? (issue 15: goal <= 5 %)

Set-up: a control plane (uvicorn on loopback, store on SQLite by default or ``--db URL``) with the built-in
``default`` fleet (5 factories, 96,800 GPUs) imported and an agent lease on every factory; ``--tracked`` jobs
(default 1,000) placed and holding GPUs, so every scrape renders their job-level series. Then alternating
phases, without (A) and with (B) a scraper process that GETs /metrics every second over HTTP with the metrics
token, as Prometheus does. Each phase places ``--batch`` 8-GPU jobs (submitted and held before the phase, not
timed) in scheduler cycles of ``--per-cycle``: before each cycle the next jobs are released to the queue, and
after it as many of the oldest holding jobs finish (their agents' reports, written as the agent service writes
them), so the scheduler works back to back with a steady ``--tracked`` jobs holding GPUs, and every scrape finds
jobs it has not seen yet, as under a stream of arrivals. Each round is a pair of phases, A B in even rounds and
B A in odd ones.

What a phase counts (CPU time, which unlike wall time hardly depends on what else a shared machine runs): the
scheduler's CPU time inside its cycles, plus **all** CPU time of every other thread of the control-plane process
over the whole phase (the server answering the scrapes: folding the new events, reading the store, rendering),
including the scrape that first sees the phase's last placements (a B phase ends only once a scrape has begun
after the last cycle and finished). The releases and finishes between cycles (the main thread outside the
cycles) are not counted. So no work a scrape causes escapes the count, wherever it lands.

- ``slowdown_pct`` (the goal's figure, <= 5 %): the increase of that CPU time per placement, B over A,
  order-balanced: the median over consecutive pairs of rounds (one A B, one B A) of the geometric mean of their
  two ratios, since the first phase of a round can differ systematically from the second
  (``slowdown_unbalanced_pct``: the plain median of the per-round ratios).
- ``scrape_cost_pct``: the scrapes' own CPU time per placement (other threads, B minus A) over the A phases'
  CPU time per placement, medians: the same thing measured directly, without the scheduler's run-to-run noise.
- ``scheduler_thread_slowdown_pct``: the scheduler thread's own CPU time per placement, B over A (what sharing
  the interpreter with the scrapes costs it: GIL hand-overs, caches, garbage collection).
- ``wall_slowdown_pct``: 1 - the ratio of placements per wall second inside the cycles; meaningful on a quiet
  machine only.
- ``always_on_instrumentation``: what metrics cost placements when nobody scrapes, versus metrics disabled. The
  metrics are folded from the store at scrape time, so no metrics code runs in the placement path; the
  benchmark checks it (the metrics' render count does not move during A phases) rather than assuming it.

Where the rendering runs: by default in the control plane's metrics worker process (``live/metrics_worker.py``),
as ``superfactory serve`` does; ``--in-process`` renders in the control plane's process, as before. The worker's
CPU time (read from ``/proc/<pid>/stat``) is not the control plane's, so it is not in ``slowdown_pct``; it is
reported beside it:

- ``worker_cpu_us_per_placement``: the worker process's CPU time per placement, B minus A, medians (what the
  rendering costs on another core); ``worker_cost_pct``: the same over the A phases' CPU time per placement;
  ``total_cost_pct``: ``slowdown_pct`` + ``worker_cost_pct``, the whole cost wherever it lands.

``--recompute FILE`` re-summarises the phases saved in a results file without measuring again.

    nice -n 5 .venv/bin/python benchmarks/metrics_scrape_bench.py [--tracked 1000] [--batch 2000]
        [--per-cycle 250] [--rounds 16]

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
import sys
import tempfile
import threading
import time
from collections import deque
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
    parent = multiprocessing.parent_process()
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        while not done.is_set() and (parent is None or parent.is_alive()):
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


def _proc_cpu_s(pid: int | None) -> float:
    """User + system CPU time of process ``pid`` so far, s (0 for None or a process that is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _worker(live: Any) -> Any:
    from superfactory.live.metrics_worker import worker_for

    return worker_for(live)


def _worker_cpu_s(live: Any) -> float:
    w = _worker(live)
    return _proc_cpu_s(w.pid) if w is not None else 0.0


def _start(db: str, in_process: bool) -> tuple[Any, Any, str]:
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
    live.extras["metrics_worker"] = not in_process
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


def _set_state(live: Any, ids: list[int], state: str, was: str) -> None:
    """Hold (``state="held"``) or release (``"pending"``, back in the queue from now) the jobs ``ids``, as the
    jobs service's hold and release verbs do, in one statement."""

    from superfactory.live.store import tables as t

    extra = {"waiting_since_s": live.clock.now_s()} if state == "pending" else {}
    with live.engine.begin() as conn:
        conn.execute(t.jobs.update().where(t.jobs.c.id.in_(ids), t.jobs.c.state == was).values(
            state=state, updated_at_unix_s=live.clock.unix_s(), **extra))


def _finish(live: Any, job_ids: list[int]) -> None:
    """The jobs ``job_ids`` report running, then succeeded: the rows and events the agent service's ``report``
    writes for those two reports, for many jobs in one transaction (its per-call cost would otherwise make the
    main thread, not the scheduler, set the pace of the run)."""
    import sqlalchemy as sa

    from superfactory.live.services.jobs_common import HOLDING
    from superfactory.live.store import tables as t

    if not job_ids:
        return
    now = live.clock.unix_s()
    with live.engine.begin() as conn:
        rows = conn.execute(sa.select(t.jobs.c.id, t.jobs.c.factory_id, t.jobs.c.fencing_token).where(
            t.jobs.c.id.in_(job_ids), t.jobs.c.state.in_(HOLDING))).all()
        conn.execute(t.jobs.update().where(t.jobs.c.id.in_([r.id for r in rows])).values(
            state="succeeded", updated_at_unix_s=now))
        conn.execute(t.job_events.insert(), [
            e for r in rows for e in (
                {"job_id": r.id, "at_unix_s": now, "kind": "running",
                 "data": {"factory_id": r.factory_id, "fencing_token": r.fencing_token}},
                {"job_id": r.id, "at_unix_s": now, "kind": "succeeded", "data": {"factory_id": r.factory_id}})])


def _cycle(live: Any) -> tuple[list[int], float, float]:
    """One scheduler cycle: (ids it placed, its CPU time in this thread, its wall time)."""
    sched = live.extras["scheduler"]
    c0, w0 = time.thread_time(), time.perf_counter()
    plan = sched.cycle()
    cpu, wall = time.thread_time() - c0, time.perf_counter() - w0
    return [int(a.job_id) for a in plan.actions if type(a).__name__ == "Place"], cpu, wall


def _phase(live: Any, scraper: Scraper | None, held: list[int], holding: deque[int], tracked: int,
           per_cycle: int) -> dict[str, Any]:
    """Place the ``held`` jobs ``per_cycle`` at a time, finishing as many of the oldest ``holding`` after each
    cycle (see the module docstring); with ``scraper`` scraping throughout. Returns the phase's figures."""
    from superfactory.live.metrics import metrics_for

    worker = _worker(live)
    lm = worker if worker is not None else metrics_for(live)
    started0, done0, render0 = lm.scrapes_started, lm.scrapes_done, lm.render_cpu_s
    k0 = _worker_cpu_s(live)
    p0, m0, w0 = time.process_time(), time.thread_time(), time.perf_counter()
    if scraper is not None:
        scraper.on()
    placed = cycles = 0
    sched_cpu = sched_wall = 0.0
    queue = list(held)
    while placed < len(held) and cycles < 4 * (len(held) // per_cycle + 1):
        chunk, queue = queue[:per_cycle], queue[per_cycle:]
        if chunk:
            _set_state(live, chunk, "pending", "held")
        got, cpu, wall = _cycle(live)
        cycles += 1
        sched_cpu += cpu
        sched_wall += wall
        placed += len(got)
        holding.extend(got)
        _finish(live, [holding.popleft() for _ in range(max(0, len(holding) - tracked))])
    if scraper is not None:  # the phase ends once a scrape begun after the last cycle has finished
        after = lm.scrapes_started
        while lm.scrapes_done <= after:
            time.sleep(0.005)
    process_cpu, main_cpu = time.process_time() - p0, time.thread_time() - m0
    worker_cpu = _worker_cpu_s(live) - k0
    seconds = time.perf_counter() - w0
    if scraper is not None:
        scraper.off()
    elif lm.scrapes_started != started0:
        raise SystemExit("metrics code ran in a phase without scraping: the always-on check failed")
    other_cpu = process_cpu - main_cpu  # every thread but this one: the server, answering the scrapes
    return {"placed": placed, "cycles": cycles, "seconds": seconds, "cycle_seconds": sched_wall,
            "scheduler_cpu_s": sched_cpu, "other_cpu_s": other_cpu, "scrapes": lm.scrapes_done - done0,
            "placements_per_s": placed / sched_wall,
            "cpu_ms_per_placement": 1000 * (sched_cpu + other_cpu) / placed,
            "thread_cpu_ms_per_placement": 1000 * sched_cpu / placed,
            "other_cpu_us_per_placement": 1e6 * other_cpu / placed,
            "render_cpu_us_per_placement": 1e6 * (lm.render_cpu_s - render0) / placed,
            "render_in_process": worker is None, "worker_cpu_us_per_placement": 1e6 * worker_cpu / placed}


def _cpu(live: Any) -> float:
    """CPU time of this thread plus the metrics worker's render time as it reports it (a render's cost in either
    mode), s. (Not /proc: its 10 ms ticks are coarser than one render; the phases, which last seconds, use it.)"""
    w = _worker(live)
    return time.thread_time() + (w.render_cpu_s if w is not None else 0.0)


def _render_cpu_ms(live: Any, repeat: int = 21) -> list[float]:
    """CPU time of the server thread rendering one full scrape (admin scope), ms, ``repeat`` times: the share
    of a core a 1 Hz scrape takes from the process, which bounds what it can take from the scheduler thread
    (they share the GIL); CPU time, unlike wall time, hardly depends on what else the machine runs."""
    from superfactory.live.metrics import Scope, render

    out = []
    for _ in range(repeat):
        t0 = _cpu(live)
        render(live, Scope(None))
        out.append(1000 * (_cpu(live) - t0))
    return out


def _churn_cpu_us(live: Any, c: httpx.Client, tenant: dict[str, str], holding: deque[int], tracked: int,
                  per_cycle: int, n: int = 1000, repeat: int = 3) -> list[float]:
    """What one scrape pays per job that came and went since the previous one (its placement's and its end's
    events folded, its figures read, its lines rendered once), us: the CPU time of a scrape after ``n``
    placements (and as many of the oldest jobs finished) minus that of a scrape with nothing new, ``repeat``
    times. Measured in this thread with no scraper running."""
    from superfactory.live.metrics import Scope, render

    out = []
    for i in range(repeat):
        held = _submit(c, tenant, n, f"churn{i}-")
        _set_state(live, held, "held", "pending")
        render(live, Scope(None))
        t0 = _cpu(live)
        render(live, Scope(None))
        steady = _cpu(live) - t0
        placed = _phase(live, None, held, holding, tracked, per_cycle)["placed"]
        t0 = _cpu(live)
        render(live, Scope(None))
        out.append(1e6 * (_cpu(live) - t0 - steady) / placed)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracked", type=int, default=1000, help="jobs placed and holding GPUs before measuring")
    ap.add_argument("--batch", type=int, default=2000, help="jobs placed per measured phase")
    ap.add_argument("--per-cycle", type=int, default=250, help="jobs released to the queue before each cycle")
    ap.add_argument("--rounds", type=int, default=16, help="pairs of phases (without, with scraping)")
    ap.add_argument("--db", default="", help="store URL (default: a SQLite file in a temporary folder)")
    ap.add_argument("--in-process", action="store_true",
                    help="render /metrics in the control plane's process (default: in its metrics worker process)")
    ap.add_argument("--out", type=Path, default=RESULTS, help="results JSON (default: %(default)s)")
    ap.add_argument("--recompute", type=Path, help="re-summarise the phases of a results file; measure nothing")
    args = ap.parse_args()
    if args.recompute is not None:
        try:
            saved = json.loads(args.recompute.read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(f"--recompute {args.recompute}: cannot read a results file ({exc})") from None
        _report(saved, args.out)
        return
    from superfactory.live.metrics import Scope, render

    tmp = tempfile.TemporaryDirectory(prefix="sf-metrics-bench-")
    live, server, url = _start(args.db or f"sqlite:///{tmp.name}/store.db", args.in_process)
    admin = {"Authorization": f"Bearer {live.extras['admin_token']}"}
    with httpx.Client(base_url=url, timeout=60, headers=admin) as c:
        _call(c, "POST", "/v1/fleet/import", json={"scenario": "default"})
        for f in _call(c, "GET", "/v1/factories"):
            tok = _call(c, "POST", f"/v1/factories/{f['id']}/tokens", 201)["token"]
            _call(c, "POST", "/v1/agent/register", headers={"Authorization": f"Bearer {tok}"},
                  json={"agent_id": f"agent-{f['id']}"})
        tenant = {"Authorization": f"Bearer {_call(c, 'POST', '/v1/tenants', 201, json={'id': 'bench'})['token']}"}
        holding: deque[int] = deque()
        _submit(c, tenant, args.tracked, "tracked-")
        for _ in range(20):
            if len(holding) >= args.tracked:
                break
            holding.extend(_cycle(live)[0])
        if len(holding) < args.tracked:
            raise SystemExit(f"only {len(holding)} of {args.tracked} tracked jobs placed")
        render(live, Scope(None))  # untimed: start the worker and fold the tracked jobs' history
        rows = []
        scraper = Scraper(f"{url}/metrics")
        load = [os.getloadavg()[0]]
        t_run = time.perf_counter()
        for r in range(args.rounds):
            for scraping in ((False, True) if r % 2 == 0 else (True, False)):
                held = _submit(c, tenant, args.batch, f"r{r}{'s' if scraping else 'n'}-")
                _set_state(live, held, "held", "pending")
                m = _phase(live, scraper if scraping else None, held, holding, args.tracked, args.per_cycle)
                if m["placed"] < args.batch:
                    raise SystemExit(f"round {r}: only {m['placed']} of {args.batch} jobs placed")
                rows.append({"round": r, "scraping": scraping, **m})
                if not scraping:  # catch up (not timed), so the next B phase folds and renders only its own jobs
                    render(live, Scope(None))
            load.append(os.getloadavg()[0])
            a, b = (rows[-2], rows[-1]) if rows[-1]["scraping"] else (rows[-1], rows[-2])
            print(f"round {r + 1}/{args.rounds}: cpu ms/placement {a['cpu_ms_per_placement']:.3f} without, "
                  f"{b['cpu_ms_per_placement']:.3f} with scraping; load {load[-1]:.1f}", file=sys.stderr, flush=True)
        scraper.close()
        cpu_ms = _render_cpu_ms(live)
        churn_us = _churn_cpu_us(live, c, tenant, holding, args.tracked, args.per_cycle)
    server.should_exit = True
    from superfactory.live.metrics_worker import close_worker

    close_worker(live)
    scrapes = scraper.durations_s
    result = {
        "tracked_jobs": args.tracked, "batch": args.batch, "per_cycle": args.per_cycle, "rounds": args.rounds,
        "load_average_1m": load, "run_wall_s": time.perf_counter() - t_run,
        "run_cpu_s": sum(os.times()[:4]),
        "scrapes": len(scrapes), "scrape_p50_ms": 1000 * statistics.median(scrapes) if scrapes else None,
        "scrape_max_ms": 1000 * max(scrapes) if scrapes else None,
        "render_cpu_ms_p50": statistics.median(cpu_ms),
        "render_cpu_share_at_1hz_pct": statistics.median(cpu_ms) / 10.0,
        "churn_render_cpu_us_per_job": statistics.median(churn_us),
        "series_per_scrape": scraper.series, "bytes_per_scrape": scraper.bytes,
        "render_mode": "in-process" if args.in_process else "worker process",
        "phases": rows, "store": args.db.split(":")[0] if args.db else "sqlite",
        "machine": f"{platform.machine()} {platform.python_implementation()} {platform.python_version()}",
    }
    _report(result, args.out)
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

    cpu = ratios("cpu_ms_per_placement")
    slowdown = balanced(cpu) - 1.0
    wall = ratios("placements_per_s")
    cpu_a = med("cpu_ms_per_placement", False)
    scrape_us = med("other_cpu_us_per_placement", True) - med("other_cpu_us_per_placement", False)
    render_us = med("render_cpu_us_per_placement", True) if "render_cpu_us_per_placement" in rows[0] else None
    idle = statistics.median(x["other_cpu_us_per_placement"] * x["placed"] for x in rows if not x["scraping"])
    serving = [(x["other_cpu_us_per_placement"] - (x["render_cpu_us_per_placement"] if x.get(
                "render_in_process", True) else 0.0)) * x["placed"] - idle
               for x in rows if x["scraping"] and "render_cpu_us_per_placement" in x]
    http_ms = statistics.median(serving) / 1000 / med("scrapes", True) if serving else None
    worker_us = (med("worker_cpu_us_per_placement", True) - med("worker_cpu_us_per_placement", False)
                 if "worker_cpu_us_per_placement" in rows[0] else 0.0)
    worker_pct = 100 * worker_us / 1000 / cpu_a
    return {
        "worker_cpu_us_per_placement": worker_us, "worker_cost_pct": worker_pct,
        "total_cost_pct": 100 * slowdown + worker_pct,
        "slowdown_pct": 100 * slowdown, "goal_pct": 5.0, "met": slowdown <= 0.05,
        "serving_cpu_ms_per_scrape": http_ms,
        "scheduler_cpu_ms_per_placement_no_scrape": med("thread_cpu_ms_per_placement", False),
        "slowdown_unbalanced_pct": 100 * (statistics.median(cpu) - 1.0), "cpu_ratios": cpu,
        "cpu_ms_per_placement_no_scrape": cpu_a,
        "cpu_ms_per_placement_scraping": med("cpu_ms_per_placement", True),
        "scrape_cpu_us_per_placement": scrape_us, "scrape_cost_pct": 100 * scrape_us / 1000 / cpu_a,
        "render_cpu_us_per_placement": render_us,
        "scheduler_thread_slowdown_pct": 100 * (balanced(ratios("thread_cpu_ms_per_placement")) - 1.0),
        "wall_slowdown_pct": 100 * (1.0 - balanced(wall)), "wall_ratios": wall,
        "placements_per_s_no_scrape": med("placements_per_s", False),
        "placements_per_s_scraping": med("placements_per_s", True),
        "scrapes_per_phase": med("scrapes", True),
        "always_on_instrumentation": "none: metrics code ran 0 times in the phases without scraping (checked)",
    }


def _report(result: dict[str, Any], out: Path = RESULTS) -> None:
    """Add the summary to ``result``, print the table and key=value lines, write the JSON."""
    rows = result["phases"]
    result.update(summarize(rows))
    if result.get("churn_render_cpu_us_per_job") is not None:
        # the scheduler on a core of its own (a quiet machine): in each second of its CPU time it places
        # 1000 / (its ms per placement) jobs and one scrape runs, costing the steady render, the serving of the
        # request, and each new job once
        sched_ms = result["scheduler_cpu_ms_per_placement_no_scrape"]
        cost_ms = (result["render_cpu_ms_p50"] + (result["serving_cpu_ms_per_scrape"] or 0.0)
                   + result["churn_render_cpu_us_per_job"] / sched_ms)
        result["scrape_cost_free_core_pct"] = cost_ms / 10.0
    print(f"{'round':>5} {'scraping':>8} {'placed':>6} {'cycles':>6} {'seconds':>8} {'placements/s':>12} "
          f"{'cpu ms/pl':>9} {'sched ms/pl':>11} {'other us/pl':>11} {'scrapes':>7}")
    for x in rows:
        print(f"{x['round']:>5} {x['scraping']!s:>8} {x['placed']:>6} {x['cycles']:>6} {x['seconds']:>8.3f} "
              f"{x['placements_per_s']:>12.1f} {x['cpu_ms_per_placement']:>9.3f} "
              f"{x['thread_cpu_ms_per_placement']:>11.3f} {x['other_cpu_us_per_placement']:>11.1f} "
              f"{x['scrapes']:>7}")
    for k in ("render_mode", "tracked_jobs", "batch", "per_cycle", "rounds", "slowdown_pct", "met",
              "worker_cpu_us_per_placement", "worker_cost_pct", "total_cost_pct", "slowdown_unbalanced_pct",
              "cpu_ms_per_placement_no_scrape", "cpu_ms_per_placement_scraping", "scrape_cpu_us_per_placement",
              "render_cpu_us_per_placement", "scrape_cost_pct", "serving_cpu_ms_per_scrape",
              "churn_render_cpu_us_per_job", "scrape_cost_free_core_pct", "scheduler_thread_slowdown_pct",
              "wall_slowdown_pct",
              "placements_per_s_no_scrape", "placements_per_s_scraping", "always_on_instrumentation",
              "scrapes", "scrapes_per_phase", "scrape_p50_ms", "scrape_max_ms", "render_cpu_ms_p50",
              "render_cpu_share_at_1hz_pct", "series_per_scrape", "bytes_per_scrape", "run_wall_s", "run_cpu_s"):
        v = result.get(k)
        print(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}")
    print(f"load_average_1m={min(result['load_average_1m']):.2f}-{max(result['load_average_1m']):.2f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
