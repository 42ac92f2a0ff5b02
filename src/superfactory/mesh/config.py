"""The mesh configuration: targets, tiers, data classes, sovereignty rules, keyring and audit log.

:class:`MeshConfig` is the validated value the library works with. :func:`load_config` reads it from a YAML
file (the edge, validated with pydantic; errors name the file and field path). Relative paths in the file are
resolved against the file's directory. See ``docs/mesh.md`` for the format with an example.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from superfactory.mesh.errors import MeshConfigError
from superfactory.mesh.naming import validate_mesh_name
from superfactory.mesh.target import (
    DEFAULT_DATA_CLASSES,
    DataClassPolicy,
    SovereigntyRules,
    Target,
    Tier,
    TierKind,
)

__all__ = ["MeshConfig", "load_config"]

DEFAULT_CHUNK_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class MeshConfig:
    """Everything a :class:`~superfactory.mesh.mesh.CheckpointMesh` needs to know.

    Attributes:
        name: namespace of this mesh's checkpoints on every target (one target can host several meshes).
        targets: storage locations.
        tiers: storage tiers, in the order given (restore orders them by kind, then this order).
        data_classes: protection policy by data-class name.
        sovereignty: jurisdictions cleared per sovereignty class.
        keyring_path: local keyring file (0600), used unless a KMS provider is passed to the mesh.
        key_rotation_s: age after which a save rotates the key-encryption key, seconds.
        audit_log_path: JSON-lines audit log; None keeps events in memory only.
        chunk_bytes: bytes of one fragment chunk (a stripe holds k chunks of input).
        fsync: make fragments durable (fsync + directory fsync) before acknowledging them.
        lease_s: how long a save's lease lasts without renewal, seconds; a save renews it while it writes, and
            gc may delete an unfinished save's files only once its lease expired (or its process is gone).
            Keep it well above every data class's ``timeout_s``.
    """

    name: str
    targets: tuple[Target, ...]
    tiers: tuple[Tier, ...]
    data_classes: dict[str, DataClassPolicy] = field(default_factory=lambda: dict(DEFAULT_DATA_CLASSES))
    sovereignty: SovereigntyRules = field(default_factory=SovereigntyRules)
    keyring_path: Path = Path("keyring.json")
    key_rotation_s: float = 86400.0
    audit_log_path: Path | None = None
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    fsync: bool = True
    lease_s: float = 600.0

    def __post_init__(self) -> None:
        problems: list[str] = []
        tier_names = [t.name for t in self.tiers]
        if not self.tiers:
            problems.append("at least one tier is needed")
        if len(set(tier_names)) != len(tier_names):
            problems.append(f"tier names must be unique: {tier_names}")
        target_names = [t.name for t in self.targets]
        if len(set(target_names)) != len(target_names):
            problems.append(f"target names must be unique: {target_names}")
        problems.extend(
            f"target {t.name!r} names unknown tier {t.tier!r} (known: {', '.join(tier_names)})"
            for t in self.targets
            if t.tier not in tier_names
        )
        for name, policy in self.data_classes.items():
            problems.extend(f"data class {name!r}: {p}" for p in policy.problems())
        if self.chunk_bytes < 64 or self.chunk_bytes % 64:
            problems.append(f"chunk_bytes must be a positive multiple of 64 (got {self.chunk_bytes})")
        name_problem = validate_mesh_name(self.name)
        if name_problem:
            problems.append(name_problem)
        problems.extend(
            f"target name {t.name!r} must be non-empty printable text"
            for t in self.targets
            if not t.name or not t.name.isprintable()
        )
        if not self.lease_s > 0:
            problems.append(f"lease_s must be positive (got {self.lease_s})")
        if problems:
            raise MeshConfigError("invalid mesh config: " + "; ".join(problems))

    def tier(self, name: str) -> Tier:
        """The tier called ``name``; MeshConfigError if unknown."""
        for t in self.tiers:
            if t.name == name:
                return t
        raise MeshConfigError(f"unknown tier {name!r}; the config defines {', '.join(x.name for x in self.tiers)}")

    def target(self, name: str) -> Target:
        """The target called ``name``; MeshConfigError if unknown."""
        for t in self.targets:
            if t.name == name:
                return t
        raise MeshConfigError(f"unknown target {name!r}; the config defines {', '.join(x.name for x in self.targets)}")

    def policy(self, data_class: str) -> DataClassPolicy:
        """The policy of ``data_class``; MeshConfigError if unknown."""
        try:
            return self.data_classes[data_class]
        except KeyError:
            raise MeshConfigError(
                f"unknown data class {data_class!r}; the config defines {', '.join(self.data_classes)}"
            ) from None

    def targets_in(self, tier: str) -> tuple[Target, ...]:
        """Targets of one tier, in config order."""
        return tuple(t for t in self.targets if t.tier == tier)

    def tiers_fastest_first(self) -> tuple[Tier, ...]:
        """Tiers in restore order: by kind (NVMe, parallel FS, object store), then config order."""
        order = {t.name: i for i, t in enumerate(self.tiers)}
        return tuple(sorted(self.tiers, key=lambda t: (t.kind.rank, order[t.name])))


class _TierModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    kind: TierKind = TierKind.LOCAL_NVME
    interval_steps: int = Field(1, ge=1)
    read_bandwidth_gbps: float = Field(0.0, ge=0)


class _TargetModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    url: str
    region: str
    jurisdiction: str
    tier: str


class _PolicyModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    scheme: str = "rs"
    k: int = 4
    m: int = 2
    quorum: int | None = None
    timeout_s: float = 30.0
    min_targets: int | None = None
    min_regions: int = 1
    best_effort: bool = False


class _KeyringModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = "keyring.json"
    rotation_interval_s: float = Field(86400.0, gt=0)


class _MeshModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "default"
    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    fsync: bool = True
    lease_s: float = Field(600.0, gt=0)
    audit_log: str | None = "audit.jsonl"
    keyring: _KeyringModel = Field(default_factory=_KeyringModel)
    tiers: list[_TierModel]
    targets: list[_TargetModel]
    data_classes: dict[str, _PolicyModel] = Field(default_factory=dict)
    sovereignty: dict[str, list[str]] = Field(default_factory=dict)


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path)


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def config_from_dict(raw: dict[str, Any], base_dir: Path, source: str = "<dict>") -> MeshConfig:
    """Validate a parsed config mapping; relative local paths resolve against ``base_dir``."""
    try:
        model = _MeshModel.model_validate(raw)
    except ValidationError as exc:
        details = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors())
        raise MeshConfigError(f"{source}: {details}. See docs/mesh.md for the config format.") from None
    classes = dict(DEFAULT_DATA_CLASSES)
    for name, p in model.data_classes.items():
        classes[name] = DataClassPolicy(
            name=name,
            scheme=p.scheme,
            k=p.k,
            m=p.m,
            quorum=p.k if p.quorum is None else p.quorum,
            timeout_s=p.timeout_s,
            min_targets=(p.k + p.m) if p.min_targets is None else p.min_targets,
            min_regions=p.min_regions,
            best_effort=p.best_effort,
        )
    targets = tuple(
        Target(
            name=t.name,
            url=str(_resolve(base_dir, t.url)) if _is_local(t.url) and not t.url.startswith("file://") else t.url,
            region=t.region,
            jurisdiction=t.jurisdiction,
            tier=t.tier,
        )
        for t in model.targets
    )
    try:
        return MeshConfig(
            name=model.name,
            targets=targets,
            tiers=tuple(Tier(t.name, t.kind, t.interval_steps, t.read_bandwidth_gbps) for t in model.tiers),
            data_classes=classes,
            sovereignty=SovereigntyRules({k: frozenset(v) for k, v in model.sovereignty.items()}),
            keyring_path=_resolve(base_dir, model.keyring.path),
            key_rotation_s=model.keyring.rotation_interval_s,
            audit_log_path=None if model.audit_log is None else _resolve(base_dir, model.audit_log),
            chunk_bytes=model.chunk_bytes,
            fsync=model.fsync,
            lease_s=model.lease_s,
        )
    except MeshConfigError as exc:
        raise MeshConfigError(f"{source}: {exc}") from None


def load_config(path: str | Path) -> MeshConfig:
    """Read and validate a mesh config YAML file; MeshConfigError says what is wrong and where."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MeshConfigError(
            f"cannot read mesh config {path}: {exc.strerror}. Pass --config with a YAML file (docs/mesh.md)."
        ) from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise MeshConfigError(f"{path}{where}: not valid YAML ({exc}).") from None
    if not isinstance(raw, dict):
        raise MeshConfigError(f"{path}: the top level must be a mapping with tiers: and targets:.")
    return config_from_dict(raw, path.parent.resolve(), str(path))


__all__ += ["config_from_dict"]
