"""Every Prometheus metric superfactory exposes, defined once: name, type, unit, labels, help, producers.

The live control plane (``live/metrics.py``, scraped at ``/metrics``) and the twin's OpenMetrics writer
(``observe/openmetrics.py``, ``simulate --metrics-out``) both take their names from here, and the Grafana
dashboards and alert rules under ``deploy/`` query only these names, so one catalog keeps all of them in step.

Conventions (https://prometheus.io/docs/practices/naming/): the ``superfactory_`` prefix; base units in the
name (``_seconds``, ``_bytes``, ``_watts``, ``_joules``, ``_grams``); counters end in ``_total``; ratios are
0..1 and end in ``_ratio``. Two non-base units are kept because operators think in them and markets quote
them: ``usd`` (money) and the energy price in USD per megawatt-hour / carbon intensity in grams per
kilowatt-hour.

Label cardinality is bounded by construction:

- ``factory``, ``region``, ``market``: one value per declared site (tens).
- ``link``: one per declared WAN link, named ``A-B`` with ``A < B``.
- ``source``/``destination``: factory pairs.
- ``cause``: a failure cause from a fixed taxonomy (:data:`MAX_CAUSES` distinct values; the rest are ``other``).
- ``state``: a job lifecycle state (a closed enum).
- ``job_id``, ``job_name``, ``tenant``: job-level series exist only while the job holds GPUs, so they are
  bounded by the fleet's capacity, not by history (live: ``job_id`` is the store's id, ``job_name`` the
  submitted name; twin: ``job_id`` is the scenario's job id, ``job_name`` and ``tenant`` are empty).

Each metric names the worlds that produce it today (``twin``, ``live``); the integration tests evaluate every
dashboard query against each world through a real Prometheus and require data wherever the catalog says so.
"""

from __future__ import annotations

from dataclasses import dataclass

PREFIX = "superfactory_"
MAX_CAUSES = 32  # distinct ``cause`` label values before the rest fold into "other"

COUNTER = "counter"
GAUGE = "gauge"

_FACTORY = ("factory", "region")
_JOB = ("job_id", "job_name", "tenant", "factory")  # not "job": Prometheus reserves it for the scrape job


@dataclass(frozen=True, slots=True)
class MetricDef:
    """One metric family.

    Attributes:
        name: the sample name as it appears in PromQL (counters include ``_total``).
        type: ``"counter"`` or ``"gauge"``.
        unit: OpenMetrics unit (the name's unit suffix), or ``""`` for counts and ratios.
        labels: label names, in exposition order.
        help: one line saying what is measured, in which unit.
        worlds: the worlds that produce it today (``"twin"``, ``"live"``).
    """

    name: str
    type: str
    unit: str
    labels: tuple[str, ...]
    help: str
    worlds: frozenset[str]

    @property
    def family(self) -> str:
        """The family name (a counter's name without ``_total``), as OpenMetrics ``# TYPE`` lines use it."""
        return self.name.removesuffix("_total") if self.type == COUNTER else self.name


def _m(name: str, type_: str, unit: str, labels: tuple[str, ...], help_: str, worlds: str = "twin,live") -> MetricDef:
    return MetricDef(PREFIX + name, type_, unit, labels, help_, frozenset(w for w in worlds.split(",") if w))


