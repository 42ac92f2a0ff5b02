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
    "KeyDestroyedError",
    "KeyringError",
    "MeshConfigError",
    "MeshError",
    "PlacementError",
    "QuorumError",
    "SovereigntyError",
    "StaleFencingTokenError",
    "StorageError",
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
    """A save carried a fencing token older than the mesh's fence: its process was superseded (a zombie)."""
