"""Size limits (errors) and semantic warnings: checks on a scenario beyond its schema.

*Limits* bound what one twin run is built for, so a typo such as ``racks: 10000000`` or ``duration: 1e30d`` is
refused at validation with the limit and the reason instead of being discovered by a run that hangs. They are
checked before anything is built from the spec (building 10^7 racks' topology would itself hang).

*Warnings* flag scenarios that are valid but cannot do what they say: a factory whose power cap cannot feed one
node, a job no factory can ever power, a job submitted after the run ends, a checkpoint that takes longer to
write than its interval, a WAN link too slow to move any job's checkpoint within the run. They are listed by
``superfactory scenario validate`` and ``simulate`` (and under ``warnings`` in ``--json`` output); the run
still happens.
"""

from __future__ import annotations

from superfactory.domain.accelerator import SYSTEMS
from superfactory.domain.factory import Factory, WanLink
from superfactory.domain.job import TrainingJob
from superfactory.domain.units import DAY_S
from superfactory.scenario.schema import ScenarioSpec

Path_ = tuple[str | int, ...]

#: one run covers at most a year: signals are hourly series and the tables keep a row per factory-hour
MAX_DURATION_S = 366 * DAY_S
#: the twin keeps per-node state arrays and builds every factory's topology: 1,000,000 GPUs is about ten times
#: the largest fleet announced today and still builds in seconds
MAX_FLEET_GPUS = 1_000_000
#: explicit jobs, as for generated ones (see workload.MAX_GENERATED_JOBS): policies scan the queue at every decision
MAX_JOBS = 50_000
#: scripted events: each is a kernel event plus its consequences
MAX_EVENTS = 10_000


def _watts(w: float) -> str:
    return f"{w / 1e6:,.3g} MW" if w >= 1e6 else f"{w / 1e3:,.3g} kW"


def _days(seconds: float) -> str:
    return f"{seconds / DAY_S:,.4g} days"


def limit_problems(spec: ScenarioSpec) -> list[tuple[Path_, str]]:
    """Errors for a scenario beyond what one run is built for (each names the limit and why)."""
    out: list[tuple[Path_, str]] = []
    if spec.duration > MAX_DURATION_S:
        out.append((("duration",), f"{_days(spec.duration)} is longer than the limit of {_days(MAX_DURATION_S)} "
                    "per run (hourly signals and per-hour tables are sized for a year); split the study"))
    gpus = 0
    for i, fs in enumerate(spec.factories):
        for b, blk in enumerate(fs.systems):
            n = blk.node_count() * SYSTEMS[blk.system].gpus_per_node
            gpus += n
            if n > MAX_FLEET_GPUS:
                out.append((("factories", i, "systems", b), f"{n:,} GPUs in one block; the twin's limit is "
                            f"{MAX_FLEET_GPUS:,} GPUs in the whole fleet (per-node state; ~10x today's largest "
                            "fleets)"))
    if gpus > MAX_FLEET_GPUS and not out:
        out.append((("factories",), f"the fleet has {gpus:,} GPUs; the twin's limit is {MAX_FLEET_GPUS:,} "
                    "(per-node state; ~10x today's largest fleets)"))
    if len(spec.jobs) > MAX_JOBS:
        out.append((("jobs",), f"{len(spec.jobs):,} jobs; the limit is {MAX_JOBS:,} (policies scan the queue at "
                    "every decision)"))
    if len(spec.events) > MAX_EVENTS:
        out.append((("events",), f"{len(spec.events):,} events; the limit is {MAX_EVENTS:,}"))
    return out


def _node_draw_w(f: Factory) -> list[tuple[str, float, float]]:
    """(system, training W, idle W) per node for each cluster of ``f``."""
    return [(c.system.name, c.system.training_power_per_node_w, c.system.idle_power_per_node_w) for c in f.clusters]


def _it_cap_w(f: Factory) -> float:
    return min(f.power_cap_w / f.pue, f.cooling_capacity_w)


