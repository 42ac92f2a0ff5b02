"""Compile a structurally valid :class:`ScenarioSpec` into a runnable :class:`Scenario`.

This pass checks what a schema cannot: unique ids, links and events that name known factories, markets and
grids that exist, jobs that fit in at least one factory (accelerator type, size, sovereignty clearance),
checkpoint intervals longer than their blocking time. Each problem is reported as ``(field path, message)``
so the loader can point at the YAML line.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from superfactory.domain.accelerator import ACCELERATORS, SYSTEMS
from superfactory.domain.factory import Factory, WanLink, build_clusters
from superfactory.domain.job import CheckpointSpec, InferenceService, RecoverySpec, TrainingJob
from superfactory.domain.reliability import (
    LLAMA3_GPUS,
    LLAMA3_HOURS,
    LLAMA3_NODES,
    LLAMA3_PLANNED,
    FailureModel,
    llama3_405b_model,
    model_from_table,
)
from superfactory.domain.signals import StepSeries
from superfactory.domain.topology import topology_problem
from superfactory.domain.transfer import WanSettings
from superfactory.domain.units import HOUR_S
from superfactory.errors import ScenarioError
from superfactory.policy.registry import available, make_policy
from superfactory.scenario import market_data, markets
from superfactory.scenario.demand import compile_inference
from superfactory.scenario.loaders import read_interruption_table
from superfactory.scenario.model import Scenario, ScenarioEvent
from superfactory.scenario.policies import did_you_mean, policy_problems
from superfactory.scenario.sanity import limit_problems, semantic_warnings
from superfactory.scenario.schema import JobSpec, ScenarioSpec, SeriesCsv
from superfactory.scenario.seeds import SeedTree
from superfactory.scenario.units import UnitError, parse_duration_s, parse_flop
from superfactory.scenario.workload import WorkloadTooLarge, generate_jobs

Path_ = tuple[str | int, ...]


class CompileErrors(Exception):
    """Collected semantic errors: a list of ``(path, message)``."""

    def __init__(self, errors: list[tuple[Path_, str]]) -> None:
        super().__init__(f"{len(errors)} error(s)")
        self.errors = errors


def compile_scenario(spec: ScenarioSpec, base_dir: Path | None = None, source: str = "<built-in>",
                     seed: int | None = None, locate: Callable[[Path_], str] | None = None) -> Scenario:
    """Build the domain scenario; raise :class:`CompileErrors` listing every problem found.

    Args:
        spec: the structurally valid scenario.
        base_dir: where relative CSV and trace paths are resolved.
        source: the file name reported in messages.
        seed: root of the seed tree (see :mod:`.seeds`); defaults to the scenario's ``seed``.
        locate: renders a field path as ``FILE:LINE: path`` for the warnings (default: ``source: path``).
    """
    limits = limit_problems(spec)
    if limits:  # refuse before building anything: a 10^7-rack factory would take minutes to build
        raise CompileErrors(limits)
    tree = SeedTree(spec.seed if seed is None else seed)
    errors: list[tuple[Path_, str]] = []
    factories = _factories(spec, errors)
    ids = {f.id for f in factories}
    links = _links(spec, ids, errors)
    hours = -(-spec.duration // HOUR_S) + 24
    prices, carbon = _signals(spec, factories, hours, base_dir, errors, tree)
    jobs = [_job(j, spec, ("jobs", i), factories, errors) for i, j in enumerate(spec.jobs)]
    generated: tuple[TrainingJob, ...] = ()
    if spec.workload is not None and factories:
        try:
            generated = generate_jobs(spec.workload, tuple(factories), spec.duration, spec.defaults,
                                      tree.rng("workload", spec.workload.seed))
        except WorkloadTooLarge as e:
            errors.append((("workload",), str(e)))
        jobs.extend(generated)
    seen: set[str] = set()
    for i, j in enumerate(jobs):
        if j is not None and j.id in seen:
            errors.append((("jobs", i, "id"), f"duplicate job id {j.id!r}"))
        if j is not None:
            seen.add(j.id)
    services = tuple(
        InferenceService(s.id, s.model, s.weights, s.accelerator, s.gpus_per_replica, s.slo_p99_ms, tuple(s.pops))
        for s in spec.services
    )
    inference = compile_inference(spec, services, factories, base_dir, errors, tree)
    events = _events(spec, ids, links, errors)
    failure_model = _failure_model(spec, base_dir, errors)
    errors.extend(policy_problems(spec.policy, dict(spec.policy_params)))
    wan = _wan(spec, errors)
    tree.seed("failures", spec.failures.seed)
    tree.seed("policy")
    if errors:
        raise CompileErrors(errors)
    where = locate or (lambda loc: f"{source}: {'.'.join(map(str, loc))}")
    warnings = tuple(f"{where(loc)}: {msg}" for loc, msg in semantic_warnings(spec, factories, links, jobs,
                                                                                spec.duration))
    return Scenario(
        name=spec.name, description=spec.description, seed=tree.root, duration_s=spec.duration,
        factories=tuple(factories), links=tuple(links), jobs=tuple(j for j in jobs if j is not None),
        services=services, prices=prices, carbon=carbon, failure_model=failure_model, events=tuple(events),
        policy=spec.policy, policy_params=dict(spec.policy_params), source=source, inference=inference,
        seeds=dict(sorted(tree.effective.items())), pinned_seeds=frozenset(tree.pinned), warnings=warnings,
        generated_jobs=frozenset(j.id for j in generated), spec=spec, base_dir=base_dir, wan=wan,
    )


def _wan(spec: ScenarioSpec, errors: list[tuple[Path_, str]]) -> WanSettings | None:
    """The ``wan:`` block as domain settings; its policy must be a ``wan`` role policy that constructs."""
    w = spec.wan
    if w is None:
        return None
    names = list(available(role="wan"))
    if w.policy not in names:
        errors.append((("wan", "policy"), f"unknown wan policy {w.policy!r}{did_you_mean(w.policy, names)}; "
                       f"wan policies are: {', '.join(names)}"))
    else:
        try:
            make_policy(w.policy, **w.policy_params)
        except (TypeError, ValueError) as e:
            errors.append((("wan", "policy_params"), f"wan policy {w.policy!r}: bad parameters: {e}"))
    if w.quorum > w.copies:
        errors.append((("wan", "quorum"), f"quorum {w.quorum} is more than copies {w.copies}"))
    return WanSettings(w.policy, tuple(sorted(w.policy_params.items())), w.copies, w.quorum, w.critical_share,
                       w.inference_share, w.barrier_jitter, w.stall_at_barrier, w.queue_alarm,
                       w.durability_slo)


def _factories(spec: ScenarioSpec, errors: list[tuple[Path_, str]]) -> list[Factory]:
    out: list[Factory] = []
    seen: set[str] = set()
    for i, fs in enumerate(spec.factories):
        if fs.id in seen:
            errors.append((("factories", i, "id"), f"duplicate factory id {fs.id!r}"))
        seen.add(fs.id)
        out.append(Factory(
            id=fs.id, region=fs.region, market=fs.market, grid=fs.grid or fs.market, power_cap_w=fs.power_cap,
            cooling_capacity_w=fs.cooling_capacity, pue=fs.pue, clearances=frozenset(fs.clearances),
            jurisdiction=fs.jurisdiction, clusters=build_clusters(
                [(b.system, b.node_count()) for b in fs.systems],
                [(b.nodes_per_rack or 0, b.nodes_per_leaf or 0, b.leaves_per_hall or 0, b.oversubscription)
                 for b in fs.systems]),
            cloud_region=fs.cloud_region, timezone_offset_h=fs.timezone_offset_h,
            ppa_share=fs.tariff.ppa_share, ppa_usd_per_mwh=fs.tariff.ppa_price or 0.0,
        ))
        for bi, c in enumerate(out[-1].clusters):
            problem = topology_problem(c)
            if problem is not None:
                errors.append((("factories", i, "systems", bi), problem))
        if fs.power_cap <= 0:
            errors.append((("factories", i, "power_cap"), "must be positive"))
        if fs.cooling_capacity <= 0:
            errors.append((("factories", i, "cooling_capacity"), "must be positive"))
    return out


def _links(spec: ScenarioSpec, ids: set[str], errors: list[tuple[Path_, str]]) -> list[WanLink]:
    out = []
    for i, lk in enumerate(spec.links):
        for end in ("a", "b"):
            name = getattr(lk, end)
            if name not in ids:
                errors.append((("links", i, end), f"unknown factory {name!r}; factories are {sorted(ids)}"))
        if lk.a == lk.b:
            errors.append((("links", i), "a link must join two different factories"))
        out.append(WanLink(lk.a, lk.b, lk.bandwidth, lk.latency, lk.egress_usd_per_gb))
    return out


def _csv_series(c: SeriesCsv, base_dir: Path | None, name: str, unit: str, path: Path_,
                errors: list[tuple[Path_, str]]) -> StepSeries | None:
    p = Path(c.csv)
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    scale = c.scale * (markets.LBS_PER_MWH_TO_G_PER_KWH if c.unit == "lbs_per_mwh" else 1.0)
    try:
        return markets.read_series_csv(p, c.column, c.step, f"{name}@file:{p.name}", unit, scale)
    except FileNotFoundError:
        errors.append(((*path, "csv"), f"file not found: {p}"))
    except ValueError as e:
        errors.append(((*path, "csv"), str(e)))
    return None


def _signals(spec: ScenarioSpec, factories: list[Factory], hours: int, base_dir: Path | None,
             errors: list[tuple[Path_, str]], tree: SeedTree,
             ) -> tuple[dict[str, StepSeries], dict[str, StepSeries]]:
    """Hourly prices per market and carbon per grid; each synthetic series on its own seed-tree stream."""
    prices: dict[str, StepSeries] = {}
    carbon: dict[str, StepSeries] = {}
    tz = {f.market: f.timezone_offset_h for f in factories}
    tz_grid = {f.grid: f.timezone_offset_h for f in factories}
    window = _window(spec, errors)
    for i, f in enumerate(factories):
        if f.market not in prices:
            ms = spec.markets.get(f.market)
            if ms is not None and ms.csv is not None:
                s = _csv_series(ms.csv, base_dir, f"price:{f.market}", "USD/MWh", ("markets", f.market), errors)
                if s is not None:
                    prices[f.market] = s
            elif window is not None and market_data.has_real_prices(f.market):
                _real(partial(market_data.real_prices, f.market, window, hours), prices, f.market,
                      ("factories", i, "market"), errors)
            elif f.market in markets.MARKETS:
                prof = markets.MARKETS[f.market]
                if ms is not None:
                    prof = markets.with_overrides(prof, ms.mean_usd_per_mwh, ms.day_night_ratio)
                rng = tree.rng(f"prices:{f.market}", ms.seed if ms is not None else None)
                prices[f.market] = markets.synthetic_prices(prof, hours, rng, tz[f.market])
            else:
                known = sorted(set(markets.MARKETS) | set(spec.markets))
                errors.append(((
                    "factories", i, "market"),
                    f"unknown market {f.market!r}; built-in markets are {known} (or define it under 'markets:' "
                    "with a csv)" + ("; it has real 2023 prices: set a 'window' such as 2023-08"
                                     if market_data.has_real_prices(f.market) else ""),
                ))
        if f.grid not in carbon:
            gs = spec.grids.get(f.grid)
            if gs is not None and gs.csv is not None:
                s = _csv_series(gs.csv, base_dir, f"carbon:{f.grid}", "gCO2/kWh", ("grids", f.grid), errors)
                if s is not None:
                    carbon[f.grid] = s
            elif window is not None and market_data.has_real_carbon(f.grid):
                basis = gs.basis if gs is not None else "direct"
                _real(partial(market_data.real_carbon, f.grid, window, hours, basis), carbon, f.grid,
                      ("factories", i, "grid"), errors)
            elif f.grid in markets.GRIDS or (gs is not None and gs.mean_g_per_kwh is not None):
                gprof = markets.GRIDS.get(f.grid, markets.GridProfile(f.grid, 0.0, 0.0, 0.05))
                if gs is not None and gs.mean_g_per_kwh is not None:
                    gprof = markets.GridProfile(f.grid, gs.mean_g_per_kwh, gprof.solar_dip, gprof.sigma)
                rng = tree.rng(f"carbon:{f.grid}", gs.seed if gs is not None else None)
                carbon[f.grid] = markets.synthetic_carbon(gprof, hours, rng, tz_grid[f.grid])
            else:
                errors.append((("factories", i, "grid"),
                               f"unknown grid {f.grid!r}; built-in grids are {sorted(markets.GRIDS)} (or define "
                               "it under 'grids:' with mean_g_per_kwh or a csv)"
                               + ("; it has real 2023 carbon data: set a 'window' such as 2023-08"
                                  if market_data.has_real_carbon(f.grid) else "")))
    return prices, carbon


def _window(spec: ScenarioSpec, errors: list[tuple[Path_, str]]) -> market_data.Window | None:
    """The scenario's real-data window (see :mod:`.market_data`), checked against its duration."""
    if spec.window is None:
        return None
    try:
        w = market_data.parse_window(spec.window)
    except ValueError as e:
        errors.append((("window",), str(e)))
        return None
    if spec.duration > w.hours * HOUR_S:
        errors.append((("duration",), f"duration {spec.duration / 86400:g} d is longer than the window "
                       f"{w.text!r} ({w.hours / 24:g} d of real data); shorten it or widen the window"))
    return w


