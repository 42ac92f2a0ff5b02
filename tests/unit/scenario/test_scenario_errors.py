"""Bad scenario files give one clear message: file, line, field path, what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from superfactory.errors import ScenarioError
from superfactory.scenario.loader import load_scenario, parse_scenario

from scenario_builders import factory, job, scenario


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    return p


def _error(tmp_path: Path, text: str) -> str:
    p = _write(tmp_path, text)
    with pytest.raises(ScenarioError) as ei:
        load_scenario(str(p))
    return str(ei.value)


def test_valid_small_scenario_loads(tmp_path: Path) -> None:
    sc = load_scenario(str(_write(tmp_path, scenario([factory("a")], [job("j1")]))))
    assert sc.factories[0].gpus == 128
    assert sc.jobs[0].work_s == pytest.approx(2 * 86400)


def test_unknown_key_names_file_line_and_path(tmp_path: Path) -> None:
    f = factory("a")
    f["power_capp"] = "10MW"
    msg = _error(tmp_path, scenario([f], [job("j1")]))
    assert "bad.yaml:" in msg
    assert "factories[0].power_capp: unknown key 'power_capp'" in msg
    line = int(msg.split("bad.yaml:")[1].split(":")[0])
    assert "power_capp" in (tmp_path / "bad.yaml").read_text().splitlines()[line - 1]


def test_wrong_unit(tmp_path: Path) -> None:
    msg = _error(tmp_path, scenario([factory("a", power_cap="30min")], [job("j1")]))
    assert "factories[0].power_cap" in msg
    assert "unknown unit 'min' for a power" in msg
    assert "allowed units: W, kW, MW, GW" in msg


def test_missing_unit(tmp_path: Path) -> None:
    msg = _error(tmp_path, scenario([factory("a")], [job("j1")], duration=30))
    assert "duration: a duration needs a unit, e.g. '30min'" in msg


def test_negative_capacity(tmp_path: Path) -> None:
    msg = _error(tmp_path, scenario([factory("a", nodes=-4)], [job("j1")]))
    assert "factories[0].systems[0].nodes" in msg
    assert "greater than 0" in msg


def test_job_that_fits_nowhere(tmp_path: Path) -> None:
    msg = _error(tmp_path, scenario([factory("a", nodes=4)], [job("huge", gpus=4096)]))
    assert "jobs[0].gpus: job 'huge' fits in no factory: needs 4096 H100-SXM GPUs" in msg
    assert "the largest H100-SXM factory is a with 32 GPUs" in msg


def test_job_without_cleared_factory(tmp_path: Path) -> None:
    msg = _error(tmp_path, scenario([factory("a")], [job("eu", sovereignty=["EU_PERSONAL"])]))
    assert "cleared for ['EU_PERSONAL']" in msg


def test_link_to_unknown_factory(tmp_path: Path) -> None:
    links = [{"a": "a", "b": "mars", "bandwidth": "400Gbps", "latency": "10ms"}]
    msg = _error(tmp_path, scenario([factory("a")], [job("j1")], links=links))
    assert "links[0].b: unknown factory 'mars'; factories are ['a']" in msg


def test_unknown_accelerator_lists_allowed(tmp_path: Path) -> None:
    msg = _error(tmp_path, scenario([factory("a")], [job("j1", accelerator="TPUv5")]))
    assert "jobs[0].accelerator" in msg
    assert "'H100-SXM'" in msg and "'GB200'" in msg


def test_unknown_market(tmp_path: Path) -> None:
    msg = _error(tmp_path, scenario([factory("a", market="MOON")], [job("j1")]))
    assert "factories[0].market: unknown market 'MOON'" in msg


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    f = factory("a", pue=0.5)
    msg = _error(tmp_path, scenario([f], [job("j1", gpus=0)], links=[{"a": "a"}]))
    assert "(4 problems)" in msg or "(5 problems)" in msg
    for needle in ("factories[0].pue", "jobs[0].gpus", "links[0].b", "links[0].bandwidth"):
        assert needle in msg


def test_duplicate_keys_and_bad_yaml(tmp_path: Path) -> None:
    msg = _error(tmp_path, "name: a\nname: b\n")
    assert "duplicate key 'name'" in msg
    msg = _error(tmp_path, "name: [unclosed\n")
    assert "not valid YAML" in msg


def test_checkpoint_interval_must_exceed_blocking(tmp_path: Path) -> None:
    j = job("j1", checkpoint={"interval": "30s", "blocking": "1min", "size": "1TB"})
    msg = _error(tmp_path, scenario([factory("a")], [j]))
    assert "jobs[0].checkpoint.interval" in msg


def test_missing_file_and_unknown_builtin() -> None:
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_scenario("/nonexistent/x.yaml")
    with pytest.raises(ScenarioError, match=r"built-ins are: .*default"):
        load_scenario("nope")


def test_event_checks(tmp_path: Path) -> None:
    events = [{"at": "1d", "kind": "factory_outage", "factory": "zz", "duration": "1h"},
              {"at": "9d", "kind": "partition", "link": ["a", "a"], "duration": "1h"}]
    msg = _error(tmp_path, scenario([factory("a")], [job("j1")], events=events))
    assert "events[0].factory: unknown factory 'zz'" in msg
    assert "events[1].at: event at 777600 s is after the scenario ends" in msg
    shock = [{"at": "1d", "kind": "price_shock", "market": "PJM", "factor": 10, "duration": "90min"}]
    msg = _error(tmp_path, scenario([factory("a")], [job("j1")], events=shock))
    assert "events[0]: a price_shock starts and lasts whole hours" in msg


def test_parse_scenario_from_text_has_source_name() -> None:
    with pytest.raises(ScenarioError, match="<mine>:1"):
        parse_scenario(yaml.safe_dump(["not", "a", "mapping"]), source="<mine>")
