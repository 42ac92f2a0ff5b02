"""Fencing tokens: a checkpoint commit from a superseded job process is refused.

The control plane gives every placement of a job a fencing token that only grows. The newest placement's
process raises the mesh's *fence* to its token before it restores (:func:`raise_fence`); a save carrying a
smaller token is refused before anything is written and again right before its manifest (the commit marker)
would be written (:func:`check_fence`). So a zombie — a process of an older placement that is still alive,
e.g. behind a network partition — cannot commit a checkpoint over its successor's.

The fence is a small JSON object ``<mesh name>/FENCE`` (``{"fencing_token": N}``) on every target; its value
is the largest token readable on any target. :func:`raise_fence` must reach more than ``n - quorum`` targets,
so any quorum a zombie could still commit to contains at least one target that holds the raised fence.
"""

from __future__ import annotations

import contextlib
import json

from superfactory.mesh.catalog import Catalog
from superfactory.mesh.errors import StaleFencingTokenError, StorageError

__all__ = ["FENCE", "check_fence", "raise_fence", "read_fence"]

FENCE = "FENCE"


def _path(catalog: Catalog) -> str:
    return f"{catalog.config.name}/{FENCE}"


def read_fence(catalog: Catalog) -> int | None:
    """The largest fencing token on any reachable target (None when no fence was ever raised)."""
    best: int | None = None
    for name, backend in catalog.backends.items():
        try:
            if not backend.exists(_path(catalog)):
                continue
            token = int(json.loads(backend.get(_path(catalog)))["fencing_token"])
        except (StorageError, ValueError, KeyError, TypeError, OSError):
            continue  # unreachable target or unreadable record: the other copies decide
        del name
        best = token if best is None else max(best, token)
    return best


def check_fence(catalog: Catalog, token: int, checkpoint_id: str, stage: str) -> None:
    """Raise StaleFencingTokenError when the fence is above ``token``."""
    fence = read_fence(catalog)
    if fence is not None and fence > token:
        raise StaleFencingTokenError(
            f"checkpoint {checkpoint_id} of mesh {catalog.config.name!r} refused {stage}: its fencing token "
            f"{token} is older than the mesh's fence {fence}. The job was placed again elsewhere (a newer "
            f"process owns it); this process is a zombie and must stop. Nothing was committed."
        )


def raise_fence(catalog: Catalog, token: int, quorum: int) -> int:
    """Raise the fence to ``token`` on every reachable target; returns how many targets hold it.

    StaleFencingTokenError if the fence is already above ``token``; StorageError if fewer than
    ``n - quorum + 1`` targets could be written (a zombie could then still reach a quorum of old fences).
    """
    check_fence(catalog, token, "(fence)", "at fence raise")
    data = json.dumps({"fencing_token": token}).encode()
    written = 0
    for backend in catalog.backends.values():
        with contextlib.suppress(StorageError):
            current = None
            with contextlib.suppress(StorageError, ValueError, KeyError, TypeError):
                if backend.exists(_path(catalog)):
                    current = int(json.loads(backend.get(_path(catalog)))["fencing_token"])
            if current is None or current < token:
                backend.put_atomic(_path(catalog), data)
            written += 1
    needed = len(catalog.backends) - quorum + 1
    if written < needed:
        raise StorageError(
            f"fence {token} of mesh {catalog.config.name!r} reached only {written} of {len(catalog.backends)} "
            f"targets; {needed} are needed so no quorum of stale targets remains. Check the unreachable targets."
        )
    return written