def _real(load: Callable[[], StepSeries], into: dict[str, StepSeries], key: str, path: Path_,
          errors: list[tuple[Path_, str]]) -> None:
    try:
        into[key] = load()
    except ScenarioError as e:
        errors.append((path, str(e)))


def _job(js: JobSpec, spec: ScenarioSpec, path: Path_, factories: list[Factory],
         errors: list[tuple[Path_, str]]) -> TrainingJob | None:
    d = spec.defaults
    ck = js.checkpoint or d.checkpoint
    rc = js.recovery or d.recovery
    mfu = js.mfu or d.mfu
    peak = ACCELERATORS[js.accelerator].bf16_dense_tflops * 1e12
    try:
        if isinstance(js.work, str) and js.work.strip()[-1:].isalpha() and not js.work.strip().endswith("FLOP"):
            work_flop = parse_duration_s(js.work) * js.gpus * peak * mfu
        else:
            work_flop = parse_flop(js.work)
    except UnitError as e:
        errors.append(((*path, "work"), f"{e} (work is compute like '3.8e25FLOP' or productive time like '12d')"))
        return None
    if ck.blocking >= ck.interval:
        errors.append(((*path, "checkpoint", "interval"),
                       f"checkpoint interval ({ck.interval} s) must exceed its blocking time ({ck.blocking} s)"))
    if js.tp_size > ACCELERATORS[js.accelerator].nvlink_domain_gpus:
        errors.append(((*path, "tp_size"), f"tp_size {js.tp_size} exceeds the {js.accelerator} NVLink domain "
                       f"({ACCELERATORS[js.accelerator].nvlink_domain_gpus} GPUs)"))
    ids = {f.id for f in factories}
    if js.home is not None and js.home not in ids:
        errors.append(((*path, "home"), f"unknown factory {js.home!r}; factories are {sorted(ids)}"))
    classes = frozenset(js.sovereignty)
    fits = [f for f in factories if f.gpus_of(js.accelerator) >= js.gpus and classes <= f.clearances]
    if factories and not fits:
        biggest = max(factories, key=lambda f: f.gpus_of(js.accelerator))
        why = (f"the largest {js.accelerator} factory is {biggest.id} with {biggest.gpus_of(js.accelerator)} GPUs"
               if biggest.gpus_of(js.accelerator) < js.gpus else
               f"no factory with enough {js.accelerator} GPUs is cleared for {sorted(classes)}")
        errors.append(((*path, "gpus"), f"job {js.id!r} fits in no factory: needs {js.gpus} {js.accelerator} "
                       f"GPUs{' cleared for ' + str(sorted(classes)) if classes else ''}; {why}"))
    return TrainingJob(
        id=js.id, accelerator=js.accelerator, gpus=js.gpus, work_flop=work_flop, mfu=mfu, submit_s=js.submit,
        checkpoint=CheckpointSpec(ck.interval, ck.blocking, ck.size, ck.write_bandwidth),
        recovery=RecoverySpec(rc.detect, rc.restart, rc.hot_swap), priority=js.priority, migratable=js.migratable,
        sovereignty=classes, carbon_budget_tco2=js.carbon_budget_tco2, home_factory=js.home, tp_size=js.tp_size,
        segment_gpus=js.segment_gpus, preemptible=js.preemptible,
    )


