"""CLI of the factory agents and the local fleet: ``agent``, ``up``, ``down``, ``logs``, ``chaos``.

``superfactory up`` starts a control plane, three agents (texas/ERCOT, atlanta/SERC, wisconsin/MISO) and demo
jobs on this machine, with pids and state under ``./.superfactory/fleet/``, and points the CLI config at it so
``superfactory queue`` / ``show JOB`` work. ``down`` stops all of it and says if anything survived (exit 1).
``chaos`` injects real faults. Bad input (unknown site, node, market, job without a process) is one message and
exit code 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from superfactory.cli.stdio import emit_json
from superfactory.errors import SuperfactoryError

out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

StateOpt = Annotated[Path, typer.Option("--state-dir", help="folder of the local fleet's state")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON only")]
chaos_app = typer.Typer(help="Inject real faults into the local fleet (`superfactory up`).", no_args_is_help=True)


def _fleet(state_dir: Path) -> Any:
    from superfactory.agent.fleet import FleetError, LocalFleet

    if not (state_dir.resolve() / "fleet" / "fleet.json").exists():
        raise FleetError(f"no local fleet under {state_dir}/fleet; start one with `superfactory up`")
    return LocalFleet(state_dir)


def agent(
    factory: Annotated[str, typer.Option("--factory", help="the factory (site) this agent runs")],
    server: Annotated[str, typer.Option("--server", help="control plane URL")] = "http://127.0.0.1:8787",
    config: Annotated[Path | None, typer.Option("--config", help="agent config YAML (docs/agents.md)")] = None,
    token: Annotated[str | None, typer.Option("--token", help="agent token (default: config, "
                                              "$SUPERFACTORY_AGENT_TOKEN)")] = None,
    state_dir: Annotated[Path | None, typer.Option("--state-dir", help="agent state folder "
                                                   "(default .superfactory/agents/FACTORY)")] = None,
) -> None:
    """Run the agent of one factory: register, heartbeat, run and stop assigned jobs, report (until Ctrl-C)."""
    import logging

    from superfactory.agent.__main__ import run_until_signalled
    from superfactory.agent.config import agent_config_from_dict, load_agent_config
    from superfactory.agent.daemon import Agent

    if config is not None:
        cfg = load_agent_config(config)
        updates: dict[str, Any] = {"server": server}
        if cfg.factory != factory:
            raise SuperfactoryError(f"--factory {factory} but {config} is the config of factory {cfg.factory}")
        if token:
            updates["token"] = token
        if state_dir is not None:
            updates["state_dir"] = state_dir.resolve()
        cfg = cfg.model_copy(update=updates)
    else:
        sd = (state_dir or Path(".superfactory") / "agents" / factory).resolve()
        cfg = agent_config_from_dict(
            {"factory": factory, "server": server, "token": token, "state_dir": str(sd),
             "storage": [{"name": f"{factory}-{x}", "url": str(sd / "storage" / x), "region": factory}
                         for x in ("a", "b", "c")]},
            Path.cwd(), "--factory/--server")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    err.print(f"agent of {factory} -> {cfg.server} (state {cfg.state_dir}); Ctrl-C stops it and its jobs")
    run_until_signalled(Agent(cfg))


def up(
    state_dir: StateOpt = Path(".superfactory"),
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8787,
    demo_jobs: Annotated[bool, typer.Option("--demo-jobs/--no-demo-jobs", help="submit the demo jobs")] = True,
    policy: Annotated[str | None, typer.Option(help="placement policy, e.g. gang or geo")] = None,
    lost_after_s: Annotated[float, typer.Option(min=1.0, help="lease lost timeout")] = 30.0,
    json_out: JsonOpt = False,
) -> None:
    """Start a local fleet: control plane + 3 agents (3 sites, 3 markets) + demo jobs. Re-run to start what
    is missing (e.g. after `chaos kill-agent`)."""
    from superfactory.agent.fleet import DEMO_POLICY_PARAMS, FleetOptions, LocalFleet
    from superfactory.live.client import config_path, write_config

    saved = state_dir.resolve() / "fleet" / "fleet.json"
    opts = None if saved.exists() else FleetOptions(port=port, policy=policy, lost_after_s=lost_after_s,
                                                    suspect_after_s=min(10.0, lost_after_s / 3))
    fleet = LocalFleet(state_dir, opts)
    started = fleet.up(demo_jobs=demo_jobs)
    if policy and saved.exists():
        fleet.api("PUT", "/v1/policies/active", json={"name": policy, "params": DEMO_POLICY_PARAMS.get(policy, {})})
    write_config(config_path(), fleet.url, fleet.admin_token())
    doc = {"url": fleet.url, "started": started, "pids": {n: fleet.pid(n) for n in fleet._pids()},
           "state_dir": str(fleet.root)}
    if json_out:
        emit_json(doc)
        return
    out.print(f"local fleet on {fleet.url}: " + (", ".join(f"{n} (pid {p})" for n, p in started.items())
                                                   or "everything was already running"))
    out.print("watch: superfactory queue | show JOB | logs JOB;  faults: superfactory chaos --help;  "
              "stop: superfactory down")


def down(state_dir: StateOpt = Path(".superfactory"), json_out: JsonOpt = False) -> None:
    """Stop everything `up` started (agents checkpoint and stop their jobs first). Exit 1 if a process survived."""
    fleet = _fleet(state_dir)
    left = fleet.down()
    if json_out:
        emit_json({"stopped": not left, "left_pids": left})
    elif left:
        err.print(f"[red]processes still alive:[/red] {left}")
    else:
        out.print("local fleet stopped; no process left")
    if left:
        raise typer.Exit(1)


def logs(job: Annotated[int, typer.Argument(help="job id", min=1)], state_dir: StateOpt = Path(".superfactory"),
         tail: Annotated[int, typer.Option(min=0, help="last N lines per site (0 = all)")] = 0) -> None:
    """Print a job's process logs from every site that ran it (oldest incarnation first)."""
    base = state_dir.resolve()
    files = sorted(base.glob(f"fleet/agents/*/jobs/{job}/job.log")) + sorted(base.glob(f"agents/*/jobs/{job}/job.log"))
    if not files:
        raise SuperfactoryError(f"no logs of job {job} under {base} (has an agent started it yet?)")
    files.sort(key=lambda p: p.stat().st_mtime)
    for path in files:
        lines = path.read_text(errors="replace").splitlines()
        out.print(f"[bold]== {path.parts[-4]}: {path}[/bold]", highlight=False)
        for line in lines[-tail:] if tail else lines:
            out.print(line, markup=False, highlight=False)


