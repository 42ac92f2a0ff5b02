"""The checkpoint manifest: what a checkpoint is, where its fragments live, and its wrapped data key.

The manifest is also the **commit marker**: it is written to every target of the checkpoint only after the
quorum of fragments is durable, so a checkpoint without a readable manifest was never committed.

File format (``MANIFEST``)::

    <canonical JSON body, one line>\n<trailer JSON: {"hmac": …, "sha256": …}>

``sha256`` covers the exact body bytes and catches any accidental change (even one that still parses);
``hmac`` (HMAC-SHA256 under a key derived from the data key, see :mod:`crypto`) makes forgery impossible
without the KEK; the trailer must itself be canonical. So a flipped bit anywhere in the file is detected.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from superfactory.mesh.crypto import manifest_mac
from superfactory.mesh.errors import AuthenticationError, IntegrityError
from superfactory.mesh.keyring import KeyProvider
from superfactory.mesh.layout import StripeLayout

__all__ = ["FORMAT_VERSION", "FragmentEntry", "Manifest", "authenticate", "parse", "seal"]

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class FragmentEntry:
    """Fragment ``index`` of the checkpoint and the targets holding a copy of it (one per tier)."""

    index: int
    locations: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Manifest:
    """Everything needed to find, authenticate and decode a checkpoint (see the module docstring)."""

    checkpoint_id: str
    mesh: str
    step: int
    created_at_unix_s: float
    data_class: str
    scheme: str
    k: int
    m: int
    chunk_bytes: int
    payload_bytes: int
    sovereignty_classes: tuple[str, ...]
    tiers: tuple[str, ...]
    fragments: tuple[FragmentEntry, ...]
    kek_id: str
    wrapped_key_b64: str
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def layout(self) -> StripeLayout:
        """The stripe geometry of the payload."""
        return StripeLayout(self.payload_bytes, self.k, self.chunk_bytes)

    @property
    def wrapped_key(self) -> bytes:
        """The data key wrapped by KEK ``kek_id``."""
        return base64.b64decode(self.wrapped_key_b64)

    def targets(self) -> set[str]:
        """Every target holding a fragment."""
        return {t for f in self.fragments for t in f.locations}

    def body(self) -> bytes:
        """The canonical JSON body (sorted keys, no whitespace)."""
        d = asdict(self)
        d["format"] = FORMAT_VERSION
        return json.dumps(d, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def seal(manifest: Manifest, data_key: bytes) -> bytes:
    """The MANIFEST file bytes: body, newline, trailer with sha256 and HMAC."""
    body = manifest.body()
    trailer = {"hmac": manifest_mac(data_key, body), "sha256": hashlib.sha256(body).hexdigest()}
    return body + b"\n" + json.dumps(trailer, sort_keys=True, separators=(",", ":")).encode()


def parse(raw: bytes, where: str) -> tuple[Manifest, str]:
    """Check the unkeyed integrity of a MANIFEST file and return ``(manifest, hmac)``.

    The result is NOT trusted yet: anyone can recompute a checksum. Use no field but ``kek_id`` and the
    wrapped key before :func:`authenticate` (see :mod:`superfactory.mesh.copies`).

    Raises IntegrityError naming ``where`` if a single byte differs from what was written. The HMAC is checked
    by :func:`authenticate`, which needs the key.
    """
    body, sep, trailer_raw = raw.rpartition(b"\n")
    if not sep:
        raise IntegrityError(f"manifest {where} is truncated or corrupted (no trailer)")
    try:
        trailer = json.loads(trailer_raw)
        canonical = json.dumps(trailer, sort_keys=True, separators=(",", ":")).encode()
        if canonical != trailer_raw or not isinstance(trailer, dict) or set(trailer) != {"hmac", "sha256"}:
            raise ValueError("trailer not canonical")
    except (ValueError, TypeError):
        raise IntegrityError(f"manifest {where} is corrupted (its trailer does not parse)") from None
    if not hmac.compare_digest(hashlib.sha256(body).hexdigest(), str(trailer["sha256"])):
        raise IntegrityError(f"manifest {where} is corrupted (sha256 mismatch)")
    try:
        d = json.loads(body)
        if not isinstance(d, dict):
            raise TypeError("the body is not a JSON object")
        if d.pop("format") != FORMAT_VERSION:
            raise IntegrityError(f"manifest {where} has unsupported format; upgrade superfactory")
        d["fragments"] = tuple(FragmentEntry(int(f["index"]), tuple(f["locations"])) for f in d["fragments"])
        d["sovereignty_classes"] = tuple(d["sovereignty_classes"])
        d["tiers"] = tuple(d["tiers"])
        manifest = Manifest(**d)
        canonical_body = manifest.body()
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise IntegrityError(f"manifest {where} is malformed ({exc})") from None
    if canonical_body != body:
        raise IntegrityError(f"manifest {where} is not in canonical form")
    return manifest, str(trailer["hmac"])


def authenticate(manifest: Manifest, mac: str, keys: KeyProvider, where: str) -> bytes:
    """Unwrap the data key and verify the manifest HMAC; return the data key.

    Raises KeyDestroyedError / WrongKeyError / KeyringError from the key provider, or AuthenticationError if
    the manifest was forged.
    """
    data_key = keys.unwrap(manifest.kek_id, manifest.wrapped_key)
    if not hmac.compare_digest(manifest_mac(data_key, manifest.body()), mac):
        raise AuthenticationError(f"manifest {where} failed HMAC authentication (tampered)")
    return data_key
