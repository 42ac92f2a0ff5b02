"""Placement: which target holds which fragment, under the spread and sovereignty rules.

Placement happens before a single byte is written. For every tier the save goes to, targets not cleared for
every sovereignty class of the checkpoint are refused (each refusal is an audit event); the remaining targets
are interleaved region by region and the first ``min_targets`` are chosen, so consecutive fragments land in
different regions. Fragments are dealt round-robin over the chosen targets. If a tier cannot meet
``min_targets`` targets across ``min_regions`` regions the save fails with :class:`SovereigntyError` (when
refusals caused it) or :class:`PlacementError`, and nothing has been written.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from superfactory.mesh.audit import AuditEvent, AuditLog
from superfactory.mesh.config import MeshConfig
from superfactory.mesh.errors import PlacementError, SovereigntyError
from superfactory.mesh.target import DataClassPolicy, Target

__all__ = ["Placement", "plan_placement"]


@dataclass(frozen=True, slots=True)
class Placement:
    """Fragment → target per tier (``by_tier[tier][i]`` holds fragment ``i``), and the refusals on the way."""

    by_tier: dict[str, tuple[Target, ...]]
    refusals: tuple[AuditEvent, ...]

    def regions(self, tier: str) -> set[str]:
        """Regions used in ``tier``."""
        return {t.region for t in self.by_tier[tier]}


def _interleave_by_region(targets: list[Target]) -> list[Target]:
    by_region: OrderedDict[str, list[Target]] = OrderedDict()
    for t in targets:
        by_region.setdefault(t.region, []).append(t)
    out: list[Target] = []
    while any(by_region.values()):
        for queue in by_region.values():
            if queue:
                out.append(queue.pop(0))
    return out


def plan_placement(
    config: MeshConfig,
    policy: DataClassPolicy,
    *,
    tiers: tuple[str, ...],
    sovereignty_classes: tuple[str, ...],
    audit: AuditLog,
    checkpoint_id: str,
) -> Placement:
    """Choose targets for every fragment in every tier, or raise before anything is written."""
    by_tier: dict[str, tuple[Target, ...]] = {}
    refusals: list[AuditEvent] = []
    for tier in tiers:
        eligible: list[Target] = []
        refused_here: list[Target] = []
        for target in config.targets_in(tier):
            reason = config.sovereignty.refusal_reason(target, sovereignty_classes)
            if reason is None:
                eligible.append(target)
                continue
            refused_here.append(target)
            refusals.append(
                audit.emit(
                    "sovereignty_refusal",
                    checkpoint_id=checkpoint_id,
                    tier=tier,
                    target=target.name,
                    jurisdiction=target.jurisdiction,
                    classes=list(sovereignty_classes),
                    reason=reason,
                )
            )
        chosen = _interleave_by_region(eligible)[: policy.min_targets]
        regions = {t.region for t in chosen}
        if len(chosen) < policy.min_targets or len(regions) < policy.min_regions:
            need = (
                f"data class {policy.name!r} needs {policy.min_targets} targets across {policy.min_regions} "
                f"regions in tier {tier!r}, but only {len(chosen)} targets in {len(regions)} regions"
            )
            if refused_here:
                names = ", ".join(f"{t.name} ({t.jurisdiction})" for t in refused_here)
                reasons = sorted({str(e.details["reason"]) for e in refusals if e.details["tier"] == tier})
                names += f" because {'; '.join(reasons)}"
                raise SovereigntyError(
                    f"{need} are cleared for sovereignty classes {list(sovereignty_classes)}; "
                    f"refused: {names}. "
                    f"Nothing was written. Add cleared targets to the tier, or relax the data class spread."
                )
            raise PlacementError(
                f"{need} are configured. Nothing was written. Add targets or lower min_targets/min_regions."
            )
        by_tier[tier] = tuple(chosen[i % len(chosen)] for i in range(policy.n))
    return Placement(by_tier, tuple(refusals))
