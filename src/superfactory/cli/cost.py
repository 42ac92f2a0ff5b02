"""``superfactory cost``: the source material's cost math with its formulas, and a twin run priced the same way.

    superfactory cost                       # everything: Llama 3 405B, the scale table, a power bill, a failure
    superfactory cost llama3-405b --json    # one estimate, as JSON
    superfactory cost --run results/default # a twin run: TCO by factory (capital + power) and the rental view

The math is :mod:`superfactory.models.tco`; this module parses options and prints. Every line carries the
formula with its numbers; where the source material gives a rounded figure it is printed beside ours.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from superfactory.domain.accelerator import NETWORKING_SHARE, STORAGE_SHARE, SYSTEMS
from superfactory.errors import SuperfactoryError
from superfactory.models.tco import (
    CapitalAssumptions,
    Line,
    TrainingRun,
    capital_usd_per_gpu_hour,
    failure_cost,
    fleet_total,
    llama3_405b_breakdown,
    power_bill,
    price_factory,
    run_rental_view,
    scale_table,
    source_rounding,
)

out = Console(width=None if sys.stdout.isatty() else 160)

#: the source's total for the Llama 3 405B run, USD
SOURCE_TOTAL_RANGE_USD = (95e6, 105e6)


class What(StrEnum):
    ALL = "all"
    LLAMA3_405B = "llama3-405b"
    SCALE = "scale"
    POWER = "power"
    FAILURE = "failure"


def _lines_json(lines: list[Line]) -> list[dict[str, object]]:
    return [ln.as_dict() for ln in lines]


def _table(title: str, lines: list[Line], source_col: str = "source says") -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column("item")
    t.add_column("formula")
    t.add_column("USD", justify="right")
    if source_col:
        t.add_column(source_col, justify="right")
    for ln in lines:
        src = ln.source_note or ("" if ln.source_usd is None else f"${ln.source_usd:,.0f}")
        usd = f"${ln.usd:,.2f}" if abs(ln.usd) < 100 else f"${ln.usd:,.0f}"
        t.add_row(ln.item, ln.formula, usd, *((src,) if source_col else ()))
    return t


def _llama(r: TrainingRun) -> dict[str, Any]:
    lines = llama3_405b_breakdown(r)
    low = llama3_405b_breakdown(TrainingRun(**{**_fields(r), "networking_share": 0.15, "storage_share": 0.05}))
    high = llama3_405b_breakdown(TrainingRun(**{**_fields(r), "networking_share": 0.25, "storage_share": 0.10}))
    return {
        "estimate": "llama3-405b",
        "lines": _lines_json(lines),
        "total_usd": lines[-1].usd,
        "source_total_usd_range": list(SOURCE_TOTAL_RANGE_USD),
        "total_usd_at_source_share_ranges": {"low (15 %, 5 %)": low[-1].usd, "high (25 %, 10 %)": high[-1].usd},
        "assumptions": _fields(r),
    }


def _fields(r: TrainingRun) -> dict[str, Any]:
    return {k: getattr(r, k) for k in r.__dataclass_fields__}


def _scale(usd_per_gpu_hour: float) -> dict[str, Any]:
    lines = scale_table(usd_per_gpu_hour)
    return {"lines": _lines_json(lines),
            "source_rounding": [source_rounding(ln.usd) for ln in lines],
            "note": "the source rounds GPUs x price to the nearest 5 x 10^(digits-2): 24 -> 25, 3,072 -> 3,000"}


def _print_calculator(what: What, doc: dict[str, Any]) -> None:
    def lines(key: str) -> list[Line]:
        return [Line(d["item"], d["formula"], d["usd"], d["source_usd"], d["source_note"]) for d in doc[key]["lines"]]

    if "llama3-405b" in doc:
        d = doc["llama3-405b"]
        out.print(_table("Llama 3 405B pre-training, the source's way", lines("llama3-405b")))
        rng = d["total_usd_at_source_share_ranges"]
        out.print(f"source total: ${SOURCE_TOTAL_RANGE_USD[0] / 1e6:.0f}-{SOURCE_TOTAL_RANGE_USD[1] / 1e6:.0f}M; "
                  f"ours ${d['total_usd'] / 1e6:.1f}M with networking and storage at the midpoints of the source's "
                  f"ranges (${rng['low (15 %, 5 %)'] / 1e6:.1f}M at the low ends, "
                  f"${rng['high (25 %, 10 %)'] / 1e6:.1f}M at the high ends). People is our assumption.")
    if "scale" in doc:
        t = _table("What a cluster costs per hour", lines("scale"))
        out.print(t)
        out.print(doc["scale"]["note"])
    if "power" in doc:
        out.print(_table("Power bill at full load", lines("power"), source_col=""))
    if "failure" in doc:
        out.print(_table("Cost of a failure", lines("failure"), source_col=""))


def _read_run(path: Path) -> dict[str, Any]:
    f = path / "summary.json" if path.is_dir() else path
    if not f.is_file():
        raise SuperfactoryError(f"--run {path}: no summary.json there; write one with "
                                "`superfactory simulate SCENARIO --out DIR`")
    try:
        summary = json.loads(f.read_text())
    except (OSError, ValueError) as e:
        raise SuperfactoryError(f"--run {f}: not a readable summary.json: {e}") from None
    if not isinstance(summary, dict) or "cost_inputs" not in summary:
        raise SuperfactoryError(f"--run {f}: this summary has no cost inputs (written by an older superfactory?); "
                                "re-run `superfactory simulate SCENARIO --out DIR`")
    return summary


def _price_run(summary: dict[str, Any], a: CapitalAssumptions, usd_per_gpu_hour: float) -> dict[str, Any]:
    from superfactory.observe.tco import headline, usage_from_inputs

    try:
        usage = usage_from_inputs(summary["cost_inputs"])
        costs = [price_factory(u, a) for u in usage]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise SuperfactoryError(f"--run: malformed cost_inputs in the summary ({type(e).__name__}: {e})") from None
    systems = sorted({s for u in usage for s in u.gpus_by_system})
    rates = []
    for name in systems:
        sp = SYSTEMS[name]
        rate = capital_usd_per_gpu_hour(sp, a)
        years = a.depreciation_years or sp.depreciation_years
        price = "no list price" if sp.list_price_usd is None else f"${sp.list_price_usd:,.0f}"
        rates.append({"system": name, "usd_per_gpu_hour": rate,
                      "formula": f"{price} / {sp.gpus_per_domain} GPUs x (1 + {a.networking_share:.1%} + "
                                 f"{a.storage_share:.1%}) / ({years:g} y x 8,760 h)"
                                 + (f", annuity at {a.cost_of_capital:.1%}" if a.cost_of_capital else "")})
    return {
        "scenario": summary.get("scenario"), "policy": summary.get("policy"), "seed": summary.get("seed"),
        **headline(costs),
        "capital_rates": rates,
        "by_factory": [c.as_dict() for c in costs],
        "fleet": fleet_total(costs).as_dict(),
        "rental_view": _lines_json(run_rental_view(usage, usd_per_gpu_hour, a.networking_share, a.storage_share)),
        "assumptions": {"networking_share": a.networking_share, "storage_share": a.storage_share,
                        "depreciation_years": a.depreciation_years, "cost_of_capital": a.cost_of_capital,
                        "rental_usd_per_gpu_hour": usd_per_gpu_hour},
    }


def _print_run(doc: dict[str, Any]) -> None:
    from superfactory.observe.tco import COST_COLUMNS, cell

    t = Table(title=f"total cost of ownership: {doc['scenario']} (policy {doc['policy']}, seed {doc['seed']})",
              title_justify="left")
    cols = [c for c in COST_COLUMNS if c[0] != "price_source"]
    t.add_column("factory")
    for _, label, _ in cols:
        t.add_column(label, justify="right")
    for r in [*doc["by_factory"], doc["fleet"]]:
        t.add_row(str(r["factory"]), *(cell(r, k, fmt) for k, _, fmt in cols))
    out.print(t)
    for r in doc["by_factory"]:
        out.print(f"prices at {r['factory']}: {r['price_source'] or 'unknown'}")
    for r in doc["capital_rates"]:
        rate = "not priced" if r["usd_per_gpu_hour"] is None else f"${r['usd_per_gpu_hour']:.3f}/GPU-h"
        out.print(f"capital rate {r['system']}: {r['formula']} = {rate}")
    out.print("capital = installed GPUs x hours x rate (idle GPUs cost the same); "
              "power = facility energy x hourly price")
    lines = [Line(d["item"], d["formula"], d["usd"], d["source_usd"], d["source_note"]) for d in doc["rental_view"]]
    out.print(_table("the same run priced the source's way (rented GPU-hours, measured waste)", lines, ""))


def cost(
    what: Annotated[What, typer.Argument(help="which estimate: llama3-405b, scale, power, failure or all")] = What.ALL,
    run: Annotated[Path | None, typer.Option("--run", help="price a twin run: a folder with summary.json "
                                             "(from `simulate --out`) or the file")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print JSON on stdout")] = False,
    usd_per_gpu_hour: Annotated[float, typer.Option(help="rental price, USD per GPU-hour", min=0)] = 3.0,
    gpus: Annotated[int, typer.Option(help="GPUs of the training run", min=1)] = 16_384,
    days: Annotated[float, typer.Option(help="days of the training run", min=0)] = 54.0,
    waste: Annotated[float, typer.Option(help="share of GPU time wasted (0..1)", min=0, max=1)] = 0.30,
    networking_share: Annotated[float, typer.Option(help="networking per dollar of GPUs", min=0)] = NETWORKING_SHARE,
    storage_share: Annotated[float, typer.Option(help="storage per dollar of GPUs", min=0)] = STORAGE_SHARE,
    usd_per_kwh: Annotated[float, typer.Option(help="power price, USD/kWh", min=0)] = 0.10,
    engineers: Annotated[int, typer.Option(help="people running the training run", min=0)] = 20,
    usd_per_engineer_year: Annotated[float, typer.Option(help="loaded cost per engineer-year", min=0)] = 400_000.0,
    checkpoint_interval_min: Annotated[float, typer.Option(help="checkpoint interval, minutes", min=0)] = 30.0,
    nodes: Annotated[int, typer.Option(help="DGX systems in the power bill", min=1)] = 2048,
    depreciation_years: Annotated[float | None, typer.Option(help="--run: write-off period (default: catalog)",
                                                             min=0.1)] = None,
    cost_of_capital: Annotated[float, typer.Option(help="--run: annual cost of capital (0 = straight line)",
                                                   min=0, max=1)] = 0.0,
) -> None:
    """Training and fleet cost with the formulas shown: the source material's math, and twin runs priced by it."""
    if run is not None:
        a = CapitalAssumptions(networking_share, storage_share, depreciation_years, cost_of_capital)
        doc = _price_run(_read_run(run), a, usd_per_gpu_hour)
        if json_out:
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        else:
            _print_run(doc)
        return
    r = TrainingRun(gpus=gpus, usd_per_gpu_hour=usd_per_gpu_hour, days=days, waste=waste,
                    networking_share=networking_share, storage_share=storage_share, usd_per_kwh=usd_per_kwh,
                    engineers=engineers, usd_per_engineer_year=usd_per_engineer_year)
    doc: dict[str, Any] = {}
    if what in (What.ALL, What.LLAMA3_405B):
        doc["llama3-405b"] = _llama(r)
    if what in (What.ALL, What.SCALE):
        doc["scale"] = _scale(usd_per_gpu_hour)
    if what in (What.ALL, What.POWER):
        doc["power"] = {"lines": _lines_json(power_bill(nodes, 10.2, usd_per_kwh))}
    if what in (What.ALL, What.FAILURE):
        doc["failure"] = {"lines": _lines_json(failure_cost(gpus, usd_per_gpu_hour, checkpoint_interval_min / 60))}
    if json_out:
        payload = doc[what.value] if what is not What.ALL else doc
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        _print_calculator(what, doc)
