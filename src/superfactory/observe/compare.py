"""``superfactory compare --out DIR``: the comparison as JSON and a small HTML page with a bar chart."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from superfactory.observe.console import COMPARE_COLUMNS
from superfactory.observe.tco import cost_html

PLOTTED = ("power_cost_usd", "total_usd_per_productive_gpu_hour", "carbon_tco2", "training_throughput")


def write_compare(rows: list[dict[str, Any]], out_dir: Path) -> Path:
    """Write ``compare.json`` and ``compare.html`` (metrics relative to the first policy) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "compare.json").write_text(json.dumps({"policies": rows}, indent=2) + "\n")
    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(12, 3.2))
    names = [r["policy"] for r in rows]
    for ax, key in zip(axes, PLOTTED, strict=True):
        base = rows[0][key] or 1.0
        ax.bar(names, [r[key] / base for r in rows], color="#4a7ab5")
        ax.axhline(1.0, color="#999", lw=0.8)
        ax.set_title(f"{key}\n(relative to {names[0]})", fontsize=9)
        ax.tick_params(axis="x", rotation=30, labelsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    img = base64.b64encode(buf.getvalue()).decode()
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label, _ in COMPARE_COLUMNS)
    body = "".join(
        f"<tr><td>{html.escape(r['policy'])}</td>"
        + "".join(f"<td>{fmt.format(r[k])}</td>" for k, _, fmt in COMPARE_COLUMNS)
        + "</tr>"
        for r in rows
    )
    page = (f"<!doctype html><meta charset='utf-8'><title>compare {html.escape(rows[0]['scenario'])}</title>"
            "<style>body{font-family:system-ui;max-width:1100px;margin:2em auto}td,th{border:1px solid #ccc;"
            "padding:3px 8px}table{border-collapse:collapse}</style>"
            f"<h1>compare {html.escape(rows[0]['scenario'])}</h1><table><tr><th>policy</th>{head}</tr>{body}</table>"
            f"<img src='data:image/png;base64,{img}' style='max-width:100%'>"
            + "".join(cost_html(r, f"Cost by factory: {r['policy']}") for r in rows))
    path = out_dir / "compare.html"
    path.write_text(page)
    return path
