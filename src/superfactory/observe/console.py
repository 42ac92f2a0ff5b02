"""Terminal rendering of run summaries and comparisons (rich tables)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from superfactory.observe.tco import sources_line

SUMMARY_ROWS: tuple[tuple[str, str, str], ...] = (
    ("simulated_days", "simulated days", "{:.1f}"),
    ("gpus", "GPUs", "{:,}"),
    ("jobs", "training jobs", "{:,}"),
    ("jobs_completed", "  completed", "{:,}"),
    ("gpu_utilization", "GPU utilisation", "{:.1%}"),
    ("ettr", "ETTR (GPU-h weighted)", "{:.3f}"),
    ("failure_ettr", "  failure-ETTR (productive / holding nodes)", "{:.3f}"),
    ("policy_wait_share", "  policy wait share (off nodes after start)", "{:.1%}"),
    ("failure_ettr_job_mean", "  failure-ETTR, mean per job", "{:.3f}"),
    ("policy_wait_share_job_mean", "  policy wait share, mean per job", "{:.1%}"),
    ("interruptions", "unexpected interruptions", "{:,}"),
    ("planned_interruptions", "planned interruptions", "{:,}"),
    ("gpu_hours_lost_to_failures", "GPU-hours lost to failures", "{:,.0f}"),
    ("energy_mwh", "facility energy (MWh)", "{:,.0f}"),
    ("power_cost_usd", "power cost (USD)", "${:,.0f}"),
    ("usd_per_productive_gpu_hour", "power USD / productive GPU-h", "${:.4f}"),
    ("capital_cost_usd", "capital cost (USD, depreciation)", "${:,.0f}"),
    ("total_cost_usd", "total cost (USD, capital + power)", "${:,.0f}"),
    ("total_usd_per_productive_gpu_hour", "total USD / productive GPU-h", "${:.3f}"),
    ("total_usd_per_productive_pflop_hour", "total USD / productive PFLOP-h", "${:.3f}"),
    ("carbon_tco2", "carbon (tCO2)", "{:,.0f}"),
    ("migrations", "migrations", "{:,}"),
    ("inference_slo_attainment", "inference SLO attainment", "{:.2%}"),
    ("inference_idle_share", "inference idle share", "{:.1%}"),
    ("inference_cold_starts", "inference cold starts", "{:,}"),
    ("wall_seconds", "wall time (s)", "{:.2f}"),
)


def summary_table(summary: dict[str, Any]) -> Table:
    t = Table(title=f"superfactory simulate {summary['scenario']} (policy {summary['policy']}, "
                    f"seed {summary['seed']})", title_justify="left")
    t.add_column("metric")
    t.add_column("value", justify="right")
    for key, label, fmt in SUMMARY_ROWS:
        if key in summary:
            t.add_row(label, fmt.format(summary[key]))
    causes = summary.get("interruptions_by_cause", {})
    if causes:
        top = ", ".join(f"{c} {n}" for c, n in list(causes.items())[:4])
        t.add_row("top causes", top)
    if summary.get("signal_sources"):
        t.add_row("price / carbon series", sources_line(summary))  # real or synthetic (observe/tco.py)
    for name, sh in summary.get("shadow", {}).items():  # acting vs shadow (simulate --shadow)
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(sh["by_kind"].items())) or "none"
        t.add_row(f"shadow {name} ({sh['role']})",
                  f"{sh['actions']:,} actions ({kinds}) vs {sh['acting_actions']:,} acting; "
                  f"agreement {sh['agreement']:.1%} over {sh['decisions']:,} decisions")
    return t


COMPARE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("power_cost_usd", "power cost $", "{:,.0f}"),
    ("usd_per_productive_gpu_hour", "power $/prod GPU-h", "{:.4f}"),
    ("capital_cost_usd", "capital $", "{:,.0f}"),
    ("total_usd_per_productive_gpu_hour", "total $/prod GPU-h", "{:.3f}"),
    ("total_usd_per_productive_pflop_hour", "total $/prod PFLOP-h", "{:.3f}"),
    ("carbon_tco2", "tCO2", "{:,.0f}"),
    ("training_throughput", "productive GPU-h", "{:,.0f}"),
    ("ettr", "ETTR", "{:.3f}"),
    ("failure_ettr", "fail-ETTR", "{:.3f}"),
    ("policy_wait_share", "policy wait", "{:.1%}"),
    ("gpu_utilization", "util", "{:.1%}"),
    ("migrations", "migrations", "{:,}"),
    ("interruptions", "interruptions", "{:,}"),
)


def compare_table(scenario: str, rows: list[dict[str, Any]]) -> Table:
    t = Table(title=f"superfactory compare {scenario}", title_justify="left")
    t.add_column("policy")
    extra = [c for c in ("inference_slo_attainment",) if any(c in r for r in rows)]
    for _, label, _ in COMPARE_COLUMNS:
        t.add_column(label, justify="right")
    for c in extra:
        t.add_column(c, justify="right")
    for r in rows:
        cells = [fmt.format(r[k]) if k in r else "-" for k, _, fmt in COMPARE_COLUMNS]
        cells += [f"{r[c]:.4f}" if c in r else "-" for c in extra]
        t.add_row(r["policy"], *cells)
    shadow_lines = [f"{r['policy']} acting, {name} in shadow: {sh['actions']:,} shadow actions vs "
                    f"{sh['acting_actions']:,} acting, agreement {sh['agreement']:.1%}"
                    for r in rows for name, sh in r.get("shadow", {}).items()]
    if shadow_lines:  # compare --shadow: what each shadow would have done on the acting policy's snapshots
        t.caption = "\n".join(shadow_lines)
        t.caption_justify = "left"
    return t
