"""The lock: constraints.txt pins every package of the dev environment, and the environment running the tests has
exactly those versions (``make test`` installs with ``-c constraints.txt``; ``make lock`` regenerates it)."""

from __future__ import annotations

import re
import sysconfig
from importlib import metadata
from pathlib import Path

LOCK = Path(__file__).resolve().parents[3] / "constraints.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def _locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for i, raw in enumerate(LOCK.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        m = PIN.match(line)
        assert m, f"constraints.txt:{i}: not a NAME==VERSION pin: {line!r}"
        assert _norm(m.group(1)) not in pins, f"constraints.txt:{i}: {m.group(1)} pinned twice"
        pins[_norm(m.group(1))] = m.group(2)
    return pins


def test_lock_pins_every_dependency_and_not_superfactory() -> None:
    pins = _locked()
    assert "superfactory" not in pins
    for name in ("numpy", "pydantic", "typer", "highspy", "hypothesis", "pytest", "torch", "fastapi"):
        assert name in pins, f"{name} is not locked"


def _site_packages() -> list[str]:
    """The environment's own install folders. Not ``sys.path``: ``import ray`` appends its vendored
    ``ray/thirdparty_files`` (psutil, colorama) to it, and those are Ray's files, not installed packages."""
    return sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})


def test_installed_versions_equal_the_lock() -> None:
    pins = _locked()
    installed = {_norm(d.metadata["Name"]): d.version
                 for d in metadata.distributions(path=_site_packages()) if d.metadata["Name"]}
    installed.pop("superfactory", None)
    wrong = {n: (installed[n], v) for n, v in pins.items() if n in installed and installed[n] != v}
    missing = sorted(set(pins) - set(installed))
    unlocked = sorted(set(installed) - set(pins))
    assert not wrong, f"installed != locked (installed, locked): {wrong}; run `make test` or `make lock`"
    assert not missing, f"locked but not installed: {missing}"
    assert not unlocked, f"installed but not in constraints.txt: {unlocked}; run `make lock`"
