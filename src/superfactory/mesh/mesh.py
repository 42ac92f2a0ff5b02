"""The checkpoint mesh: save (sync or async), restore, list — the library's front door.

State machine of one checkpoint (see README.md)::

    planned ──(placement ok, INTENT written)──▶ writing ──(quorum durable, MANIFEST written)──▶ committed
       │ placement/sovereignty refused                │ quorum lost / timeout / crash
       ▼                                              ▼
    refused (nothing written)                      incomplete (invisible to restore; gc removes it)

A save is "done" only when committed. Restore picks the newest committed checkpoint (or the one asked for),
authenticates its manifest, then its chunks, fastest tier first, and decodes only what is lost.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from superfactory.mesh import fence, maintenance
from superfactory.mesh.asyncsave import AsyncSaves, SaveHandle
from superfactory.mesh.audit import AuditLog
from superfactory.mesh.backend import Backend
from superfactory.mesh.catalog import INTENT, MANIFEST, Catalog, fragment_name
from superfactory.mesh.commit import SaveCommit
from superfactory.mesh.config import MeshConfig
from superfactory.mesh.crypto import ChunkCipher, new_data_key
from superfactory.mesh.erasure import ErasureCode
from superfactory.mesh.errors import (
    InsufficientFragmentsError,
    IntegrityError,
    InvalidRequestError,
    QuorumError,
    StaleFencingTokenError,
    StorageError,
)
from superfactory.mesh.keyring import KeyProvider, LocalKeyring
from superfactory.mesh.layout import Payload
from superfactory.mesh.manifest import FragmentEntry, Manifest, seal
from superfactory.mesh.naming import new_checkpoint_id, validate_checkpoint_id, validate_fencing_token, validate_step
from superfactory.mesh.placement import plan_placement
from superfactory.mesh.reader import Location, restore_payload
from superfactory.mesh.receipt import (
    CheckpointInfo,
    FragmentReceipt,
    GcReport,
    Restored,
    RotateReport,
    SaveReceipt,
    ShredReport,
    VerifyReport,
)
from superfactory.mesh.writer import FragmentJob, write_fragments

__all__ = ["CheckpointMesh", "SaveHandle"]

Progress = Callable[[int], None]


class CheckpointMesh(AsyncSaves):
    """Erasure-coded, encrypted, quorum-replicated, tiered checkpoints over a set of targets.

    Args:
        config: the mesh configuration.
        keys: KEK provider; defaults to the local keyring file named in the config.
        backends: backend per target name, overriding the URL in the config (tests, custom stores).
    """

    def __init__(
        self, config: MeshConfig, keys: KeyProvider | None = None, backends: dict[str, Backend] | None = None
    ) -> None:
        self.config = config
        self.keys = keys if keys is not None else LocalKeyring(config.keyring_path)
        self.audit = AuditLog(config.audit_log_path)
        self.catalog = Catalog(config, backends, self.keys, self.audit)
        self._codes: dict[tuple[str, int, int], ErasureCode] = {}
        self._init_async()

    # -- helpers -------------------------------------------------------------------------------------------
    def code(self, scheme: str, k: int, m: int) -> ErasureCode:
        """A cached erasure code (decode matrices are cached inside it)."""
        key = (scheme, k, m)
        if key not in self._codes:
            self._codes[key] = ErasureCode(k, m, scheme)
        return self._codes[key]

    def due_tiers(self, step: int) -> tuple[str, ...]:
        """Tiers whose interval says ``step`` belongs on them (InvalidRequestError for an invalid step)."""
        validate_step(step)
        return tuple(t.name for t in self.config.tiers if t.is_due(step))

    # -- save ----------------------------------------------------------------------------------------------
    def save(
        self,
        data: Any,
        step: int,
        *,
        data_class: str = "critical",
        sovereignty: Sequence[str] = (),
        tiers: Sequence[str] | None = None,
        metadata: dict[str, Any] | None = None,
        progress: Progress | None = None,
        fencing_token: int | None = None,
        _snapshot_s: float = 0.0,
    ) -> SaveReceipt:
        """Save ``data`` (a buffer, a sequence of buffers, or a :class:`Payload`) as the checkpoint of
        ``step``.

        ``tiers`` defaults to the tiers due at ``step`` (or the fastest tier when none is due). ``step`` must be
        an integer in ``[0, MAX_STEP]`` and ``metadata`` JSON-serialisable (InvalidRequestError). Placement and
        sovereignty are checked before anything is written (PlacementError / SovereigntyError).

        With ``fencing_token`` (recorded in the manifest's metadata), the save is refused with
        StaleFencingTokenError when the mesh's fence is higher — the commit ledger's token (kept with the keys)
        or a target's ``FENCE`` (see :meth:`raise_fence`): before anything is written, and again at the commit,
        atomically with the commit record (see ``commit.py``), so a zombie never commits over its successor.

        Returns when every fragment is durable or abandoned; ``receipt.committed`` says whether the quorum was
        met and the ledger accepted the commit. A non-best-effort data class raises QuorumError instead of
        returning an uncommitted receipt; a refused commit always raises (StaleFencingTokenError, or
        LeaseLostError when gc revoked the lease of a save paused past ``lease_s``).
        """
        t0 = time.monotonic()
        validate_step(step)
        validate_fencing_token(fencing_token)
        metadata = dict(metadata or {})
        try:
            json.dumps(metadata, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidRequestError(f"save metadata must be JSON-serialisable ({exc}).") from None
        payload = (
            data if isinstance(data, Payload) else Payload(list(data) if isinstance(data, list | tuple) else [data])
        )
        policy = self.config.policy(data_class)
        if tiers is None:
            tiers = self.due_tiers(step) or (self.config.tiers_fastest_first()[0].name,)
        tier_names = tuple(self.config.tier(t).name for t in tiers)
        classes = tuple(sorted(set(sovereignty)))
        checkpoint_id = new_checkpoint_id(step)
        if fencing_token is not None:
            metadata["fencing_token"] = fencing_token
            self._check_fence(fencing_token, checkpoint_id, step, "before writing")
        placement = plan_placement(
            self.config,
            policy,
            tiers=tier_names,
            sovereignty_classes=classes,
            audit=self.audit,
            checkpoint_id=checkpoint_id,
        )
        events = list(placement.refusals)

        kek_id, rotated = self.keys.current_key_id(self.config.key_rotation_s)
        if rotated:
            events.append(self.audit.emit("key_rotated", key_id=kek_id, reason="rotation interval elapsed"))
        data_key = new_data_key()
        code = self.code(policy.scheme, policy.k, policy.m)
        manifest = Manifest(
            checkpoint_id=checkpoint_id,
            mesh=self.config.name,
            step=step,
            created_at_unix_s=time.time(),
            data_class=policy.name,
            scheme=policy.scheme,
            k=policy.k,
            m=policy.m,
            chunk_bytes=self.config.chunk_bytes,
            payload_bytes=payload.size_bytes,
            sovereignty_classes=classes,
            tiers=tier_names,
            fragments=tuple(
                FragmentEntry(i, tuple(placement.by_tier[t][i].name for t in tier_names)) for i in range(code.n)
            ),
            kek_id=kek_id,
            wrapped_key_b64=base64.b64encode(self.keys.wrap(kek_id, data_key)).decode(),
            metadata=metadata,
        )
        layout = manifest.layout
        holders = sorted({t.name for ts in placement.by_tier.values() for t in ts})
        backends = self.catalog.backends
        commit = SaveCommit(
            self.keys,
            self.config.name,
            checkpoint_id,
            step,
            fencing_token,
            self.config.lease_s,
            target_fence=None
            if fencing_token is None
            else (lambda: fence.check_fence(self.catalog, fencing_token, checkpoint_id, "at commit")),
        )
        try:
            commit.begin()  # the lease comes before the first byte on any target; a stale token stops here
        except StaleFencingTokenError as exc:
            self.audit.emit(
                "save_fenced",
                checkpoint_id=checkpoint_id,
                step=step,
                fencing_token=fencing_token,
                stage="before writing",
                error=str(exc),
            )
            raise
        try:
            intent = json.dumps({"checkpoint_id": checkpoint_id, "step": step, "at_unix_s": time.time()}).encode()
            for name in holders:
                # a target that cannot take the INTENT will fail its fragment too, which counts against the quorum
                with contextlib.suppress(StorageError):
                    backends[name].put_atomic(self.catalog.path(checkpoint_id, INTENT), intent)
            jobs = [
                FragmentJob(
                    i, tier, target.name, backends[target.name], self.catalog.path(checkpoint_id, fragment_name(i))
                )
                for tier in tier_names
                for i, target in enumerate(placement.by_tier[tier])
            ]
            sealed = seal(manifest, data_key)

            def tick(done: int) -> None:
                commit.renew()
                if progress is not None:
                    progress(done)

            outcomes = write_fragments(
                payload,
                layout,
                code,
                ChunkCipher(data_key, checkpoint_id),
                jobs=jobs,
                quorum=policy.quorum,
                timeout_s=policy.timeout_s,
                on_quorum=lambda: commit.publish(holders, backends, self.catalog.path(checkpoint_id, MANIFEST), sealed),
                progress=tick,
            )
        except BaseException:
            commit.abandon()
            raise
        total_s = time.monotonic() - t0 + _snapshot_s
        committed = commit.committed
        fragments = tuple(
            FragmentReceipt(
                o.job.index, o.job.tier, o.job.target, o.job.path, layout.fragment_bytes, o.durable, o.error
            )
            for o in outcomes
        )
        durable = len({o.job.index for o in outcomes if o.durable})
        fastest = self.config.tiers_fastest_first()
        best_tier = next(t for t in fastest if t.name in tier_names)
        estimate = layout.fragment_bytes / (best_tier.effective_read_gbps * 1e9)
        error = None
        if committed:
            events.append(
                self.audit.emit(
                    "save_committed",
                    checkpoint_id=checkpoint_id,
                    step=step,
                    data_class=policy.name,
                    tiers=list(tier_names),
                    durable_fragments=durable,
                    manifest_targets=commit.published,
                    fencing_token=fencing_token,
                    commit_sequence=commit.record.sequence if commit.record else None,
                )
            )
        else:
            errors = sorted({f"{o.job.target}: {o.error}" for o in outcomes if o.error})
            if commit.error is not None:
                error = str(commit.error)
            else:
                error = (
                    f"checkpoint {checkpoint_id} (step {step}) not committed: {durable} of {code.n} "
                    f"fragments durable, quorum {policy.quorum} needed within {policy.timeout_s:g} s. Errors: "
                    f"{'; '.join(errors) or 'none'}. "
                    f"The previous checkpoint is untouched. Check the failing targets, or lower the quorum."
                )
            events.append(self.audit.emit("save_failed", checkpoint_id=checkpoint_id, step=step, error=error))
            for name in holders:
                with contextlib.suppress(StorageError):  # gc removes what is left
                    backends[name].delete_tree(self.catalog.ckpt_dir(checkpoint_id))
            commit.abandon()
        quorum_at = commit.committed_at_monotonic
        receipt = SaveReceipt(
            checkpoint_id=checkpoint_id,
            step=step,
            data_class=policy.name,
            tiers=tier_names,
            payload_bytes=payload.size_bytes,
            stored_bytes=layout.fragment_bytes * len(jobs),
            fragments=fragments,
            committed=committed,
            quorum=policy.quorum,
            durable_fragments=durable,
            kek_id=kek_id,
            snapshot_s=_snapshot_s,
            quorum_s=(quorum_at - t0 + _snapshot_s) if quorum_at is not None else float("nan"),
            total_s=total_s,
            estimated_recovery_s=estimate,
            audit_events=tuple(events),
            error=error,
        )
        if isinstance(commit.error, StaleFencingTokenError):
            events.append(
                self.audit.emit(
                    "save_fenced",
                    checkpoint_id=checkpoint_id,
                    step=step,
                    fencing_token=fencing_token,
                    stage="at commit",
                    error=error,
                )
            )
        if commit.error is not None:
            raise commit.error  # a refused commit (stale token, lost lease, unreadable ledger) is never "best effort"
        if not committed and not policy.best_effort:
            raise QuorumError(error)
        return receipt

    def _check_fence(self, token: int, checkpoint_id: str, step: int, stage: str) -> None:
        held = self.keys.fencing_token(self.config.name)
        try:
            if held is not None and held > token:
                raise StaleFencingTokenError(
                    f"checkpoint {checkpoint_id} of mesh {self.config.name!r} refused {stage}: its fencing token "
                    f"{token} is older than the mesh's fence {held}. The job was placed again elsewhere (a newer "
                    f"process owns it); this process is a zombie and must stop. Nothing was committed."
                )
            fence.check_fence(self.catalog, token, checkpoint_id, stage)
        except StaleFencingTokenError as exc:
            self.audit.emit(
                "save_fenced", checkpoint_id=checkpoint_id, step=step, fencing_token=token, stage=stage, error=str(exc)
            )
            raise

    def raise_fence(self, fencing_token: int, data_class: str = "critical") -> int:
        """Raise the mesh's fence to ``fencing_token`` (the newest placement of a job calls this before it
        restores); later saves with a smaller token are refused. The commit ledger (with the keys) holds the
        authoritative fence; a ``FENCE`` object on every reachable target repeats it for processes that use
        another key provider. Returns the number of targets written; StaleFencingTokenError if the fence is
        already higher. See ``fence.py`` and ``ledger.py``.
        """
        validate_fencing_token(fencing_token)
        try:
            self.keys.fence(self.config.name, fencing_token)
        except StaleFencingTokenError as exc:
            raise StaleFencingTokenError(f"cannot raise the fence of mesh {self.config.name!r}: {exc}.") from None
        written = fence.raise_fence(self.catalog, fencing_token, self.config.policy(data_class).quorum)
        self.audit.emit("fence_raised", fencing_token=fencing_token, targets=written)
        return written

    def fence(self) -> int | None:
        """The mesh's current fence (largest fencing token raised or used), None if never."""
        tokens = [
            t for t in (self.keys.fencing_token(self.config.name), fence.read_fence(self.catalog)) if t is not None
        ]
        return max(tokens) if tokens else None

    def save_if_due(self, data: Any, step: int, **kwargs: Any) -> SaveReceipt | None:
        """Save to the tiers due at ``step``; None (and nothing written) when no tier is due."""
        tiers = self.due_tiers(step)
        return self.save(data, step, tiers=tiers, **kwargs) if tiers else None

    # -- restore and list ----------------------------------------------------------------------------------
    def locations(self, manifest: Manifest) -> dict[int, list[Location]]:
        """Every known copy of every fragment, fastest tier first."""
        out: dict[int, list[Location]] = {}
        for entry in manifest.fragments:
            names = [n for n in entry.locations if n in self.catalog.backends]
            names.sort(key=lambda n: self.catalog.target_rank[n])
            out[entry.index] = [
                Location(
                    entry.index,
                    n,
                    self.config.target(n).tier,
                    self.catalog.backends[n],
                    self.catalog.path(manifest.checkpoint_id, fragment_name(entry.index)),
                )
                for n in names
            ]
        return out

    def restore(
        self, step: int | None = None, checkpoint_id: str | None = None, progress: Progress | None = None
    ) -> Restored:
        """Restore a checkpoint: the one named, the newest at ``step``, or the newest committed one.

        Only authenticated manifests are used, and what is returned is checked to be the step and id asked
        for. "Newest" is the highest authenticated committed step, and never older than the commit record says
        was committed (RollbackError). With neither ``step`` nor ``checkpoint_id``, a newest checkpoint that
        cannot be rebuilt (damaged beyond repair) is skipped in favour of the next older one; ``Restored.skipped``
        says why (and names newer checkpoints that are shredded or have no authentic manifest). Otherwise
        errors are raised: InvalidRequestError, CheckpointNotFoundError, IncompleteCheckpointError,
        IntegrityError, InsufficientFragmentsError, KeyDestroyedError, RollbackError.
        """
        t0 = time.monotonic()
        if step is not None:
            validate_step(step)
        if checkpoint_id is not None:
            validate_checkpoint_id(checkpoint_id)
        candidates = self.catalog.resolve(checkpoint_id, step)
        authenticate_s = time.monotonic() - t0
        fallback = step is None and checkpoint_id is None
        skipped: list[str] = []
        if fallback:
            top = candidates[0].manifest.step
            skipped = [
                f"{e.checkpoint_id}: {e.state} ({'; '.join(e.problems[:2])})"
                for e in self.catalog.last_entries
                if e.state in ("shredded", "damaged") and e.id_step > top
            ]
        for i, entry in enumerate(candidates):
            manifest = entry.manifest
            cid = entry.checkpoint_id
            if (
                manifest.checkpoint_id != cid
                or manifest.mesh != self.config.name
                or (checkpoint_id is not None and cid != checkpoint_id)
                or (step is not None and manifest.step != step)
            ):  # the catalog guarantees this; checked again because returning another step is the worst failure
                raise IntegrityError(f"refusing to return {manifest.checkpoint_id} for a request of {cid}")
            try:
                code = self.code(manifest.scheme, manifest.k, manifest.m)
                data, stats = restore_payload(
                    manifest.layout, code, ChunkCipher(entry.data_key, cid), self.locations(manifest), progress
                )
            except (IntegrityError, InsufficientFragmentsError) as exc:
                if not fallback or i == len(candidates) - 1:
                    raise
                skipped.append(f"{cid}: {exc}")
                continue
            self.audit.emit(
                "restore",
                checkpoint_id=cid,
                step=manifest.step,
                decoded_stripes=stats["decoded_stripes"],
                skipped=skipped,
            )
            return Restored(
                manifest,
                data,
                time.monotonic() - t0,
                stats["decoded_stripes"],
                stats["bytes_read"],
                tuple(skipped),
                authenticate_s,
            )
        raise AssertionError("unreachable: resolve() never returns an empty list")

    def list(self, include_incomplete: bool = False) -> list[CheckpointInfo]:
        """Checkpoints on the targets, oldest step first (see :class:`CheckpointInfo`); committed ones only
        unless ``include_incomplete``. Unknown entries found on the way are in ``catalog.notes``."""
        return self.catalog.list(include_incomplete)

    def rollback_problem(self) -> str | None:
        """Why "newest" cannot be trusted (the commit record names a newer checkpoint than the targets hold),
        or None."""
        committed = [e for e in self.catalog.entries() if e.state == "committed"]
        return self.catalog.rollback_problem(committed)

    # -- maintenance (implemented in maintenance.py) --------------------------------------------------------
    def verify(
        self,
        step: int | None = None,
        checkpoint_id: str | None = None,
        repair: bool = False,
        progress: Progress | None = None,
    ) -> VerifyReport:
        """Re-read and authenticate every fragment and manifest copy; optionally rebuild what is damaged."""
        return maintenance.verify(self, step, checkpoint_id, repair, progress)

    def gc(self, keep: int, incomplete_grace_s: float = 3600.0) -> GcReport:
        """Delete all but the ``keep`` newest committed checkpoints, shredded ones, and unfinished saves whose
        lease is gone; never a save in flight, a damaged checkpoint or the commit record's checkpoint."""
        return maintenance.gc(self, keep, incomplete_grace_s)

    def rotate_keys(self, rewrap: bool = False) -> RotateReport:
        """Start a new KEK; with ``rewrap`` re-wrap every copy of every checkpoint's data key under it."""
        return maintenance.rotate_keys(self, rewrap)

    def shred_key(self, key_id: str, force: bool = False) -> ShredReport:
        """Destroy a KEK: every checkpoint wrapped only by it becomes unrecoverable (see the report).

        Stale copies of checkpoints re-wrapped under another key are rewritten first; StrandingError (and
        nothing destroyed) when a target cannot be checked, unless ``force``.
        """
        return maintenance.shred_key(self, key_id, force)

    def shred_checkpoint(self, checkpoint_id: str) -> ShredReport:
        """Delete a checkpoint's manifests (its only wrapped key copies) and fragments on every target."""
        return maintenance.shred_checkpoint(self, checkpoint_id)
