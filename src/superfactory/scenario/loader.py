"""Load a scenario from YAML text, a file or the built-in library, with errors that point at lines.

The YAML is composed into nodes (not just values) so every field path keeps its line number; structural
errors (pydantic) and semantic errors (:mod:`.compiler`) are both reported as
``FILE:LINE: field.path: what is wrong (what is allowed)``, all at once, as one :class:`ScenarioError`.
"""

from __future__ import annotations

import typing
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from superfactory.errors import ScenarioError
from superfactory.scenario.compiler import CompileErrors, compile_scenario
from superfactory.scenario.model import Scenario
from superfactory.scenario.policies import did_you_mean
from superfactory.scenario.schema import ScenarioSpec

MAX_REPORTED = 20
#: a scenario file is configuration, not data: the largest built-in is ~4 kB and 50,000 explicit jobs (the
#: job limit) fit in ~10 MB; bigger inputs (traces, prices) are referenced as CSV files, not inlined
MAX_FILE_BYTES = 16 * 2**20
#: values after YAML aliases are expanded: bounds "billion laughs" documents that are small on disk
MAX_YAML_VALUES = 2_000_000
Loc = tuple[str | int, ...]


def _to_python(node: yaml.Node, path: Loc, lines: dict[Loc, int], source: str, budget: list[int]) -> Any:
    """Turn a composed YAML node into Python values, recording the 1-based line of every path."""
    lines[path] = node.start_mark.line + 1
    budget[0] -= 1
    if budget[0] < 0:
        raise ScenarioError(f"{source}: more than {MAX_YAML_VALUES:,} values once YAML aliases are expanded "
                            "(a scenario is configuration; reference big inputs as CSV files)")
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            where = f"{source}:{key_node.start_mark.line + 1}: {_fmt(path) or '<top>'}"
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise ScenarioError(f"{where}: a key must be a plain name, got {type(key).__name__} {key!r}")
            if key in out:
                raise ScenarioError(f"{where}: duplicate key {key!r}")
            out[key] = _to_python(value_node, (*path, key), lines, source, budget)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_python(v, (*path, i), lines, source, budget) for i, v in enumerate(node.value)]
    return _scalar(node)


#: composing with libyaml (when PyYAML was built with it) gives the same nodes, tags and line marks as the pure
#: Python composer, ~10x faster on the big built-ins (fleet-200 is ~85 kB)
_COMPOSE_LOADER: Any = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader


def _compose(text: str) -> yaml.Node | None:
    """The composed document, by libyaml when available; on any YAML error the pure Python composer decides, so
    errors read as they always have (its messages name the offending character) and a document only libyaml
    refuses (an unknown ``%`` directive) still loads."""
    try:
        return yaml.compose(text, Loader=_COMPOSE_LOADER)
    except yaml.YAMLError:
        if _COMPOSE_LOADER is yaml.SafeLoader:
            raise
    return yaml.compose(text, Loader=yaml.SafeLoader)


