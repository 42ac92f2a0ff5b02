"""Sweep specs: seeds, value lists, the grid, spec files and early errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from superfactory.sweep.spec import (
    SweepError,
    SweepSpec,
    is_spec_file,
    load_spec_file,
    parse_seeds,
    parse_values,
    spec_from_flags,
    with_overrides,
)


def test_parse_seeds_ranges_lists_and_errors() -> None:
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("3,0-2,2") == [3, 0, 1, 2]
    assert parse_seeds([1, "5-6"]) == [1, 5, 6]
    assert parse_seeds(7) == [7]
    for bad, msg in (("5-2", "empty"), ("a", "not a seed"), ("-3", "not a seed"), ("", "no seeds"),
                     (True, "expected")):
        with pytest.raises(SweepError, match=msg):
            parse_seeds(bad)  # type: ignore[arg-type]


def test_parse_values_reads_yaml_scalars() -> None:
    assert parse_values("geo.horizon_h=6,12,24", "-p") == ("geo.horizon_h", [6, 12, 24])
    assert parse_values("workload.load=0.5, 0.9", "-s") == ("workload.load", [0.5, 0.9])
    assert parse_values("failures.planned=false", "-s") == ("failures.planned", [False])
    with pytest.raises(SweepError, match="expected PATH=V1"):
        parse_values("horizon_h", "-p")
    with pytest.raises(SweepError, match="empty value"):
        parse_values("k=1,,2", "-p")


def test_policy_prefixed_parameters_multiply_only_their_policy() -> None:
    spec = SweepSpec(scenarios=("default",), policies=("greedy", "geo"), seeds=(0, 1),
                     params={"geo.horizon_h": [6, 12, 24], "shared": [1, 2]})
    assert spec.param_combos("greedy") == [(("shared", 1),), (("shared", 2),)]
    assert len(spec.param_combos("geo")) == 6
    assert spec.param_combos("geo")[0] == (("horizon_h", 6), ("shared", 1))


def test_field_paths_are_checked_against_the_scenario_schema() -> None:
    spec_from_flags(["default"], None, None, ["failures.rate_scale=1,2", "workload.load=0.7",
                                              "factories.0.pue=1.1", "markets.ERCOT.mean_usd_per_mwh=50"], None)
    with pytest.raises(SweepError, match="'failure' is not a field of the scenario's top level"):
        spec_from_flags(["default"], None, None, ["failure.rate_scale=1,2"], None)
    with pytest.raises(SweepError, match="'lod' is not a field of workload"):
        spec_from_flags(["default"], None, None, ["workload.lod=1"], None)
    with pytest.raises(SweepError, match="index it with a number"):
        spec_from_flags(["default"], None, None, ["factories.pue=1"], None)
    with pytest.raises(SweepError, match="single value"):
        spec_from_flags(["default"], None, None, ["duration.x=1"], None)


def test_a_parameter_for_a_policy_not_swept_is_refused() -> None:
    with pytest.raises(SweepError, match="'gang' is not one of the swept policies"):
        spec_from_flags(["default"], "greedy,geo", "0-1", None, ["gang.spare_pool=1"])


def test_an_absurd_grid_is_refused_before_planning() -> None:
    with pytest.raises(SweepError, match="limit"):
        spec_from_flags(["default"], "greedy", "0-200000", None, None)


def test_spec_file_round_trip_and_flag_overrides(tmp_path: Path) -> None:
    f = tmp_path / "sweep.yaml"
    f.write_text("scenarios: [default, mine.yaml]\npolicies: [home-region, geo]\nseeds: 0-3\n"
                 "set: {failures.rate_scale: [0.5, 1]}\nparams: {geo.horizon_h: [6, 12]}\n")
    assert is_spec_file(str(f))
    spec = load_spec_file(f)
    assert spec.scenarios == ("default", "mine.yaml") and spec.base_dir == tmp_path and spec.name == "sweep"
    assert spec.seeds == (0, 1, 2, 3) and spec.fields == {"failures.rate_scale": [0.5, 1]}
    new = with_overrides(spec, None, "5-6", None, ["geo.horizon_h=24"])
    assert new.seeds == (5, 6) and new.params == {"geo.horizon_h": [24]} and new.policies == spec.policies


def test_spec_file_errors(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("scenarios: default\nseed: 1\n")
    with pytest.raises(SweepError, match="unknown key"):
        load_spec_file(f)
    f.write_text("scenarios: []\n")
    with pytest.raises(SweepError, match="scenarios"):
        load_spec_file(f)
    scenario_file = tmp_path / "scenario.yaml"
    scenario_file.write_text("name: x\nfactories: []\nscenarios: 1\n")
    assert not is_spec_file(str(scenario_file))  # a scenario file is never mistaken for a spec
