"""WAN routing and transfer times: the one routing function the twin and every policy use.

A transfer between two factories takes the direct dedicated link if it is up, else the best two-hop path over
up links (its narrowest link limits it), else the public internet at :data:`DEFAULT_WAN_GBPS`. The twin calls
it with the links that are really up; a policy calls it with the links its snapshot shows (partitioned links
are absent there), so estimate and ground truth agree whenever the policy's view is current.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from superfactory.domain.factory import WanLink

#: bandwidth assumed between factories with no (up) dedicated path, Gb/s
DEFAULT_WAN_GBPS = 100.0


def route_bandwidth_gbps(links: Iterable[WanLink], a: str, b: str) -> float:
    """Usable bandwidth from factory ``a`` to ``b`` over ``links`` (the links that are up): the direct link,
    else the best two-hop path (its narrowest link), else :data:`DEFAULT_WAN_GBPS`."""
    adj: dict[str, dict[str, float]] = {}
    for lk in links:
        adj.setdefault(lk.a, {})[lk.b] = lk.bandwidth_gbps
        adj.setdefault(lk.b, {})[lk.a] = lk.bandwidth_gbps
    direct = adj.get(a, {}).get(b)
    if direct is not None:
        return direct
    two_hop = [min(bw, adj.get(mid, {}).get(b, 0.0)) for mid, bw in adj.get(a, {}).items()]
    best = max(two_hop, default=0.0)
    return best if best > 0 else DEFAULT_WAN_GBPS


def transfer_s(links: Iterable[WanLink], a: str, b: str, size_bytes: float) -> int:
    """Whole seconds to move ``size_bytes`` from factory ``a`` to ``b`` over ``links``."""
    return math.ceil(size_bytes * 8 / (route_bandwidth_gbps(links, a, b) * 1e9))
