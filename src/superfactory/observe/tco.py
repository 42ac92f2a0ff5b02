"""Total cost of ownership of a twin run, by factory: capital, power, total, per productive GPU-hour and
PFLOP-hour, with carbon and where each factory's prices came from.

The math is :mod:`superfactory.models.tco`; this module only measures its inputs from a run:
- installed GPUs per system (the scenario) x the simulated hours: capital accrues whether a GPU works or not;
- energy, power cost (tariff applied) and carbon: the twin's hourly factory rows;
- productive GPU-hours by factory, folded over the event log: a job's retained progress is credited to the
  factory where it was committed (``CheckpointCommitted`` and ``JobCompleted`` carry the job's progress), and
  what is still uncommitted at the end goes to the factory that holds the job, so the factories add up to the
  summary's ``training_throughput``; productive PFLOP-hours are the same progress in FLOP (the job's work per
  productive second) / 3.6e18.

:func:`cost_summary` returns the flat summary keys plus ``cost_by_factory``, ``cost_inputs`` (what
``superfactory cost --run`` reprices), ``cost_assumptions`` and ``signal_sources``.
"""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import asdict
from typing import Any

from superfactory.domain.events import EventKind
from superfactory.domain.units import HOUR_S
from superfactory.models.tco import (
    DEFAULT_CAPITAL,
    FLOP_PER_PFLOP_HOUR,
    CapitalAssumptions,
    FactoryCost,
    FactoryUsage,
    fleet_total,
    price_factory,
)
from superfactory.observe.record import RunRecord
from superfactory.scenario.market_data import series_source

_CREDIT = (EventKind.CHECKPOINT_COMMITTED, EventKind.JOB_COMPLETED)


def productive_by_factory(result: RunRecord) -> dict[str, tuple[float, float]]:
    """``factory -> (productive GPU-hours, productive PFLOP-hours)`` (see the module docstring)."""
    jobs = {j.job.id: j for j in result.jobs}
    credited: dict[str, float] = defaultdict(float)  # job -> progress seconds already credited
    gpu_s: dict[str, float] = defaultdict(float)
    flop: dict[str, float] = defaultdict(float)

    def credit(job_id: str, factory: str, progress_s: float) -> None:
        jr = jobs[job_id]
        gained = progress_s - credited[job_id]
        if gained <= 0:
            return
        credited[job_id] = progress_s
        gpu_s[factory] += gained * jr.job.gpus
        flop[factory] += gained / jr.job.work_s * jr.job.work_flop if jr.job.work_s > 0 else 0.0

    for e in result.events:
        if e.kind in _CREDIT and e.job in jobs and e.factory:
            credit(e.job, e.factory, e.value)
    fids = [f.id for f in result.scenario.factories]
    for jr in result.jobs:
        at = jr.factory if jr.factory >= 0 else jr.last_factory
        if at >= 0:
            credit(jr.job.id, fids[at], jr.progress_s)
    return {f: (gpu_s[f] / HOUR_S, flop[f] / FLOP_PER_PFLOP_HOUR) for f in fids}


def factory_usage(result: RunRecord) -> list[FactoryUsage]:
    """The measured TCO inputs of every factory of a run."""
    sc = result.scenario
    agg: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for h in result.hours:
        a = agg[h.factory]
        a[0] += h.facility_energy_mwh
        a[1] += h.cost_usd
        a[2] += h.carbon_t
    prod = productive_by_factory(result)
    out = []
    for f in sc.factories:
        by_system: dict[str, int] = defaultdict(int)
        for c in f.clusters:
            by_system[c.system.name] += c.gpus
        energy, cost, carbon = agg[f.id]
        series = sc.prices.get(f.market)
        out.append(FactoryUsage(
            f.id, dict(by_system), sc.duration_s / HOUR_S, energy, cost, carbon, *prod[f.id],
            price_source=series_source(series) if series is not None else "",
        ))
    return out


def usage_from_inputs(rows: list[dict[str, Any]]) -> list[FactoryUsage]:
    """Rebuild :class:`FactoryUsage` rows from a summary's ``cost_inputs``.

    Raises:
        KeyError, TypeError, ValueError: a malformed row (the caller turns it into a user message).
    """
    return [FactoryUsage(
        str(r["factory"]), {str(k): int(v) for k, v in r["gpus_by_system"].items()}, float(r["hours"]),
        float(r["energy_mwh"]), float(r["power_cost_usd"]), float(r["carbon_tco2"]),
        float(r["productive_gpu_hours"]), float(r["productive_pflop_hours"]), str(r.get("price_source", "")),
    ) for r in rows]


def headline(costs: list[FactoryCost]) -> dict[str, Any]:
    """The flat summary keys of a set of factory costs (0.0 where nothing was productive)."""
    t = fleet_total(costs)
    return {
        "capital_cost_usd": t.capital_usd,
        "total_cost_usd": t.total_usd,
        "capital_usd_per_productive_gpu_hour": t.per_gpu_hour(t.capital_usd) or 0.0,
        "total_usd_per_productive_gpu_hour": t.per_gpu_hour(t.total_usd) or 0.0,
        "total_usd_per_productive_pflop_hour": t.per_pflop_hour(t.total_usd) or 0.0,
        "training_pflop_hours": t.productive_pflop_hours,
        "capital_unpriced_systems": list(t.unpriced_systems),
    }


