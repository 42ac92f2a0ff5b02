"""The root of superfactory's exceptions.

Every error a user can cause (a bad scenario file, an impossible job, a corrupt checkpoint, a bad API call)
derives from :class:`SuperfactoryError` and carries a message that says what is wrong, where, and how to fix
it. The CLI turns these into a one-paragraph message and exit code 2, never a traceback. Each package has its
own family (``ScenarioError``, ``MeshError`` ...) so callers can catch what they can handle.
"""

from __future__ import annotations


class SuperfactoryError(Exception):
    """Base class for every error superfactory raises on purpose."""

    #: process exit code the CLI uses for this family of errors
    exit_code: int = 2


class ScenarioError(SuperfactoryError):
    """A scenario file or built-in scenario is invalid (bad key, bad unit, impossible job ...)."""


class PolicyError(SuperfactoryError):
    """A policy name is unknown or a policy was configured with invalid parameters."""


class SimulationError(SuperfactoryError):
    """The twin reached a state that contradicts its invariants (a bug, reported with context)."""


class MeshError(SuperfactoryError):
    """Base for checkpoint-mesh errors (see :mod:`superfactory.mesh`)."""
