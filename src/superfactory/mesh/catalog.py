"""The catalog: which checkpoints exist on the targets, judged only by authenticated manifests.

There is no central database of checkpoints: the targets hold them, and the commit ledger (with the keys)
holds the record of the newest commit. A checkpoint ``<id>`` lives under ``<mesh name>/<id>/`` on each target
that holds a fragment (``frag-NNNN.bin``), with an ``INTENT`` record written before the first fragment and a
``MANIFEST`` written after the quorum (the commit marker).

Nothing read from a target is trusted before a MANIFEST copy authenticates (see :mod:`copies`): the state,
step, size and key of a checkpoint all come from its first authentic copy, fastest target first; a copy that
fails for any reason is skipped (and audited when it looks forged or inconsistent). Entries that are not
checkpoint ids, and files that do not belong in a checkpoint directory, are reported as notes, never fatal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

from superfactory.mesh.audit import AuditLog
from superfactory.mesh.backend import Backend, open_backend
from superfactory.mesh.config import MeshConfig
from superfactory.mesh.copies import MANIFEST, REJECTED, CopyCheck, check_copy
from superfactory.mesh.errors import (
    CheckpointNotFoundError,
    IncompleteCheckpointError,
    IntegrityError,
    KeyDestroyedError,
    RollbackError,
    StorageError,
)
from superfactory.mesh.keyring import KeyProvider
from superfactory.mesh.manifest import Manifest
from superfactory.mesh.naming import checkpoint_id_step, validate_checkpoint_id, validate_step
from superfactory.mesh.receipt import CheckpointInfo

__all__ = ["INTENT", "MANIFEST", "Catalog", "Entry", "fragment_name"]

INTENT = "INTENT"
_KNOWN_FILE = re.compile(r"(MANIFEST|INTENT|frag-\d{4}\.bin)(\.tmp-[0-9a-f]+)?")


def fragment_name(index: int) -> str:
    """File name of fragment ``index``."""
    return f"frag-{index:04d}.bin"


@dataclass(frozen=True, slots=True)
class Entry:
    """One checkpoint directory as found on the targets.

    ``copy`` is its first authentic MANIFEST copy (None when none authenticates); ``rejected`` the copies
    checked that failed. ``state``: ``committed`` (a copy authenticates and the ledger holds no lease for it),
    ``incomplete`` (no MANIFEST anywhere, or its save still holds its lease: the ledger has not accepted the
    commit — the save is in flight, or died between publishing manifests and committing), ``shredded`` (the
    copies name a destroyed key) or ``damaged`` (MANIFEST copies exist but none authenticates).
    """

    checkpoint_id: str
    id_step: int
    holders: tuple[str, ...]
    manifest_holders: tuple[str, ...]
    copy: CopyCheck | None
    rejected: tuple[CopyCheck, ...]
    intent_at_unix_s: float = 0.0
    #: its save still holds a lease in the commit ledger: not committed yet, even if manifests are visible
    pending: bool = False

    @property
    def manifest(self) -> Manifest:
        """The authenticated manifest (only for committed entries)."""
        assert self.copy is not None and self.copy.manifest is not None, "not committed"
        return self.copy.manifest

    @property
    def data_key(self) -> bytes:
        """The authenticated data key (only for committed entries)."""
        assert self.copy is not None and self.copy.data_key is not None, "not committed"
        return self.copy.data_key

    @property
    def state(self) -> str:
        """committed | incomplete | shredded | damaged (see the class docstring)."""
        if self.pending:
            return "incomplete"
        if self.copy is not None:
            return "committed"
        if not self.manifest_holders:
            return "incomplete"
        judged = [c for c in self.rejected if c.status not in ("missing", "unreadable")]
        if judged and all(c.status == "key_destroyed" for c in judged):
            return "shredded"
        return "damaged"

    @property
    def problems(self) -> list[str]:
        """Why each rejected copy was rejected."""
        return [f"{c.target}: {c.status}" + (f" ({c.detail})" if c.detail else "") for c in self.rejected]

    def info(self) -> CheckpointInfo:
        """The listing row."""
        if self.state != "committed":
            return CheckpointInfo(
                self.checkpoint_id, self.id_step, self.state, self.intent_at_unix_s, targets=self.holders
            )
        m = self.manifest
        return CheckpointInfo(
            self.checkpoint_id,
            m.step,
            "committed",
            m.created_at_unix_s,
            m.data_class,
            m.payload_bytes,
            m.tiers,
            tuple(sorted(m.targets())),
            m.kek_id,
        )

    def sort_key(self) -> tuple[int, float, str]:
        """Oldest first: step, then creation time, then id."""
        created = self.manifest.created_at_unix_s if self.state == "committed" else self.intent_at_unix_s
        return (self.id_step, created, self.checkpoint_id)


class Catalog:
    """Scans targets, authenticates manifests, resolves requests. Backends are opened once and reused.

    Args:
        config: the mesh configuration.
        backends: backend per target name, overriding the config's URLs.
        keys: key provider (and commit ledger) used to authenticate manifests.
        audit: where rejected manifest copies are recorded (once per copy and verdict per catalog).
    """

    def __init__(
        self,
        config: MeshConfig,
        backends: dict[str, Backend] | None = None,
        keys: KeyProvider | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.config = config
        self.backends: dict[str, Backend] = dict(backends or {})
        for t in config.targets:
            if t.name not in self.backends:
                self.backends[t.name] = open_backend(t.url, fsync=config.fsync)
        ranks = {tier.name: i for i, tier in enumerate(config.tiers_fastest_first())}
        self.target_rank = {t.name: (ranks[t.tier], i) for i, t in enumerate(config.targets)}
        self.keys = keys
        self.audit = audit
        #: unknown entries and unreadable targets seen by the last scan (reported, never fatal)
        self.notes: list[str] = []
        #: targets whose mesh directory could not be listed in the last scan (offline, permissions …)
        self.unreachable: list[str] = []
        #: what the last :meth:`entries` call found
        self.last_entries: list[Entry] = []
        self._audited: set[tuple[str, str, str]] = set()

    def ckpt_dir(self, checkpoint_id: str) -> str:
        """Relative directory of a checkpoint on every target."""
        return f"{self.config.name}/{checkpoint_id}"

    def path(self, checkpoint_id: str, name: str) -> str:
        """Relative path of one object of a checkpoint."""
        return f"{self.ckpt_dir(checkpoint_id)}/{name}"

    def ranked(self, names: Iterable[str]) -> list[str]:
        """Target names, fastest tier first (unknown names last)."""
        return sorted(set(names), key=lambda n: self.target_rank.get(n, (99, 0)))

    # -- scanning -----------------------------------------------------------------------------------------
    def _list_checkpoint(self, target: str, checkpoint_id: str) -> list[str] | None:
        try:
            names = self.backends[target].list_dir(self.ckpt_dir(checkpoint_id))
        except StorageError as exc:
            self.notes.append(f"{target}: {self.ckpt_dir(checkpoint_id)} is not a readable directory ({exc})")
            return None
        odd = [n for n in names if not _KNOWN_FILE.fullmatch(n)]
        if odd:
            self.notes.append(f"{target}: unknown entries in {self.ckpt_dir(checkpoint_id)} ignored: {odd[:5]}")
        return names

    def _scan(self, only: str | None = None) -> dict[str, dict[str, list[str]]]:
        """checkpoint id → target → names present (all checkpoints, or only ``only``)."""
        self.notes = []
        self.unreachable = []
        found: dict[str, dict[str, list[str]]] = {}
        for target in self.config.targets:
            if only is not None:
                names = self._list_checkpoint(target.name, only)
                if names:
                    found.setdefault(only, {})[target.name] = names
                continue
            try:
                ids = self.backends[target.name].list_dir(self.config.name)
            except StorageError as exc:
                self.notes.append(f"{target.name}: cannot list the mesh directory ({exc})")
                self.unreachable.append(target.name)
                continue
            for cid in ids:
                if checkpoint_id_step(cid) is None:
                    self.notes.append(f"{target.name}: unknown entry {self.config.name}/{cid!r} ignored")
                    continue
                names = self._list_checkpoint(target.name, cid)
                if names is not None:
                    found.setdefault(cid, {})[target.name] = names
        return found

    def check(self, checkpoint_id: str, target: str, keys: KeyProvider | None = None) -> CopyCheck:
        """Judge the MANIFEST copy of ``checkpoint_id`` on ``target`` (audits a forged or inconsistent copy)."""
        provider = keys or self.keys
        assert provider is not None, "the catalog needs a key provider to authenticate manifests"
        result = check_copy(
            self.backends[target],
            self.path(checkpoint_id, MANIFEST),
            target,
            self.config.name,
            checkpoint_id,
            provider,
        )
        mark = (checkpoint_id, target, result.status)
        if result.status in REJECTED and self.audit is not None and mark not in self._audited:
            self._audited.add(mark)
            self.audit.emit(
                "manifest_rejected",
                checkpoint_id=checkpoint_id,
                target=target,
                status=result.status,
                detail=result.detail,
            )
        return result

    def _pending(self) -> set[str]:
        return {lease.checkpoint_id for lease in self.keys.leases(self.config.name)} if self.keys else set()

    def _entry(
        self, cid: str, holders: dict[str, list[str]], keys: KeyProvider | None = None, pending: bool = False
    ) -> Entry:
        with_manifest = [t for t, names in holders.items() if MANIFEST in names]
        rejected: list[CopyCheck] = []
        found: CopyCheck | None = None
        for target in self.ranked(with_manifest):
            result = self.check(cid, target, keys)
            if result.ok:
                found = result
                break
            rejected.append(result)
        intent = 0.0 if found is not None and not pending else self._intent_time(cid, list(holders))
        return Entry(
            cid,
            checkpoint_id_step(cid) or 0,
            tuple(self.ranked(holders)),
            tuple(self.ranked(with_manifest)),
            found,
            tuple(rejected),
            intent,
            pending,
        )

    def _intent_time(self, checkpoint_id: str, holders: list[str]) -> float:
        for name in holders:
            try:
                raw = json.loads(self.backends[name].get(self.path(checkpoint_id, INTENT)))
                return float(raw["at_unix_s"])
            except (StorageError, ValueError, KeyError, TypeError):
                continue
        return 0.0

    def entries(self) -> list[Entry]:
        """Every checkpoint directory on the targets, oldest first."""
        found = self._scan()
        pending = self._pending() if found else set()
        entries = [self._entry(cid, h, pending=cid in pending) for cid, h in found.items()]
        self.last_entries = sorted(entries, key=Entry.sort_key)
        return self.last_entries

    def entry(self, checkpoint_id: str) -> Entry | None:
        """The checkpoint with this id, or None when no target holds it."""
        holders = self._scan(only=validate_checkpoint_id(checkpoint_id)).get(checkpoint_id)
        if holders is None:
            return None
        return self._entry(checkpoint_id, holders, pending=checkpoint_id in self._pending())

    def list(self, include_incomplete: bool = False) -> list[CheckpointInfo]:
        """Committed checkpoints (authenticated), oldest first; with ``include_incomplete`` every entry."""
        return [e.info() for e in self.entries() if include_incomplete or e.state == "committed"]

    # -- rollback detection and resolution ----------------------------------------------------------------
    def rollback_problem(self, committed: list[Entry]) -> str | None:
        """Why the newest authentic checkpoint is older than the commit record's, or None when it is not."""
        assert self.keys is not None
        record = self.keys.commit_record(self.config.name)
        if record is None:
            return None
        if any(e.checkpoint_id == record.checkpoint_id for e in committed):
            return None
        if any(e.manifest.step > record.step for e in committed):
            return None  # a newer authentic checkpoint (committed through another ledger): not a rollback
        newest = f"step {committed[-1].manifest.step}" if committed else "none"
        return (
            f"rollback detected in mesh {self.config.name!r}: the commit record says step {record.step} "
            f"({record.checkpoint_id}) was committed, but the newest authentic checkpoint on the targets is "
            f"{newest}. Its manifests were removed or replaced with older ones. Restoring 'newest' would return "
            f"older state, so it is refused: restore it from a backup of the targets, or ask for an older "
            f"checkpoint explicitly with --step or --id."
        )

    def resolve(self, checkpoint_id: str | None, step: int | None) -> list[Entry]:
        """Committed candidates, newest first: the id named, those at ``step``, or every committed one.

        Raises CheckpointNotFoundError, IncompleteCheckpointError, KeyDestroyedError (crypto-shredded),
        IntegrityError (no authentic manifest) or RollbackError (newest older than the commit record).
        """
        if step is not None:
            validate_step(step)
        if checkpoint_id is not None:
            entry = self.entry(checkpoint_id)
            if entry is None:
                raise CheckpointNotFoundError(
                    f"no checkpoint {checkpoint_id} in mesh {self.config.name!r}; `superfactory ckpt ls` lists them."
                )
            self._raise_unusable(entry)
            if step is not None and entry.manifest.step != step:
                raise CheckpointNotFoundError(f"checkpoint {checkpoint_id} is step {entry.manifest.step}, not {step}.")
            return [entry]
        every = self.entries()
        committed = [e for e in every if e.state == "committed"]
        if step is None:
            problem = self.rollback_problem(committed)
            if problem is not None:
                record = self.keys.commit_record(self.config.name) if self.keys is not None else None
                mine = next((e for e in every if record is not None and e.checkpoint_id == record.checkpoint_id), None)
                key_trouble = {"wrong_key", "key_unknown", "key_destroyed"}
                if mine is not None and mine.rejected and all(c.status in key_trouble for c in mine.rejected):
                    self._raise_unusable(mine)  # the keyring cannot open it: say that, it is not a rollback
                raise RollbackError(problem)
        pool = [e for e in committed if step is None or e.manifest.step == step]
        if pool:
            return list(reversed(pool))
        for entry in reversed(every):  # say why the checkpoint asked for cannot be used
            if (step is None or entry.id_step == step) and entry.state in ("shredded", "damaged"):
                self._raise_unusable(entry)
        if step is not None:
            record = self.keys.commit_record(self.config.name) if self.keys is not None else None
            if record is not None and record.step == step:
                raise RollbackError(self.rollback_problem([]) or "")
        what = f"at step {step}" if step is not None else "at all"
        raise CheckpointNotFoundError(
            f"no committed checkpoint {what} in mesh {self.config.name!r} ({len(committed)} committed in "
            f"total); `superfactory ckpt ls --all` shows incomplete and damaged ones too."
        )

    def _raise_unusable(self, entry: Entry) -> None:
        state = entry.state
        if state == "committed":
            return
        if state == "incomplete":
            raise IncompleteCheckpointError(
                f"checkpoint {entry.checkpoint_id} was never committed (its save was interrupted); it cannot be "
                f"restored. `superfactory ckpt gc` removes it."
            )
        judged = [c for c in entry.rejected if c.status not in ("missing", "unreadable")]
        if state == "shredded":
            raise KeyDestroyedError(str(judged[0].error or judged[0].detail))
        kinds = {c.status for c in judged}
        if len(kinds) == 1 and kinds <= {"wrong_key", "key_unknown"} and judged[0].error is not None:
            raise judged[0].error  # every copy agrees: the keyring is the problem, say so precisely
        raise IntegrityError(
            f"no authentic manifest for checkpoint {entry.checkpoint_id}: {'; '.join(entry.problems) or 'none'}. "
            f"The checkpoint cannot be trusted; restore another one."
        )

    def load(self, checkpoint_id: str, keys: KeyProvider) -> tuple[Manifest, bytes, list[str]]:
        """The authenticated manifest and data key of a checkpoint, and problems with copies tried first.

        Every copy that fails (damaged, forged, inconsistent, unknown or destroyed key) is skipped in favour of
        the next. When none authenticates: KeyDestroyedError if the copies name a destroyed key, else
        IntegrityError listing why each failed; CheckpointNotFoundError / IncompleteCheckpointError as usual.
        """
        holders = self._scan(only=validate_checkpoint_id(checkpoint_id)).get(checkpoint_id)
        if holders is None:
            raise CheckpointNotFoundError(f"no checkpoint {checkpoint_id} in mesh {self.config.name!r}.")
        entry = self._entry(checkpoint_id, holders, keys, pending=checkpoint_id in self._pending())
        self._raise_unusable(entry)
        return entry.manifest, entry.data_key, entry.problems
