"""CLI of the live control plane: ``serve`` and thin HTTP commands over its API (Slurm-like verbs).

The server and token come from ``--server`` / ``--token``, then ``SUPERFACTORY_SERVER`` / ``SUPERFACTORY_TOKEN``,
then the config file ``serve`` writes on first start (see :mod:`superfactory.live.client`). Errors the server
returns are printed as its message with exit code 2; ``--json`` prints the server's JSON document only.
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from superfactory.cli.stdio import emit_json
from superfactory.errors import SuperfactoryError

out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True)

ServerOpt = Annotated[str | None, typer.Option("--server", help="control plane URL (default: from the config)")]
TokenOpt = Annotated[str | None, typer.Option("--token", help="API token (default: SUPERFACTORY_TOKEN or config)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON only")]
JobArg = Annotated[int, typer.Argument(help="job id", min=1)]
FactoryArg = Annotated[str, typer.Argument(help="factory id")]

fleet_app = typer.Typer(help="Declare the fleet the control plane schedules onto (admin).", no_args_is_help=True)
tenant_app = typer.Typer(help="Tenants, their priorities and GPU quotas (admin).", no_args_is_help=True)


def _client(server: str | None, token: str | None) -> Any:
    from superfactory.live.client import Client

    return Client(server, token)


def _call(server: str | None, token: str | None, method: str, path: str, **kw: Any) -> Any:
    """One request with a client that is closed afterwards."""
    with _client(server, token) as c:
        return c.request(method, path, **kw)


def serve(
    db: Annotated[str | None, typer.Option(help="store URL: sqlite:///file or postgresql://user@host/db "
                                           "(default: SQLite under --state-dir)")] = None,
    host: Annotated[str, typer.Option(help="address to bind (loopback unless you mean otherwise)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8787,
    workers: Annotated[int, typer.Option(min=1, max=64, help="server processes (one schedules at a time)")] = 1,
    no_scheduler: Annotated[bool, typer.Option("--no-scheduler", help="serve the API only")] = False,
    state_dir: Annotated[Path, typer.Option(help="folder of the embedded store and the CLI config")] = Path(
        ".superfactory"),
    suspect_after_s: Annotated[float, typer.Option(min=1, help="short lease timeout: a silent site gets no new "
                                                   "work")] = 30.0,
    lost_after_s: Annotated[float, typer.Option(min=1, help="long lease timeout: a silent site's jobs are "
                                                "requeued")] = 300.0,
    cycle_s: Annotated[float, typer.Option(min=0.1, help="scheduler period (it also runs after changes)")] = 2.0,
) -> None:
    """Run the control plane (API v1 + scheduler). First start: migrates the store, makes the admin token and
    writes it to the CLI config (mode 0600)."""
    import os

    import uvicorn

    from superfactory.live.api.app import create_app, make_live
    from superfactory.live.client import write_config
    from superfactory.live.context import Settings
    from superfactory.live.services.auth import bootstrap_admin

    if lost_after_s <= suspect_after_s:
        raise SuperfactoryError(f"--lost-after-s ({lost_after_s:g}) must exceed --suspect-after-s "
                                f"({suspect_after_s:g})")
    url = db or f"sqlite:///{(state_dir / 'superfactory.db').resolve()}"
    live = make_live(url, Settings(suspect_after_s=suspect_after_s, lost_after_s=lost_after_s, cycle_s=cycle_s))
    token = bootstrap_admin(live.engine, time.time())
    env_cfg = os.environ.get("SUPERFACTORY_CONFIG")
    cfg = Path(env_cfg) if env_cfg else state_dir / "config.json"
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    write_config(cfg, f"http://{shown}:{port}", token)
    err.print(f"control plane on http://{shown}:{port} (store {live.engine.url.render_as_string(hide_password=True)})")
    err.print(f"admin token {'written to' if token else 'already in'} {cfg}" + ("" if token else
              " (if lost, delete the store or mint one with the API)"))
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(f"[yellow]warning:[/yellow] listening on {host}: reachable from other machines")
    if workers == 1:
        uvicorn.run(create_app(live, scheduler=not no_scheduler), host=host, port=port, log_level="warning")
    else:
        live.engine.dispose()
        os.environ["SUPERFACTORY_DB"] = url
        os.environ["SUPERFACTORY_SCHEDULER"] = "0" if no_scheduler else "1"
        os.environ["SUPERFACTORY_SUSPECT_AFTER_S"] = repr(suspect_after_s)
        os.environ["SUPERFACTORY_LOST_AFTER_S"] = repr(lost_after_s)
        os.environ["SUPERFACTORY_CYCLE_S"] = repr(cycle_s)
        uvicorn.run("superfactory.live.api.app:app_from_env", factory=True, host=host, port=port, workers=workers,
                    log_level="warning")


@fleet_app.command("import")
def fleet_import(scenario: Annotated[str, typer.Argument(help="built-in scenario name or a YAML file")],
                 server: ServerOpt = None, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """Declare the factories, links, markets and job defaults of a scenario."""
    p = Path(scenario)
    body = {"yaml": p.read_text()} if p.suffix in (".yaml", ".yml") and p.exists() else {"scenario": scenario}
    res = _call(server, token, "POST", "/v1/fleet/import", json=body)
    if json_out:
        emit_json(res)
        return
    out.print(f"imported {res['scenario']}: factories {', '.join(res['factories'])}; {res['links']} links; "
              f"markets {', '.join(res['markets'])}")


def _load_jobs(path: Path) -> list[dict[str, Any]]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SuperfactoryError(f"{path}: no such file") from None
    except yaml.YAMLError as e:
        raise SuperfactoryError(f"{path}: not valid YAML: {e}") from None
    if isinstance(doc, dict) and "jobs" in doc:
        doc = doc["jobs"]
    jobs = doc if isinstance(doc, list) else [doc]
    if not jobs or not all(isinstance(j, dict) for j in jobs):
        raise SuperfactoryError(f"{path}: expected a job (a scenario's `jobs:` entry), a list of them, or `jobs:`")
    return jobs


def submit(job_file: Annotated[Path, typer.Argument(help="YAML: one job like a scenario's `jobs:` entry, or a list")],
           tenant: Annotated[str | None, typer.Option(help="admin only: submit for this tenant")] = None,
           key: Annotated[str | None, typer.Option("--idempotency-key", help="retry-safe key (default: new)")] = None,
           server: ServerOpt = None, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """Submit jobs; prints each job id. Retried requests reuse the idempotency key (never two jobs)."""
    results = []
    base = key or uuid.uuid4().hex
    jobs = _load_jobs(job_file)
    with _client(server, token) as c:
        for i, j in enumerate(jobs):
            k = base if len(jobs) == 1 else f"{base}-{i}"
            params = {"tenant": tenant} if tenant else {}
            results.append(_retrying(lambda j=j, k=k, params=params: c.post(
                "/v1/jobs", json=j, params=params, headers={"Idempotency-Key": k})))
    if json_out:
        emit_json(results if len(results) > 1 else results[0])
        return
    for r in results:
        out.print(f"{r['id']}" + ("" if r["created"] else "  (already submitted with this key)"))


def _retrying(call: Any, attempts: int = 4) -> Any:
    """Repeat an idempotent call when the server could not be reached or answered 5xx (0.5, 1, 2 s apart); the
    idempotency key makes a repeat of a submission that did land return the same job."""
    from superfactory.live.errors import ApiError

    for n in range(attempts):
        try:
            return call()
        except ApiError as e:
            if n == attempts - 1 or not (e.status >= 500 or e.code in ("no_server", "transport_error")):
                raise
            time.sleep(0.5 * 2**n)
    raise AssertionError("unreachable")


def queue(state: Annotated[str | None, typer.Option(help="pending, held, assigned, running, stopping, ...")] = None,
          factory: Annotated[str | None, typer.Option(help="only jobs at this factory")] = None,
          tenant: Annotated[str | None, typer.Option(help="admin only: one tenant's jobs")] = None,
          limit: Annotated[int, typer.Option(min=1, max=100_000, help="show at most this many")] = 1000,
          server: ServerOpt = None, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """List jobs (like squeue)."""
    jobs: list[dict[str, Any]] = []
    after = 0
    with _client(server, token) as c:
        while len(jobs) < limit:
            params: dict[str, Any] = {"after_id": after, "limit": min(1000, limit - len(jobs))}
            params.update({k: v for k, v in (("state", state), ("factory", factory), ("tenant", tenant)) if v})
            page = c.get("/v1/jobs", params=params)
            jobs.extend(page["jobs"])
            if page["next_after_id"] is None:
                break
            after = page["next_after_id"]
    if json_out:
        emit_json(jobs)
        return
    t = Table("ID", "NAME", "TENANT", "STATE", "GPUS", "ACCEL", "FACTORY", "PRIO", "REASON", box=None)
    for j in jobs:
        t.add_row(str(j["id"]), j["name"], j["tenant"], j["state"], str(j["gpus"]), j["accelerator"],
                  j["factory_id"] or "-", str(j["priority"]), (j["waiting_reason"] or "")[:60])
    out.print(t)


def show(job: JobArg, server: ServerOpt = None, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """A job in full (like `scontrol show job`): state, placement, history, why pending."""
    j = _call(server, token, "GET", f"/v1/jobs/{job}")
    if json_out:
        emit_json(j)
        return
    out.print(f"JobId={j['id']} Name={j['name']} Tenant={j['tenant']} State={j['state']} Priority={j['priority']}")
    out.print(f"   Accelerator={j['accelerator']} GPUs={j['gpus']} Factory={j['factory_id'] or '-'} "
              f"Nodes={len(j['nodes'])} FencingToken={j['fencing_token']} Attempts={j['attempts']}")
    out.print(f"   Progress={j['progress_s']:.0f}s Committed={j['committed_progress_s']:.0f}s "
              f"Checkpoint={(j['checkpoint'] or {}).get('location', '-')}")
    if j["pending"]:
        out.print("   Why pending:" + ("" if j["pending"]["reasons"] else " (no blocking reason now; next cycle)"))
        for r in j["pending"]["reasons"]:
            fig = (f" [requested {r['requested']:g} {r['unit']}, available {r['available']:g} {r['unit']}]"
                   if r["requested"] is not None and r["available"] is not None else "")
            out.print(f"     {r['code']}: {r['message']}{fig}")
        if j["pending"]["policy_reason"]:
            out.print(f"     policy: {j['pending']['policy_reason']}")
    out.print("   History:")
    for e in j["history"][-20:]:
        when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(e["at_unix_s"]))
        detail = " ".join(f"{k}={v}" for k, v in e["data"].items())
        out.print(f"     {when}Z {e['kind']} {detail}")


def _verb(name: str, doc: str) -> Any:
    def cmd(job: JobArg, server: ServerOpt = None, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
        j = _call(server, token, "POST", f"/v1/jobs/{job}/{name}")
        if json_out:
            emit_json(j)
        else:
            out.print(f"job {j['id']}: {j['state']}" + (f" ({j['stop_reason']})" if j["stop_reason"] else ""))

    cmd.__doc__ = doc
    return cmd


def factories(server: ServerOpt = None, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """Factories: state, agent lease, free GPUs per accelerator."""
    fs = _call(server, token, "GET", "/v1/factories")
    if json_out:
        emit_json(fs)
        return
    t = Table("FACTORY", "STATE", "LEASE", "SCHED", "ACCEL", "FREE", "BUSY", "DOWN", "TOTAL", box=None)
    for f in fs:
        for acc, c in f["capacity"].items():
            t.add_row(f["id"], f["state"], f["lease"], "yes" if f["schedulable"] else "no", acc, str(c["free_gpus"]),
                      str(c["busy_gpus"]), str(c["down_gpus"]), str(c["total_gpus"]))
    out.print(t)


def _factory_verb(name: str, doc: str) -> Any:
    def cmd(factory: FactoryArg, server: ServerOpt = None, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
        f = _call(server, token, "POST", f"/v1/factories/{factory}/{name}")
        if json_out:
            emit_json(f)
        else:
            out.print(f"{f['id']}: {f['state']}")

    cmd.__doc__ = doc
    return cmd


def agent_token(factory: FactoryArg, server: ServerOpt = None, token: TokenOpt = None) -> None:
    """Mint a token for a factory's agent (printed once; the server keeps only its hash)."""
    print(_call(server, token, "POST", f"/v1/factories/{factory}/tokens")["token"])


