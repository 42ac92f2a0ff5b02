"""The shipped alert rules: promtool checks and unit-tests them; every alert has a firing and a quiet case, the
conventional labels and annotations, a runbook that exists, and queries only metrics of the catalog."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from superfactory.observe.metrics_catalog import BY_NAME

ROOT = Path(__file__).resolve().parents[3]
PROM = ROOT / "deploy" / "prometheus"
RULES = PROM / "superfactory-rules.yml"
TESTS = sorted((PROM / "tests").glob("*.yml"))
REQUIRED_ALERTS = {"TrainingEfficiencyAnomaly", "CheckpointSyncQueueDeep", "MigrationSuccessRateDropping",
                   "FactoryLeaseLost", "CheckpointQuorumNotReached", "PowerCapHeadroomLow"}


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed: it comes with Debian's 'prometheus' package "
                    "(scripts/system-deps.sh installs it as root)")
    return path


def _alerts() -> list[dict[str, object]]:
    doc = yaml.safe_load(RULES.read_text())
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_promtool_check_rules() -> None:
    r = subprocess.run([_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 0, r.stdout + r.stderr
    n = sum(len(g["rules"]) for g in yaml.safe_load(RULES.read_text())["groups"])
    assert f"SUCCESS: {n} rules found" in r.stdout


def test_promtool_test_rules() -> None:
    assert TESTS, "no rule tests under deploy/prometheus/tests"
    r = subprocess.run([_promtool(), "test", "rules", *map(str, TESTS)], capture_output=True, text=True,
                       timeout=120, check=False, cwd=PROM / "tests")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("SUCCESS") == len(TESTS)


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {str(a["alert"]) for a in _alerts()}
    assert names >= REQUIRED_ALERTS
    assert names - firing == set(), "alerts never seen firing in a test"
    assert names - quiet == set(), "alerts never checked quiet in a test"


@pytest.mark.parametrize("alert", _alerts(), ids=lambda a: str(a["alert"]))
def test_alert_conventions(alert: dict[str, object]) -> None:
    labels = alert["labels"]
    annotations = alert["annotations"]
    assert isinstance(labels, dict) and labels.get("severity") in {"critical", "warning", "info"}
    assert isinstance(annotations, dict) and {"summary", "description", "runbook_url"} <= set(annotations)
    runbook = ROOT / str(annotations["runbook_url"])
    assert runbook.is_file(), f"runbook {runbook} missing"
    text = runbook.read_text()
    assert str(alert["alert"]) in text, f"{runbook.name} does not name the alert it serves"
    used = set(re.findall(r"superfactory_[a-z_]+", str(alert["expr"])))
    assert used and used <= set(BY_NAME), f"unknown metrics: {used - set(BY_NAME)}"
