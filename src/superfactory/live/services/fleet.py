"""The fleet as the control plane declares it: factories, links and signal series imported from a scenario;
cordon, drain and uncordon; per-factory agent tokens; lease status and capacity.

A factory is **schedulable** when it is ``active`` (not cordoned or draining) and its agent's lease is live
(a heartbeat within ``suspect_after_s``). Importing upserts factories and links (a factory that holds jobs may
not change shape) and replaces the replayed price and carbon series; it bumps ``fleet_version`` so every
process reloads its cached fleet.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import sqlalchemy as sa

from superfactory.domain.factory import Factory, WanLink
from superfactory.errors import ScenarioError
from superfactory.live.codec import decode_factory, encode_factory, encode_link
from superfactory.live.context import FleetCache, Live
from superfactory.live.errors import ApiError, not_found
from superfactory.live.services.auth import mint_token
from superfactory.live.services.jobs_common import HOLDING, add_event, next_fence, requeue_rows
from superfactory.live.store import tables as t
from superfactory.scenario.loader import builtin_text, parse_scenario
from superfactory.scenario.model import Scenario

CACHE_TTL_S = 1.0
FACTORY_STATES = ("active", "cordoned", "draining")


def cached_fleet(live: Live) -> FleetCache | None:
    """The cached fleet while it is fresh (no store read); ``None`` when :func:`load_fleet` must check the store."""
    cache = live.fleet_cache
    if cache is not None and 0 <= live.clock.unix_s() - cache.loaded_unix_s < CACHE_TTL_S:
        return cache
    return None


def load_fleet(live: Live, force: bool = False) -> FleetCache:
    """The fleet's factories and links in import order (cached; reloaded when ``fleet_version`` changes)."""
    cache = live.fleet_cache
    now = live.clock.unix_s()
    if cache is not None and not force and 0 <= now - cache.loaded_unix_s < CACHE_TTL_S:
        return cache
    with live.engine.connect() as conn:
        version = conn.execute(sa.select(t.meta.c.value).where(t.meta.c.key == "fleet_version")).scalar() or "0"
        if cache is not None and cache.version == version:
            cache.loaded_unix_s = now
            return cache
        factories = tuple(decode_factory(r.spec) for r in
                          conn.execute(sa.select(t.factories.c.spec).order_by(t.factories.c.position)))
        links = tuple(WanLink(r.a, r.b, r.bandwidth_gbps, r.latency_ms, r.egress_usd_per_gb) for r in
                      conn.execute(sa.select(t.links).order_by(t.links.c.position)))
        raw = conn.execute(sa.select(t.meta.c.value).where(t.meta.c.key == "job_defaults")).scalar()
    live.fleet_cache = FleetCache(version, factories, links, now, json.loads(raw) if raw else {})
    return live.fleet_cache


def import_scenario(live: Live, ref: str | None = None, text: str | None = None) -> dict[str, Any]:
    """Declare the factories, links, job defaults and signal series of a scenario (by name or YAML text)."""
    try:
        if text is not None:
            sc = parse_scenario(text, source="<uploaded scenario>")
        elif ref is not None:  # built-in names only: the server reads no file a caller names
            text = builtin_text(ref)
            sc = parse_scenario(text, source=f"<built-in {ref}>")
        else:
            raise ApiError(422, "invalid_request", "give 'scenario' (a built-in name) or 'yaml' (scenario text)")
    except ScenarioError as e:
        raise ApiError(422, "invalid_scenario", str(e)) from None
    return _store_scenario(live, sc, text)


