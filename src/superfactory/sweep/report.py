"""The sweep report: each metric against each swept parameter, with 95 % intervals over seeds (``report.html``).

Rows of a results table are grouped by every coordinate but the seed; each group gets the mean and Student-t
interval of each metric over its seeds (:mod:`.stats`). A parameter is *swept* when its column (``set:PATH`` or
``param:KEY``) takes more than one value; for each one, a figure plots every metric against it, one line per
combination of the other coordinates (policy, scenario, the other parameters), with error bars. With no swept
parameter, metrics are plotted per policy and scenario. Failed cells are listed with their errors.
"""

from __future__ import annotations

import base64
import html
import io
import math
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from superfactory.sweep.stats import Interval, mean_ci

#: (column, label, True when lower is better)
METRICS: tuple[tuple[str, str, bool], ...] = (
    ("power_cost_usd", "power cost (USD)", True),
    ("usd_per_productive_gpu_hour", "power USD / productive GPU-h", True),
    ("carbon_tco2", "carbon (tCO2)", True),
    ("training_throughput", "productive GPU-hours", False),
    ("ettr", "ETTR", False),
    ("gpu_utilization", "GPU utilisation", False),
    ("gpu_hours_lost_to_failures", "GPU-hours lost to failures", True),
    ("interruptions", "unexpected interruptions", True),
    ("jobs_completed", "jobs completed", False),
    ("migrations", "migrations", True),
    ("inference_slo_attainment", "inference SLO attainment", False),
)
NOT_GROUPED = ("cell_id", "scenario_hash", "seed")


@dataclass(frozen=True)
class Group:
    """The cells that differ only by seed: their coordinates, seeds and per-metric intervals."""

    key: tuple[tuple[str, Any], ...]
    seeds: tuple[int, ...]
    intervals: dict[str, Interval]

    def label(self, skip: tuple[str, ...] = ()) -> str:
        return ", ".join(f"{_short_name(k)}={v}" for k, v in self.key if k not in skip) or "all"


