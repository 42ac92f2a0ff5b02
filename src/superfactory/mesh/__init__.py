"""superfactory.mesh — erasure-coded, encrypted, quorum-replicated, tiered checkpoints.

Quick use::

    from superfactory.mesh import CheckpointMesh, load_config
    mesh = CheckpointMesh(load_config("mesh.yaml"))
    receipt = mesh.save(buffer, step=100)            # RS(4+2) + AES-256-GCM over the configured targets
    restored = mesh.restore()                        # newest committed checkpoint, bit-exact

PyTorch state dicts: :mod:`superfactory.mesh.torch_state` (imports torch lazily). See ``docs/mesh.md``.
"""

from superfactory.mesh.audit import AuditEvent, AuditLog
from superfactory.mesh.backend import Backend, FsspecBackend, LocalBackend, open_backend
from superfactory.mesh.config import MeshConfig, config_from_dict, load_config
from superfactory.mesh.erasure import ErasureCode
from superfactory.mesh.errors import (
    AuthenticationError,
    CheckpointNotFoundError,
    IncompleteCheckpointError,
    InsufficientFragmentsError,
    IntegrityError,
    InvalidRequestError,
    KeyDestroyedError,
    KeyringError,
    LeaseLostError,
    MeshConfigError,
    MeshError,
    PlacementError,
    QuorumError,
    RollbackError,
    SovereigntyError,
    StaleFencingTokenError,
    StorageError,
    StrandingError,
    WrongKeyError,
)
from superfactory.mesh.keyring import KeyProvider, LocalKeyring
from superfactory.mesh.layout import Payload
from superfactory.mesh.ledger import CommitLedger, CommitRecord
from superfactory.mesh.mesh import CheckpointMesh, SaveHandle
from superfactory.mesh.receipt import (
    CheckpointInfo,
    GcReport,
    Restored,
    RotateReport,
    SaveReceipt,
    ShredReport,
    VerifyReport,
)
from superfactory.mesh.target import DataClassPolicy, SovereigntyRules, Target, Tier, TierKind

__all__ = [
    "AuditEvent",
    "AuditLog",
    "AuthenticationError",
    "Backend",
    "CheckpointInfo",
    "CheckpointMesh",
    "CheckpointNotFoundError",
    "CommitLedger",
    "CommitRecord",
    "DataClassPolicy",
    "ErasureCode",
    "FsspecBackend",
    "GcReport",
    "IncompleteCheckpointError",
    "InsufficientFragmentsError",
    "IntegrityError",
    "InvalidRequestError",
    "KeyDestroyedError",
    "KeyProvider",
    "KeyringError",
    "LeaseLostError",
    "LocalBackend",
    "LocalKeyring",
    "MeshConfig",
    "MeshConfigError",
    "MeshError",
    "Payload",
    "PlacementError",
    "QuorumError",
    "Restored",
    "RollbackError",
    "RotateReport",
    "SaveHandle",
    "SaveReceipt",
    "ShredReport",
    "SovereigntyError",
    "SovereigntyRules",
    "StaleFencingTokenError",
    "StorageError",
    "StrandingError",
    "Target",
    "Tier",
    "TierKind",
    "VerifyReport",
    "WrongKeyError",
    "config_from_dict",
    "load_config",
    "open_backend",
]
