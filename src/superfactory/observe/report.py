"""The HTML report of a twin run: headline numbers, per-factory table and four plots.

Self-contained (plots are embedded PNGs), so ``report.html`` can be mailed or opened from any folder. Plots:
utilisation over time per factory, power cost per factory, ETTR per job, failure timeline.
"""

from __future__ import annotations

import base64
import html
import io
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from superfactory.domain.events import EventKind
from superfactory.domain.units import DAY_S
from superfactory.observe.record import RunRecord
from superfactory.observe.summary import job_ettr_split
from superfactory.observe.tco import cost_html


def _png(fig: Figure) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def plot_utilization(result: RunRecord) -> str:
    fig, ax = plt.subplots(figsize=(9, 3.4))
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for h in result.hours:
        series[h.factory].append((h.hour / 24.0, h.gpu_utilization * 100))
    for name, pts in series.items():
        ax.plot([p[0] for p in pts], [p[1] for p in pts], label=name, lw=1.2)
    ax.set_xlabel("simulated day")
    ax.set_ylabel("GPUs allocated (%)")
    ax.set_ylim(0, 105)
    ax.set_title("GPU utilisation per factory (hourly)")
    ax.legend(loc="lower right", fontsize=8, ncol=3)
    ax.grid(alpha=0.3)
    return _png(fig)


def plot_cost(result: RunRecord) -> str:
    cost: dict[str, float] = defaultdict(float)
    price: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for h in result.hours:
        cost[h.factory] += h.cost_usd
        price[h.factory].append((h.hour / 24.0, h.price_usd_per_mwh))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [1, 2]})
    names = list(cost)
    a1.bar(names, [cost[n] / 1e6 for n in names], color="#4a7ab5")
    a1.set_ylabel("power cost (M USD)")
    a1.set_title("Power cost per factory")
    a1.tick_params(axis="x", rotation=30)
    for n, pts in price.items():
        a2.plot([p[0] for p in pts], [p[1] for p in pts], lw=0.8, label=n)
    a2.set_xlabel("simulated day")
    a2.set_ylabel("USD/MWh")
    a2.set_title("Electricity price at each factory")
    a2.legend(fontsize=8, ncol=3)
    a2.grid(alpha=0.3)
    return _png(fig)


def plot_ettr(result: RunRecord) -> str:
    """Per job: ETTR, and its split into failure-ETTR (productive / holding nodes) and policy-wait share."""
    split = job_ettr_split(result)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.2))
    if len(split) <= 30:
        rows = sorted(split, key=lambda r: r.ettr, reverse=True)
        names = [r.job for r in rows]
        a1.bar(names, [r.ettr for r in rows], color="#5b9e5b", label="ETTR")
        a1.plot(names, [r.failure_ettr for r in rows], "k_", ms=10, label="failure-ETTR")
        a1.tick_params(axis="x", rotation=60, labelsize=7)
        a1.set_ylim(min([r.ettr for r in rows] + [0.8]) - 0.02, 1.0)
        a1.legend(fontsize=7)
        a2.bar(names, [r.policy_wait_share for r in rows], color="#c08040")
        a2.tick_params(axis="x", rotation=60, labelsize=7)
    else:
        a1.hist([[r.ettr for r in split], [r.failure_ettr for r in split]], bins=30, color=["#5b9e5b", "#777"],
                label=["ETTR", "failure-ETTR"])
        a1.set_xlabel("ratio")
        a1.set_ylabel("jobs")
        a1.legend(fontsize=7)
        a2.hist([r.policy_wait_share for r in split], bins=30, color="#c08040")
        a2.set_xlabel("share of wall time off nodes")
        a2.set_ylabel("jobs")
    a1.set_title("ETTR and failure-ETTR per job")
    a2.set_title("Policy wait share per job")
    for a in (a1, a2):
        a.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def ettr_split_html(result: RunRecord, summary: dict[str, Any], top: int = 15) -> str:
    """The ETTR split, GPU-weighted and per job: a table of the ``top`` jobs with the largest policy-wait share."""
    split = sorted(job_ettr_split(result), key=lambda r: (-r.policy_wait_share, r.job))[:top]
    rows = "".join(f"<tr><td>{html.escape(r.job)}</td><td>{r.gpus:,}</td><td>{r.ettr:.3f}</td>"
                   f"<td>{r.failure_ettr:.3f}</td><td>{r.policy_wait_share:.1%}</td></tr>" for r in split)
    return (
        "<h2>ETTR split</h2><table>"
        f"<tr><td>ETTR (GPU-weighted)</td><td>{summary['ettr']:.3f}</td></tr>"
        f"<tr><td>failure-ETTR: productive / time holding nodes (GPU-weighted; mean per job)</td>"
        f"<td>{summary['failure_ettr']:.3f} ({summary['failure_ettr_job_mean']:.3f})</td></tr>"
        f"<tr><td>policy wait share: started jobs' time not holding nodes (GPU-weighted; mean per job)</td>"
        f"<td>{summary['policy_wait_share']:.1%} ({summary['policy_wait_share_job_mean']:.1%})</td></tr></table>"
        "<p class='note'>failure-ETTR is what failures, checkpoint stalls and restarts leave of the time a job holds "
        "nodes; the policy wait share is time the policy kept a started job off nodes (paused, or waiting to be "
        "placed again after an interruption). ETTR ~= failure-ETTR x (1 - policy wait share).</p>"
        f"<h3>Jobs with the largest policy wait share (top {top})</h3>"
        "<table><tr><th>job</th><th>GPUs</th><th>ETTR</th><th>failure-ETTR</th><th>policy wait share</th></tr>"
        f"{rows}</table>"
    )