def _scalar(node: yaml.Node) -> Any:
    """The Python value of one composed node, as ``yaml.safe_load(yaml.serialize(node))`` would give it.

    The node's tag was resolved when it was composed; the safe constructor builds the value from that tag
    directly (unknown tags raise ``ConstructorError``, a ``YAMLError``, as the re-load would) instead of
    emitting the node as a one-node document and parsing it again.
    """
    return yaml.constructor.SafeConstructor().construct_object(node, deep=True)


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


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The schema model that holds the field at ``loc`` (for "did you mean" on an unknown key)."""
    model: Any = ScenarioSpec
    for part in loc[:-1]:
        if isinstance(part, int) or model is None:
            continue  # list index: the item type was unwrapped with the field
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = None
        todo = [field.annotation]
        while todo:  # unwrap list[...], dict[str, ...], X | None down to a model
            t = todo.pop()
            if isinstance(t, type) and issubclass(t, BaseModel):
                model = t
                break
            todo.extend(typing.get_args(t))
    return model


def _pydantic_problems(err: ValidationError) -> list[tuple[Loc, str]]:
    out = []
    for e in err.errors(include_url=False):
        # Drop pydantic's internal tags (union branch names, validator function names) from the path.
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            model = _model_at(loc)
            hint = did_you_mean(str(loc[-1]), model.model_fields) if model is not None else ""
            msg = f"unknown key {loc[-1]!r}{hint} (check spelling; see `superfactory scenario schema`)"
        elif e["type"] == "literal_error":
            msg = f"{msg} (got {e.get('input')!r})"
        elif e["type"] == "missing":
            msg = "required field is missing"
        elif not e["type"].startswith(("value_error", "assertion_error")) and "input" in e:
            shown = repr(e["input"])
            msg = f"{msg} (got {shown if len(shown) <= 60 else shown[:57] + '...'})"
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


def _yaml_error(source: str, e: yaml.YAMLError) -> ScenarioError:
    mark = getattr(e, "problem_mark", None)
    where = f"{source}:{mark.line + 1}" if mark is not None else source
    return ScenarioError(f"{where}: not valid YAML: {getattr(e, 'problem', None) or e}")


def parse_scenario(text: str, source: str = "<string>", base_dir: Path | None = None,
                   seed: int | None = None) -> Scenario:
    """Validate and compile scenario YAML text; ``seed`` (default: the file's ``seed:``) roots the seed tree.

    Raises:
        ScenarioError: listing every problem with its line and field path.
    """
    lines: dict[Loc, int] = {}
    try:
        root = _compose(text)
        if root is None:
            raise ScenarioError(f"{source}: the file is empty; see `superfactory scenario show default` for an "
                                "example")
        data = _to_python(root, (), lines, source, [MAX_YAML_VALUES])
    except yaml.YAMLError as e:
        raise _yaml_error(source, e) from None
    except RecursionError:
        raise ScenarioError(f"{source}: nested too deeply (a scenario is a few levels of mappings and lists)") from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}:1: a scenario must be a mapping of keys (name, duration, factories, ...)")
    try:
        spec = ScenarioSpec.model_validate(data)
    except ValidationError as e:
        raise _report(source, _pydantic_problems(e), lines) from None
    def locate(loc: Loc) -> str:
        line = _line_for(loc, lines)
        return f"{source}:{line}: {_fmt(loc) or '<top>'}" if line else f"{source}: {_fmt(loc) or '<top>'}"

    try:
        return compile_scenario(spec, base_dir=base_dir, source=source, seed=seed, locate=locate)
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
        raise ScenarioError(f"no built-in scenario {name!r}{did_you_mean(name, builtin_names())}; built-ins are: "
                            f"{', '.join(builtin_names())} (or give a path to a .yaml file)")
    return (resources.files("superfactory.scenario") / "builtin" / f"{name}.yaml").read_text()


def read_scenario_file(p: Path) -> str:
    """The text of a scenario file.

    Raises:
        ScenarioError: missing, a directory, unreadable, over ``MAX_FILE_BYTES`` or not UTF-8 text.
    """
    if not p.exists():
        raise ScenarioError(f"{p}: no such scenario file (built-ins are: {', '.join(builtin_names())})")
    if p.is_dir():
        raise ScenarioError(f"{p}: is a directory; give a scenario .yaml file or a built-in name")
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ScenarioError(f"{p}: {size:,} bytes; a scenario file is at most {MAX_FILE_BYTES:,} bytes "
                                "(configuration, not data: reference prices, traces and tables as CSV files)")
        raw = p.read_bytes()
    except OSError as e:
        raise ScenarioError(f"{p}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ScenarioError(f"{p}: not a text scenario (byte {e.start} is not UTF-8); scenarios are YAML "
                            "text files") from None
    if "\x00" in text:
        raise ScenarioError(f"{p}: contains NUL bytes; scenarios are YAML text files")
    return text


def load_scenario(ref: str, seed: int | None = None) -> Scenario:
    """Load a scenario by built-in name or by path to a YAML file; ``seed`` overrides the file's root seed."""
    p = Path(ref)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return parse_scenario(read_scenario_file(p), source=str(p), base_dir=p.parent, seed=seed)
    return parse_scenario(builtin_text(ref), source=f"<built-in {ref}>", seed=seed)


def json_schema() -> dict[str, Any]:
    """The JSON schema of the scenario format (for editors)."""
    return ScenarioSpec.model_json_schema()
