"""The ``superfactory`` command line: thin commands over the scenario, twin, policy and observe packages.

Every user error (bad scenario, unknown policy, bad flag value) is printed as one clear message on stderr
with exit code 2; no traceback. Every listing and result command takes ``--json``: then stdout carries one JSON
document and nothing else (no progress bar; library noise is routed to stderr at the file-descriptor level,
see :mod:`.stdio`). Scenario warnings go to stderr, and under ``warnings`` in JSON output.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from superfactory.cli import agent as agent_cli
from superfactory.cli import ckpt, cost, gangbound, sweep
from superfactory.cli import live as live_cli
from superfactory.cli.stdio import emit_json, quiet_stdout
from superfactory.errors import PolicyError, SuperfactoryError

app = typer.Typer(
    name="superfactory",
    help="Control plane and digital twin for fleets of AI factories.\n\n"
    "Start with:  superfactory simulate default --out results/default",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
)
scenario_app = typer.Typer(help="Inspect, export and validate scenarios.", no_args_is_help=True)
app.add_typer(scenario_app, name="scenario")
app.add_typer(ckpt.app, name="ckpt", help="The checkpoint mesh: erasure-coded, encrypted, replicated checkpoints.")
app.command("cost")(cost.cost)
sweep.register(app)
live_cli.register(app)
agent_cli.register(app)
gangbound.register(app)

out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

def complete_scenarios(incomplete: str) -> list[str]:
    """Shell completion: built-in scenario names (the shell completes file paths itself)."""
    from superfactory.scenario.loader import builtin_names

    return [n for n in builtin_names() if n.startswith(incomplete)]


def complete_policies(incomplete: str) -> list[str]:
    """Shell completion: registered policy names."""
    from superfactory.policy.registry import available

    return [n for n in available() if n.startswith(incomplete)]


ScenarioArg = Annotated[
    str, typer.Argument(help="built-in scenario name (see `superfactory scenarios`) or a YAML file",
                        autocompletion=complete_scenarios)
]
SEED_MAX = 2**63 - 1  # scenario.seeds.MAX_SEED (not imported: --help stays fast)
SeedOpt = Annotated[int | None, typer.Option(
    min=0, max=SEED_MAX, help="root of the seed tree: failures, synthetic prices and carbon, the synthetic workload "
    "(default: the scenario's seed)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON document on stdout (nothing else)")]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        sys.stdout.write(f"superfactory {version('superfactory')}\n")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print the version and exit")] = False,
) -> None:
    """Control plane and digital twin for fleets of AI factories."""


ParamOpt = Annotated[
    list[str] | None,
    typer.Option("--param", "-p", help="policy parameter KEY=VALUE (YAML value; repeatable), e.g. -p spare_pool=1"),
]


def _params(raw: list[str] | None) -> dict[str, Any] | None:
    """Parse ``KEY=VALUE`` policy parameters (values as YAML scalars); ``None`` when none were given."""
    if not raw:
        return None
    import yaml

    out: dict[str, Any] = {}
    for item in raw:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise SuperfactoryError(f"--param {item!r}: expected KEY=VALUE, e.g. --param spare_pool=1")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            raise SuperfactoryError(f"--param {item!r}: the value is not a number, true/false or a plain word; "
                                    "e.g. --param spare_pool=1") from None
        if isinstance(parsed, dict | list) or (parsed is not None and not isinstance(parsed, int | float | str)):
            raise SuperfactoryError(f"--param {item!r}: a value is a number, true/false or a word, not "
                                    f"{type(parsed).__name__}")
        out[key.strip()] = parsed
    return out


def _check_policy(name: str, params: dict[str, Any]) -> None:
    """Raise PolicyError (with "did you mean") when ``name`` or ``params`` would not construct."""
    from superfactory.scenario.policies import policy_problems

    problems = policy_problems(name, params, ("--policy",), ("--param",))
    if problems:
        lines = [f"--param {loc[1]}: {msg}" if loc[0] == "--param" and len(loc) > 1 else msg
                 for loc, msg in problems]
        raise PolicyError("\n".join(lines))


def _prepare_out(out_dir: Path | None) -> None:
    """Create ``--out`` (and parents) before a run, so a bad path fails in a second, not after the run."""
    if out_dir is None:
        return
    import os

    if out_dir.exists() and not out_dir.is_dir():
        raise SuperfactoryError(f"--out {out_dir}: exists and is not a directory; give a folder for the results")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise SuperfactoryError(f"--out {out_dir}: cannot create the folder: {e.strerror or e}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise SuperfactoryError(f"--out {out_dir}: the folder is not writable")


def _warn(warnings: list[str] | tuple[str, ...]) -> None:
    for w in warnings:
        err.print(f"[bold yellow]warning:[/bold yellow] {escape(w)}", highlight=False, soft_wrap=True)


def _run(scenario_ref: str, seed: int | None, policy: str | None, progress: bool,
         params: dict[str, Any] | None = None, shadow: tuple[str, ...] = ()) -> tuple[Any, dict[str, Any]]:
    from superfactory.cli.progress import LazyProgress
    from superfactory.observe.summary import summarize
    from superfactory.scenario.loader import load_scenario
    from superfactory.sim.twin import run_twin

    sc = load_scenario(scenario_ref, seed=seed)
    params = _policy_params(sc, policy, params)
    with quiet_stdout(), LazyProgress(f"simulating {sc.name}", enabled=progress) as bar:
        result = run_twin(sc, policy=policy, policy_params=params, on_progress=bar, shadow=shadow)
    return result, summarize(result)


def _policy_params(sc: Any, policy: str | None, params: dict[str, Any] | None) -> dict[str, Any]:
    """The parameters ``policy`` runs with on ``sc`` (checked): the scenario's own, overridden key by key."""
    name = policy or sc.policy
    own = dict(sc.policy_params) if name == sc.policy else {}
    merged = {**own, **(params or {})}
    _check_policy(name, merged)
    return merged


