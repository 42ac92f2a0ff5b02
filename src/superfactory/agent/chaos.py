"""Fault injection into a local fleet (``superfactory chaos …``): every fault is a real one.

* ``kill_job`` — SIGKILL the process group of a job's running incarnation (found in its agent's records).
* ``hang_job`` — SIGSTOP a job's processes: alive but silent, the agent's hang detection must catch it.
* ``kill_agent`` — SIGKILL an agent; its jobs keep running and a restarted agent adopts them.
* ``kill_server`` — SIGKILL the control plane; agents keep their jobs running and queue their reports.
* ``partition_agent`` — cut an agent off the control plane (its HTTP client refuses to send) while it and its
  jobs keep running: heartbeats stop, the site goes suspect, then lost; the jobs stop themselves when the
  agent's lease file expires (before the control plane requeues them), and a zombie's late checkpoint is
  refused by the mesh's fence. ``heal=True`` reconnects it.
* ``fail_node`` — mark a node failed in the agent's health file: the agent kills the jobs on it (the node is
  gone) and reports the node down; ``repair=True`` brings it back.
* ``price_shock`` — push a market price ``factor`` × the current one for ``hours`` hours (``geo`` may move work).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from typing import Any

from superfactory.agent.executor import process_start_ticks
from superfactory.agent.fleet import SITES, FleetError, LocalFleet

__all__ = ["fail_node", "hang_job", "kill_agent", "kill_job", "kill_server", "partition_agent", "price_shock"]


def _site(site: str) -> str:
    names = [s for s, _, _ in SITES]
    if site not in names:
        raise FleetError(f"unknown site {site!r}; the local fleet has {', '.join(names)}")
    return site


def kill_job(fleet: LocalFleet, job_id: int | str) -> dict[str, Any]:
    """SIGKILL the running incarnation of ``job_id``; returns ``{job_id, site, pid, fencing_token}``."""
    for rec in fleet.job_groups():
        if str(rec["job_id"]) == str(job_id) and process_start_ticks(rec["pid"]) == rec["start_ticks"]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(rec["pgid"], signal.SIGKILL)
            return {"job_id": str(job_id), "site": rec["site"], "pid": rec["pid"],
                    "fencing_token": rec["fencing_token"]}
    raise FleetError(f"job {job_id} has no running process in the local fleet (superfactory queue shows where "
                     f"it is)")


def hang_job(fleet: LocalFleet, job_id: int | str) -> dict[str, Any]:
    """SIGSTOP the running incarnation of ``job_id``: it stops making progress without exiting (a hang)."""
    for rec in fleet.job_groups():
        if str(rec["job_id"]) == str(job_id) and process_start_ticks(rec["pid"]) == rec["start_ticks"]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(rec["pgid"], signal.SIGSTOP)
            return {"job_id": str(job_id), "site": rec["site"], "pid": rec["pid"],
                    "fencing_token": rec["fencing_token"]}
    raise FleetError(f"job {job_id} has no running process in the local fleet")


def kill_agent(fleet: LocalFleet, site: str) -> int:
    """SIGKILL the agent of ``site``; returns its pid."""
    pid = fleet.signal(f"agent:{_site(site)}", signal.SIGKILL)
    if pid is None:
        raise FleetError(f"the agent of {site} is not running")
    return pid


def kill_server(fleet: LocalFleet) -> int:
    """SIGKILL the control plane; returns its pid."""
    pid = fleet.signal("server", signal.SIGKILL)
    if pid is None:
        raise FleetError("the control plane is not running")
    return pid


def partition_agent(fleet: LocalFleet, site: str, heal: bool = False) -> bool:
    """Cut (or with ``heal`` reconnect) the agent of ``site`` from the control plane; True if it changed."""
    flag = fleet.agent_dir(_site(site)) / "partitioned"
    if heal:
        if flag.exists():
            flag.unlink()
            return True
        return False
    if flag.exists():
        return False
    flag.parent.mkdir(parents=True, exist_ok=True)
    flag.write_text(f"partitioned at {time.time()}\n")
    return True


def fail_node(fleet: LocalFleet, site: str, node: int, repair: bool = False) -> list[int]:
    """Mark ``node`` of ``site`` failed (or repaired); returns the site's failed nodes afterwards."""
    path = fleet.agent_dir(_site(site)) / "down_nodes.json"
    try:
        down = set(json.loads(path.read_text()))
    except (OSError, ValueError):
        down = set()
    if node < 0 or node >= fleet.options.nodes_per_site:
        raise FleetError(f"{site} has nodes 0..{fleet.options.nodes_per_site - 1}, not {node}")
    down = down - {node} if repair else down | {node}
    tmp = path.with_name("down_nodes.json.tmp")
    tmp.write_text(json.dumps(sorted(down)))
    tmp.replace(path)
    return sorted(down)


def price_shock(fleet: LocalFleet, market: str, factor: float, hours: int = 6) -> dict[str, Any]:
    """Push ``factor`` × the market's current price for this hour and the next ``hours`` − 1 hours."""
    markets = [m for _, _, m in SITES]
    if market not in markets:
        raise FleetError(f"unknown market {market!r}; the local fleet's markets are {', '.join(markets)}")
    if not factor > 0 or hours < 1:
        raise FleetError(f"price-shock needs factor > 0 and hours >= 1 (got x{factor}, {hours} h)")
    base = None
    with contextlib.suppress(FleetError):
        hist = fleet.api("GET", f"/v1/signals/price/{market}")
        values = [v for v in hist.get("hourly", []) if v is not None]
        base = values[-1] if values else None
    base = base if base else 50.0
    now = time.time()
    points = [{"kind": "price", "key": market, "value": base * factor, "at_unix_s": now + h * 3600.0}
              for h in range(hours)]
    fleet.api("POST", "/v1/signals", json={"points": points})
    return {"market": market, "usd_per_mwh": base * factor, "was_usd_per_mwh": base, "hours": hours}
