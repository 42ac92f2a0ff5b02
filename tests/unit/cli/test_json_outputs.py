"""Every ``--json`` command prints exactly one JSON document on stdout, under every registered policy.

Run as real subprocesses: HiGHS (the ``geo`` policy's solver) prints its banner from C++ straight to file
descriptor 1, which an in-process runner would never see. Scenarios are tiny (a few seconds each).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer

from superfactory.cli.main import app
from superfactory.policy.registry import available

from scenario_builders import factory, job, scenario

POLICIES = sorted(available(role="training"))  # what --policy takes
SERVING = sorted(set(available()) - set(POLICIES))  # run by themselves when a scenario serves inference


def sf(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "superfactory.cli.main", *args], capture_output=True, text=True,
                          timeout=240, check=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("json") / "tiny.yaml"
    p.write_text(scenario(
        [factory("a", nodes=16), factory("b", market="ERCOT", nodes=16)],
        # "late" is submitted after the end: the JSON must carry that warning
        [job("j1", gpus=64, work="1d"), job("j2", gpus=32, work="12h", submit="6h"),
         job("late", gpus=8, work="1h", submit="3d")],
        duration="2d", links=[{"a": "a", "b": "b", "bandwidth": "400Gbps", "latency": "20ms"}],
    ))
    return p


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny scenario with an inference service on a 3-request trace (so the serving policies run too)."""
    d = tmp_path_factory.mktemp("served")
    (d / "trace.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:00:00.0,400,40\n"
                                 "2023-11-16 18:00:20.5,300,90\n2023-11-16 18:00:59.0,900,20\n")
    (d / "rtt.csv").write_text("src_region,dst_region,avg_rtt\nr:pop,r:a,20.0\nr:pop,r:b,35.0\n")
    text = scenario(
        [factory("a", nodes=8, system="dgx-b200", cloud_region="r:a"),
         factory("b", market="ERCOT", nodes=8, system="dgx-b200", cloud_region="r:b")],
        [job("t1", gpus=16, work="6h", accelerator="B200")], duration="1d",
        pops=[{"id": "pop", "cloud_region": "r:pop"}],
        services=[{"id": "chat", "model": "llama-70b", "weights": "141GB", "accelerator": "B200",
                   "gpus_per_replica": 8, "slo_p99_ms": 150, "pops": ["pop"], "trace": "trace.csv",
                   "trace_scale": 2, "weights_at": ["a"]}],
        inference={"rtt_matrix": "rtt.csv"},
    )
    (d / "served.yaml").write_text(text)
    return d / "served.yaml"


def _json(r: subprocess.CompletedProcess[str]) -> object:
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # the whole of stdout: nothing before or after the document


@pytest.mark.parametrize("policy", POLICIES)
def test_simulate_json_with_explain_is_one_document(policy: str, tiny: Path) -> None:
    r = sf("simulate", str(tiny), "--policy", policy, "--json", "--explain", "j1", "--seed", "3")
    s = _json(r)
    assert isinstance(s, dict) and s["policy"] == policy and s["seed"] == 3
    assert "j1" in s["explain"]
    assert any("late" in w and "never runs" in w for w in s["warnings"])
    assert {"failures", "policy", "prices:PJM", "prices:ERCOT"} <= set(s["seeds"])
    if policy == "geo":
        # the solver did print its banner: it went to stderr, not into the JSON (so this test can fail)
        assert "HiGHS" in r.stderr


@pytest.mark.skipif(not SERVING, reason="no serving-role policy is registered")
def test_simulate_json_with_the_serving_policies(served: Path) -> None:
    s = _json(sf("simulate", str(served), "--json"))
    assert isinstance(s, dict) and "inference_slo_attainment" in s and "demand:chat" in s["seeds"]
    r = sf("simulate", str(served), "--policy", SERVING[0], "--json")
    assert r.returncode == 2 and r.stdout == "" and "choose a training policy" in r.stderr


def test_compare_json_under_every_policy(tiny: Path) -> None:
    d = _json(sf("compare", str(tiny), "--policies", ",".join(POLICIES), "--json"))
    assert isinstance(d, dict)
    assert [row["policy"] for row in d["policies"]] == POLICIES
    assert d["warnings"]


def test_listings_and_validate_json(tiny: Path) -> None:
    names = [row["name"] for row in _json(sf("scenarios", "--json"))]  # type: ignore[union-attr]
    assert "default" in names and "llama3-405b" in names
    pols = _json(sf("policies", "--json"))
    assert sorted(p["name"] for p in pols) == sorted(POLICIES + SERVING)  # type: ignore[union-attr]
    assert next(p for p in pols if p["name"] == "gang")["parameters"]["spare_pool"] == 0  # type: ignore[union-attr]
    v = _json(sf("scenario", "validate", str(tiny), "--json"))
    assert v["ok"] is True and v["jobs"] == 3 and len(v["warnings"]) == 1  # type: ignore[index]
    schema = _json(sf("scenario", "schema"))
    assert "factories" in schema["properties"]  # type: ignore[index]


def _json_commands(group: Any, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every (sub)command with a ``--json`` option (typer vendors click: duck-typed)."""
    found = {}
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):
            found.update(_json_commands(cmd, (*prefix, name)))
        elif any("--json" in getattr(p, "opts", ()) for p in cmd.params):
            found[(*prefix, name)] = cmd
    return found


def test_every_json_command_of_the_main_module_is_covered_here() -> None:
    """A new ``--json`` command in cli/main.py must get an invocation in this file."""
    covered = {("simulate",), ("compare",), ("scenarios",), ("policies",), ("scenario", "validate")}
    root = typer.main.get_command(app)
    mine = {k for k, c in _json_commands(root).items()
            if getattr(c.callback, "__module__", "") == "superfactory.cli.main"}
    assert mine == covered, f"--json commands without a test here: {sorted(mine - covered)}"
