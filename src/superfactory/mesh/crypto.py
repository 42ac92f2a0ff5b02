"""Authenticated encryption of fragment chunks (AES-256-GCM) and the manifest MAC.

Contract:

* Every checkpoint gets a fresh random 256-bit data key (DEK); it is stored only wrapped by a
key-encryption key
  (see :mod:`superfactory.mesh.keyring`).
* Every stored chunk is ``AES-256-GCM(DEK, nonce, chunk, aad)`` with a 16-byte tag. The 96-bit nonce is
  ``fragment index (32 bit) ‖ stripe index (64 bit)``: distinct positions get distinct nonces, and because the
  code is deterministic the plaintext at a position never changes, so a (key, nonce) pair never encrypts two
  different plaintexts — not even when ``verify --repair`` rewrites a fragment. No random nonces, no counters
  to persist, and the DEK never outlives its checkpoint.
* The AAD binds checkpoint id, stripe, fragment and length, so a chunk copied from another position or another
  checkpoint fails authentication like a flipped bit does. Every chunk is authenticated before it is decoded.
* The manifest is protected by HMAC-SHA256 under a key derived from the DEK with HKDF, so only a holder of the
  KEK can forge one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from superfactory.mesh.errors import AuthenticationError

__all__ = ["TAG_BYTES", "ChunkCipher", "manifest_mac", "new_data_key"]

TAG_BYTES = 16
DATA_KEY_BYTES = 32


def new_data_key() -> bytes:
    """A fresh random AES-256 data key."""
    return secrets.token_bytes(DATA_KEY_BYTES)


def manifest_mac(data_key: bytes, body: bytes) -> str:
    """Hex HMAC-SHA256 of a manifest body under a key derived from the checkpoint's data key."""
    mac_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"superfactory-mesh/manifest-mac/v1").derive(
        data_key
    )
    return hmac.new(mac_key, body, hashlib.sha256).hexdigest()


class ChunkCipher:
    """Encrypts and authenticates the chunks of one checkpoint.

    ``encrypt_into``/``decrypt_into`` write into caller-owned buffers (no allocation per chunk beyond the
    12-byte nonce and short AAD); the underlying OpenSSL call releases the GIL, so fragment threads overlap.
    """

    __slots__ = ("_aead", "_prefix")

    def __init__(self, data_key: bytes, checkpoint_id: str) -> None:
        self._aead = AESGCM(data_key)
        self._prefix = f"sfmesh1|{checkpoint_id}|".encode()

    @staticmethod
    def nonce(fragment: int, stripe: int) -> bytes:
        """The 96-bit nonce of a chunk position (unique per position within a checkpoint key)."""
        return fragment.to_bytes(4, "big") + stripe.to_bytes(8, "big")

    def _aad(self, fragment: int, stripe: int, length: int) -> bytes:
        return self._prefix + f"{stripe}|{fragment}|{length}".encode()

    def encrypt_into(self, fragment: int, stripe: int, plaintext: Any, out: Any) -> None:
        """Write ciphertext‖tag of ``plaintext`` into ``out`` (len(plaintext) + 16 bytes)."""
        length = memoryview(plaintext).nbytes
        self._aead.encrypt_into(self.nonce(fragment, stripe), plaintext, self._aad(fragment, stripe, length), out)

    def decrypt_into(self, fragment: int, stripe: int, ciphertext: Any, out: Any) -> None:
        """Authenticate ``ciphertext`` (with its tag) and write the plaintext into ``out``.

        Raises AuthenticationError if the chunk is corrupt, truncated, moved or was written under another key;
        ``out`` then holds garbage and must not be used.
        """
        length = memoryview(ciphertext).nbytes - TAG_BYTES
        try:
            self._aead.decrypt_into(self.nonce(fragment, stripe), ciphertext, self._aad(fragment, stripe, length), out)
        except InvalidTag:
            raise AuthenticationError(
                f"chunk of fragment {fragment}, stripe {stripe} failed AES-GCM authentication"
            ) from None
