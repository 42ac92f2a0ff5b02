"""Manifest copies: read one from a target and authenticate it before any of its fields is used.

A checkpoint's ``MANIFEST`` is written to every target that holds one of its fragments. Each copy is judged on
its own, in this order, and the first failure decides its status:

=================  ===============================================================================
``missing``        no MANIFEST on that target
``unreadable``     the target could not be read (offline, permissions …)
``damaged``        the unkeyed checksum or the format fails (bit rot, truncation, appended bytes)
``key_unknown``    the copy names a key the key provider does not have
``key_destroyed``  the copy names a crypto-shredded key
``wrong_key``      the named key does not unwrap its data key (another key under that id, or tampering)
``forged``         the HMAC fails, or the wrapped key is not a key at all (tampered or forged)
``inconsistent``   authentic, but for another mesh, another checkpoint, or a step its id contradicts
``ok``             authentic and consistent: only now are its fields used
=================  ===============================================================================

Callers try the copies fastest target first and fall through to the next on *any* failure.
"""

from __future__ import annotations

from dataclasses import dataclass

from superfactory.mesh.backend import Backend
from superfactory.mesh.errors import (
    IntegrityError,
    KeyDestroyedError,
    KeyringError,
    MeshError,
    StorageError,
    WrongKeyError,
)
from superfactory.mesh.keyring import KeyProvider
from superfactory.mesh.manifest import Manifest, authenticate, parse
from superfactory.mesh.naming import checkpoint_id_step

__all__ = ["MANIFEST", "REJECTED", "CopyCheck", "check_copy"]

MANIFEST = "MANIFEST"
#: statuses that mean someone or something wrote a wrong manifest (audited, reported by verify)
REJECTED = frozenset({"damaged", "forged", "inconsistent", "key_unknown", "wrong_key"})


@dataclass(frozen=True, slots=True)
class CopyCheck:
    """The verdict on one MANIFEST copy; ``manifest`` and ``data_key`` are set only when ``status == "ok"``."""

    target: str
    status: str
    detail: str = ""
    manifest: Manifest | None = None
    data_key: bytes | None = None
    error: MeshError | None = None

    @property
    def ok(self) -> bool:
        """Authentic and consistent."""
        return self.status == "ok"


def check_copy(backend: Backend, path: str, target: str, mesh: str, checkpoint_id: str, keys: KeyProvider) -> CopyCheck:
    """Read, checksum, authenticate and cross-check the MANIFEST copy at ``path`` on ``target``."""
    where = f"{checkpoint_id} on {target}"
    try:
        raw = backend.get(path)
    except StorageError as exc:
        if getattr(exc, "missing", False):
            return CopyCheck(target, "missing")
        return CopyCheck(target, "unreadable", str(exc), error=exc)
    try:
        manifest, mac = parse(raw, where)
    except IntegrityError as exc:
        return CopyCheck(target, "damaged", str(exc), error=exc)
    try:
        data_key = authenticate(manifest, mac, keys, where)
    except KeyDestroyedError as exc:
        return CopyCheck(target, "key_destroyed", f"manifest {where}: {exc}", error=exc)
    except WrongKeyError as exc:
        return CopyCheck(target, "wrong_key", f"manifest {where}: {exc}", error=exc)
    except KeyringError as exc:
        return CopyCheck(target, "key_unknown", f"manifest {where}: {exc}", error=exc)
    except IntegrityError as exc:
        return CopyCheck(target, "forged", str(exc), error=exc)
    except (ValueError, TypeError) as exc:  # a wrapped key that is not base64 / not a key at all
        err = IntegrityError(f"manifest {where} carries an unusable wrapped key ({exc})")
        return CopyCheck(target, "forged", str(err), error=err)
    problems = []
    if manifest.mesh != mesh:
        problems.append(f"belongs to mesh {manifest.mesh!r}")
    if manifest.checkpoint_id != checkpoint_id:
        problems.append(f"belongs to checkpoint {manifest.checkpoint_id}")
    if checkpoint_id_step(manifest.checkpoint_id) != manifest.step:
        problems.append(f"says step {manifest.step}, which its id contradicts")
    if {f.index for f in manifest.fragments} != set(range(manifest.k + manifest.m)):
        problems.append("does not list every fragment exactly once")
    if problems:
        err = IntegrityError(f"manifest {where} is authentic but inconsistent: it {'; '.join(problems)}")
        return CopyCheck(target, "inconsistent", str(err), error=err)
    return CopyCheck(target, "ok", manifest=manifest, data_key=data_key)