@app.command()
def simulate(
    scenario: ScenarioArg = "default",
    seed: SeedOpt = None,
    policy: Annotated[str | None, typer.Option(help="placement policy (see `superfactory policies`)",
                                               autocompletion=complete_policies)] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the summary (and --explain) as one JSON document "
                                           "on stdout")] = False,
    out_dir: Annotated[Path | None, typer.Option("--out", help="write summary, tables and report.html here")] = None,
    explain: Annotated[str | None, typer.Option(help="explain why job JOB waited / where it ran")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar on runs over a second")] = True,
    param: ParamOpt = None,
    metrics_out: Annotated[Path | None, typer.Option(
        "--metrics-out", help="write the run's metrics as OpenMetrics text with timestamps (for promtool "
        "tsdb create-blocks-from openmetrics; see docs/metrics.md)")] = None,
    shadow: Annotated[list[str] | None, typer.Option(
        "--shadow", help="also run POLICY in shadow: it decides on the same snapshots, its plans are recorded and "
        "scored against the acting policy's (summary 'shadow'), never applied; repeatable")] = None,
    metrics_step: Annotated[int, typer.Option(help="--metrics-out sample interval, simulated s")] = 60,
    metrics_start: Annotated[str | None, typer.Option(
        help="--metrics-out wall time of t=0: ISO date/time (default 2023-08-01T00:00:00Z) or 'now' (run ends now)")
    ] = None,
) -> None:
    """Run the twin on a scenario and report cost, carbon, ETTR and failures."""
    _prepare_out(out_dir)
    if metrics_out is not None:  # refuse bad metrics flags before a long run, not after it
        from superfactory.observe.openmetrics import check_metrics_flags

        check_metrics_flags(metrics_out, metrics_step, metrics_start)
    result, summary = _run(scenario, seed, policy, progress and not json_out, _params(param), tuple(shadow or ()))
    if metrics_out is not None:
        from superfactory.observe.openmetrics import parse_start, write_twin_metrics

        start = parse_start(metrics_start, result.scenario.duration_s)
        counts = write_twin_metrics(result.scenario, result.events, result.hours, metrics_out, start, metrics_step)
        if not json_out:
            err.print(f"metrics: {metrics_out} ({counts['series']:,} series, {counts['samples']:,} samples; "
                      f"backfill with: promtool tsdb create-blocks-from openmetrics {metrics_out} DATA_DIR)")
    explanation = None
    if explain is not None:  # before any output: an unknown job is an error, not a half-printed result
        from superfactory.observe.explain import explain_job

        explanation = explain_job(result, explain)
    if out_dir is not None:
        from superfactory.cli.stdio import dumps
        from superfactory.observe.report import write_report
        from superfactory.observe.tables import write_tables

        with quiet_stdout():
            write_tables(result, out_dir)
            (out_dir / "summary.json").write_text(dumps(summary) + "\n")
            write_report(result, summary, out_dir / "report.html")
    if json_out:
        emit_json(summary if explanation is None else {**summary, "explain": explanation})
        return
    from superfactory.observe.console import summary_table

    _warn(summary["warnings"])
    out.print(summary_table(summary))
    if out_dir is not None:
        out.print(f"report: [bold]{out_dir / 'report.html'}[/bold]  tables: {out_dir}/*.parquet")
    if explanation is not None:
        out.print(explanation, highlight=False, markup=False)


