"""The catalog: what checkpoints exist on the targets, and their authenticated manifests.

There is no central database: the targets are the truth. A checkpoint ``<id>`` lives under
``<mesh name>/<id>/`` on each target that holds a fragment (``frag-NNNN.bin``), an ``INTENT`` record written
before the first fragment, and a ``MANIFEST`` written after the quorum (the commit marker).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from superfactory.mesh.backend import Backend, open_backend
from superfactory.mesh.config import MeshConfig
from superfactory.mesh.errors import (
    CheckpointNotFoundError,
    IncompleteCheckpointError,
    IntegrityError,
    StorageError,
)
from superfactory.mesh.keyring import KeyProvider
from superfactory.mesh.manifest import Manifest, authenticate, parse
from superfactory.mesh.receipt import CheckpointInfo

__all__ = ["Catalog", "ManifestCopy"]

MANIFEST = "MANIFEST"
INTENT = "INTENT"


def fragment_name(index: int) -> str:
    """File name of fragment ``index``."""
    return f"frag-{index:04d}.bin"


@dataclass(frozen=True, slots=True)
class ManifestCopy:
    """A MANIFEST copy on one target that passed its checksum (not yet its HMAC)."""

    target: str
    manifest: Manifest
    mac: str


class Catalog:
    """Scans targets and loads manifests. Backends are opened once per target and reused."""

    def __init__(self, config: MeshConfig, backends: dict[str, Backend] | None = None) -> None:
        self.config = config
        self.backends: dict[str, Backend] = dict(backends or {})
        for t in config.targets:
            if t.name not in self.backends:
                self.backends[t.name] = open_backend(t.url, fsync=config.fsync)
        ranks = {tier.name: i for i, tier in enumerate(config.tiers_fastest_first())}
        self.target_rank = {t.name: (ranks[t.tier], i) for i, t in enumerate(config.targets)}

    def ckpt_dir(self, checkpoint_id: str) -> str:
        """Relative directory of a checkpoint on every target."""
        return f"{self.config.name}/{checkpoint_id}"

    def path(self, checkpoint_id: str, name: str) -> str:
        """Relative path of one object of a checkpoint."""
        return f"{self.ckpt_dir(checkpoint_id)}/{name}"

    def _scan(self) -> dict[str, dict[str, list[str]]]:
        """checkpoint id → target → names present."""
        found: dict[str, dict[str, list[str]]] = {}
        for target in self.config.targets:
            backend = self.backends[target.name]
            try:
                ids = backend.list_dir(self.config.name)
            except StorageError:
                continue  # an unreachable target just contributes nothing
            for cid in ids:
                if not cid.startswith("step-"):
                    continue
                try:
                    names = backend.list_dir(self.ckpt_dir(cid))
                except StorageError:
                    continue
                found.setdefault(cid, {})[target.name] = names
        return found

    def manifest_copies(
        self, checkpoint_id: str, holders: list[str] | None = None
    ) -> tuple[list[ManifestCopy], list[str]]:
        """Checksum-valid MANIFEST copies (fastest tier first) and a list of problems with the others."""
        names = holders if holders is not None else [t.name for t in self.config.targets]
        copies: list[ManifestCopy] = []
        problems: list[str] = []
        for name in sorted(names, key=lambda n: self.target_rank.get(n, (99, 0))):
            where = f"{checkpoint_id} on {name}"
            try:
                raw = self.backends[name].get(self.path(checkpoint_id, MANIFEST))
            except StorageError as exc:
                if not getattr(exc, "missing", False):
                    problems.append(f"{where}: {exc}")
                continue
            try:
                manifest, mac = parse(raw, where)
            except IntegrityError as exc:
                problems.append(str(exc))
                continue
            if manifest.checkpoint_id != checkpoint_id or manifest.mesh != self.config.name:
                problems.append(f"manifest {where} belongs to {manifest.mesh}/{manifest.checkpoint_id}")
                continue
            copies.append(ManifestCopy(name, manifest, mac))
        return copies, problems

    def list(self, include_incomplete: bool = False) -> list[CheckpointInfo]:
        """Every checkpoint, oldest step first; incomplete and damaged ones only when asked."""
        infos: list[CheckpointInfo] = []
        for cid, holders in self._scan().items():
            with_manifest = [t for t, names in holders.items() if MANIFEST in names]
            step = int(cid.split("-")[1])
            copies, _ = self.manifest_copies(cid, with_manifest) if with_manifest else ([], [])
            if copies:
                m = copies[0].manifest
                infos.append(
                    CheckpointInfo(
                        cid,
                        m.step,
                        "committed",
                        m.created_at_unix_s,
                        m.data_class,
                        m.payload_bytes,
                        m.tiers,
                        tuple(sorted(m.targets())),
                        m.kek_id,
                    )
                )
                continue
            if not include_incomplete:
                continue
            created = self._intent_time(cid, list(holders))
            state = "damaged" if with_manifest else "incomplete"
            infos.append(CheckpointInfo(cid, step, state, created, targets=tuple(sorted(holders))))
        return sorted(infos, key=lambda i: (i.step, i.created_at_unix_s, i.checkpoint_id))

    def _intent_time(self, checkpoint_id: str, holders: list[str]) -> float:
        for name in holders:
            try:
                return float(json.loads(self.backends[name].get(self.path(checkpoint_id, INTENT)))["at_unix_s"])
            except (StorageError, ValueError, KeyError):
                continue
        return 0.0

    def resolve(self, checkpoint_id: str | None, step: int | None) -> list[str]:
        """Candidate checkpoint ids, newest first: the one named, those at ``step``, or all committed."""
        committed = self.list()
        if checkpoint_id is not None:
            if any(i.checkpoint_id == checkpoint_id for i in committed):
                return [checkpoint_id]
            every = self.list(include_incomplete=True)
            match = next((i for i in every if i.checkpoint_id == checkpoint_id), None)
            if match is not None and match.state == "incomplete":
                raise IncompleteCheckpointError(
                    f"checkpoint {checkpoint_id} was never committed (its save was interrupted); it "
                    f"cannot be "
                    f"restored. `superfactory ckpt gc` removes it."
                )
            if match is None:
                raise CheckpointNotFoundError(
                    f"no checkpoint {checkpoint_id} in mesh {self.config.name!r}; `superfactory ckpt ls` lists them."
                )
            return [checkpoint_id]  # damaged: let the caller report what is wrong with it
        pool = [i for i in committed if step is None or i.step == step]
        if not pool:
            what = f"at step {step}" if step is not None else "at all"
            raise CheckpointNotFoundError(
                f"no committed checkpoint {what} in mesh {self.config.name!r} "
                f"({len(committed)} committed in total); `superfactory ckpt ls --all` shows "
                f"incomplete ones too."
            )
        return [i.checkpoint_id for i in reversed(pool)]

    def load(self, checkpoint_id: str, keys: KeyProvider) -> tuple[Manifest, bytes, list[str]]:
        """The authenticated manifest and data key of a checkpoint, and problems with other copies.

        Key errors (destroyed, unknown, wrong key) are raised at once; a damaged or forged copy is skipped in
        favour of the next; if no copy verifies, IntegrityError lists why.
        """
        copies, problems = self.manifest_copies(checkpoint_id)
        for copy in copies:
            try:
                data_key = authenticate(copy.manifest, copy.mac, keys, f"{checkpoint_id} on {copy.target}")
            except IntegrityError as exc:
                problems.append(str(exc))
                continue
            return copy.manifest, data_key, problems
        raise IntegrityError(
            f"no intact manifest for checkpoint {checkpoint_id}: {'; '.join(problems) or 'none found'}. "
            f"The checkpoint cannot be trusted; restore another one."
        )