@tenant_app.command("add")
def tenant_add(name: Annotated[str, typer.Argument(help="tenant id")],
               priority: Annotated[int, typer.Option(min=-1000, max=1000)] = 0,
               quota: Annotated[list[str] | None, typer.Option(help="ACCELERATOR=GPUS (repeatable)")] = None,
               server: ServerOpt = None, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """Create a tenant; prints its token (once)."""
    quotas: dict[str, int] = {}
    for q in quota or []:
        acc, sep, n = q.partition("=")
        if not sep or not n.strip().isdigit():
            raise SuperfactoryError(f"--quota {q!r}: expected ACCELERATOR=GPUS, e.g. --quota H100-SXM=1024")
        quotas[acc.strip()] = int(n)
    res = _call(server, token, "POST", "/v1/tenants", json={"id": name, "priority": priority, "quotas": quotas})
    if json_out:
        emit_json(res)
    else:
        print(res["token"])


@tenant_app.command("list")
def tenant_list(server: ServerOpt = None, token: TokenOpt = None, json_out: JsonOpt = False) -> None:
    """Tenants with priorities and quotas."""
    res = _call(server, token, "GET", "/v1/tenants")
    if json_out:
        emit_json(res)
        return
    for t in res:
        quotas = ", ".join(f"{k}={v}" for k, v in t["quotas"].items()) or "unlimited"
        out.print(f"{t['id']}  priority={t['priority']}  quotas: {quotas}")


def register(app: typer.Typer) -> None:
    """Add the control plane's commands to the main app."""
    app.command("serve")(serve)
    app.add_typer(fleet_app, name="fleet")
    app.add_typer(tenant_app, name="tenant")
    app.command("submit")(submit)
    app.command("queue")(queue)
    app.command("show")(show)
    app.command("cancel")(_verb("cancel", "Cancel a job (a placed one checkpoints and stops first)."))
    app.command("hold")(_verb("hold", "Keep a pending job from being scheduled."))
    app.command("release")(_verb("release", "Let a held job be scheduled again."))
    app.command("factories")(factories)
    app.command("cordon")(_factory_verb("cordon", "No new work on a factory (admin)."))
    app.command("drain")(_factory_verb("drain", "No new work; running jobs checkpoint and move (admin)."))
    app.command("uncordon")(_factory_verb("uncordon", "Let a factory take new work again (admin)."))
    app.command("agent-token")(agent_token)