def _store_scenario(live: Live, sc: Scenario, text: str) -> dict[str, Any]:
    import yaml

    doc = yaml.safe_load(text)
    defaults: dict[str, Any] = (doc.get("defaults") or {}) if isinstance(doc, dict) else {}
    with live.engine.begin() as conn:
        existing = {r.id: r for r in conn.execute(sa.select(t.factories))}
        held = {r[0] for r in conn.execute(sa.select(t.jobs.c.factory_id).where(t.jobs.c.state.in_(HOLDING))
                                            .distinct())}
        base = len(existing)
        for i, f in enumerate(sc.factories):
            spec = encode_factory(f)
            if f.id in existing:
                if existing[f.id].spec != spec and f.id in held:
                    raise ApiError(409, "factory_busy", f"factory {f.id!r} holds jobs; drain it before changing it")
                conn.execute(t.factories.update().where(t.factories.c.id == f.id).values(spec=spec))
            else:
                conn.execute(t.factories.insert().values(id=f.id, position=base + i, spec=spec, state="active",
                                                         down_nodes=[]))
        conn.execute(t.links.delete())
        if sc.links:
            conn.execute(t.links.insert(), [{**encode_link(lk), "position": i} for i, lk in enumerate(sc.links)])
        conn.execute(t.series.delete())
        rows = [{"kind": "price", "key": m, "unit": s.unit, "step_s": s.step_s, "points": list(s.values)}
                for m, s in sc.prices.items()]
        rows += [{"kind": "carbon", "key": g, "unit": s.unit, "step_s": s.step_s, "points": list(s.values)}
                 for g, s in sc.carbon.items()]
        if rows:
            conn.execute(t.series.insert(), rows)
        _set_meta(conn, "job_defaults", _json(defaults))
        version = int(conn.execute(sa.select(t.meta.c.value).where(t.meta.c.key == "fleet_version")).scalar() or 0)
        _set_meta(conn, "fleet_version", str(version + 1))
        if not conn.execute(sa.select(t.meta.c.value).where(t.meta.c.key == "policy")).first():
            _set_meta(conn, "policy", _json({"name": live.settings.default_policy, "params": {}}))
    load_fleet(live, force=True)
    return {"scenario": sc.name, "factories": [f.id for f in sc.factories], "links": len(sc.links),
            "markets": sorted(sc.prices), "grids": sorted(sc.carbon)}


def _json(v: Any) -> str:
    return json.dumps(v, sort_keys=True)


def set_meta(live: Live, key: str, value: Any) -> None:
    """Store a JSON value under ``key`` in ``meta``."""
    with live.engine.begin() as conn:
        _set_meta(conn, key, _json(value))


def _set_meta(conn: sa.Connection, key: str, value: str) -> None:
    if conn.execute(t.meta.update().where(t.meta.c.key == key).values(value=value)).rowcount == 0:
        conn.execute(t.meta.insert().values(key=key, value=value))


def lease_status(live: Live, row: Any) -> str:
    """``none`` (no agent yet), ``live``, ``suspect`` (past the short timeout) or ``lost`` (past the long one)."""
    if row.lost:
        return "lost"
    if row.last_heartbeat_unix_s is None:
        return "none"
    age = live.clock.unix_s() - row.last_heartbeat_unix_s
    if age > live.settings.lost_after_s:
        return "lost"
    return "suspect" if age > live.settings.suspect_after_s else "live"


def schedulable(live: Live, row: Any) -> bool:
    return bool(row.state == "active" and lease_status(live, row) == "live")


def _capacity(f: Factory, down: set[int], busy: np.ndarray) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for c in f.clusters:
        sl = slice(c.node_offset, c.node_end)
        n_down = sum(1 for n in down if c.node_offset <= n < c.node_end)
        n_busy = int(busy[sl].sum())
        d = out.setdefault(c.accelerator, {"total_gpus": 0, "busy_gpus": 0, "down_gpus": 0, "free_gpus": 0})
        g = c.system.gpus_per_node
        d["total_gpus"] += c.nodes * g
        d["busy_gpus"] += n_busy * g
        d["down_gpus"] += n_down * g
        d["free_gpus"] += (c.nodes - n_busy - n_down) * g
    return out