def coordinate_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The grouping coordinates present in ``rows``: scenario, policy and every ``set:``/``param:`` column."""
    cols: list[str] = []
    for r in rows:
        cols.extend(k for k in r if k not in cols and (k in ("scenario", "policy") or k.startswith(("set:", "param:"))))
    return cols


def swept_axes(rows: list[dict[str, Any]]) -> list[str]:
    """``set:``/``param:`` columns that take more than one value."""
    return [c for c in coordinate_columns(rows) if c.startswith(("set:", "param:"))
            and len({_hashable(r.get(c)) for r in rows}) > 1]


def metric_columns(rows: list[dict[str, Any]]) -> list[tuple[str, str, bool]]:
    """The :data:`METRICS` that have a number in at least one ``ok`` row."""
    return [m for m in METRICS if any(isinstance(r.get(m[0]), int | float) and r.get("status") == "ok"
                                      for r in rows)]


def group_rows(rows: list[dict[str, Any]], metrics: list[str] | None = None) -> list[Group]:
    """Group the ``ok`` rows by every coordinate but the seed; intervals of ``metrics`` (default: all present)."""
    cols = coordinate_columns(rows)
    names = metrics if metrics is not None else [m for m, _, _ in metric_columns(rows)]
    groups: dict[tuple[tuple[str, Any], ...], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r.get("status") == "ok":
            groups[tuple((c, _hashable(r.get(c))) for c in cols)].append(r)
    return [Group(key, tuple(sorted(r["seed"] for r in members)),
                  {m: mean_ci(_num(r.get(m)) for r in members) for m in names})
            for key, members in groups.items()]


def write_report(rows: list[dict[str, Any]], path: Path, title: str) -> Path:
    """Render ``report.html`` for the rows of a results table."""
    import matplotlib

    matplotlib.use("Agg")
    metrics = metric_columns(rows)
    groups = group_rows(rows, [m for m, _, _ in metrics])
    axes = swept_axes(rows)
    figures: list[tuple[str, str]] = []
    if groups and metrics:
        figures = [(f"metrics against {_short_name(a)}", _plot_axis(groups, a, metrics)) for a in axes] or \
            [("metrics per policy and scenario", _plot_groups(groups, metrics))]
    failed = [r for r in rows if r.get("status") != "ok"]
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:system-ui;max-width:1200px;margin:2em auto}td,th{border:1px solid #ccc;"
             "padding:3px 8px;font-size:13px}table{border-collapse:collapse}</style>",
             f"<h1>{html.escape(title)}</h1>",
             f"<p>{len(rows)} cells: {len(rows) - len(failed)} ok, {len(failed)} failed. Intervals: mean ± 95 % "
             "Student-t half-width over the seeds of each group.</p>"]
    for caption, png in figures:
        parts.append(f"<h2>{html.escape(caption)}</h2><img src='data:image/png;base64,{png}' style='max-width:100%'>")
    parts.append(_groups_table(groups, metrics))
    if failed:
        parts.append("<h2>failed cells</h2><table><tr><th>cell</th><th>coordinates</th><th>error</th></tr>")
        for r in failed:
            coords = ", ".join(f"{_short_name(c)}={r.get(c)}" for c in [*coordinate_columns([r]), "seed"])
            parts.append(f"<tr><td>{html.escape(str(r.get('cell_id')))}</td><td>{html.escape(coords)}</td>"
                         f"<td><pre>{html.escape(str(r.get('error')))}</pre></td></tr>")
        parts.append("</table>")
    path.write_text("".join(parts))
    return path


def _groups_table(groups: list[Group], metrics: list[tuple[str, str, bool]]) -> str:
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in metrics)
    body = []
    for g in groups:
        cells = "".join(f"<td>{format_interval(g.intervals[m])}</td>" for m, _, _ in metrics)
        body.append(f"<tr><td>{html.escape(g.label())}</td><td>{len(g.seeds)}</td>{cells}</tr>")
    return f"<h2>groups</h2><table><tr><th>group</th><th>seeds</th>{head}</tr>{''.join(body)}</table>"


def format_interval(iv: Interval) -> str:
    """``mean ± half-width`` with 4 significant digits (just the mean when n < 2; ``-`` when empty)."""
    if iv.n == 0:
        return "-"
    if math.isnan(iv.half_width):
        return f"{iv.mean:.4g}"
    return f"{iv.mean:.4g} ± {iv.half_width:.2g}"


def _plot_axis(groups: list[Group], axis: str, metrics: list[tuple[str, str, bool]]) -> str:
    import matplotlib.pyplot as plt

    lines: dict[str, list[tuple[Any, Interval]]] = defaultdict(list)
    same = _constant(groups)
    for g in groups:
        x = dict(g.key).get(axis)
        lines[g.label(skip=(axis, *same))].append((x, g.intervals))  # type: ignore[arg-type]
    xs_all = sorted({x for pts in lines.values() for x, _ in pts}, key=_sort_key)
    numeric = all(isinstance(x, int | float) and not isinstance(x, bool) for x in xs_all)
    fig, axs = _grid(len(metrics))
    for ax, (m, label, _) in zip(axs, metrics, strict=False):
        for name, pts in sorted(lines.items()):
            pts = sorted(pts, key=lambda p: _sort_key(p[0]))
            xs = [p[0] if numeric else xs_all.index(p[0]) for p in pts]
            ys = [p[1][m].mean for p in pts]  # type: ignore[index]
            es = [0 if math.isnan(p[1][m].half_width) else p[1][m].half_width for p in pts]  # type: ignore[index]
            ax.errorbar(xs, ys, yerr=es, marker="o", ms=3, capsize=3, lw=1, label=name)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel(_short_name(axis), fontsize=8)
        if not numeric:
            ax.set_xticks(range(len(xs_all)), [str(x) for x in xs_all], fontsize=7)
    axs[0].legend(fontsize=6)
    return _png(fig, plt)


def _plot_groups(groups: list[Group], metrics: list[tuple[str, str, bool]]) -> str:
    import matplotlib.pyplot as plt

    fig, axs = _grid(len(metrics))
    same = _constant(groups)
    names = [g.label(skip=same) for g in groups]
    for ax, (m, label, _) in zip(axs, metrics, strict=False):
        ys = [g.intervals[m].mean for g in groups]
        es = [0 if math.isnan(g.intervals[m].half_width) else g.intervals[m].half_width for g in groups]
        ax.errorbar(range(len(groups)), ys, yerr=es, fmt="o", capsize=4)
        ax.set_xticks(range(len(groups)), names, rotation=30, ha="right", fontsize=7)
        ax.set_title(label, fontsize=9)
    return _png(fig, plt)


def _grid(n: int) -> tuple[Any, list[Any]]:
    import matplotlib.pyplot as plt

    cols = min(3, max(1, n))
    rows = math.ceil(n / cols)
    fig, axs = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
    flat = [a for row in axs for a in row]
    for a in flat[n:]:
        a.set_visible(False)
    return fig, flat[:n]


def _png(fig: Any, plt: Any) -> str:
    with warnings.catch_warnings():  # long legends: tight_layout gives up with a warning; bbox_inches copes
        warnings.simplefilter("ignore", UserWarning)
        fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _constant(groups: list[Group]) -> tuple[str, ...]:
    """Coordinates with one value across all groups: left out of plot labels (they say nothing there)."""
    if len(groups) < 2:
        return ()
    keys = [dict(g.key) for g in groups]
    return tuple(k for k in keys[0] if all(d.get(k) == keys[0][k] for d in keys))


def _num(v: Any) -> float:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan


def _hashable(v: Any) -> Any:
    return v if isinstance(v, int | float | str | bool | type(None)) else str(v)


def _sort_key(x: Any) -> tuple[int, Any]:
    return (0, x) if isinstance(x, int | float) and not isinstance(x, bool) else (1, str(x))


def _short_name(col: str) -> str:
    return col.split(":", 1)[1] if ":" in col else col