def _powerable_gpus(f: Factory, accelerator: str) -> int:
    """GPUs of ``accelerator`` that can train at once under the caps, with every other node idle."""
    idle = sum(c.nodes * c.system.idle_power_per_node_w for c in f.clusters)
    room = _it_cap_w(f) - idle
    total = 0
    for c in f.clusters_of(accelerator):
        extra = c.system.training_power_per_node_w - c.system.idle_power_per_node_w
        n = c.nodes if extra <= 0 else min(c.nodes, max(0, int(room // extra)))
        total += n * c.system.gpus_per_node
        room -= n * extra
    return total


def semantic_warnings(spec: ScenarioSpec, factories: list[Factory], links: list[WanLink],
                      jobs: list[TrainingJob | None], duration_s: int) -> list[tuple[Path_, str]]:
    """Things the scenario says that the twin cannot do (see the module docstring)."""
    out: list[tuple[Path_, str]] = []
    for i, f in enumerate(factories):
        cap_w = _it_cap_w(f)
        which = "power_cap" if f.power_cap_w / f.pue <= f.cooling_capacity_w else "cooling_capacity"
        for system, train_w, _ in _node_draw_w(f):
            if train_w > cap_w:
                out.append((("factories", i, which), f"one training {system} node draws {_watts(train_w)} of "
                            f"IT power but the caps allow {_watts(cap_w)} ({which}, PUE {f.pue:g}): no job "
                            f"can ever start in {f.id}"))
        idle_w = sum(c.nodes * c.system.idle_power_per_node_w for c in f.clusters)
        if idle_w > cap_w:
            out.append((("factories", i, which), f"{f.id}'s idle nodes alone draw {_watts(idle_w)} of IT power, "
                        f"above the {_watts(cap_w)} the caps allow; the twin bills at most the cap (nodes "
                        "beyond it are dark)"))
    for i, j in enumerate(jobs):
        if j is None or i >= len(spec.jobs):
            continue
        path: Path_ = ("jobs", i)
        if j.submit_s >= duration_s:
            out.append(((*path, "submit"), f"job {j.id!r} is submitted at {_days(j.submit_s)}, when the run "
                        f"({_days(duration_s)}) is over: it never runs"))
        fits = [f for f in factories if f.gpus_of(j.accelerator) >= j.gpus and j.sovereignty <= f.clearances]
        if fits and all(_powerable_gpus(f, j.accelerator) < j.gpus for f in fits):
            best = max(fits, key=lambda f: _powerable_gpus(f, j.accelerator))
            out.append(((*path, "gpus"), f"job {j.id!r} needs {j.gpus} {j.accelerator} GPUs training at once but "
                        f"the power and cooling caps let at most {_powerable_gpus(best, j.accelerator)} train "
                        f"(in {best.id}): it never starts"))
        ck = j.checkpoint
        if ck.write_bandwidth_gbps > 0 and ck.size_bytes > 0:
            write_s = ck.size_bytes * 8 / (ck.write_bandwidth_gbps * 1e9)
            if write_s >= ck.interval_s:
                out.append(((*path, "checkpoint", "write_bandwidth"), f"writing {ck.size_bytes / 1e12:,.3g} TB at "
                            f"{ck.write_bandwidth_gbps:g} Gb/s takes {write_s:,.0f} s, longer than the "
                            f"{ck.interval_s} s checkpoint interval: checkpoints never finish before the next one"))
    biggest = max((j.checkpoint.size_bytes for j in jobs if j is not None), default=0.0)
    if spec.workload is not None:
        per_gpu = spec.workload.checkpoint_per_gpu
        biggest = max(biggest, per_gpu * max(s.gpus for s in spec.workload.sizes))
        for acc in sorted({a for f in factories for a in f.accelerators}):
            max_single = max(f.gpus_of(acc) for f in factories)
            if all(s.gpus > max_single for s in spec.workload.sizes):
                out.append((("workload", "sizes"), f"no gang size of the mix fits a {acc} factory (largest: "
                            f"{max_single} GPUs): the workload has no {acc} jobs"))
    for i, lk in enumerate(links):
        move_s = biggest * 8 / (lk.bandwidth_gbps * 1e9) if biggest > 0 else 0.0
        if move_s > duration_s:
            out.append((("links", i, "bandwidth"), f"moving the largest checkpoint ({biggest / 1e12:,.3g} TB) over "
                        f"{lk.a}-{lk.b} at {lk.bandwidth_gbps:g} Gb/s takes {_days(move_s)}, longer than the run: "
                        "no migration over this link can finish"))
    return out

