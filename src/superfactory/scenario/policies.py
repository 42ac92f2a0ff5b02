"""Check a policy name and its parameters before a run, with "did you mean ..." suggestions.

Used for a scenario's ``policy:`` / ``policy_params:`` (reported at their YAML lines) and for the CLI's
``--policy`` / ``-p KEY=VALUE``. A parameter must be one the policy's constructor takes, of the type its
annotation says (``int``, ``float``, ``bool``, ``str``; an ``int`` is accepted for a ``float``), and the
constructor's own range checks must pass. Problems come back as ``(field path, message)`` pairs.
"""

from __future__ import annotations

import difflib
import inspect
import math
import typing
from collections.abc import Iterable
from typing import Any

from superfactory.policy import registry
from superfactory.policy.registry import UnknownPolicyError, available, make_policy

Path_ = tuple[str | int, ...]

_TYPE_WORDS = {int: "a whole number", float: "a number", bool: "true or false", str: "a string"}


def did_you_mean(name: str, options: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``options``, or an empty string."""
    close = difflib.get_close_matches(name, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def policy_parameters(name: str) -> dict[str, tuple[type | None, Any]]:
    """The parameters of policy ``name``: ``{param: (type or None if unannotated, default)}``.

    Raises:
        KeyError: unknown policy.
    """
    if name not in available():
        raise KeyError(name)
    cls = type(make_policy(name))
    hints = typing.get_type_hints(cls.__init__)
    out: dict[str, tuple[type | None, Any]] = {}
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        hint = hints.get(p.name)
        out[p.name] = (hint if hint in _TYPE_WORDS else None, p.default)
    return out


def _type_problem(value: object, want: type) -> str | None:
    if want is bool:
        return None if isinstance(value, bool) else "true or false"
    if isinstance(value, bool):
        return _TYPE_WORDS[want]
    if want is int:
        return None if isinstance(value, int) else _TYPE_WORDS[int]
    if want is float:
        ok = isinstance(value, int | float) and math.isfinite(value)
        return None if ok else "a finite number"
    return None if isinstance(value, want) else _TYPE_WORDS[want]


def policy_problems(name: str, params: dict[str, object], where: Path_ = ("policy",),
                    params_where: Path_ = ("policy_params",)) -> list[tuple[Path_, str]]:
    """Everything wrong with running policy ``name`` with ``params`` (empty when it would construct)."""
    known = available()
    training = list(available(role="training")) if hasattr(registry, "role_of") else list(known)
    if name not in known:
        return [(where, f"unknown policy {name!r}{did_you_mean(name, training)}; policies are: "
                 f"{', '.join(training)}")]
    if name not in training:  # e.g. the inference pre-placer: it runs by itself when a scenario has services
        return [(where, f"policy {name!r} places {registry.role_of(name)}, not training jobs; choose a training "
                 f"policy ({', '.join(training)})")]
    spec = policy_parameters(name)
    out: list[tuple[Path_, str]] = []
    for key, value in params.items():
        if not isinstance(key, str) or key not in spec:
            out.append(((*params_where, str(key)), f"policy {name!r} has no parameter {key!r}"
                        f"{did_you_mean(str(key), spec)}; its parameters are: {', '.join(spec) or '(none)'}"))
            continue
        want, default = spec[key]
        if want is not None:
            wrong = _type_problem(value, want)
            if wrong is not None:
                out.append(((*params_where, key), f"policy {name!r}: {key} must be {wrong} (default {default!r}), "
                            f"got {value!r}"))
    if out:
        return out
    try:
        make_policy(name, **params)
    except (ValueError, TypeError) as e:
        out.append((params_where, f"policy {name!r}: {e}"))
    except UnknownPolicyError as e:  # pragma: no cover - checked above
        out.append((where, str(e)))
    return out
