"""Cells: ids from coordinates and scenario content, field overrides, grid expansion."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from superfactory.errors import ScenarioError
from superfactory.sweep.cells import Cell, ScenarioSource, apply_fields, content_hash, expand, load_source
from superfactory.sweep.spec import SweepSpec


def _cell(**kw: object) -> Cell:
    base = {"scenario": "default", "scenario_hash": "h1", "fields": (("workload.load", 0.7),), "policy": "geo",
            "params": (("horizon_h", 6),), "seed": 3}
    return Cell(**{**base, **kw})  # type: ignore[arg-type]


def test_cell_id_is_stable_and_changes_with_every_coordinate_and_the_content() -> None:
    a = _cell()
    assert a.cell_id == _cell().cell_id and len(a.cell_id) == 16
    others = [_cell(scenario_hash="h2"), _cell(seed=4), _cell(policy="greedy"), _cell(params=(("horizon_h", 12),)),
              _cell(fields=(("workload.load", 0.8),)), _cell(scenario="other")]
    assert len({a.cell_id, *(c.cell_id for c in others)}) == 1 + len(others)
    coords = a.coordinates()
    assert coords["set:workload.load"] == 0.7 and coords["param:horizon_h"] == 6 and coords["seed"] == 3


def test_content_hash_covers_referenced_files(tmp_path: Path) -> None:
    csv = tmp_path / "prices.csv"
    csv.write_text("price\n10\n")
    text = "name: x\nmarkets: {ERCOT: {csv: {csv: prices.csv, column: price}}}\n"
    h1 = content_hash(text, tmp_path)
    assert content_hash(text, tmp_path) == h1
    csv.write_text("price\n11\n")
    assert content_hash(text, tmp_path) != h1  # editing a referenced file invalidates the cells
    assert content_hash(text + "# comment\n", tmp_path) != content_hash(text, tmp_path)


def test_apply_fields_sets_creates_and_refuses() -> None:
    text = "name: x\nworkload: {load: 0.9}\nfactories:\n  - {id: a, pue: 1.2}\n"
    doc = yaml.safe_load(apply_fields(text, (("workload.load", 0.5), ("failures.rate_scale", 2),
                                             ("factories.0.pue", 1.1))))
    assert doc["workload"]["load"] == 0.5 and doc["failures"] == {"rate_scale": 2}
    assert doc["factories"][0]["pue"] == 1.1
    assert apply_fields(text, ()) == text
    with pytest.raises(ScenarioError, match="no index '3'"):
        apply_fields(text, (("factories.3.pue", 1.1),))
    with pytest.raises(ScenarioError, match="not a mapping"):
        apply_fields(text, (("name.first", 1),))


def test_expand_orders_cells_and_uses_scenario_defaults() -> None:
    src = ScenarioSource("default", "", "<built-in default>", None, "h", policy="greedy", seed=7)
    spec = SweepSpec(scenarios=("default",), policies=("greedy", "geo"), seeds=(0, 1),
                     fields={"workload.load": [0.7, 0.9]}, params={"geo.horizon_h": [6, 12]})
    cells = expand(spec, [src])
    assert len(cells) == 2 * (1 + 2) * 2  # loads x (greedy + geo x 2 horizons) x seeds
    assert [(c.fields[0][1], c.policy, c.params, c.seed) for c in cells[:4]] == [
        (0.7, "greedy", (), 0), (0.7, "greedy", (), 1), (0.7, "geo", (("horizon_h", 6),), 0),
        (0.7, "geo", (("horizon_h", 6),), 1)]
    own = expand(SweepSpec(scenarios=("default",)), [src])
    assert [(c.policy, c.seed) for c in own] == [("greedy", 7)]


def test_load_source_reads_built_ins_and_files(tmp_path: Path) -> None:
    src = load_source("default", tmp_path)
    assert src.base_dir is None and src.policy and len(src.content_hash) == 64
    f = tmp_path / "mine.yaml"
    f.write_text(src.text)
    mine = load_source("mine.yaml", tmp_path)  # relative to the spec's folder
    assert mine.base_dir == str(tmp_path) and mine.label == "mine.yaml"
    with pytest.raises(ScenarioError, match="no such scenario file"):
        load_source("missing.yaml", tmp_path)
    f.write_text("name: broken\n")
    with pytest.raises(ScenarioError, match="invalid scenario"):
        load_source(str(f), tmp_path)
