"""The fabric as a directed graph, and the paths a transfer planner may route over.

A dedicated WAN link is full duplex: each :class:`~superfactory.domain.factory.WanLink` becomes two directed
arcs with the link's rate each way. Paths are simple (no site twice) and short: a relay site stores and
forwards, so every extra hop spends capacity on another link, and the planner charges for it.

Hand-written rather than networkx: the graphs are tiny (tens of sites, a handful of links each), the planner
needs arc *indices* aligned with its LP rows, and the pricing step runs thousands of Dijkstras per re-plan on
integer-indexed adjacency lists, which is faster here than building a library graph each time.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from superfactory.domain.factory import WanLink


@dataclass(frozen=True, slots=True)
class Fabric:
    """Directed arcs between sites, aligned by index.

    Attributes:
        sites: site (factory) ids; a site's index is its position here.
        arc_src, arc_dst: site index of each arc's tail and head.
        capacity_gbps: line rate of each arc, Gb/s.
        latency_ms: one-way latency of each arc, ms.
    """

    sites: tuple[str, ...]
    arc_src: tuple[int, ...]
    arc_dst: tuple[int, ...]
    capacity_gbps: tuple[float, ...]
    latency_ms: tuple[float, ...]

    @classmethod
    def from_links(cls, links: Iterable[WanLink], sites: Sequence[str] | None = None) -> Fabric:
        """Two arcs per link (one each way), sites in first-seen order unless ``sites`` is given."""
        links = tuple(links)
        order = list(sites) if sites is not None else []
        for lk in links:
            for s in (lk.a, lk.b):
                if s not in order:
                    order.append(s)
        idx = {s: i for i, s in enumerate(order)}
        src: list[int] = []
        dst: list[int] = []
        cap: list[float] = []
        lat: list[float] = []
        for lk in links:
            for a, b in ((lk.a, lk.b), (lk.b, lk.a)):
                src.append(idx[a])
                dst.append(idx[b])
                cap.append(float(lk.bandwidth_gbps))
                lat.append(float(lk.latency_ms))
        return cls(tuple(order), tuple(src), tuple(dst), tuple(cap), tuple(lat))

    @property
    def n_arcs(self) -> int:
        return len(self.arc_src)

    def site_index(self, site: str) -> int:
        try:
            return self.sites.index(site)
        except ValueError:
            raise KeyError(f"site {site!r} is not on the fabric (sites: {', '.join(self.sites)})") from None

    def out_arcs(self) -> list[list[int]]:
        """For each site index, the indices of the arcs leaving it (in arc order: deterministic)."""
        out: list[list[int]] = [[] for _ in self.sites]
        for a, s in enumerate(self.arc_src):
            out[s].append(a)
        return out

    def arc_index(self) -> dict[tuple[int, int], int]:
        """``(tail, head) -> arc index`` (the first arc when two links join the same pair)."""
        out: dict[tuple[int, int], int] = {}
        for a, pair in enumerate(zip(self.arc_src, self.arc_dst, strict=True)):
            out.setdefault(pair, a)
        return out


def shortest_paths(fabric: Fabric, src: int, dst: int, k: int, max_hops: int) -> list[tuple[int, ...]]:
    """Up to ``k`` simple paths (site indices) from ``src`` to ``dst`` of at most ``max_hops`` arcs, shortest by
    total latency first (ties broken by hop count, then lexicographically: deterministic)."""
    out_arcs = fabric.out_arcs()
    found: list[tuple[float, int, tuple[int, ...]]] = []

    def walk(node: int, path: list[int], lat: float) -> None:
        if node == dst:
            found.append((lat, len(path) - 1, tuple(path)))
            return
        if len(path) - 1 >= max_hops:
            return
        for a in out_arcs[node]:
            nxt = fabric.arc_dst[a]
            if nxt not in path:
                path.append(nxt)
                walk(nxt, path, lat + fabric.latency_ms[a])
                path.pop()

    walk(src, [src], 0.0)
    found.sort()
    return [p for _, _, p in found[:k]]


def dijkstra_tree(out_arcs: list[list[int]], arc_dst: Sequence[int], weight: np.ndarray,
                  src: int) -> tuple[np.ndarray, np.ndarray]:
    """Single-source shortest paths under non-negative arc ``weight``.

    Returns ``(dist, pred_arc)``: the distance to every site (``inf`` if unreachable) and the arc used to
    reach it (-1 for the source and unreachable sites).
    """
    n = len(out_arcs)
    dist = np.full(n, np.inf)
    pred = np.full(n, -1, dtype=np.int64)
    dist[src] = 0.0
    heap: list[tuple[float, int]] = [(0.0, src)]
    done = np.zeros(n, dtype=bool)
    while heap:
        d, u = heapq.heappop(heap)
        if done[u]:
            continue
        done[u] = True
        for a in out_arcs[u]:
            v = arc_dst[a]
            nd = d + float(weight[a])
            if nd < dist[v] - 1e-15:
                dist[v] = nd
                pred[v] = a
                heapq.heappush(heap, (nd, v))
    return dist, pred


def path_from_tree(pred: np.ndarray, arc_src: Sequence[int], src: int, dst: int) -> tuple[int, ...] | None:
    """The site path from ``src`` to ``dst`` encoded by a Dijkstra predecessor array, or ``None``."""
    if dst != src and pred[dst] < 0:
        return None
    path = [dst]
    node = dst
    while node != src:
        node = arc_src[int(pred[node])]
        path.append(node)
    return tuple(reversed(path))
