"""CLI fuzz: mutated scenario files (keys, units, magnitudes, types, encodings, truncation) and flags.

Every run must end with exit 0 or 2 and a message, never a traceback, within a time limit per case (the
hypothesis deadline). In-process (typer's CliRunner) so a few dozen cases take seconds; exceptions are
classified exactly as ``main()`` does (a SuperfactoryError is the message + exit 2 path).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from superfactory.cli.main import app
from superfactory.errors import SuperfactoryError

from scenario_builders import factory, job, scenario

BASE: dict[str, Any] = yaml.safe_load(scenario(
    [factory("a", nodes=8), factory("b", market="ERCOT", nodes=8)],
    [job("j1", gpus=16, work="6h", checkpoint={"interval": "30min", "blocking": "20s", "size": "1TB",
                                               "write_bandwidth": "400Gbps"}),
     job("j2", gpus=8, work="3h", submit="2h")],
    duration="1d", links=[{"a": "a", "b": "b", "bandwidth": "400Gbps", "latency": "20ms"}],
    markets={"ERCOT": {"mean_usd_per_mwh": 60}},
))

VALUES = st.sampled_from([
    -1, 0, 1, 2**63, 10**30, 1e308, float("nan"), float("inf"), -0.5, True, None, "", "abc", [], {}, [1, 2],
    {"x": 1}, "1e30d", "1e400s", "-5min", "30 parsecs", "10000000", "1bps", "0Gbps", "1e-300TB", "5kW", "1GW",
    "nan", ".inf", "12d", "3.8e25FLOP", "999999999999999999999racks", "\u00e9\u00e8", "\x00", "gredy", "geo",
    # plausible values too, so that many cases get past validation and run
    2, 16, 64, 0.9, "2d", "6h", "45min", "30MW", "1MW", "100Gbps", "2TB", "PJM", "MISO", "greedy",
])
KEYS = st.sampled_from(["name", "duration", "seed", "factories", "jobs", "links", "policy", "policy_params",
                        "markets", "workload", "failures", "events", "power_cap", "systems", "racks", "nodes",
                        "gpus", "work", "submit", "bandwidth", "interval", "write_bandwidth", "pue", "durration",
                        "spare_pol", "id"])


def _paths(d: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(d, dict):
        for k, v in d.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    doc = json.loads(json.dumps(BASE))
    for _ in range(draw(st.integers(0, 2))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        op = draw(st.sampled_from(["value", "delete", "rename", "add"]))
        last = path[-1]
        if op == "value":
            parent[last] = draw(VALUES)
        elif op == "delete":
            del parent[last]
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(KEYS)] = parent.pop(last)
        elif isinstance(parent, dict):
            parent[draw(KEYS)] = draw(VALUES)
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    enc = draw(st.sampled_from(["utf-8"] * 6 + ["utf-16", "latin-1", "truncate", "garbage"]))
    if enc == "truncate":
        return text.encode()[: draw(st.integers(0, len(text)))]
    if enc == "garbage":
        raw = bytearray(text.encode())
        raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        return bytes(raw)
    return text.encode(enc, errors="replace")


FLAGS = st.lists(st.sampled_from([
    ["--seed", "-1"], ["--seed", "3"], ["--seed", str(2**63)], ["--seed", "abc"], ["--policy", "gredy"],
    ["--policy", "gang"], ["--policy", "geo"], ["-p", "spare_pool=1"], ["-p", "spare_pool=abc"], ["-p", "x=[1"],
    ["-p", "=3"], ["-p", "hot_swap=yes"], ["--explain", "j1"], ["--explain", "nope"],
]), max_size=2)


@settings(max_examples=40, deadline=timedelta(seconds=30), suppress_health_check=[HealthCheck.too_slow],
          derandomize=True)
@given(content=mutated(), flags=FLAGS, command=st.sampled_from(["validate", "simulate"]))
def test_mutated_scenarios_and_flags_exit_0_or_2(content: bytes, flags: list[list[str]], command: str,
                                                 tmp_path_factory: Any) -> None:
    path: Path = tmp_path_factory.mktemp("fuzz") / "s.yaml"
    path.write_bytes(content)
    extra = [a for f in flags for a in f]
    if command == "validate":
        args = ["scenario", "validate", str(path), *[a for f in flags if f[0] == "--seed" for a in f]]
    else:
        args = ["simulate", str(path), "--json", *extra]
    r = CliRunner().invoke(app, args)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        assert isinstance(r.exception, SuperfactoryError), (args, content[:400], r.exc_info)
        assert str(r.exception).strip()  # main() prints it with exit 2
        return
    assert r.exit_code in (0, 2), (args, r.output)
    if r.exit_code == 0 and command == "simulate":
        json.loads(r.stdout)
