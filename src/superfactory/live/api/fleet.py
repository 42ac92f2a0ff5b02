"""Fleet routes: import, factories (capacity, cordon, drain, uncordon, agent tokens), policies, market
signals, the scheduler's actions. Reading needs any token; changing needs an admin token."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Path, Query

from superfactory.live.api.deps import ERRORS, AdminDep, LiveDep, PrincipalDep
from superfactory.live.api.schemas import (
    INT32,
    ActionOut,
    CycleOut,
    FactoryOut,
    FleetImportIn,
    FleetImportOut,
    PolicyIn,
    PolicyList,
    SignalHistory,
    SignalsIn,
    SignalsOut,
    TokenOut,
)
from superfactory.live.errors import ApiError
from superfactory.live.scheduler.service import active_policy, build_policy
from superfactory.live.services import fleet as svc
from superfactory.live.services import signals as sig
from superfactory.live.services.auth import require_role
from superfactory.live.store import tables as t
from superfactory.policy.registry import available

router = APIRouter(prefix="/v1", tags=["fleet"], responses=ERRORS)  # type: ignore[arg-type]
FactoryId = Annotated[str, Path(max_length=64, description="the factory's id")]


@router.post("/fleet/import", response_model=FleetImportOut)
def fleet_import(body: FleetImportIn, live: LiveDep, _: AdminDep) -> dict[str, Any]:
    """Declare factories, links, job defaults and price/carbon series from a scenario (name or YAML)."""
    return svc.import_scenario(live, body.scenario, body.yaml)


@router.get("/factories", response_model=list[FactoryOut])
def factories(live: LiveDep, p: PrincipalDep) -> list[dict[str, Any]]:
    """Factories with state, agent lease and capacity per accelerator."""
    require_role(p, "admin", "tenant")
    return svc.factory_docs(live)


@router.get("/factories/{factory_id}", response_model=FactoryOut)
def factory(factory_id: FactoryId, live: LiveDep, p: PrincipalDep) -> dict[str, Any]:
    require_role(p, "admin", "tenant")
    return svc.factory_docs(live, factory_id)[0]


@router.post("/factories/{factory_id}/cordon", response_model=FactoryOut)
def cordon(factory_id: FactoryId, live: LiveDep, _: AdminDep) -> dict[str, Any]:
    """No new work on this factory; jobs there keep running."""
    return svc.set_factory_state(live, factory_id, "cordoned")


@router.post("/factories/{factory_id}/drain", response_model=FactoryOut)
def drain(factory_id: FactoryId, live: LiveDep, _: AdminDep) -> dict[str, Any]:
    """No new work; running jobs checkpoint, stop and are placed elsewhere."""
    return svc.set_factory_state(live, factory_id, "draining")


@router.post("/factories/{factory_id}/uncordon", response_model=FactoryOut)
def uncordon(factory_id: FactoryId, live: LiveDep, _: AdminDep) -> dict[str, Any]:
    return svc.set_factory_state(live, factory_id, "active")


@router.post("/factories/{factory_id}/tokens", response_model=TokenOut, status_code=201)
def agent_token(factory_id: FactoryId, live: LiveDep, _: AdminDep) -> dict[str, Any]:
    """Mint a token for this factory's agent (shown once)."""
    return {"token": svc.mint_agent_token(live, factory_id)}


@router.get("/policies", response_model=PolicyList)
def policies(live: LiveDep, p: PrincipalDep) -> dict[str, Any]:
    """The placement policy in force and the registered ones."""
    require_role(p, "admin", "tenant")
    return {"active": active_policy(live), "available": available()}


@router.put("/policies/active", response_model=PolicyList)
def set_policy(body: PolicyIn, live: LiveDep, _: AdminDep) -> dict[str, Any]:
    """Choose the placement policy (and its parameters) the scheduler runs from its next cycle."""
    build_policy(body.name, body.params)  # refuse unknown names and bad parameters now, not in the scheduler
    svc.set_meta(live, "policy", {"name": body.name, "params": body.params})
    return {"active": active_policy(live), "available": available()}


@router.post("/signals", response_model=SignalsOut)
def push_signals(body: SignalsIn, live: LiveDep, _: AdminDep) -> dict[str, Any]:
    """Push market prices (USD/MWh) and grid carbon intensity (gCO2/kWh), one value per fleet hour."""
    return sig.push(live, [pt.model_dump() for pt in body.points])


@router.get("/signals/{kind}/{key}", response_model=SignalHistory)
def signal_history(kind: Annotated[str, Path(max_length=8)], key: Annotated[str, Path(max_length=64)],
                   live: LiveDep, p: PrincipalDep) -> dict[str, Any]:
    """The hourly history a snapshot carries for one market or grid (hour 0 to now)."""
    require_role(p, "admin", "tenant")
    return sig.history_doc(live, kind, key)


@router.post("/scheduler/cycle", response_model=CycleOut)
def cycle(live: LiveDep, _: AdminDep) -> dict[str, Any]:
    """Run one scheduling decision now (the scheduler also runs by itself every few seconds)."""
    sched = live.extras.get("scheduler")
    if sched is None:
        raise ApiError(409, "no_scheduler", "this server runs without a scheduler (started with --no-scheduler)")
    before = dict(sched.loop.outcomes) if sched.loop is not None else {}
    plan = sched.cycle()
    after = sched.loop.outcomes if sched.loop is not None else {}
    return {"actions": len(plan.actions), "waiting": len(plan.waiting),
            "outcomes": {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}}


@router.get("/actions", response_model=list[ActionOut])
def actions(live: LiveDep, _: AdminDep, after_id: Annotated[int, Query(ge=0, le=INT32)] = 0,
            limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[dict[str, Any]]:
    """What the policies decided and what became of each action (applied, refused with the reason)."""
    with live.engine.connect() as conn:
        rows = conn.execute(sa.select(t.actions).where(t.actions.c.id > after_id).order_by(t.actions.c.id)
                            .limit(limit)).all()
    return [dict(r._mapping) for r in rows]
