"""``superfactory sweep``: many twin runs on Ray (or local processes) into one resumable Parquet table.

Registered on the main app by ``cli/main.py``; the heavy imports happen inside the command (fast ``--help``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

out = Console(width=None if sys.stdout.isatty() else 160)

EXAMPLES = """Examples:

  superfactory sweep default --policies home-region,geo --seeds 0-19 -p geo.horizon_h=6,12,24 --out sweeps/geo

  superfactory sweep sweep.yaml --address ray://head:10001      # the same sweep on a Ray cluster

Re-running the same command resumes: cells already done for the same scenario content are skipped.
See docs/sweeps.md."""


def sweep(
    targets: Annotated[list[str], typer.Argument(
        help="a sweep spec file (YAML with `scenarios:`), or scenarios: built-in names or scenario YAML files",
        show_default=False)],
    policies: Annotated[str | None, typer.Option(help="comma-separated policies (default: each scenario's)")] = None,
    seeds: Annotated[str | None, typer.Option(help="seeds, e.g. 0-19 or 0-4,10 (default: the scenario's)")] = None,
    set_field: Annotated[list[str] | None, typer.Option(
        "--set", "-s", help="scenario field PATH=V1,V2,... (repeatable), e.g. -s failures.rate_scale=0.5,1,2")] = None,
    param: Annotated[list[str] | None, typer.Option(
        "--param", "-p", help="policy parameter [POLICY.]KEY=V1,V2,... (repeatable), e.g. -p geo.horizon_h=6,12")
    ] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="sweep folder (default: sweeps/NAME)")] = None,
    address: Annotated[str | None, typer.Option(help="Ray cluster address, e.g. ray://head:10001")] = None,
    runner: Annotated[str, typer.Option(help="auto (Ray if installed, else local processes), ray or local")] = "auto",
    slots: Annotated[int | None, typer.Option(min=1, help="batches at once (default: all cores / cluster CPUs)")
                     ] = None,
    batch: Annotated[int | None, typer.Option(min=1, help="cells per worker process (default: adaptive)")] = None,
    cell_timeout_s: Annotated[float | None, typer.Option(min=1, help="wall-time limit per cell, seconds")] = None,
    report: Annotated[bool, typer.Option(help="write report.html (metrics vs parameters, with intervals)")] = True,
    json_out: Annotated[bool, typer.Option("--json", help="print the outcome as JSON on stdout")] = False,
    progress: Annotated[bool, typer.Option(help="show progress on stderr")] = True,
) -> None:
    """Sweep scenarios x scenario fields x policies x policy parameters x seeds; mean and 95 % CI per group."""
    from superfactory.sweep.engine import run_sweep
    from superfactory.sweep.report import group_rows, metric_columns, write_report
    from superfactory.sweep.spec import (
        SweepError,
        is_spec_file,
        load_spec_file,
        spec_from_flags,
        with_overrides,
    )
    from superfactory.sweep.store import read_table

    if len(targets) == 1 and is_spec_file(targets[0]):
        spec = with_overrides(load_spec_file(Path(targets[0])), policies, seeds, set_field, param)
    else:
        if any(is_spec_file(t) for t in targets):
            raise SweepError("give one sweep spec file on its own, or scenarios (not both)")
        spec = spec_from_flags(targets, policies, seeds, set_field, param)
    folder = out_dir if out_dir is not None else Path("sweeps") / spec.name
    if folder.exists() and not folder.is_dir():
        raise SweepError(f"--out {folder}: exists and is not a folder")
    outcome = run_sweep(spec, folder, runner_kind=runner, address=address, slots=slots, batch_size=batch,
                        cell_timeout_s=cell_timeout_s, progress=progress and not json_out)
    rows = read_table(outcome.table)
    result = outcome.as_dict()
    if report:
        result["report"] = str(write_report(rows, folder / "report.html", f"sweep {spec.name}"))
    metrics = [m for m, _, _ in metric_columns(rows)][:4]
    groups = group_rows(rows, metrics)
    if json_out:
        result["groups"] = [{"coordinates": dict(g.key), "seeds": list(g.seeds),
                             "metrics": {m: iv.as_dict() for m, iv in g.intervals.items()}} for g in groups]
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    _print_groups(groups, metrics, spec.name)
    out.print(f"{outcome.cells} cells: {outcome.skipped} already done, {outcome.ran} ran on {outcome.runner} "
              f"({outcome.failed} failed) in {outcome.wall_s:.1f} s")
    out.print(f"table: [bold]{outcome.table}[/bold]" + (f"  report: [bold]{result['report']}[/bold]" if report
                                                         else ""))
    if outcome.failed:
        out.print(f"[yellow]{outcome.failed} cells failed[/yellow]: their errors are in the table's `error` column "
                  "(re-running retries them)")


def _print_groups(groups: list[Any], metrics: list[str], name: str) -> None:
    from rich.table import Table

    from superfactory.sweep.report import format_interval

    t = Table(title=f"sweep {name}: mean ± 95 % CI over seeds", title_justify="left")
    t.add_column("group")
    t.add_column("seeds", justify="right")
    for m in metrics:
        t.add_column(m, justify="right")
    for g in groups:
        t.add_row(g.label(), str(len(g.seeds)), *(format_interval(g.intervals[m]) for m in metrics))
    out.print(t)


def register(app: typer.Typer) -> None:
    """Add the ``sweep`` command to the main app."""
    app.command(name="sweep", epilog=EXAMPLES)(sweep)


def compare_seeds_command(scenario: str, policies: list[str], seeds: str, param: list[str] | None,
                          out_dir: Path | None, json_out: bool, progress: bool, seed: int | None = None) -> None:
    """``superfactory compare --seeds``: every policy on every seed, then means, intervals and paired
    differences (see :mod:`superfactory.sweep.compare`)."""
    from superfactory.sweep.compare import compare_seeds, compare_table
    from superfactory.sweep.spec import SweepError

    if seed is not None:
        raise SweepError("--seed and --seeds: give one (--seeds 0-9 compares over ten seeds)")
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise SweepError(f"--out {out_dir}: exists and is not a folder")
    result = compare_seeds(scenario, policies, seeds, param, out_dir, progress=progress and not json_out)
    if json_out:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
        return
    out.print(compare_table(result))
    if result["failed"]:
        out.print(f"[yellow]{len(result['failed'])} runs failed[/yellow] (left out of the intervals): "
                  + "; ".join(f"{f['policy']} seed {f['seed']}: {f['error']}" for f in result["failed"][:3]))
    if out_dir is not None:
        out.print(f"table: [bold]{result['table']}[/bold]  report: [bold]{result['report']}[/bold]")