@app.command()
def scenarios(json_out: JsonOpt = False) -> None:
    """List the built-in scenarios."""
    import yaml
    from rich.table import Table

    from superfactory.scenario.loader import builtin_names, builtin_text

    # read only the header: compiling would load traces some scenarios need from ../shared/data
    rows = {name: str(yaml.safe_load(builtin_text(name)).get("description", "")) for name in builtin_names()}
    if json_out:
        emit_json([{"name": k, "description": v} for k, v in rows.items()])
        return
    t = Table(title="built-in scenarios", title_justify="left")
    t.add_column("name")
    t.add_column("description")
    for name, desc in rows.items():
        t.add_row(name, desc)
    out.print(t)
    out.print("show one with: superfactory scenario show NAME > my.yaml")


@scenario_app.command("show")
def scenario_show(name: Annotated[str, typer.Argument(help="built-in scenario name")]) -> None:
    """Print a built-in scenario as YAML (copy it, edit it, simulate it)."""
    from superfactory.scenario.loader import builtin_text

    sys.stdout.write(builtin_text(name))


@scenario_app.command("schema")
def scenario_schema(
    out_file: Annotated[Path | None, typer.Option("--out", help="write to this file instead of stdout")] = None,
) -> None:
    """Export the JSON schema of the scenario format (for editor completion and validation)."""
    from superfactory.scenario.loader import json_schema

    text = json.dumps(json_schema(), indent=2) + "\n"
    if out_file is None:
        sys.stdout.write(text)
    else:
        try:
            out_file.write_text(text)
        except OSError as e:
            raise SuperfactoryError(f"--out {out_file}: cannot write: {e.strerror or e}") from None
        out.print(f"wrote {out_file}")


@scenario_app.command("validate")
def scenario_validate(scenario: ScenarioArg, seed: SeedOpt = None, json_out: JsonOpt = False) -> None:
    """Check a scenario file without running it (errors: exit 2; warnings: printed, exit 0)."""
    from superfactory.scenario.loader import load_scenario
    from superfactory.scenario.market_data import data_notes

    with quiet_stdout():
        sc = load_scenario(scenario, seed=seed)
    gpus = sum(f.gpus for f in sc.factories)
    if json_out:
        emit_json({"ok": True, "scenario": sc.name, "source": sc.source, "factories": len(sc.factories),
                   "gpus": gpus, "jobs": len(sc.jobs), "simulated_days": sc.duration_s / 86400,
                   "policy": sc.policy, "seed": sc.seed, "seeds": sc.seeds, "pinned_seeds": sorted(sc.pinned_seeds),
                   "warnings": list(sc.warnings), "data": data_notes(sc.prices, sc.carbon)})
        return
    _warn(sc.warnings)
    out.print(f"ok: {sc.name}: {len(sc.factories)} factories, {gpus:,} GPUs, {len(sc.jobs)} jobs, "
              f"{sc.duration_s / 86400:.1f} days" + (f", {len(sc.warnings)} warning(s)" if sc.warnings else ""))
    for line in data_notes(sc.prices, sc.carbon):  # real series: what cleaning did (scenario/market_data.py)
        out.print(f"  data: {line}", markup=False, highlight=False)