def factory_docs(live: Live, factory_id: str | None = None) -> list[dict[str, Any]]:
    """Factories with state, lease status and capacity per accelerator (GPUs total, busy, down, free)."""
    fleet = load_fleet(live)
    by_id = {f.id: f for f in fleet.factories}
    with live.engine.connect() as conn:
        q = sa.select(t.factories).order_by(t.factories.c.position)
        if factory_id is not None:
            q = q.where(t.factories.c.id == factory_id)
        rows = list(conn.execute(q))
        held = conn.execute(sa.select(t.jobs.c.factory_id, t.jobs.c.nodes, t.jobs.c.migrate_to)
                            .where(t.jobs.c.state.in_(HOLDING))).all()
    if factory_id is not None and not rows:
        raise not_found("factory", factory_id)
    out = []
    for r in rows:
        f = by_id.get(r.id) or decode_factory(r.spec)
        busy = np.zeros(f.nodes, dtype=bool)
        for h in held:
            if h.factory_id == r.id:
                busy[h.nodes] = True
            if h.migrate_to and h.migrate_to["factory_id"] == r.id:
                busy[h.migrate_to["nodes"]] = True
        down = {int(n) for n in r.down_nodes}
        busy[list(down)] = False
        out.append({
            "id": r.id, "region": f.region, "market": f.market, "grid": f.grid, "state": r.state,
            "lease": lease_status(live, r), "lease_epoch": r.lease_epoch, "agent_id": r.agent_id,
            "last_heartbeat_unix_s": r.last_heartbeat_unix_s, "schedulable": schedulable(live, r),
            "nodes": f.nodes, "clearances": sorted(f.clearances), "power_cap_w": f.power_cap_w,
            "capacity": _capacity(f, down, busy),
        })
    return out


def set_factory_state(live: Live, factory_id: str, state: str) -> dict[str, Any]:
    """Cordon (no new work), drain (no new work; running jobs checkpoint and are requeued) or uncordon."""
    if state not in FACTORY_STATES:
        raise ApiError(422, "invalid_request", f"unknown factory state {state!r}")
    now = live.clock.unix_s()
    with live.engine.begin() as conn:
        n = conn.execute(t.factories.update().where(t.factories.c.id == factory_id).values(state=state)).rowcount
        if n == 0:
            raise not_found("factory", factory_id)
        if state == "draining":
            rows = conn.execute(sa.select(t.jobs).where(t.jobs.c.factory_id == factory_id,
                                                        t.jobs.c.state.in_(("assigned", "running")))).all()
            for r in rows:
                conn.execute(t.jobs.update().where(t.jobs.c.id == r.id).values(
                    state="stopping", stop_reason="drain", updated_at_unix_s=now))
                add_event(conn, r.id, now, "stopping", {"reason": "drain", "factory_id": factory_id})
    return factory_docs(live, factory_id)[0]


def mint_agent_token(live: Live, factory_id: str) -> str:
    with live.engine.begin() as conn:
        if conn.execute(sa.select(t.factories.c.id).where(t.factories.c.id == factory_id)).first() is None:
            raise not_found("factory", factory_id)
        return mint_token(conn, "agent", live.clock.unix_s(), factory_id=factory_id)


def sweep_leases(live: Live) -> list[str]:
    """Declare factories silent past ``lost_after_s`` lost and requeue their jobs; returns the factories lost now.

    Requeued jobs fall back to their last committed checkpoint and get a new fencing token, so a zombie
    incarnation's reports are refused."""
    now = live.clock.unix_s()
    lost: list[str] = []
    with live.engine.begin() as conn:
        rows = conn.execute(sa.select(t.factories).where(t.factories.c.lost.is_(False),
                                                         t.factories.c.last_heartbeat_unix_s.is_not(None))).all()
        for r in rows:
            if now - r.last_heartbeat_unix_s <= live.settings.lost_after_s:
                continue
            conn.execute(t.factories.update().where(t.factories.c.id == r.id).values(lost=True))
            jobs = conn.execute(sa.select(t.jobs).where(t.jobs.c.factory_id == r.id,
                                                        t.jobs.c.state.in_(HOLDING))).all()
            if jobs:
                requeue_rows(conn, live, jobs, next_fence(conn, len(jobs)), "lease_lost",
                             f"factory {r.id} silent for more than {live.settings.lost_after_s:g} s")
            lost.append(r.id)
    return lost
