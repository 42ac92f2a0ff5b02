"""A sweep specification: which scenarios, scenario fields, policies, policy parameters and seeds to cross.

A spec comes from command-line flags or from a YAML file of this shape (every key optional but ``scenarios``)::

    scenarios: [default, my.yaml]     # built-in names or files (relative to this file)
    policies: [home-region, geo]      # default: each scenario's own policy
    seeds: 0-19                       # "0-19", "0-4,10", or a list; default: each scenario's seed
    set:                              # scenario fields (dotted paths into the scenario file), each a list
      failures.rate_scale: [0.5, 1, 2]
      workload.load: [0.7, 0.85]
    params:                           # policy parameters: POLICY.KEY applies to that policy only, KEY to all
      geo.horizon_h: [6, 12, 24]

The grid is the cross product, except that a parameter prefixed with a policy name only multiplies that policy's
cells (``geo.horizon_h`` gives greedy one cell per seed, not three). Expansion order — scenario, field values,
policy, parameter values, seed (innermost) — is the row order of the results table.
"""

from __future__ import annotations

import itertools
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from superfactory.errors import SuperfactoryError

MAX_CELLS = 100_000  # a guard against a typo such as --seeds 0-1000000: say so instead of planning forever
SPEC_KEYS = ("scenarios", "scenario", "policies", "seeds", "set", "params")


class SweepError(SuperfactoryError):
    """A sweep spec or a sweep run is invalid (bad range, unknown field, unreadable results folder ...)."""


def parse_seeds(text: str | int | list[Any]) -> list[int]:
    """Parse seeds: ``"0-19"``, ``"0-4,10,20-22"``, an int or a list of ints; order kept, duplicates dropped.

    Raises:
        SweepError: an empty range, a negative seed or something that is not a seed.
    """
    items: list[Any]
    if isinstance(text, bool):
        raise SweepError(f"seeds: expected a range like 0-19 or a list of integers, got {text!r}")
    if isinstance(text, int):
        items = [text]
    elif isinstance(text, list):
        items = text
    else:
        items = [p.strip() for p in str(text).split(",") if p.strip()]
    seeds: list[int] = []
    seen: set[int] = set()
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            lo = hi = item
        else:
            a, sep, b = str(item).partition("-")
            try:
                lo = int(a)
                hi = int(b) if sep else lo
            except ValueError:
                raise SweepError(f"seeds: {item!r} is not a seed or a range like 0-19") from None
            if hi < lo:
                raise SweepError(f"seeds: range {item!r} is empty (write LOW-HIGH with LOW <= HIGH)")
        if lo < 0:
            raise SweepError(f"seeds: {lo} is negative; seeds are integers >= 0")
        if hi - lo >= MAX_CELLS:
            raise SweepError(f"seeds: range {item!r} has {hi - lo + 1:,} seeds; the limit is {MAX_CELLS:,}")
        for s in range(lo, hi + 1):
            if s not in seen:
                seen.add(s)
                seeds.append(s)
    if not seeds:
        raise SweepError("seeds: no seeds given (e.g. --seeds 0-9)")
    return seeds