@app.command()
def policies(json_out: JsonOpt = False) -> None:
    """List the placement policies and their parameters."""
    from superfactory.policy.registry import available
    from superfactory.scenario.policies import policy_parameters

    if json_out:
        from superfactory.policy import registry

        role = getattr(registry, "role_of", lambda _: "training")
        emit_json([{"name": name, "role": role(name), "description": doc,
                    "parameters": {k: d for k, (_, d) in policy_parameters(name).items()}}
                   for name, doc in available().items()])
        return
    for name, doc in available().items():
        params = ", ".join(f"{k}={d!r}" for k, (_, d) in policy_parameters(name).items())
        out.print(f"[bold]{name}[/bold]  {doc}" + (f"\n    parameters: {escape(params)}" if params else ""),
                  highlight=False)


@app.command()
def compare(
    scenario: ScenarioArg = "default",
    policies: Annotated[str, typer.Option(help="comma-separated policy names")] = "home-region,greedy",
    seed: SeedOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="print results as one JSON document on stdout")] = False,
    out_dir: Annotated[Path | None, typer.Option("--out", help="write compare.json and compare.html here")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    param: ParamOpt = None,
    seeds: Annotated[str | None, typer.Option(help="compare over seeds, e.g. 0-9: mean, 95 % CI and paired "
                                              "differences (docs/sweeps.md)")] = None,
    shadow: Annotated[list[str] | None, typer.Option(
        "--shadow", help="run POLICY in shadow beside each compared policy (decides on the same snapshots, never "
        "acts) and show how often it agrees; repeatable")] = None,
) -> None:
    """Run several policies on the same scenario and seed and compare them.

    --param POLICY.KEY=VALUE sets a parameter of one policy (e.g. -p gang.spare_pool=1); KEY=VALUE without a
    policy prefix applies to every policy."""
    from superfactory.cli.progress import LazyProgress
    from superfactory.observe.summary import summarize
    from superfactory.scenario.loader import load_scenario
    from superfactory.scenario.policies import did_you_mean
    from superfactory.sim.twin import run_twin

    names = [p.strip() for p in policies.split(",") if p.strip()]
    if not names:
        raise SuperfactoryError("--policies needs at least one policy name")
    if seeds is not None:
        sweep.compare_seeds_command(scenario, names, seeds, param, out_dir, json_out, progress, seed)
        return
    for p in param or []:
        prefix = p.split("=", 1)[0].split(".", 1)[0] if "." in p.split("=", 1)[0] else None
        if prefix is not None and prefix not in names:
            raise SuperfactoryError(f"--param {p!r}: policy {prefix!r} is not compared{did_you_mean(prefix, names)};"
                                    f" --policies are: {', '.join(names)}")
    _prepare_out(out_dir)
    sc = load_scenario(scenario, seed=seed)
    plans = []
    for name in names:  # check every policy and its parameters before the first (long) run
        mine = [p.split(".", 1)[1] if "." in p.split("=", 1)[0] else p for p in (param or [])
                if "." not in p.split("=", 1)[0] or p.split(".", 1)[0] == name]
        plans.append((name, _policy_params(sc, name, _params(mine))))
    rows = []
    for name, params in plans:
        with quiet_stdout(), LazyProgress(f"{name} on {sc.name}", enabled=progress and not json_out) as bar:
            rows.append(summarize(run_twin(sc, policy=name, policy_params=params, on_progress=bar,
                                           shadow=tuple(shadow or ()))))
    if out_dir is not None:
        from superfactory.observe.compare import write_compare

        with quiet_stdout():
            write_compare(rows, out_dir)
    if json_out:
        emit_json({"scenario": sc.name, "seed": sc.seed, "warnings": list(sc.warnings), "policies": rows})
        return
    from superfactory.observe.console import compare_table

    _warn(sc.warnings)
    out.print(compare_table(sc.name, rows))


def main() -> None:
    """Console-script entry point: run the app, turning SuperfactoryError into a message and exit 2."""
    try:
        app()
    except SuperfactoryError as e:
        err.print(f"[bold red]error:[/bold red] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
