"""The node inventory of a factory as agents declare it: ``{index, accelerator, gpus, domain}`` per node."""

from __future__ import annotations

from typing import Any

from superfactory.domain.factory import Factory

__all__ = ["factory_nodes"]


def factory_nodes(factory: Factory) -> list[dict[str, Any]]:
    """Every node of ``factory`` with its accelerator, GPU count and NVLink domain (rank order)."""
    out = []
    for c in factory.clusters:
        for n in range(c.node_offset, c.node_end):
            out.append({"index": n, "accelerator": c.accelerator, "gpus": c.system.gpus_per_node,
                        "domain": factory.domain_of_node(n)})
    return out