def parse_values(assignment: str, flag: str) -> tuple[str, list[Any]]:
    """Parse ``PATH=V1,V2,...`` into the path and its values (each value a YAML scalar: ``6`` is an int).

    Raises:
        SweepError: no ``=``, an empty path or no values.
    """
    key, sep, raw = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise SweepError(f"{flag} {assignment!r}: expected PATH=V1,V2,..., e.g. {flag} geo.horizon_h=6,12,24")
    values = []
    for part in raw.split(","):
        if not part.strip():
            raise SweepError(f"{flag} {assignment!r}: empty value in the list")
        try:
            values.append(yaml.safe_load(part))
        except yaml.YAMLError:
            values.append(part.strip())
    return key, values


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep. ``policies``/``seeds`` empty means each scenario's own; values are lists (the grid).

    Attributes:
        scenarios: built-in names or YAML paths (resolved against ``base_dir`` when relative).
        policies: policy names; empty: the scenario's policy.
        seeds: root seeds; empty: the scenario's seed.
        fields: dotted scenario-field path -> values.
        params: ``POLICY.KEY`` or ``KEY`` -> values.
        base_dir: folder relative scenario paths are read from (the spec file's folder, or the cwd).
        name: a label for the sweep (the spec file's stem or the first scenario).
    """

    scenarios: tuple[str, ...]
    policies: tuple[str, ...] = ()
    seeds: tuple[int, ...] = ()
    fields: dict[str, list[Any]] = field(default_factory=dict)
    params: dict[str, list[Any]] = field(default_factory=dict)
    base_dir: Path = Path()
    name: str = "sweep"

    def field_combos(self) -> list[tuple[tuple[str, Any], ...]]:
        """Every combination of scenario-field values, in spec order (one empty combo when none vary)."""
        keys = list(self.fields)
        return [tuple(zip(keys, vals, strict=True)) for vals in itertools.product(*(self.fields[k] for k in keys))]

    def param_combos(self, policy: str) -> list[tuple[tuple[str, Any], ...]]:
        """Every combination of the parameters that apply to ``policy`` (its own ``POLICY.KEY`` and bare ``KEY``),
        as ``(KEY, value)`` pairs sorted by key; one empty combo when none apply."""
        mine: dict[str, list[Any]] = {}
        for raw, values in self.params.items():
            prefix, dot, key = raw.partition(".")
            if not dot:
                mine.setdefault(raw, values)
            elif prefix == policy:
                mine[key] = values  # a policy-specific value wins over a bare one
        keys = sorted(mine)
        return [tuple(zip(keys, vals, strict=True)) for vals in itertools.product(*(mine[k] for k in keys))]


def spec_from_flags(scenarios: list[str], policies: str | None, seeds: str | None, sets: list[str] | None,
                    params: list[str] | None, name: str | None = None) -> SweepSpec:
    """Build a spec from CLI flags (``--policies a,b``, ``--seeds 0-9``, ``-s PATH=V,...``, ``-p KEY=V,...``)."""
    if not scenarios:
        raise SweepError("give at least one scenario (a built-in name or a YAML file) or a sweep spec file")
    pols = tuple(p.strip() for p in (policies or "").split(",") if p.strip())
    fields = dict(parse_values(s, "--set") for s in sets or [])
    pars = dict(parse_values(p, "--param") for p in params or [])
    spec = SweepSpec(scenarios=tuple(scenarios), policies=pols, seeds=tuple(parse_seeds(seeds)) if seeds else (),
                     fields=fields, params=pars, base_dir=Path(), name=name or _label(scenarios[0]))
    check_spec(spec)
    return spec


def is_spec_file(ref: str) -> bool:
    """Whether ``ref`` names a sweep spec file (a YAML mapping with ``scenarios``/``scenario`` and no
    ``factories``) rather than a scenario file."""
    p = Path(ref)
    if p.suffix not in (".yaml", ".yml") or not p.is_file():
        return False
    try:
        data = yaml.safe_load(p.read_text())
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        return False
    return isinstance(data, dict) and ("scenarios" in data or "scenario" in data) and "factories" not in data


def load_spec_file(path: Path) -> SweepSpec:
    """Read a YAML sweep spec (format in the module docstring).

    Raises:
        SweepError: unreadable file, unknown key, or a value of the wrong shape.
    """
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise SweepError(f"{path}: cannot read the sweep spec: {e}") from None
    except yaml.YAMLError as e:
        raise SweepError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise SweepError(f"{path}: a sweep spec is a mapping with keys {', '.join(SPEC_KEYS)}")
    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        raise SweepError(f"{path}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(SPEC_KEYS)}")
    scen = data.get("scenarios", data.get("scenario"))
    scenarios = [scen] if isinstance(scen, str) else scen
    if not isinstance(scenarios, list) or not scenarios or not all(isinstance(s, str) for s in scenarios):
        raise SweepError(f"{path}: scenarios: expected a scenario name/file or a list of them")
    pols = data.get("policies") or []
    if isinstance(pols, str):
        pols = [p.strip() for p in pols.split(",") if p.strip()]
    if not isinstance(pols, list) or not all(isinstance(p, str) for p in pols):
        raise SweepError(f"{path}: policies: expected a list of policy names")
    grids = {}
    for key in ("set", "params"):
        raw = data.get(key) or {}
        if not isinstance(raw, dict):
            raise SweepError(f"{path}: {key}: expected a mapping of PATH: [values]")
        grids[key] = {str(k): (v if isinstance(v, list) else [v]) for k, v in raw.items()}
        for k, v in grids[key].items():
            if not v:
                raise SweepError(f"{path}: {key}.{k}: the list of values is empty")
    spec = SweepSpec(scenarios=tuple(scenarios), policies=tuple(pols),
                     seeds=tuple(parse_seeds(data["seeds"])) if data.get("seeds") is not None else (),
                     fields=grids["set"], params=grids["params"], base_dir=path.parent, name=path.stem)
    check_spec(spec)
    return spec


def with_overrides(spec: SweepSpec, policies: str | None, seeds: str | None, sets: list[str] | None,
                   params: list[str] | None) -> SweepSpec:
    """``spec`` with the CLI flags that were given replacing its keys (``-s``/``-p`` replace path by path)."""
    from dataclasses import replace

    new = replace(
        spec,
        policies=tuple(p.strip() for p in policies.split(",") if p.strip()) if policies else spec.policies,
        seeds=tuple(parse_seeds(seeds)) if seeds else spec.seeds,
        fields={**spec.fields, **dict(parse_values(s, "--set") for s in sets or [])},
        params={**spec.params, **dict(parse_values(p, "--param") for p in params or [])},
    )
    check_spec(new)
    return new


def check_spec(spec: SweepSpec) -> None:
    """Check what can be checked without running: field paths exist in the scenario schema, parameters name
    policies of the sweep, and the grid is not absurdly large.

    Raises:
        SweepError: naming the bad path or parameter and what is allowed.
    """
    for path in spec.fields:
        _check_field_path(path)
    if spec.policies:
        for raw in spec.params:
            prefix, dot, _ = raw.partition(".")
            if dot and prefix not in spec.policies:
                raise SweepError(f"--param {raw}: {prefix!r} is not one of the swept policies "
                                 f"({', '.join(spec.policies)}); write POLICY.KEY or a bare KEY for all")
    n_fields = len(spec.field_combos())
    per_policy = [len(spec.param_combos(p)) for p in spec.policies or ("",)]
    total = len(spec.scenarios) * n_fields * sum(per_policy) * max(1, len(spec.seeds))
    if total > MAX_CELLS:
        raise SweepError(f"the sweep has {total:,} cells; the limit is {MAX_CELLS:,} per sweep (split it)")


def _check_field_path(path: str) -> None:
    """Walk a dotted path (``workload.load``, ``factories.0.pue``) through the scenario schema's models."""
    from pydantic import BaseModel

    from superfactory.scenario.schema import ScenarioSpec

    parts = path.split(".")
    ann: Any = ScenarioSpec
    walked: list[str] = []
    for part in parts:
        ann = _unwrap(ann)
        origin = typing.get_origin(ann)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            if part not in ann.model_fields:
                where = ".".join(walked) or "the scenario's top level"
                raise SweepError(f"--set {path}: {part!r} is not a field of {where}; allowed: "
                                 f"{', '.join(ann.model_fields)}")
            ann = ann.model_fields[part].annotation
        elif origin is list:
            if not part.isdigit():
                raise SweepError(f"--set {path}: {'.'.join(walked)} is a list; index it with a number, e.g. "
                                 f"{'.'.join(walked)}.0")
            ann = typing.get_args(ann)[0]
        elif origin is dict:
            ann = typing.get_args(ann)[1]
        else:
            raise SweepError(f"--set {path}: {'.'.join(walked)} is a single value; it has no field {part!r}")
        walked.append(part)


def _unwrap(ann: Any) -> Any:
    """Strip ``Annotated`` and ``X | None`` so the walk sees the model, list or dict inside."""
    while True:
        origin = typing.get_origin(ann)
        if origin is typing.Annotated:
            ann = typing.get_args(ann)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(ann) if a is not type(None)]
            ann = args[0] if len(args) == 1 else ann
            if len(args) != 1:
                return ann
        else:
            return ann


def _label(ref: str) -> str:
    p = Path(ref)
    return p.stem if p.suffix in (".yaml", ".yml") else ref
