"""simulate --metrics-out: the twin run as OpenMetrics text that promtool backfills, folded from the run's events.

The fold is checked against the twin's own accounting (energy, durable work, completions) and against the
scripted disturbances of deploy/examples/metrics-demo.yaml (outage, partition, price shock, degraded domain).
"""

from __future__ import annotations

import itertools
import math
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from superfactory.domain.events import EventKind
from superfactory.errors import SuperfactoryError
from superfactory.observe.metrics_catalog import BY_NAME, METRICS, produced_by
from superfactory.observe.openmetrics import DEFAULT_START_UNIX_S, parse_start, write_twin_metrics
from superfactory.scenario.loader import load_scenario
from superfactory.sim.twin import TwinResult, run_twin

ROOT = Path(__file__).resolve().parents[3]
DEMO = ROOT / "deploy" / "examples" / "metrics-demo.yaml"
STEP_S = 300
H = 3600

Samples = dict[str, dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]]


@pytest.fixture(scope="module")
def run() -> TwinResult:
    return run_twin(load_scenario(str(DEMO)))


@pytest.fixture(scope="module")
def om_file(run: TwinResult, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("om") / "demo.om"
    counts = write_twin_metrics(run.scenario, run.events, run.hours, path, step_s=STEP_S)
    assert counts["series"] > 100 and counts["samples"] > counts["series"]
    return path


def _labels(text: str) -> tuple[tuple[str, str], ...]:
    if not text:
        return ()
    pairs = []
    for part in text.split('",'):
        k, v = part.split('="', 1)
        pairs.append((k, v.rstrip('"')))
    return tuple(pairs)


def parse(path: Path) -> tuple[Samples, list[str]]:
    """Samples by name and labels, and the order in which families' TYPE lines appeared."""
    samples: Samples = defaultdict(lambda: defaultdict(list))
    families: list[str] = []
    lines = path.read_text().splitlines()
    assert lines[-1] == "# EOF"
    for line in lines[:-1]:
        if line.startswith("# TYPE "):
            families.append(line.split()[2])
            continue
        if line.startswith("#"):
            continue
        head, value, ts = line.rsplit(" ", 2)
        name, _, rest = head.partition("{")
        samples[name][_labels(rest.rstrip("}"))].append((int(ts) - DEFAULT_START_UNIX_S, float(value)))
    return samples, families


@pytest.fixture(scope="module")
def parsed(om_file: Path) -> Samples:
    return parse(om_file)[0]


def at(series: list[tuple[int, float]], t: int) -> float:
    return dict(series)[t]


def test_file_is_wellformed_and_uses_only_catalog_names(om_file: Path) -> None:
    samples, families = parse(om_file)
    assert len(families) == len(set(families)), "a family's TYPE appears twice"
    runs: list[str] = []  # families and series in the order their lines appear, one entry per contiguous run
    series_runs: list[str] = []
    for line in om_file.read_text().splitlines():
        if line.startswith("#"):
            continue
        series = line.rsplit(" ", 2)[0]
        family = BY_NAME[series.partition("{")[0]].family
        if not runs or runs[-1] != family:
            runs.append(family)
        if not series_runs or series_runs[-1] != series:
            series_runs.append(series)
    assert runs == families, "families interleaved, or samples before their TYPE line"
    assert len(series_runs) == len(set(series_runs)), "a series' samples are not contiguous"
    assert set(samples) <= produced_by("twin")
    for name, by_labels in samples.items():
        allowed = set(BY_NAME[name].labels)
        for labels, points in by_labels.items():
            assert {k for k, _ in labels} <= allowed, (name, labels)
            times = [t for t, _ in points]
            assert times == sorted(set(times)), f"{name}{labels}: timestamps not strictly increasing"
            assert all(t % STEP_S == 0 for t in times)
            if BY_NAME[name].type == "counter":
                values = [v for _, v in points]
                assert all(b >= a - 1e-6 * abs(a) for a, b in itertools.pairwise(values)), name


def test_every_twin_metric_of_the_catalog_has_samples(parsed: Samples) -> None:
    missing = produced_by("twin") - set(parsed)
    assert not missing, f"catalog says the twin produces these but the demo run wrote none: {sorted(missing)}"


def test_totals_agree_with_the_twins_accounting(run: TwinResult, parsed: Samples) -> None:
    end = run.scenario.duration_s

    def final(name: str) -> float:
        return sum(at(points, end) for points in parsed[name].values())

    energy_j = sum(h.facility_energy_mwh for h in run.hours) * 3.6e9
    assert math.isclose(final("superfactory_factory_energy_joules_total"), energy_j, rel_tol=1e-9)
    assert math.isclose(final("superfactory_factory_energy_cost_usd_total"), sum(h.cost_usd for h in run.hours),
                        rel_tol=1e-9)
    durable = sum(j.committed_s * j.job.flop_per_s for j in run.jobs)
    assert durable > 0
    assert math.isclose(final("superfactory_factory_productive_flop_total"), durable, rel_tol=1e-9)
    completed = sum(1 for j in run.jobs if j.completed_s >= 0)
    assert final("superfactory_job_completions_total") == completed
    migrations = sum(1 for e in run.events if e.kind is EventKind.JOB_MIGRATED)
    assert final("superfactory_migrations_total") <= migrations  # a move still under way at the end is not counted
    failures = sum(1 for e in run.events if e.kind is EventKind.NODE_FAILED)
    assert final("superfactory_node_failures_total") == failures


def test_allocation_never_exceeds_capacity_and_queue_adds_up(run: TwinResult, parsed: Samples) -> None:
    gpus = parsed["superfactory_factory_gpus"]
    for labels, points in parsed["superfactory_factory_allocated_gpus"].items():
        cap = dict(gpus[labels])
        assert all(0 <= v <= cap[t] for t, v in points), labels
    by_time: dict[int, float] = defaultdict(float)
    for points in parsed["superfactory_jobs"].values():
        for t, v in points:
            by_time[t] += v
    submitted = {e.job for e in run.events if e.kind is EventKind.JOB_SUBMITTED}
    assert by_time[run.scenario.duration_s] == len(submitted)


def test_scripted_disturbances_show(parsed: Samples) -> None:
    lease = {dict(lb)["factory"]: p for lb, p in parsed["superfactory_factory_lease_up"].items()}
    assert at(lease["atlanta"], 13 * H) == 1 and at(lease["atlanta"], 15 * H) == 0 and at(lease["atlanta"], 17 * H) == 1
    assert all(v == 1 for _, v in lease["texas"])
    link = {dict(lb)["link"]: p for lb, p in parsed["superfactory_link_up"].items()}
    assert at(link["texas-wisconsin"], 18 * H + 1800) == 0 and at(link["texas-wisconsin"], 20 * H) == 1
    prices = parsed["superfactory_factory_energy_price_usd_per_megawatt_hour"]
    price = {dict(lb)["factory"]: p for lb, p in prices.items()}
    assert at(price["texas"], 21 * H) > 5 * at(price["texas"], 19 * H)


def test_silent_degradation_shows_as_low_efficiency(parsed: Samples) -> None:
    """Jobs on the two degraded NVLink domains in wisconsin run below 85 % of theoretical; healthy ones above."""
    theo = parsed["superfactory_job_theoretical_flop_per_second"]
    ratios: dict[str, list[float]] = defaultdict(list)
    for labels, points in parsed["superfactory_job_flop_per_second"].items():
        t_of = dict(theo[labels])
        ratios[dict(labels)["factory"]] += [v / t_of[t] for t, v in points]
    assert min(ratios["wisconsin"]) < 0.85
    healthy = sorted(ratios["atlanta"] + ratios["texas"])
    assert healthy[len(healthy) // 2] > 0.95


def test_same_run_same_bytes(run: TwinResult, om_file: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.om"
    write_twin_metrics(run.scenario, run.events, run.hours, again, step_s=STEP_S)
    assert again.read_bytes() == om_file.read_bytes()


def test_promtool_backfills_the_file(om_file: Path, tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package 'prometheus'; scripts/system-deps.sh installs it)")
    out = tmp_path / "blocks"
    r = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(om_file), str(out)],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr + r.stdout
    blocks = [p for p in out.iterdir() if (p / "meta.json").is_file()]
    assert len(blocks) >= 18  # 36 h of data in 2-hour blocks


def test_parse_start() -> None:
    assert parse_start(None, 100) == DEFAULT_START_UNIX_S
    assert parse_start("2023-08-01", 0) == DEFAULT_START_UNIX_S
    assert parse_start("2023-08-01T02:00:00+02:00", 0) == DEFAULT_START_UNIX_S
    assert parse_start("now", 3600, now_unix_s=1_800_000_000.5) == 1_800_000_000 - 3600
    with pytest.raises(SuperfactoryError, match="ISO 8601"):
        parse_start("yesterday", 0)


def _sf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "superfactory.cli.main", *args], capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.mark.parametrize(("flags", "message"), [
    (["--metrics-step", "0"], "--metrics-step 0"),
    (["--metrics-start", "tomorrow"], "--metrics-start 'tomorrow'"),
])
def test_cli_refuses_bad_metrics_flags(tmp_path: Path, flags: list[str], message: str) -> None:
    r = _sf("simulate", str(DEMO), "--metrics-out", str(tmp_path / "x.om"), *flags)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    r = _sf("simulate", str(DEMO), "--metrics-out", str(tmp_path / "no" / "such" / "x.om"))
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_cli_writes_the_file(tmp_path: Path) -> None:
    out = tmp_path / "run.om"
    r = _sf("simulate", str(DEMO), "--json", "--metrics-out", str(out), "--metrics-step", "600")
    assert r.returncode == 0, r.stderr
    assert r.stdout.lstrip().startswith("{")  # --json keeps stdout pure JSON
    text = out.read_text()
    assert text.endswith("# EOF\n") and "superfactory_factory_lease_up" in text


def test_catalog_follows_prometheus_conventions() -> None:
    names = [m.name for m in METRICS]
    assert len(names) == len(set(names))
    for m in METRICS:
        assert m.name.startswith("superfactory_")
        assert (m.type == "counter") == m.name.endswith("_total"), m.name
        assert not m.unit or m.family.endswith("_" + m.unit), m.name
        for bad in ("_ms", "_milliseconds", "_kb", "_mb", "_gb", "_percent", "_kw", "_mw"):
            assert bad + "_" not in m.name + "_", m.name
        assert m.help.endswith(".") and len(set(m.labels)) == len(m.labels)


def test_migration_fold_outcomes_and_costs(run: TwinResult) -> None:
    """Events as the twin emits them: a move that starts at the destination succeeds and costs its checkpoint and
    GPUs x transfer time; one followed by a placement elsewhere failed; the destination holds the GPUs meanwhile."""
    from superfactory.domain.events import Event
    from superfactory.observe.openmetrics import TwinMetricsFold

    sc = run.scenario
    job = sc.jobs[0]
    fold = TwinMetricsFold(sc)
    for e in (Event(0, EventKind.JOB_SUBMITTED, job.id, value=job.gpus),
              Event(10, EventKind.JOB_PLACED, job.id, "texas", value=job.gpus),
              Event(20, EventKind.JOB_RUNNING, job.id, "texas", value=0.0),
              Event(100, EventKind.JOB_MIGRATED, job.id, "atlanta", cause="texas->atlanta: price", value=40.0),
              Event(200, EventKind.JOB_PLACED, job.id, "atlanta", cause="migrated", value=job.gpus),
              Event(300, EventKind.JOB_MIGRATED, job.id, "wisconsin", cause="atlanta->wisconsin", value=30.0),
              Event(400, EventKind.JOB_PLACED, job.id, "texas", value=job.gpus)):
        fold.apply(e)
    fold.finish()

    def last(name: str, **labels: str) -> float:
        (s,) = [s for (n, lb), s in fold.series.items()
                if n == name and all(dict(lb).get(k) == v for k, v in labels.items())]
        return s.values[-1]

    assert last("superfactory_migrations_total", source="texas", destination="atlanta", outcome="succeeded") == 1
    assert last("superfactory_migrations_total", source="atlanta", destination="wisconsin", outcome="failed") == 1
    assert last("superfactory_migrations_total", source="atlanta", destination="wisconsin", outcome="succeeded") == 0
    assert last("superfactory_migration_transfer_bytes_total", source="texas", destination="atlanta") == \
        job.checkpoint.size_bytes
    assert last("superfactory_migration_gpu_seconds_total", source="texas", destination="atlanta") == job.gpus * 40.0
    assert last("superfactory_factory_allocated_gpus", factory="texas") == job.gpus  # re-placed there at t=400
    assert last("superfactory_factory_allocated_gpus", factory="atlanta") == 0
    assert last("superfactory_factory_allocated_gpus", factory="wisconsin") == 0
    assert last("superfactory_job_restarts_total", job_id=job.id, factory="texas") == 2  # placed at 200 and 400