def plot_failures(result: RunRecord) -> str:
    ints = [e for e in result.events if e.kind is EventKind.JOB_INTERRUPTED]
    nodes = [e for e in result.events if e.kind is EventKind.NODE_FAILED]
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(9, 4.4), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    causes = sorted({e.cause for e in ints})
    y = {c: i for i, c in enumerate(causes)}
    a1.scatter([e.time_s / DAY_S for e in ints], [y[e.cause] for e in ints], s=6, alpha=0.6, color="#c0504d")
    a1.set_yticks(range(len(causes)), causes, fontsize=7)
    a1.set_title(f"Job interruptions by cause ({len(ints)}) ")
    a1.grid(alpha=0.3)
    a2.plot([e.time_s / DAY_S for e in ints], range(1, len(ints) + 1), label="job interruptions", color="#c0504d")
    a2.plot([e.time_s / DAY_S for e in nodes], range(1, len(nodes) + 1), label="node failures", color="#777")
    a2.set_xlabel("simulated day")
    a2.set_ylabel("cumulative")
    a2.legend(fontsize=8)
    a2.grid(alpha=0.3)
    return _png(fig)


def plot_inference(result: RunRecord) -> str:
    """P99 time-to-first-token per minute for every (service, PoP), against each service's SLO."""
    inf = result.inference
    assert inf is not None
    fig, ax = plt.subplots(figsize=(9, 3.4))
    for (sid, pop), p99 in sorted(inf.p99_ms.items()):
        ax.plot([m / 60.0 for m in range(p99.size)], p99, lw=0.8, label=f"{sid} @ {pop}")
    for sid, slo in sorted(inf.slo_ms.items()):
        ax.axhline(slo, color="#c0504d", ls="--", lw=1, label=f"{sid} SLO {slo:.0f} ms")
    ax.set_yscale("log")
    ax.set_xlabel("simulated hour")
    ax.set_ylabel("P99 TTFT (ms)")
    ax.set_title("Inference: P99 time to first token per minute (network + queueing + prefill)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return _png(fig)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.4f}" if abs(v) < 10 else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return html.escape(str(v))


def factory_rows(result: RunRecord) -> list[dict[str, Any]]:
    agg: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for h in result.hours:
        a = agg[h.factory]
        a["energy_mwh"] += h.facility_energy_mwh
        a["power_cost_usd"] += h.cost_usd
        a["carbon_tco2"] += h.carbon_t
    rows = []
    for f in result.scenario.factories:
        a = agg[f.id]
        total = result.factory_gpu_s.get(f.id, 0.0)
        rows.append({
            "factory": f.id, "market": f.market, "gpus": f.gpus,
            "utilization": result.factory_busy_gpu_s.get(f.id, 0.0) / total if total else 0.0,
            "energy_mwh": a["energy_mwh"], "power_cost_usd": a["power_cost_usd"],
            "usd_per_mwh": a["power_cost_usd"] / a["energy_mwh"] if a["energy_mwh"] else 0.0,
            "carbon_tco2": a["carbon_tco2"],
        })
    return rows


def _inference_section(result: RunRecord, summary: dict[str, Any]) -> list[str]:
    if result.inference is None:
        return []
    rows = [(k, v) for k, v in summary.items() if k.startswith("inference_")]
    return [
        "<h2>Inference</h2><table>",
        *(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in rows),
        "</table>",
        "<p class='note'>SLO attainment = share of (service, PoP)-minutes whose P99 TTFT met the SLO; idle share = "
        "reserved inference GPU-time not serving requests (the headroom's cost).</p>",
        f"<img src='data:image/png;base64,{plot_inference(result)}'>",
    ]


def write_report(result: RunRecord, summary: dict[str, Any], path: Path) -> Path:
    """Render ``report.html`` at ``path``."""
    sc = result.scenario
    headline = [
        ("simulated days", summary["simulated_days"]), ("policy", summary["policy"]), ("seed", summary["seed"]),
        ("GPUs", summary["gpus"]), ("jobs (completed)", f"{summary['jobs']} ({summary['jobs_completed']})"),
        ("GPU utilisation", summary["gpu_utilization"]), ("ETTR (GPU-hour weighted)", summary["ettr"]),
        ("failure-ETTR (productive / holding nodes)", summary["failure_ettr"]),
        ("policy wait share (started jobs off nodes)", summary["policy_wait_share"]),
        ("unexpected interruptions", summary["interruptions"]),
        ("planned interruptions", summary["planned_interruptions"]),
        ("GPU-hours lost to failures", summary["gpu_hours_lost_to_failures"]),
        ("facility energy (MWh)", summary["energy_mwh"]), ("power cost (USD)", summary["power_cost_usd"]),
        ("USD per productive GPU-hour", summary["usd_per_productive_gpu_hour"]),
        ("carbon (tCO2)", summary["carbon_tco2"]), ("migrations", summary["migrations"]),
    ]
    frows = factory_rows(result)
    fcols = list(frows[0]) if frows else []
    causes = summary["interruptions_by_cause"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>superfactory — {html.escape(sc.name)}</title>",
        "<style>body{font-family:system-ui,sans-serif;max-width:1050px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}"
        "img{max-width:100%}.note{color:#555;font-size:0.9em}</style></head><body>",
        f"<h1>Scenario <code>{html.escape(sc.name)}</code></h1><p>{html.escape(sc.description)}</p>",
        "<h2>Headline</h2><table>",
        *(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>" for k, v in headline),
        "</table>",
        "<p class='note'>ETTR = productive time / wall time since a job's first start, weighted by GPUs; "
        "productive time excludes work lost to interruptions, checkpoint stalls, detection and restarts. "
        "Energy is facility energy (IT x PUE); cost uses each factory's hourly market price.</p>",
        "<h2>Factories</h2><table><tr>", *(f"<th>{c}</th>" for c in fcols), "</tr>",
        *("<tr>" + "".join(f"<td>{_fmt(r[c])}</td>" for c in fcols) + "</tr>" for r in frows),
        "</table>",
        cost_html(summary),
        f"<h2>Utilisation</h2><img src='data:image/png;base64,{plot_utilization(result)}'>",
        f"<h2>Cost</h2><img src='data:image/png;base64,{plot_cost(result)}'>",
        ettr_split_html(result, summary),
        f"<h2>ETTR per job</h2><img src='data:image/png;base64,{plot_ettr(result)}'>",
        f"<h2>Failures</h2><img src='data:image/png;base64,{plot_failures(result)}'>",
        "<h3>Interruptions by cause</h3><table><tr><th>cause</th><th>interruptions</th></tr>",
        *(f"<tr><td>{html.escape(c)}</td><td>{n}</td></tr>" for c, n in causes.items()),
        "</table>",
        *_inference_section(result, summary),
        "<p class='note'>Tables: <code>summary.json</code>, <code>events.parquet</code>, <code>jobs.parquet</code>, "
        "<code>factory_hours.parquet</code> in this folder (load with pandas or polars).</p>",
        "</body></html>",
    ]
    path.write_text("\n".join(parts))
    return path