def _events(spec: ScenarioSpec, ids: set[str], links: list[WanLink],
            errors: list[tuple[Path_, str]]) -> list[ScenarioEvent]:
    out = []
    pairs = {frozenset((lk.a, lk.b)) for lk in links}
    for i, ev in enumerate(spec.events):
        if ev.at >= spec.duration:
            errors.append((("events", i, "at"), f"event at {ev.at} s is after the scenario ends ({spec.duration} s)"))
        if ev.kind == "factory_outage":
            assert ev.factory is not None
            if ev.factory not in ids:
                errors.append((("events", i, "factory"),
                               f"unknown factory {ev.factory!r}; factories are {sorted(ids)}"))
            out.append(ScenarioEvent(ev.at, ev.kind, ev.duration, factory=ev.factory))
        elif ev.kind == "price_shock":
            assert ev.market is not None and ev.factor is not None
            if ev.market not in {f.market for f in spec.factories}:
                errors.append((("events", i, "market"),
                               f"no factory is in market {ev.market!r}; markets are "
                               f"{sorted({f.market for f in spec.factories})}"))
            out.append(ScenarioEvent(ev.at, ev.kind, ev.duration, market=ev.market, factor=ev.factor))
        elif ev.kind == "link_degradation":
            assert ev.factory is not None and ev.domain is not None
            fs = next((f for f in spec.factories if f.id == ev.factory), None)
            if fs is None:
                errors.append((("events", i, "factory"),
                               f"unknown factory {ev.factory!r}; factories are {sorted(ids)}"))
            else:
                n_dom = sum(-(-b.node_count() // SYSTEMS[b.system].nodes_per_domain) for b in fs.systems)
                if ev.domain >= n_dom:
                    errors.append((("events", i, "domain"),
                                   f"{ev.factory} has NVLink domains 0..{n_dom - 1}, not {ev.domain}"))
            factor = ev.factor if ev.factor is not None else 0.125  # "8x less bandwidth"
            if factor > 1:
                errors.append((("events", i, "factor"), "a degradation factor is a fraction of nominal, <= 1"))
            out.append(ScenarioEvent(ev.at, ev.kind, ev.duration, factory=ev.factory, factor=factor,
                                     domain=ev.domain))
        else:
            assert ev.link is not None
            a, b = ev.link
            if frozenset((a, b)) not in pairs:
                errors.append((("events", i, "link"), f"no link between {a!r} and {b!r} in 'links'"))
            out.append(ScenarioEvent(ev.at, ev.kind, ev.duration, link=(a, b)))
    return sorted(out, key=lambda e: (e.at_s, e.kind, e.factory, e.link))


def _failure_model(spec: ScenarioSpec, base_dir: Path | None, errors: list[tuple[Path_, str]]) -> FailureModel:
    fs = spec.failures
    if fs.table == "llama3-405b":
        model = llama3_405b_model()
    else:
        p = Path(fs.table)
        if not p.is_absolute() and base_dir is not None:
            p = base_dir / p
        try:
            rows = read_interruption_table(p)
        except (OSError, KeyError, ValueError) as e:
            errors.append((("failures", "table"), f"cannot read interruption table {p}: {e}"))
            return llama3_405b_model()
        model = model_from_table(rows, LLAMA3_GPUS, LLAMA3_NODES, LLAMA3_HOURS, LLAMA3_PLANNED)
    model = model.scaled(fs.rate_scale)
    if not fs.planned:
        model = FailureModel(model.causes, 0.0)
    return model