METRICS: tuple[MetricDef, ...] = (
    # --- factories: capacity, leases, power and thermal headroom ---
    _m("factory_gpus", GAUGE, "", _FACTORY, "GPUs installed at the factory."),
    _m("factory_allocated_gpus", GAUGE, "", _FACTORY, "GPUs held by jobs (placed, running, checkpointing, moving)."),
    _m("factory_failed_nodes", GAUGE, "", _FACTORY, "Nodes currently down (failed, not yet repaired)."),
    _m("factory_lease_up", GAUGE, "", _FACTORY,
       "1 while the factory holds its lease (agent heartbeating; twin: site not lost), else 0."),
    _m("factory_power_cap_watts", GAUGE, "watts", _FACTORY, "Facility power cap, W."),
    _m("factory_power_watts", GAUGE, "watts", _FACTORY,
       "Facility power draw (IT x PUE, within the caps), W; twin: the hour's mean; live: metered by the control "
       "plane from the nodes jobs hold (busy vs idle node power of the declared systems) at each scrape."),
    _m("factory_it_power_watts", GAUGE, "watts", _FACTORY, "IT power draw, W; twin: the hour's mean."),
    _m("factory_cooling_capacity_watts", GAUGE, "watts", _FACTORY, "Heat the cooling plant can remove, W."),
    _m("factory_energy_joules_total", COUNTER, "joules", _FACTORY,
       "Facility energy used, J (live: the metered power integrated between scrapes)."),
    _m("factory_energy_cost_usd_total", COUNTER, "usd", _FACTORY,
       "Energy cost at the market price (with the factory's PPA share), USD."),
    _m("factory_carbon_grams_total", COUNTER, "grams", _FACTORY, "CO2 emitted for the energy used, g."),
    _m("factory_productive_flop_total", COUNTER, "", _FACTORY,
       "Training FLOP made durable by a checkpoint or completion (work lost to failures excluded; live: by "
       "checkpoint commits)."),
    _m("factory_energy_price_usd_per_megawatt_hour", GAUGE, "usd_per_megawatt_hour", (*_FACTORY, "market"),
       "Electricity price of the factory's market, USD/MWh."),
    _m("factory_carbon_intensity_grams_per_kilowatt_hour", GAUGE, "grams_per_kilowatt_hour", _FACTORY,
       "Grid carbon intensity at the factory, gCO2/kWh."),
    _m("node_failures_total", COUNTER, "", (*_FACTORY, "cause"), "Node failures, by cause."),
    _m("interruptions_total", COUNTER, "", (*_FACTORY, "cause"),
       "Unexpected job interruptions (a failure under a running job), by cause."),
    _m("placements_total", COUNTER, "", _FACTORY, "Jobs placed on the factory (starts, restarts, migrations in)."),
    _m("audit_refusals_total", COUNTER, "", _FACTORY,
       "Placements refused by a hard rule (sovereignty, carbon budget), audited."),
    # --- the queue ---
    _m("jobs", GAUGE, "", ("state", "tenant"), "Jobs per lifecycle state (pending = the queue depth)."),
    _m("job_completions_total", COUNTER, "", _FACTORY, "Jobs that finished their work."),
    # --- jobs (series exist while the job holds GPUs) ---
    _m("job_gpus", GAUGE, "", _JOB, "GPUs the job holds."),
    _m("job_progress_ratio", GAUGE, "ratio", _JOB, "Work done / total work, 0..1 (falls back on interruption)."),
    _m("job_flop_per_second", GAUGE, "", _JOB,
       "Effective training throughput, FLOP/s: productive progress over the last interval x the gang's "
       "theoretical rate (tokens/s scale by the same factor, FLOP per token being fixed for a model)."),
    _m("job_theoretical_flop_per_second", GAUGE, "", _JOB,
       "Theoretical training throughput of the gang, FLOP/s (GPUs x peak x declared MFU)."),
    _m("job_tokens_per_second", GAUGE, "", _JOB,
       "Training tokens/s: live, as the job process reports it; twin, the effective FLOP/s over 6 x the model's "
       "parameters, the parameters estimated from the declared checkpoint size (14 bytes per parameter)."),
    _m("job_restarts_total", COUNTER, "", _JOB, "Times the job was (re)placed after its first start."),
    _m("job_checkpoints_total", COUNTER, "", _JOB, "Checkpoints committed (durable)."),
    _m("job_checkpoint_bytes_total", COUNTER, "bytes", _JOB,
       "Bytes of committed checkpoints (the job's declared checkpoint size per commit)."),
    _m("job_checkpoint_duration_seconds", GAUGE, "seconds", _JOB,
       "Duration of the last committed checkpoint, from snapshot to durable, s (live: as the agent measured "
       "the save)."),
    # --- WAN links and the checkpoint mesh ---
    _m("link_capacity_bytes_per_second", GAUGE, "bytes_per_second", ("link",), "Nominal line rate, bytes/s."),
    _m("link_up", GAUGE, "", ("link",),
       "1 while the link carries traffic, 0 while partitioned (live: 0 when an endpoint's agent reports the "
       "other site's checkpoint storage unreachable or an endpoint lost its lease)."),
    _m("link_transmitted_bytes_total", COUNTER, "bytes", ("link",),
       "Bytes sent over the link (twin: migration transfers on the direct link; live: checkpoint fragments "
       "replicated to the other site's storage, as the agents measured them)."),
    _m("checkpoint_sync_queue_depth", GAUGE, "", ("link",),
       "Checkpoint shard transfers queued or in flight on the link, both directions summed (twin: a run that "
       "models its WAN; live: fragment uploads the agents see in flight towards the other site's storage)."),
    _m("checkpoint_quorum_wait_seconds", GAUGE, "seconds", _FACTORY,
       "Age of the oldest checkpoint write still waiting for its replica quorum, s; 0 when none waits."),
    # --- migrations ---
    _m("migrations_total", COUNTER, "", ("source", "destination", "outcome"),
       "Migrations by outcome: succeeded (started at the destination) or failed (requeued instead)."),
    _m("migration_transfer_bytes_total", COUNTER, "bytes", ("source", "destination"),
       "Checkpoint bytes moved by finished migrations (the job's declared checkpoint size)."),
    _m("migration_gpu_seconds_total", COUNTER, "seconds", ("source", "destination"),
       "GPU-seconds not training while migrations move (GPUs x time from the stop to the start elsewhere; "
       "twin: the transfer time)."),
    # --- the control plane itself ---
    _m("scheduler_cycles_total", COUNTER, "", (), "Decision cycles run by the scheduler.", "live"),
    _m("metrics_scrape_duration_seconds", GAUGE, "seconds", (), "Time spent building the last /metrics.", "live"),
)

BY_NAME: dict[str, MetricDef] = {m.name: m for m in METRICS}


def metric(name: str) -> MetricDef:
    """The definition of ``name`` (with or without the prefix); KeyError names the closest known metrics."""
    full = name if name.startswith(PREFIX) else PREFIX + name
    try:
        return BY_NAME[full]
    except KeyError:
        near = sorted(n for n in BY_NAME if full.split("_")[1] in n)[:5]
        raise KeyError(f"unknown metric {full!r}; similar: {', '.join(near) or 'none'}") from None


def produced_by(world: str) -> frozenset[str]:
    """Names of the metrics ``world`` (``"twin"`` or ``"live"``) produces today."""
    return frozenset(m.name for m in METRICS if world in m.worlds)


def link_name(a: str, b: str) -> str:
    """The ``link`` label of the WAN link between factories ``a`` and ``b`` (order-independent)."""
    x, y = sorted((a, b))
    return f"{x}-{y}"


def bounded_cause(cause: str, seen: set[str]) -> str:
    """A ``cause`` label value: the cause itself while fewer than :data:`MAX_CAUSES` are in use, else ``other``.

    ``seen`` is the caller's set of values already used (updated in place)."""
    c = cause.strip() or "unknown"
    if c in seen:
        return c
    if len(seen) >= MAX_CAUSES:
        return "other"
    seen.add(c)
    return c