def cost_summary(result: RunRecord, assumptions: CapitalAssumptions = DEFAULT_CAPITAL) -> dict[str, Any]:
    """Summary keys for a run's TCO (see the module docstring)."""
    usage = factory_usage(result)
    costs = [price_factory(u, assumptions) for u in usage]
    sc = result.scenario
    return {
        **headline(costs),
        "cost_by_factory": [c.as_dict() for c in costs],
        "cost_inputs": [asdict(u) for u in usage],
        "cost_assumptions": asdict(assumptions),
        "signal_sources": {**{f"price:{m}": series_source(s) for m, s in sorted(sc.prices.items())},
                           **{f"carbon:{g}": series_source(s) for g, s in sorted(sc.carbon.items())}},
    }


COST_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("gpus", "GPUs", "{:,}"),
    ("capital_usd", "capital $", "{:,.0f}"),
    ("power_usd", "power $", "{:,.0f}"),
    ("total_usd", "total $", "{:,.0f}"),
    ("capital_usd_per_productive_gpu_hour", "capital $/prod GPU-h", "{:.3f}"),
    ("power_usd_per_productive_gpu_hour", "power $/prod GPU-h", "{:.3f}"),
    ("total_usd_per_productive_gpu_hour", "total $/prod GPU-h", "{:.3f}"),
    ("total_usd_per_productive_pflop_hour", "total $/prod PFLOP-h", "{:.3f}"),
    ("carbon_tco2", "tCO2", "{:,.0f}"),
    ("kgco2_per_productive_gpu_hour", "kgCO2/prod GPU-h", "{:.3f}"),
    ("price_source", "prices", "{}"),
)


def cell(row: dict[str, Any], key: str, fmt: str) -> str:
    """A formatted cell; ``-`` where the value is missing (nothing productive)."""
    v = row.get(key)
    return "-" if v is None else fmt.format(v)


def cost_html(summary: dict[str, Any], title: str = "Total cost of ownership by factory") -> str:
    """An HTML table of ``summary['cost_by_factory']`` and the fleet line (empty string if absent)."""
    rows = summary.get("cost_by_factory")
    if not rows:
        return ""
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in COST_COLUMNS)
    body = "".join(
        f"<tr><td>{html.escape(str(r['factory']))}</td>"
        + "".join(f"<td>{html.escape(cell(r, k, fmt))}</td>" for k, _, fmt in COST_COLUMNS) + "</tr>"
        for r in rows
    )
    a = summary.get("cost_assumptions", {})
    years = a.get("depreciation_years") or "catalog (4)"
    note = (f"Capital: list price per GPU x (1 + networking {a.get('networking_share', 0):.1%} + storage "
            f"{a.get('storage_share', 0):.1%}) over {years} years, cost of capital {a.get('cost_of_capital', 0):.0%}"
            "; accrues on every installed GPU whether busy or idle. Power: facility energy x hourly price (tariff "
            "applied). Per productive GPU-hour / PFLOP-hour: work retained after failures. "
            f"Fleet: capital ${summary.get('capital_cost_usd', 0):,.0f}, "
            f"total ${summary.get('total_cost_usd', 0):,.0f}, "
            f"${summary.get('total_usd_per_productive_gpu_hour', 0):.3f} per productive GPU-hour.")
    if summary.get("signal_sources"):
        note += f" Series: {sources_line(summary)}."
    unpriced = summary.get("capital_unpriced_systems") or []
    if unpriced:
        note += f" No list price in the catalog for {', '.join(unpriced)}: their capital is not counted."
    return (f"<h2>{html.escape(title)}</h2><table><tr><th>factory</th>{head}</tr>{body}</table>"
            f"<p class='note'>{html.escape(note)}</p>")


def cost_rows(result: RunRecord, assumptions: CapitalAssumptions = DEFAULT_CAPITAL) -> list[dict[str, Any]]:
    """One row per factory (``cost_by_factory`` of the summary), for the ``factory_cost`` Parquet table."""
    rows = []
    for u in factory_usage(result):
        d = price_factory(u, assumptions).as_dict()
        d["unpriced_systems"] = ",".join(d["unpriced_systems"])  # type: ignore[arg-type]
        d["energy_mwh"] = u.energy_mwh
        rows.append(d)
    return rows


def sources_line(summary: dict[str, Any]) -> str:
    """Where a run's price and carbon series came from, in one line: ``real 2023-08: price ERCOT, PJM; carbon
    ERCOT | synthetic: price MISO; carbon MISO`` (empty when the summary has no ``signal_sources``)."""
    groups: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for key, src in summary.get("signal_sources", {}).items():
        kind, _, name = key.partition(":")
        label = f"real {src.rsplit(' ', 1)[-1]}" if src.startswith("real:") else src
        groups[label][kind].append(name)
    return " | ".join(
        f"{label}: " + "; ".join(f"{kind} {', '.join(sorted(names))}" for kind, names in sorted(kinds.items(),
                                                                                               reverse=True))
        for label, kinds in sorted(groups.items())
    )
