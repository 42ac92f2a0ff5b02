"""Fixtures the live metrics tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from live_harness import FLEET, Plane, make_live


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[Plane]:
    """A control plane on a manual clock (SQLite store) with the two-site test fleet imported."""
    p = Plane(make_live(tmp_path, manual=True))
    p.call("POST", "/v1/fleet/import", json={"yaml": FLEET})
    yield p
    p.live.engine.dispose()
