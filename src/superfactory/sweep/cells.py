"""Cells of a sweep: one twin run each, named by its coordinates and the content of its scenario.

A cell's coordinates are (scenario, scenario-field values, policy, policy parameters, seed). Its id is a hash of
the coordinates **and** the scenario's content hash (the YAML text plus every file it references), so editing a
scenario gives its cells new ids: the results of the old text are never reused for the new one. A cell's result
depends only on its coordinates and that content (the twin is deterministic), which is what makes a sweep
resumable and lets any runner execute any cell.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from superfactory.errors import ScenarioError
from superfactory.sweep.spec import SweepError, SweepSpec

Pairs = tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class ScenarioSource:
    """A scenario's text as the sweep read it (workers parse this text, not the file, so a file edited
    mid-sweep cannot mix two versions into one table).

    Attributes:
        label: how the table names it (the reference given: a built-in name or the path as written).
        text: the YAML text.
        source: where it came from, for error messages.
        base_dir: folder its relative file references resolve against (None for built-ins).
        content_hash: sha256 of the text and of every file it references (hex).
        policy: the scenario's own policy (used when the sweep names none).
        seed: the scenario's own seed (used when the sweep names none).
    """

    label: str
    text: str
    source: str
    base_dir: str | None
    content_hash: str
    policy: str
    seed: int


@dataclass(frozen=True)
class Cell:
    """One run of the sweep."""

    scenario: str
    scenario_hash: str
    fields: Pairs
    policy: str
    params: Pairs
    seed: int

    @property
    def cell_id(self) -> str:
        """16 hex digits of sha256 over the coordinates and the scenario's content hash."""
        doc = {"scenario": self.scenario, "hash": self.scenario_hash, "fields": [list(p) for p in self.fields],
               "policy": self.policy, "params": [list(p) for p in self.params], "seed": self.seed}
        return hashlib.sha256(canonical_json(doc).encode()).hexdigest()[:16]

    @property
    def group(self) -> tuple[str, str, Pairs, str]:
        """Cells with the same group share a scenario text and a policy: they may share a worker process."""
        return (self.scenario, self.scenario_hash, self.fields, self.policy)

    def coordinates(self) -> dict[str, Any]:
        """The table's coordinate columns for this cell (``set:PATH`` and ``param:KEY`` flattened)."""
        out: dict[str, Any] = {"cell_id": self.cell_id, "scenario": self.scenario,
                               "scenario_hash": self.scenario_hash, "policy": self.policy, "seed": self.seed}
        out.update({f"set:{k}": v for k, v in self.fields})
        out.update({f"param:{k}": v for k, v in self.params})
        return out


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal text (what the hashes are taken of)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def load_source(ref: str, base_dir: Path) -> ScenarioSource:
    """Read and validate one scenario (built-in name, or a file relative to ``base_dir``).

    Raises:
        ScenarioError: the scenario is invalid (every problem, with lines), as ``simulate`` reports it.
    """
    from superfactory.scenario.loader import builtin_names, builtin_text, parse_scenario

    p = Path(ref)
    if not p.is_absolute():
        p = base_dir / p
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if not p.is_file():
            raise ScenarioError(f"{ref}: no such scenario file (built-ins are: {', '.join(builtin_names())})")
        try:
            text = p.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ScenarioError(f"{ref}: cannot read the scenario file: {e}") from None
        source, folder = str(p), p.parent
    else:
        text, source, folder = builtin_text(ref), f"<built-in {ref}>", None
    sc = parse_scenario(text, source=source, base_dir=folder)
    return ScenarioSource(label=ref, text=text, source=source, base_dir=str(folder) if folder else None,
                          content_hash=content_hash(text, folder), policy=sc.policy, seed=sc.seed)


def content_hash(text: str, base_dir: Path | None) -> str:
    """sha256 of the scenario text and, in path order, of every file its string values name (relative to
    ``base_dir`` or absolute) — CSV prices, failure tables, traces — so editing one of them changes the hash."""
    h = hashlib.sha256(text.encode())
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        data = None
    for ref in sorted(set(_strings(data))):
        if "/" not in ref and "." not in ref:
            continue  # a name, not a path
        p = Path(ref)
        if not p.is_absolute():
            if base_dir is None:
                continue
            p = base_dir / p
        try:
            if p.is_file():
                h.update(f"\0{ref}\0".encode())
                h.update(hashlib.sha256(p.read_bytes()).digest())
        except OSError:
            continue
    return h.hexdigest()


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def expand(spec: SweepSpec, sources: list[ScenarioSource]) -> list[Cell]:
    """Every cell of the sweep, in table order (scenario, field values, policy, parameters, seed)."""
    cells = []
    for src in sources:
        for fields in spec.field_combos():
            for policy in spec.policies or (src.policy,):
                for params in spec.param_combos(policy):
                    for seed in spec.seeds or (src.seed,):
                        cells.append(Cell(src.label, src.content_hash, fields, policy, params, seed))
    ids = [c.cell_id for c in cells]
    if len(set(ids)) != len(ids):
        raise SweepError("the sweep names the same cell twice (a scenario or a value listed twice?)")
    return cells


def apply_fields(text: str, fields: Pairs) -> str:
    """The scenario text with dotted-path fields replaced (``workload.load`` = 0.7, ``factories.0.pue`` = 1.1);
    missing mappings on the way are created, list indices must exist.

    Raises:
        ScenarioError: a path runs through a value that is not a mapping or list, or an index is out of range.
    """
    if not fields:
        return text
    doc = yaml.safe_load(text)
    for path, value in fields:
        node: Any = doc
        parts = path.split(".")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise ScenarioError(f"set {path}: {'.'.join(parts[:i]) or 'the scenario'} has "
                                        f"{len(node)} entries; no index {part!r}")
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise ScenarioError(f"set {path}: {'.'.join(parts[:i])} is a single value, not a mapping")
    return yaml.safe_dump(doc, sort_keys=False)
