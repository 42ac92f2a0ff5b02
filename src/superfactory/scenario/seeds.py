"""One seed tree for every random input of a run.

A run has one *root* seed (``--seed``, or the scenario's ``seed:``). Every random component draws from its own
child stream whose seed is derived from the root and the component's *name* (not its position), so adding a
factory, market or service never reshuffles the other components' series:

======================  ==========================================  ======================================
component               what it draws                               pinned by (scenario file)
======================  ==========================================  ======================================
``failures``            component failures, planned maintenance     ``failures.seed``
``policy``              the policy's tie-breaking generator         (not pinnable)
``workload``            the synthetic training workload             ``workload.seed``
``prices:MARKET``       a synthetic hourly price series             ``markets.MARKET.seed``
``carbon:GRID``         a synthetic hourly carbon-intensity series  ``grids.GRID.seed``
``demand:SERVICE``      trace tiling offsets of an inference        ``services[i].seed``
                        service's PoPs
======================  ==========================================  ======================================

A component's *effective seed* is an integer in ``[0, MAX_SEED]``: the pinned value when the scenario pins it,
else ``child_seed(root, name)``. Its generator is always ``numpy.random.default_rng(effective_seed)``, so pinning
the effective seed a run reported (``seeds`` in the summary) reproduces that component exactly under any root.
"""

from __future__ import annotations

import hashlib

import numpy as np

#: seeds are non-negative 63-bit integers: numpy's SeedSequence takes no negative entropy, and 63 bits keep a
#: seed exact in JSON consumers, int64 Parquet columns and SQL BIGINT.
MAX_SEED = 2**63 - 1


def check_seed(seed: object, what: str = "seed") -> int:
    """``seed`` as an int in ``[0, MAX_SEED]``.

    Raises:
        ValueError: not an integer or out of range (the message says the allowed range and why).
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"{what} must be a whole number in 0..{MAX_SEED}, got {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{what} must be in 0..2**63-1 (a non-negative 63-bit integer), got {seed}")
    return seed


def child_seed(root: int, component: str) -> int:
    """The effective seed of ``component`` under ``root``: stable across runs, platforms and fleet changes."""
    key = int.from_bytes(hashlib.blake2b(component.encode(), digest_size=4).digest(), "big")
    hi, lo = np.random.SeedSequence(entropy=root, spawn_key=(key,)).generate_state(2, np.uint32)
    return ((int(hi) << 32) | int(lo)) >> 1


class SeedTree:
    """The seeds handed out for one compilation: ``seed(name, pinned)`` records every component's effective seed.

    Attributes:
        root: the run seed.
        effective: component name -> effective seed, in the order components asked.
        pinned: names whose seed the scenario pinned.
    """

    def __init__(self, root: int) -> None:
        self.root = check_seed(root)
        self.effective: dict[str, int] = {}
        self.pinned: set[str] = set()

    def seed(self, component: str, pinned: int | None = None) -> int:
        """The effective seed of ``component`` (``pinned`` when given)."""
        if pinned is not None:
            self.pinned.add(component)
            value = pinned
        else:
            value = child_seed(self.root, component)
        self.effective[component] = value
        return value

    def rng(self, component: str, pinned: int | None = None) -> np.random.Generator:
        """A generator on ``component``'s own stream."""
        return np.random.default_rng(self.seed(component, pinned))
