"""The policy interface and the registry that finds policies by name.

Contract of a policy (:class:`Policy`):
- ``decide(snapshot, rng)`` returns a :class:`Plan`; it must not mutate the snapshot and may only use
  ``snapshot.now_s`` as time and ``rng`` as randomness, so the same inputs give the same plan.
- A policy object may keep state between calls (hysteresis, a warm-started solver), but only state derived from
  earlier snapshots.
- Results distinguish placed, waiting (with a readable reason) and refused (audit) jobs.

Registration: decorate the class with ``@register("name")`` in any module of :mod:`superfactory.policy`;
:func:`available` and :func:`make_policy` import every module of the package once, so a new policy is a
one-file change.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import numpy as np

from superfactory.domain.fleet import FleetSnapshot, Plan


class Policy(Protocol):
    """What the decision loop calls."""

    name: str

    def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
        """Decide what to place, move or stop now."""
        ...


class UnknownPolicyError(KeyError):
    """Raised by :func:`make_policy` for a name no module registered."""


_REGISTRY: dict[str, type[Any]] = {}
_DOCS: dict[str, str] = {}
_discovered = False

P = TypeVar("P")


def register(name: str) -> Callable[[type[P]], type[P]]:
    """Class decorator: make a policy constructible by ``name``."""

    def deco(cls: type[P]) -> type[P]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"policy name {name!r} registered twice")
        _REGISTRY[name] = cls
        doc = (cls.__doc__ or "").strip().splitlines()
        _DOCS[name] = doc[0] if doc else ""
        cls.name = name  # type: ignore[attr-defined]
        return cls

    return deco


def _discover() -> None:
    global _discovered  # noqa: PLW0603 - one-time plugin discovery
    if _discovered:
        return
    package = importlib.import_module("superfactory.policy")
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"superfactory.policy.{info.name}")
    _discovered = True


def available() -> dict[str, str]:
    """Registered policy names mapped to the first line of their docstring."""
    _discover()
    return dict(sorted(_DOCS.items()))


def make_policy(name: str, **params: Any) -> Policy:
    """Construct the policy registered as ``name`` with keyword parameters.

    Raises:
        UnknownPolicyError: no policy of that name (the message lists the known ones).
    """
    _discover()
    try:
        cls = _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise UnknownPolicyError(f"unknown policy {name!r}; known policies: {known}") from None
    policy: Policy = cls(**params)
    return policy
