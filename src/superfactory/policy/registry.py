"""The policy interface, policy roles, and the registry that finds policies by name.

Contract of a policy (:class:`Policy`):
- ``decide(snapshot, rng)`` returns a :class:`Plan`; it must not mutate the snapshot and may only use
  ``snapshot.now_s`` as time and ``rng`` as randomness, so the same inputs give the same plan.
- ``cycle_s``: 0 for a purely event-driven policy, else the period of its periodic cycles; ``wants_cycle(now_s)``
  is asked (cheaply, before any snapshot is built) whether a periodic cycle at ``now_s`` is worth running.
  ``event_driven``: whether the policy also decides after state changes (arrivals, failures, completions).
- ``observe(outcomes)`` receives the outcome of every action the policy emitted (applied, partial, refused,
  failed, timed out). A policy may keep state between calls (hysteresis, a warm-started solver, promises made
  to a preemptor), but only state derived from earlier snapshots and from these outcomes: nothing it decided is
  assumed to have happened until the outcome says so.
- Results distinguish placed, waiting (with a readable reason) and refused (audit) jobs.

Roles: a fleet runs one acting policy per role (and any number of shadows, see :mod:`superfactory.loop`).
:data:`ROLES` maps each role to its precedence: at one instant the loop runs roles in ascending precedence,
each on a fresh snapshot that shows what earlier roles' actions did, so inference (10) takes free nodes and
preempts training before training placement (20) decides. A new role (e.g. WAN transfers) is one
:func:`register_role` call in its policy module plus ``@register(name, role=...)``.

Registration: decorate the class with ``@register("name")`` in any module of :mod:`superfactory.policy`;
:func:`available` and :func:`make_policy` import every module of the package once, so a new policy is a
one-file change. Subclassing :class:`PolicyBase` gives the defaults (event-driven, no cycle, ignore outcomes).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np

from superfactory.domain.fleet import FleetSnapshot, Plan
from superfactory.domain.outcome import ActionOutcome

TRAINING = "training"
INFERENCE = "inference"

#: role -> precedence (lower decides and acts first at an instant)
ROLES: dict[str, int] = {INFERENCE: 10, TRAINING: 20}


def register_role(role: str, precedence: int) -> str:
    """Declare a policy role and its precedence (see the module docstring); returns ``role``."""
    if ROLES.get(role, precedence) != precedence:
        raise ValueError(f"role {role!r} already registered with precedence {ROLES[role]}")
    ROLES[role] = precedence
    return role


class Policy(Protocol):
    """What the decision loop calls."""

    name: str
    role: str
    event_driven: bool

    @property
    def cycle_s(self) -> int:
        """Period of periodic cycles, s (0 = none)."""
        ...

    def wants_cycle(self, now_s: int) -> bool:
        """Whether a periodic cycle at ``now_s`` may change anything (asked before a snapshot is built).

        Must be a pure function of ``now_s`` and the state ``decide`` and ``observe`` leave: a simulated (exact)
        clock asks it ahead of time, for the ticks to come, right after each ``decide``/``observe``, and wakes the
        policy only at the first tick where it answers yes (:mod:`superfactory.loop.decision`). No side effects;
        no wall clock or other object read."""
        ...

    def decide(self, snapshot: FleetSnapshot, rng: np.random.Generator) -> Plan:
        """Decide what to place, move or stop now."""
        ...

    def observe(self, outcomes: Sequence[ActionOutcome]) -> None:
        """Learn the fate of actions this policy emitted (called once per batch, in order)."""
        ...


class PolicyBase:
    """Defaults for :class:`Policy`: a training placement policy, event-driven, with no periodic cycle, that
    ignores outcomes (right for policies that keep no state between decisions)."""

    name: ClassVar[str] = "abstract"
    role: ClassVar[str] = TRAINING
    event_driven: ClassVar[bool] = True
    cycle_s: int = 0

    def wants_cycle(self, now_s: int) -> bool:
        del now_s
        return True

    def observe(self, outcomes: Sequence[ActionOutcome]) -> None:
        del outcomes


class UnknownPolicyError(KeyError):
    """Raised by :func:`make_policy` for a name no module registered."""


_REGISTRY: dict[str, type[Any]] = {}
_DOCS: dict[str, str] = {}
_ROLE_OF: dict[str, str] = {}
_discovered = False

P = TypeVar("P")


def register(name: str, role: str = TRAINING) -> Callable[[type[P]], type[P]]:
    """Class decorator: make a policy constructible by ``name``, acting in ``role``."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; register it first with register_role")

    def deco(cls: type[P]) -> type[P]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"policy name {name!r} registered twice")
        _REGISTRY[name] = cls
        doc = (cls.__doc__ or "").strip().splitlines()
        _DOCS[name] = doc[0] if doc else ""
        _ROLE_OF[name] = role
        cls.name = name  # type: ignore[attr-defined]
        cls.role = role  # type: ignore[attr-defined]
        return cls

    return deco


def unregister(name: str) -> None:
    """Forget a policy registered under ``name`` (for tests and plugins that register one for a while);
    unknown names are ignored."""
    _REGISTRY.pop(name, None)
    _DOCS.pop(name, None)
    _ROLE_OF.pop(name, None)


def _discover() -> None:
    global _discovered  # noqa: PLW0603 - one-time plugin discovery
    if _discovered:
        return
    package = importlib.import_module("superfactory.policy")
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"superfactory.policy.{info.name}")
    _discovered = True


def available(role: str | None = None) -> dict[str, str]:
    """Registered policy names (of ``role``, or all) mapped to the first line of their docstring."""
    _discover()
    return {k: v for k, v in sorted(_DOCS.items()) if role is None or _ROLE_OF[k] == role}


def role_of(name: str) -> str:
    """The role a registered policy acts in."""
    _discover()
    try:
        return _ROLE_OF[name]
    except KeyError:
        raise UnknownPolicyError(f"unknown policy {name!r}") from None


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
