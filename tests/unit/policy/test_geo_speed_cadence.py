"""geo's cadence remembers the rate lists it last found within the material bounds of the last full solve, and
skips that comparison while the same rates come back (issue 12: geo asks at every decision, the rates change
hourly). Its answers must be those of a cadence that compares every time."""

from __future__ import annotations

import random

import pytest

from superfactory.policy.geo_cadence import SolveCadence


def _fresh_answer(c: SolveCadence, now: int, up: tuple[bool, ...], r24: list[float], r0: list[float],
                  free: list[int], size: list[int]) -> str:
    ref = SolveCadence(material_change=c.material_change, spike_change=c.spike_change,
                       capacity_change=c.capacity_change, full_resolve_s=c.full_resolve_s)
    ref.solved(c.last_s, c._up, list(c._rate24), list(c._rate0), list(c._free_gpus), dict(c._wanted))
    ref.due(now, up, r24, r0, free, size)
    return ref.reason


@pytest.mark.parametrize("seed", range(20))
def test_remembered_calm_gives_the_same_answers(seed: int) -> None:
    rng = random.Random(seed)
    nf = rng.randint(1, 6)
    size = [rng.choice([64, 512, 4096]) for _ in range(nf)]
    c = SolveCadence(full_resolve_s=4 * 3600)
    up = (True,) * nf
    r24 = [rng.uniform(20, 90) for _ in range(nf)]
    r0 = [rng.uniform(20, 90) for _ in range(nf)]
    free = [rng.randint(0, s) for s in size]
    now = 0
    c.solved(now, up, r24, r0, free, {k: rng.choice([8, 64, 512]) for k in range(nf) if rng.random() < 0.5})
    reasons = set()
    for _ in range(300):
        now += rng.choice([30, 60, 600])
        roll = rng.random()
        if roll < 0.15:  # a new hour: new lists, small or large moves
            r24 = [r * rng.uniform(0.97, 1.03) if rng.random() < 0.8 else r * rng.uniform(0.5, 1.6) for r in r24]
            r0 = [r * rng.uniform(0.9, 1.1) for r in r0]
        elif roll < 0.2:  # the same list objects changed in place
            k = rng.randrange(nf)
            r24[k] *= rng.uniform(0.5, 1.5)
        if rng.random() < 0.3:
            free = [max(0, min(s, f + rng.randint(-64, 64))) for f, s in zip(free, size, strict=True)]
        want = _fresh_answer(c, now, up, r24, r0, free, size)
        assert c.due(now, up, r24, r0, free, size) == bool(want)
        assert c.reason == want
        reasons.add(want)
        if want and rng.random() < 0.7:
            c.solved(now, up, r24, r0, free, {k: rng.choice([8, 64, 512]) for k in range(nf) if rng.random() < 0.5})
    assert "" in reasons and len(reasons) >= 2