@chaos_app.command("kill-job")
def chaos_kill_job(job: Annotated[int, typer.Argument(min=1)], state_dir: StateOpt = Path(".superfactory"),
                   json_out: JsonOpt = False) -> None:
    """SIGKILL a job's process group."""
    from superfactory.agent import chaos

    _report(chaos.kill_job(_fleet(state_dir), job), json_out, "killed job {job_id} at {site} (pid {pid})")


@chaos_app.command("hang-job")
def chaos_hang_job(job: Annotated[int, typer.Argument(min=1)], state_dir: StateOpt = Path(".superfactory"),
                   json_out: JsonOpt = False) -> None:
    """SIGSTOP a job (alive but silent): its agent's hang detection kills and requeues it."""
    from superfactory.agent import chaos

    _report(chaos.hang_job(_fleet(state_dir), job), json_out, "stopped job {job_id} at {site} (pid {pid})")


@chaos_app.command("kill-agent")
def chaos_kill_agent(factory: str, state_dir: StateOpt = Path(".superfactory"), json_out: JsonOpt = False) -> None:
    """SIGKILL an agent (its jobs keep running; `superfactory up` restarts it and it adopts them)."""
    from superfactory.agent import chaos

    _report({"factory": factory, "pid": chaos.kill_agent(_fleet(state_dir), factory)}, json_out,
            "killed the agent of {factory} (pid {pid})")


@chaos_app.command("kill-server")
def chaos_kill_server(state_dir: StateOpt = Path(".superfactory"), json_out: JsonOpt = False) -> None:
    """SIGKILL the control plane (`superfactory up` restarts it; nothing is lost)."""
    from superfactory.agent import chaos

    _report({"pid": chaos.kill_server(_fleet(state_dir))}, json_out, "killed the control plane (pid {pid})")


@chaos_app.command("partition-agent")
def chaos_partition(factory: str, heal: Annotated[bool, typer.Option("--heal", help="reconnect it")] = False,
                    state_dir: StateOpt = Path(".superfactory"), json_out: JsonOpt = False) -> None:
    """Cut an agent off the control plane (heartbeats stop; its jobs stop themselves before they are moved)."""
    from superfactory.agent import chaos

    changed = chaos.partition_agent(_fleet(state_dir), factory, heal=heal)
    _report({"factory": factory, "partitioned": not heal, "changed": changed}, json_out,
            "{factory}: " + ("reconnected" if heal else "partitioned from the control plane"))


@chaos_app.command("fail-node")
def chaos_fail_node(target: Annotated[str, typer.Argument(help="FACTORY/NODE, e.g. texas/0")],
                    repair: Annotated[bool, typer.Option("--repair", help="bring the node back")] = False,
                    state_dir: StateOpt = Path(".superfactory"), json_out: JsonOpt = False) -> None:
    """Fail a node: the jobs on it die and are re-placed from their last checkpoint."""
    from superfactory.agent import chaos

    factory, sep, node = target.partition("/")
    if not sep or not node.isdigit():
        raise SuperfactoryError(f"fail-node takes FACTORY/NODE, e.g. texas/0 (got {target!r})")
    down_nodes = chaos.fail_node(_fleet(state_dir), factory, int(node), repair=repair)
    _report({"factory": factory, "down_nodes": down_nodes}, json_out, "{factory}: failed nodes {down_nodes}")


@chaos_app.command("price-shock")
def chaos_price_shock(market: str, factor: Annotated[str, typer.Argument(help="e.g. x10")],
                      hours: Annotated[int, typer.Option(min=1, max=168)] = 6,
                      state_dir: StateOpt = Path(".superfactory"), json_out: JsonOpt = False) -> None:
    """Multiply a market's price for some hours (under `geo`, running jobs may move to another site)."""
    from superfactory.agent import chaos

    try:
        f = float(factor.lower().removeprefix("x"))
    except ValueError:
        raise SuperfactoryError(f"factor must look like x10 or 10, got {factor!r}") from None
    _report(chaos.price_shock(_fleet(state_dir), market, f, hours), json_out,
            "{market}: {usd_per_mwh:.0f} USD/MWh (was {was_usd_per_mwh:.0f}) for {hours} h")


def _report(doc: dict[str, Any], json_out: bool, template: str) -> None:
    if json_out:
        emit_json(doc)
    else:
        out.print(template.format(**doc), highlight=False)


def register(app: typer.Typer) -> None:
    """Add the agent and local-fleet commands to the main app."""
    app.command("agent")(agent)
    app.command("up")(up)
    app.command("down")(down)
    app.command("logs")(logs)
    app.add_typer(chaos_app, name="chaos")
