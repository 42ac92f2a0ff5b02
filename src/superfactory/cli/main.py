"""The ``superfactory`` command line: thin commands over the scenario, twin, policy and observe packages.

Every user error (bad scenario, unknown policy, bad flag value) is printed as one clear message on stderr
with exit code 2; no traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from superfactory.cli import ckpt
from superfactory.errors import SuperfactoryError

app = typer.Typer(
    name="superfactory",
    help="Control plane and digital twin for fleets of AI factories.\n\n"
    "Start with:  superfactory simulate default --out results/default",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
scenario_app = typer.Typer(help="Inspect, export and validate scenarios.", no_args_is_help=True)
app.add_typer(scenario_app, name="scenario")
app.add_typer(ckpt.app, name="ckpt", help="The checkpoint mesh: erasure-coded, encrypted, replicated checkpoints.")

out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

ScenarioArg = Annotated[
    str, typer.Argument(help="built-in scenario name (see `superfactory scenarios`) or a YAML file")
]


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
        out[key.strip()] = yaml.safe_load(value)
    return out


def _run(scenario_ref: str, seed: int | None, policy: str | None, progress: bool,
         params: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    from superfactory.cli.progress import LazyProgress
    from superfactory.observe.summary import summarize
    from superfactory.scenario.loader import load_scenario
    from superfactory.sim.twin import run_twin

    sc = load_scenario(scenario_ref)
    if params is not None and (policy is None or policy == sc.policy):
        params = {**sc.policy_params, **params}  # override the scenario's own parameters key by key
    with LazyProgress(f"simulating {sc.name}", enabled=progress) as bar:
        result = run_twin(sc, seed=seed, policy=policy, policy_params=params, on_progress=bar)
    return result, summarize(result)


@app.command()
def simulate(
    scenario: ScenarioArg = "default",
    seed: Annotated[int | None, typer.Option(help="RNG seed (default: the scenario's)")] = None,
    policy: Annotated[str | None, typer.Option(help="placement policy (see `superfactory policies`)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print the summary as JSON on stdout")] = False,
    out_dir: Annotated[Path | None, typer.Option("--out", help="write summary, tables and report.html here")] = None,
    explain: Annotated[str | None, typer.Option(help="explain why job JOB waited / where it ran")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar on runs over a second")] = True,
    param: ParamOpt = None,
) -> None:
    """Run the twin on a scenario and report cost, carbon, ETTR and failures."""
    result, summary = _run(scenario, seed, policy, progress and not json_out, _params(param))
    if out_dir is not None:
        from superfactory.observe.report import write_report
        from superfactory.observe.tables import write_tables

        out_dir.mkdir(parents=True, exist_ok=True)
        write_tables(result, out_dir)
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        write_report(result, summary, out_dir / "report.html")
    if json_out:
        sys.stdout.write(json.dumps(summary, indent=2) + "\n")
    else:
        from superfactory.observe.console import summary_table

        out.print(summary_table(summary))
        if out_dir is not None:
            out.print(f"report: [bold]{out_dir / 'report.html'}[/bold]  tables: {out_dir}/*.parquet")
    if explain is not None:
        _explain(result, explain)


def _explain(result: Any, job_id: str) -> None:
    from superfactory.observe.explain import explain_job

    out.print(explain_job(result, job_id), highlight=False, markup=False)


@app.command()
def scenarios() -> None:
    """List the built-in scenarios."""
    import yaml
    from rich.table import Table

    from superfactory.scenario.loader import builtin_names, builtin_text

    t = Table(title="built-in scenarios", title_justify="left")
    t.add_column("name")
    t.add_column("description")
    for name in builtin_names():
        # read only the header: compiling would load traces some scenarios need from ../shared/data
        t.add_row(name, str(yaml.safe_load(builtin_text(name)).get("description", "")))
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
        out_file.write_text(text)
        out.print(f"wrote {out_file}")


@scenario_app.command("validate")
def scenario_validate(scenario: ScenarioArg) -> None:
    """Check a scenario file without running it."""
    from superfactory.scenario.loader import load_scenario

    sc = load_scenario(scenario)
    gpus = sum(f.gpus for f in sc.factories)
    out.print(f"ok: {sc.name}: {len(sc.factories)} factories, {gpus:,} GPUs, {len(sc.jobs)} jobs, "
              f"{sc.duration_s / 86400:.1f} days")


@app.command()
def policies() -> None:
    """List the placement policies."""
    from superfactory.policy.registry import available

    for name, doc in available().items():
        out.print(f"[bold]{name}[/bold]  {doc}")


@app.command()
def compare(
    scenario: ScenarioArg = "default",
    policies: Annotated[str, typer.Option(help="comma-separated policy names")] = "home-region,greedy",
    seed: Annotated[int | None, typer.Option(help="RNG seed (default: the scenario's)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print results as JSON on stdout")] = False,
    out_dir: Annotated[Path | None, typer.Option("--out", help="write compare.json and compare.html here")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    param: ParamOpt = None,
) -> None:
    """Run several policies on the same scenario and seed and compare them.

    --param POLICY.KEY=VALUE sets a parameter of one policy (e.g. -p gang.spare_pool=1); KEY=VALUE without a
    policy prefix applies to every policy."""
    names = [p.strip() for p in policies.split(",") if p.strip()]
    if not names:
        raise SuperfactoryError("--policies needs at least one policy name")
    rows = []
    for name in names:
        mine = [p.split(".", 1)[1] if "." in p.split("=", 1)[0] else p for p in (param or [])
                if "." not in p.split("=", 1)[0] or p.split(".", 1)[0] == name]
        _, summary = _run(scenario, seed, name, progress and not json_out, _params(mine))
        rows.append(summary)
    if out_dir is not None:
        from superfactory.observe.compare import write_compare

        write_compare(rows, out_dir)
    if json_out:
        sys.stdout.write(json.dumps({"scenario": rows[0]["scenario"], "policies": rows}, indent=2) + "\n")
    else:
        from superfactory.observe.console import compare_table

        out.print(compare_table(rows[0]["scenario"], rows))


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
