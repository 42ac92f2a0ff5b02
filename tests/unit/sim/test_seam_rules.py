"""The seam's rules that import-linter cannot see: the twin never probes a policy with ``getattr``, and it builds
policies only through the registry."""

from __future__ import annotations

import ast
from pathlib import Path

import superfactory.sim

SIM = Path(superfactory.sim.__file__).parent


def test_sim_never_calls_getattr_or_hasattr() -> None:
    offenders = []
    for path in sorted(SIM.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr",
                                                                                                   "hasattr"):
                offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, f"sim/ probes objects with getattr/hasattr at {offenders}"


def test_sim_imports_no_policy_module_but_the_registry() -> None:
    for path in sorted(SIM.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("superfactory.policy"):
                assert node.module == "superfactory.policy.registry", f"{path.name} imports {node.module}"
