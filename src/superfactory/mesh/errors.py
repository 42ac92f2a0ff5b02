"""The checkpoint mesh's error family.

Every error says what went wrong, where (checkpoint, stripe, fragment, target, file) and how to fix it.
All derive
from :class:`superfactory.errors.MeshError`, so the CLI prints them as one paragraph and exits 2.
"""

from __future__ import annotations

from superfactory.errors import MeshError

__all__ = [
    "AuthenticationError",
    "CheckpointNotFoundError",
    "IncompleteCheckpointError",
    "InsufficientFragmentsError",
    "IntegrityError",
    "InvalidRequestError",
    "KeyDestroyedError",
    "KeyringError",
    "LeaseLostError",
    "MeshConfigError",
    "MeshError",
    "PlacementError",
    "QuorumError",
    "RollbackError",
    "SovereigntyError",
    "StaleFencingTokenError",
    "StorageError",
    "StrandingError",
    "WrongKeyError",
]


class MeshConfigError(MeshError):
    """The mesh configuration (file or arguments) is invalid: unknown tier, bad k/m, missing target ..."""


class StorageError(MeshError):
    """A backend could not read, write, rename or delete an object."""


class IntegrityError(MeshError):
    """Stored bytes are not what was written (bit rot, truncation, tampering, a manifest that does not
    verify).
    """


class AuthenticationError(IntegrityError):
    """An AES-GCM tag or the manifest MAC did not verify: the bytes were corrupted or tampered with."""


class InsufficientFragmentsError(MeshError):
    """Fewer than k authentic fragments survive for at least one stripe, so the data cannot be rebuilt."""


class CheckpointNotFoundError(MeshError):
    """No committed checkpoint matches the request (id or step)."""


class IncompleteCheckpointError(MeshError):
    """The checkpoint was never committed (its save was interrupted before the commit barrier)."""


class KeyringError(MeshError):
    """The keyring file is missing, unreadable, has unsafe permissions or is malformed."""


class WrongKeyError(KeyringError):
    """A key exists under the requested id but does not unwrap the checkpoint's data key."""


class KeyDestroyedError(KeyringError):
    """The key-encryption key was destroyed (crypto-shredded): its checkpoints are unrecoverable by design."""


class PlacementError(MeshError):
    """A save cannot meet its spread (targets, regions) with the targets available; nothing was written."""


class SovereigntyError(PlacementError):
    """Sovereignty rules leave too few cleared targets to meet the spread; nothing was written."""


class QuorumError(MeshError):
    """The commit barrier was not reached: too few fragments became durable before the timeout."""


class StaleFencingTokenError(MeshError):
    """A save carried a fencing token older than the mesh's fence: its process was superseded (a zombie).

    The fence is the highest token the commit ledger (kept with the keys) has seen for the mesh, and the
    ``FENCE`` objects on the targets; the save is refused before writing and again at its commit.
    """


class InvalidRequestError(MeshError):
    """An argument is invalid (a negative or huge step, a malformed checkpoint id, gc keep < 1 ...).

    Raised before anything is read or written; an API maps it to 400, the CLI to exit code 2.
    """


class RollbackError(MeshError):
    """The targets' newest authentic checkpoint is older than the commit record says was committed.

    Every manifest of the newest checkpoint was removed or replaced with an older one (a rollback), or the
    checkpoint was deleted outside the mesh. Restoring "newest" would silently return older state, so it is
    refused; ask for a step or id explicitly to restore an older checkpoint on purpose.
    """


class LeaseLostError(MeshError):
    """A save lost its lease before committing (it was paused or hung past the lease and gc revoked it).

    Its fragments may have been deleted, so it does not commit; the previous checkpoint is untouched.
    """


class StrandingError(MeshError):
    """A key rewrap or shred was refused because it could leave a live checkpoint unrestorable (a copy could not
    be checked or rewritten); nothing was destroyed."""
