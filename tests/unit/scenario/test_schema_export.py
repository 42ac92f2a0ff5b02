"""The JSON schema shipped for editors (docs/scenario.schema.json) matches the code."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from superfactory.scenario.loader import builtin_names, builtin_text, json_schema

SHIPPED = Path(__file__).resolve().parents[3] / "docs" / "scenario.schema.json"


def test_shipped_schema_is_current() -> None:
    assert json.loads(SHIPPED.read_text()) == json_schema(), (
        "regenerate with: superfactory scenario schema --out docs/scenario.schema.json"
    )


def test_schema_knows_every_top_level_key_of_the_builtins() -> None:
    props = set(json_schema()["properties"])
    for name in builtin_names():
        assert set(yaml.safe_load(builtin_text(name))) <= props, name
