"""``superfactory compare --seeds``: policies on the same scenario over many seeds, with intervals.

Every policy runs on every seed (a sweep: on Ray or local processes, resumable when ``--out`` is given). For
each metric the result holds each policy's mean and 95 % Student-t interval over the seeds, and for each policy
after the first (the baseline) the paired difference ``policy - baseline`` over the seeds both finished, with
its interval. A verdict ("lower", "higher" and whether that is better) is given only where the interval of the
difference excludes zero; otherwise the data do not tell the two apart and no verdict is printed.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from rich.table import Table

from superfactory.sweep.report import format_interval, metric_columns
from superfactory.sweep.runners import Runner
from superfactory.sweep.spec import SweepError, SweepSpec, parse_seeds, parse_values
from superfactory.sweep.stats import Interval, mean_ci, paired_difference


def compare_seeds(scenario: str, policies: list[str], seeds: str, params: list[str] | None = None,
                  out_dir: Path | None = None, *, runner_kind: str = "auto", address: str | None = None,
                  progress: bool = True, runner: Runner | None = None) -> dict[str, Any]:
    """Run ``policies`` on ``scenario`` for every seed and compare them (structure: :func:`compare_rows`).

    ``runner``: run on this (left open) instead of making one from ``runner_kind``/``address``.

    Raises:
        SweepError: fewer than two seeds, a bad seed range or parameter. ScenarioError: a bad scenario.
    """
    from superfactory.sweep.engine import run_sweep
    from superfactory.sweep.report import write_report
    from superfactory.sweep.store import read_table

    seed_list = parse_seeds(seeds)
    if len(seed_list) < 2:
        raise SweepError(f"--seeds {seeds}: intervals need at least two seeds (e.g. --seeds 0-9)")
    spec = SweepSpec(scenarios=(scenario,), policies=tuple(policies), seeds=tuple(seed_list),
                     params=dict(parse_values(p, "--param") for p in params or []), name=f"compare-{scenario}")
    with tempfile.TemporaryDirectory(prefix="sf-compare-") as tmp:
        folder = out_dir if out_dir is not None else Path(tmp)
        outcome = run_sweep(spec, folder, runner, runner_kind=runner_kind, address=address, progress=progress)
        rows = read_table(outcome.table)
        result = compare_rows(rows, policies)
        result.update(scenario=scenario, seeds=seed_list, runner=outcome.runner)
        if out_dir is not None:
            write_report(rows, out_dir / "report.html", f"compare {scenario} over seeds {seeds}")
            (out_dir / "compare.json").write_text(json.dumps(result, indent=2) + "\n")
            result.update(table=str(outcome.table), report=str(out_dir / "report.html"))
    return result


def compare_rows(rows: list[dict[str, Any]], policies: list[str]) -> dict[str, Any]:
    """Per-metric intervals and paired differences against ``policies[0]`` from the rows of a results table.

    Returns ``{"baseline", "level", "failed": [cells], "metrics": [{"metric", "label", "lower_is_better",
    "policies": {name: interval}, "differences": {name: interval + "verdict" + "better"}}]}``; intervals as
    :meth:`Interval.as_dict`; ``verdict`` is ``"lower"``/``"higher"`` or None when the interval contains zero.
    """
    base = policies[0]
    ok = [r for r in rows if r.get("status") == "ok"]
    by_policy: dict[str, dict[int, dict[str, Any]]] = {p: {} for p in policies}
    for r in ok:
        if r.get("policy") in by_policy:
            by_policy[r["policy"]][r["seed"]] = r
    metrics = []
    for m, label, lower_better in metric_columns(rows):
        values = {p: {s: float(r[m]) for s, r in by_policy[p].items() if isinstance(r.get(m), int | float)}
                  for p in policies}
        entry: dict[str, Any] = {"metric": m, "label": label, "lower_is_better": lower_better,
                                 "policies": {p: mean_ci(values[p].values()).as_dict() for p in policies},
                                 "differences": {}}
        for p in policies[1:]:
            diff = paired_difference(values[base], values[p])
            entry["differences"][p] = {**diff.as_dict(), **_verdict(diff, lower_better)}
        metrics.append(entry)
    failed = [{k: r.get(k) for k in ("policy", "seed", "error")} for r in rows if r.get("status") != "ok"]
    return {"baseline": base, "level": 0.95, "policies": policies, "failed": failed, "metrics": metrics}


def _verdict(diff: Interval, lower_better: bool) -> dict[str, Any]:
    if not diff.excludes_zero():
        return {"verdict": None, "better": None}
    lower = diff.high < 0
    return {"verdict": "lower" if lower else "higher", "better": lower == lower_better}


def compare_table(result: dict[str, Any]) -> Table:
    """The comparison as a rich table: each policy's mean ± half-width, and each difference with its interval
    and verdict (blank where the interval contains zero)."""
    base, others = result["baseline"], result["policies"][1:]
    t = Table(title=f"superfactory compare {result['scenario']} over {len(result['seeds'])} seeds "
                    f"(mean ± 95 % CI; differences paired by seed)", title_justify="left")
    t.add_column("metric")
    for p in result["policies"]:
        t.add_column(p, justify="right")
    for p in others:
        t.add_column(f"{p} - {base} [95 % CI]", justify="right")
        t.add_column("verdict")
    for m in result["metrics"]:
        cells = [format_interval(_interval(m["policies"][p])) for p in result["policies"]]
        for p in others:
            d = m["differences"][p]
            cells.append(_diff_text(d))
            cells.append("" if d["verdict"] is None else
                         f"{p} {d['verdict']} ({'better' if d['better'] else 'worse'})")
        t.add_row(m["label"], *cells)
    return t


def _interval(d: dict[str, Any]) -> Interval:
    nan = float("nan")
    return Interval(d["n"], d["mean"] if d["mean"] is not None else nan, d["std"] if d["std"] is not None else nan,
                    d["half_width"] if d["half_width"] is not None else nan)


def _diff_text(d: dict[str, Any]) -> str:
    if d["n"] == 0 or d["mean"] is None:
        return "-"
    if d["half_width"] is None:
        return f"{d['mean']:+.4g}"
    return f"{d['mean']:+.4g} [{d['low']:+.3g}, {d['high']:+.3g}]"
