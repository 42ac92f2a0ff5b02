"""Load a scenario from YAML text, a file or the built-in library, with errors that point at lines.

The YAML is composed into nodes (not just values) so every field path keeps its line number; structural
errors (pydantic) and semantic errors (:mod:`.compiler`) are both reported as
``FILE:LINE: field.path: what is wrong (what is allowed)``, all at once, as one :class:`ScenarioError`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from superfactory.errors import ScenarioError
from superfactory.scenario.compiler import CompileErrors, compile_scenario
from superfactory.scenario.model import Scenario
from superfactory.scenario.schema import ScenarioSpec

MAX_REPORTED = 20
Loc = tuple[str | int, ...]


def _to_python(node: yaml.Node, path: Loc, lines: dict[Loc, int], source: str) -> Any:
    """Turn a composed YAML node into Python values, recording the 1-based line of every path."""
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = yaml.safe_load(yaml.serialize(key_node))
            if key in out:
                raise ScenarioError(
                    f"{source}:{key_node.start_mark.line + 1}: {_fmt(path) or '<top>'}: duplicate key {key!r}"
                )
            out[key] = _to_python(value_node, (*path, key), lines, source)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(v, (*path, i), lines, source) for i, v in enumerate(node.value)]
    return yaml.safe_load(yaml.serialize(node))


def _fmt(loc: Loc) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts)


def _line_for(loc: Loc, lines: dict[Loc, int]) -> int | None:
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get(())


def _pydantic_problems(err: ValidationError) -> list[tuple[Loc, str]]:
    out = []
    for e in err.errors(include_url=False):
        # Drop pydantic's internal tags (union branch names, validator function names) from the path.
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = f"unknown key {loc[-1]!r} (check spelling; see `superfactory scenario schema`)"
        elif e["type"] == "literal_error":
            msg = f"{msg} (got {e.get('input')!r})"
        elif e["type"] == "missing":
            msg = "required field is missing"
        out.append((loc, msg))
    return out


def _report(source: str, problems: list[tuple[Loc, str]], lines: dict[Loc, int]) -> ScenarioError:
    rendered = []
    for loc, msg in problems[:MAX_REPORTED]:
        line = _line_for(loc, lines)
        where = f"{source}:{line}" if line else source
        rendered.append(f"{where}: {_fmt(loc) or '<top>'}: {msg}")
    more = len(problems) - MAX_REPORTED
    if more > 0:
        rendered.append(f"... and {more} more")
    head = f"invalid scenario {source} ({len(problems)} problem{'s' if len(problems) != 1 else ''}):"
    return ScenarioError("\n".join([head, *("  " + r for r in rendered)]))


def parse_scenario(text: str, source: str = "<string>", base_dir: Path | None = None) -> Scenario:
    """Validate and compile scenario YAML text.

    Raises:
        ScenarioError: listing every problem with its line and field path.
    """
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise ScenarioError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if root is None:
        raise ScenarioError(f"{source}: the file is empty; see `superfactory scenario show default` for an example")
    lines: dict[Loc, int] = {}
    data = _to_python(root, (), lines, source)
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}:1: a scenario must be a mapping of keys (name, duration, factories, ...)")
    try:
        spec = ScenarioSpec.model_validate(data)
    except ValidationError as e:
        raise _report(source, _pydantic_problems(e), lines) from None
    try:
        return compile_scenario(spec, base_dir=base_dir, source=source)
    except CompileErrors as e:
        raise _report(source, e.errors, lines) from None


def builtin_names() -> list[str]:
    """Names of the built-in scenarios."""
    root = resources.files("superfactory.scenario") / "builtin"
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


def builtin_text(name: str) -> str:
    """The YAML text of a built-in scenario.

    Raises:
        ScenarioError: unknown name (the message lists the built-ins).
    """
    if name not in builtin_names():
        raise ScenarioError(f"no built-in scenario {name!r}; built-ins are: {', '.join(builtin_names())}")
    return (resources.files("superfactory.scenario") / "builtin" / f"{name}.yaml").read_text()


def load_scenario(ref: str) -> Scenario:
    """Load a scenario by built-in name or by path to a YAML file."""
    p = Path(ref)
    if p.suffix in (".yaml", ".yml") or p.exists():
        if not p.exists():
            raise ScenarioError(f"{ref}: no such scenario file (built-ins are: {', '.join(builtin_names())})")
        return parse_scenario(p.read_text(), source=str(p), base_dir=p.parent)
    return parse_scenario(builtin_text(ref), source=f"<built-in {ref}>")


def json_schema() -> dict[str, Any]:
    """The JSON schema of the scenario format (for editors)."""
    return ScenarioSpec.model_json_schema()
