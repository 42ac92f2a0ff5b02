"""Bad input gets one message naming what is wrong, where, and what is allowed, with exit 2 (never a
traceback); scenarios that cannot do what they say get warnings; facility energy never exceeds the caps.

In-process through ``main()`` (the console-script entry point), so exit codes are the real ones.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from superfactory.cli.main import main
from superfactory.scenario.loader import parse_scenario
from superfactory.sim.twin import run_twin

from scenario_builders import factory, job, scenario


def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["superfactory", *args])
    with pytest.raises(SystemExit) as e:
        main()
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return int(e.value.code or 0), out, err


def _file(tmp_path: Path, text: str) -> str:
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return str(p)


def _small(**extra: object) -> str:
    return scenario([factory("a", nodes=8)], [job("j", gpus=16, work="6h")], duration="1d", **extra)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    return lambda *args: cli(capsys, monkeypatch, *args)


def test_directory_and_binary_files(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run("simulate", str(tmp_path))
    assert code == 2 and "is a directory" in err
    binary = tmp_path / "x.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    code, _, err = run("scenario", "validate", str(binary))
    assert code == 2 and "not a text scenario" in err


def test_seeds_out_of_range(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run("simulate", _file(tmp_path, _small()), "--seed", "-1")
    assert code == 2 and "--seed" in err
    d = yaml.safe_load(_small())
    d["seed"] = -1
    code, _, err = run("scenario", "validate", _file(tmp_path, yaml.safe_dump(d)))
    assert code == 2 and "s.yaml:" in err and "seed" in err and "greater than or equal to 0" in err


def test_out_must_be_a_writable_folder(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "file"
    f.write_text("x")
    code, _, err = run("simulate", _file(tmp_path, _small()), "--out", str(f))
    assert code == 2 and "exists and is not a directory" in err
    code, _, err = run("simulate", _file(tmp_path, _small()), "--out", str(f / "sub"))
    assert code == 2 and "cannot create the folder" in err


def test_magnitudes_are_refused_at_validation_with_the_limit(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run("scenario", "validate", _file(tmp_path, _small().replace("duration: 1d", "duration: 1e30d")))
    assert code == 2 and "out of range" in err and "duration" in err
    code, _, err = run("scenario", "validate", _file(tmp_path, _small().replace("duration: 1d", "duration: 400d")))
    assert code == 2 and "limit of 366 days" in err
    big = scenario([factory("a", system="gb200-nvl72", nodes=1).copy() | {
        "systems": [{"system": "gb200-nvl72", "racks": 10_000_000}]}], [], duration="1d")
    code, _, err = run("simulate", _file(tmp_path, big), "--json")
    assert code == 2 and "720,000,000 GPUs" in err and "1,000,000" in err and "factories[0].systems[0]" in err


def test_policy_in_the_file_is_checked_with_line_and_suggestion(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, _, err = run("scenario", "validate", _file(tmp_path, _small(policy="gredy")))
    assert code == 2 and "did you mean 'greedy'" in err and "s.yaml:" in err and "policy" in err
    code, _, err = run("scenario", "validate", _file(tmp_path, _small(policy="gang",
                                                                      policy_params={"spare_pol": 1})))
    assert code == 2 and "policy_params.spare_pol" in err and "did you mean 'spare_pool'" in err
    code, _, err = run("simulate", "defualt")
    assert code == 2 and "did you mean 'default'" in err
    code, _, err = run("scenario", "validate", _file(tmp_path, _small().replace("duration:", "durration:")))
    assert code == 2 and "unknown key 'durration' (did you mean 'duration'?)" in err


def test_warnings_for_scenarios_that_cannot_do_what_they_say(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    text = scenario([factory("tiny", power_cap="5kW"), factory("b", market="ERCOT")],
                    [job("late", gpus=8, work="1h", submit="3d"),
                     job("slow", gpus=8, work="6h", checkpoint={"interval": "10min", "blocking": "10s",
                                                                "size": "1TB", "write_bandwidth": "1bps"})],
                    duration="1d", links=[{"a": "tiny", "b": "b", "bandwidth": "1bps", "latency": "10ms"}])
    path = _file(tmp_path, text)
    code, out, err = run("scenario", "validate", path)
    assert code == 0 and "5 warning(s)" in out
    assert "no job can ever start in tiny" in err and "idle nodes alone draw" in err
    assert "submitted at 3 days, when the run (1 days) is over" in err
    assert "longer than the 600 s checkpoint interval" in err and "no migration over this link" in err
    code, out, _ = run("simulate", path, "--json")
    assert code == 0 and len(json.loads(out)["warnings"]) == 5


def test_facility_energy_never_exceeds_the_caps() -> None:
    # 16 idle DGX nodes draw ~41 kW of IT power; the cap allows 30 kW of facility power
    sc = parse_scenario(scenario([factory("a", power_cap="30kW", cooling_capacity="1MW")], [], duration="6h"))
    assert any("idle nodes alone draw" in w for w in sc.warnings)
    r = run_twin(sc)
    assert r.hours and all(h.facility_energy_mwh <= 30e3 / 1e6 + 1e-12 for h in r.hours)
    assert all(h.facility_energy_mwh > 0.029 for h in r.hours)  # billed at the cap, not zero


def test_a_workload_too_big_to_simulate_is_refused_up_front(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    text = scenario([factory("a", nodes=64)], [], duration="30d",
                    workload={"kind": "mixed-training", "sizes": [{"gpus": 8, "weight": 1}],
                              "median_duration": "1s", "min_duration": "1s"})
    code, _, err = run("scenario", "validate", _file(tmp_path, text))
    assert code == 2 and "more than 50,000 jobs" in err and "raise median_duration" in err
