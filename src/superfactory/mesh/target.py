"""Value types that describe where checkpoints go: storage tiers, targets and data-class policies.

A *target* is one named storage location (a directory standing for a site, an object-store prefix …) with a
region, a jurisdiction and a tier. A *tier* groups targets of one speed class and carries the save
interval for
multi-tier checkpointing. A *data-class policy* says how a class of state is protected: its erasure scheme, k,
m, the commit quorum, the barrier timeout and the spread it needs across targets and regions.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = [
    "DEFAULT_DATA_CLASSES",
    "DataClassPolicy",
    "Target",
    "Tier",
    "TierKind",
]


class TierKind(enum.Enum):
    """Storage speed class; the enum order is the default restore preference (fastest first)."""

    LOCAL_NVME = "local_nvme"
    PARALLEL_FS = "parallel_fs"
    OBJECT_STORE = "object_store"

    @property
    def rank(self) -> int:
        """0 for the fastest kind."""
        return list(TierKind).index(self)


#: per-target read bandwidth used for recovery-time estimates when a tier does not state its own, GB/s
_DEFAULT_READ_GBPS = {TierKind.LOCAL_NVME: 2.0, TierKind.PARALLEL_FS: 1.0, TierKind.OBJECT_STORE: 0.25}


@dataclass(frozen=True, slots=True)
class Tier:
    """A storage tier.

    Attributes:
        name: unique tier name (``nvme``, ``pfs``, ``s3`` …).
        kind: speed class; restore tries tiers in ``(kind.rank, order in the config)`` order.
        interval_steps: a checkpoint goes to this tier when ``step % interval_steps == 0``.
        read_bandwidth_gbps: per-target read bandwidth for recovery-time estimates, GB/s.
    """

    name: str
    kind: TierKind = TierKind.LOCAL_NVME
    interval_steps: int = 1
    read_bandwidth_gbps: float = 0.0

    @property
    def effective_read_gbps(self) -> float:
        """Configured read bandwidth, or the kind's default, GB/s."""
        return self.read_bandwidth_gbps or _DEFAULT_READ_GBPS[self.kind]

    def is_due(self, step: int) -> bool:
        """Whether a save at ``step`` belongs on this tier."""
        return step % self.interval_steps == 0


@dataclass(frozen=True, slots=True)
class Target:
    """A named storage location.

    Attributes:
        name: unique target name (also how receipts and manifests refer to it).
        url: a local directory path or any fsspec URL (``memory://x``, ``s3://bucket/prefix`` …).
        region: failure domain for the region-spread rule (``eu-west``).
        jurisdiction: legal jurisdiction for sovereignty rules (``EU``, ``US`` …).
        tier: name of the tier the target belongs to.
    """

    name: str
    url: str
    region: str
    jurisdiction: str
    tier: str


@dataclass(frozen=True, slots=True)
class DataClassPolicy:
    """How one class of training state is protected.

    Attributes:
        name: ``critical``, ``recomputable``, ``ephemeral`` or a custom name.
        scheme: ``rs`` (Reed–Solomon), ``xor`` (one parity) or ``none``.
        k: data fragments per stripe.
        m: parity fragments per stripe.
        quorum: fragments per stripe that must be durable before the commit barrier passes (k ≤ quorum ≤ k+m).
        timeout_s: how long the barrier waits for the quorum, seconds.
        min_targets: distinct targets per tier the fragments are spread over (fragments go round-robin).
        min_regions: distinct regions those targets must span.
        best_effort: a failed save is reported in the receipt instead of raising.
    """

    name: str
    scheme: str = "rs"
    k: int = 4
    m: int = 2
    quorum: int = 4
    timeout_s: float = 30.0
    min_targets: int = 6
    min_regions: int = 3
    best_effort: bool = False

    @property
    def n(self) -> int:
        """Fragments per stripe."""
        return self.k + self.m

    def problems(self) -> list[str]:
        """Human-readable reasons this policy is inconsistent (empty when valid)."""
        out: list[str] = []
        if self.k < 1:
            out.append(f"k must be ≥ 1 (got {self.k})")
        if self.scheme not in ("rs", "xor", "none"):
            out.append(f"scheme must be rs, xor or none (got {self.scheme!r})")
        if self.scheme == "xor" and self.m != 1:
            out.append(f"scheme xor has exactly one parity fragment, set m: 1 (got {self.m})")
        if self.scheme == "none" and self.m != 0:
            out.append(f"scheme none has no parity, set m: 0 (got {self.m})")
        if self.m < 0 or self.k + self.m > 256:
            out.append(f"need 0 ≤ m and k+m ≤ 256 (got k={self.k}, m={self.m})")
        if not self.k <= self.quorum <= self.k + self.m:
            out.append(f"quorum must lie in [k, k+m] = [{self.k}, {self.k + self.m}] (got {self.quorum})")
        if self.timeout_s <= 0:
            out.append(f"timeout_s must be > 0 (got {self.timeout_s})")
        if not 1 <= self.min_targets <= self.k + self.m:
            out.append(f"min_targets must lie in [1, k+m] (got {self.min_targets})")
        if not 1 <= self.min_regions <= self.min_targets:
            out.append(f"min_regions must lie in [1, min_targets] (got {self.min_regions})")
        return out


DEFAULT_DATA_CLASSES: dict[str, DataClassPolicy] = {
    # weights and optimizer state: survive two lost fragments, spread over three regions
    "critical": DataClassPolicy("critical", "rs", 4, 2, 4, 30.0, 6, 3),
    # activations caches, data-loader state: cheap single parity on one target
    "recomputable": DataClassPolicy("recomputable", "xor", 4, 1, 4, 30.0, 1, 1, best_effort=True),
    # scratch: one plain (encrypted) copy
    "ephemeral": DataClassPolicy("ephemeral", "none", 1, 0, 1, 30.0, 1, 1, best_effort=True),
}


@dataclass(frozen=True, slots=True)
class SovereigntyRules:
    """Which jurisdictions are cleared for each sovereignty class (``EU_PERSONAL → {EU, EEA}``)."""

    cleared: dict[str, frozenset[str]] = field(default_factory=dict)

    def refusal_reason(self, target: Target, classes: tuple[str, ...]) -> str | None:
        """Why ``target`` may not hold data of ``classes``, or None when it is cleared for all of them."""
        for cls in classes:
            allowed = self.cleared.get(cls)
            if allowed is None:
                return f"sovereignty class {cls!r} has no rule in the mesh config (fail closed)"
            if target.jurisdiction not in allowed:
                return (
                    f"jurisdiction {target.jurisdiction!r} is not cleared for {cls!r} "
                    f"(cleared: {', '.join(sorted(allowed))})"
                )
        return None


__all__ += ["SovereigntyRules"]
