"""Names and numbers that reach the disk: steps, checkpoint ids, mesh names — validated at every entry point.

Every value that becomes part of a path on a target, or is parsed back from one, goes through this module:

* a **step** is an ``int`` in ``[0, MAX_STEP]`` (never a bool, never negative: a negative step used to commit a
  directory that no later command could parse);
* a **checkpoint id** is ``step-<12 digits>-<8 hex>``; the digits are the step, so the id alone orders
  checkpoints and a manifest whose step disagrees with its id is inconsistent;
* a **mesh name** is 1–128 characters of ``[A-Za-z0-9._-]``, starting with a letter or digit (so never ``.``,
  ``..``, empty, or anything with ``/``, ``\\``, NUL or control characters).

Anything else found on a target is an *unknown entry*: reported, never fatal.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from superfactory.mesh.errors import InvalidRequestError

__all__ = [
    "MAX_STEP",
    "MESH_NAME_RE",
    "checkpoint_id_step",
    "new_checkpoint_id",
    "validate_checkpoint_id",
    "validate_fencing_token",
    "validate_mesh_name",
    "validate_step",
]

#: the largest step an id can carry (12 decimal digits)
MAX_STEP = 10**12 - 1
#: the largest fencing token (a signed 63-bit integer, what a database sequence hands out)
MAX_FENCING_TOKEN = 2**63 - 1

_ID_RE = re.compile(r"step-(\d{12})-([0-9a-f]{8})")
MESH_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def validate_step(step: Any, what: str = "step") -> int:
    """``step`` as an int; InvalidRequestError unless it is an integer in ``[0, MAX_STEP]``."""
    if isinstance(step, bool) or not isinstance(step, int):
        raise InvalidRequestError(f"{what} must be an integer, got {step!r}.")
    if not 0 <= step <= MAX_STEP:
        raise InvalidRequestError(f"{what} must lie in [0, {MAX_STEP}], got {step}. Steps count up from 0.")
    return step


def validate_fencing_token(token: Any) -> int | None:
    """``token`` (None allowed); InvalidRequestError unless it is an integer in ``[0, 2**63 - 1]``."""
    if token is None:
        return None
    if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token <= MAX_FENCING_TOKEN:
        raise InvalidRequestError(f"fencing token must be an integer in [0, 2**63 - 1], got {token!r}.")
    return token


def new_checkpoint_id(step: int) -> str:
    """A fresh id for a checkpoint of ``step`` (validated)."""
    return f"step-{validate_step(step):012d}-{secrets.token_hex(4)}"


def checkpoint_id_step(name: str) -> int | None:
    """The step encoded in a checkpoint id, or None when ``name`` is not a well-formed id."""
    match = _ID_RE.fullmatch(name) if isinstance(name, str) else None
    return int(match.group(1)) if match else None


def validate_checkpoint_id(checkpoint_id: Any) -> str:
    """``checkpoint_id`` if well formed; InvalidRequestError otherwise (it never reaches a path)."""
    if not isinstance(checkpoint_id, str) or checkpoint_id_step(checkpoint_id) is None:
        raise InvalidRequestError(
            f"{checkpoint_id!r} is not a checkpoint id (expected step-<12 digits>-<8 hex digits>, as "
            f"`superfactory ckpt ls` prints them)."
        )
    return checkpoint_id


def validate_mesh_name(name: Any) -> str | None:
    """None when ``name`` is a valid mesh name, else why not (used by the config validation)."""
    if not isinstance(name, str) or not MESH_NAME_RE.fullmatch(name):
        return (
            f"mesh name must be 1-128 characters of letters, digits, '.', '_' or '-', starting with a letter "
            f"or digit (got {name!r}); it becomes a directory on every target"
        )
    return None
