"""Statistics over seeds: means with Student-t confidence intervals, and paired differences.

Runs of the same cell coordinates under different seeds are independent draws of the fleet's randomness
(failures, and with seed trees prices and workload), so the mean of a metric over ``n`` seeds has the interval
``mean ± t(1 - (1 - level) / 2, n - 1) · s / √n`` (``s`` the sample standard deviation). Two policies run on the
*same* seeds face the same draws, so their difference is judged on the per-seed differences (a paired t
interval), which cancels the variance the seeds share and needs far fewer seeds than comparing two means.

The t quantile is computed here (regularized incomplete beta by continued fraction, inverted by bisection) so
the statistics need nothing beyond the standard library.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean and its confidence interval over ``n`` values (``half_width`` is NaN when ``n`` < 2)."""

    n: int
    mean: float
    std: float
    half_width: float
    level: float = LEVEL

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def excludes_zero(self) -> bool:
        """Whether the whole interval lies on one side of zero (false when it cannot be computed)."""
        return self.n >= 2 and not math.isnan(self.half_width) and (self.low > 0 or self.high < 0)

    def as_dict(self) -> dict[str, float | int | None]:
        def num(x: float) -> float | None:
            return None if math.isnan(x) else x

        return {"n": self.n, "mean": num(self.mean), "std": num(self.std), "half_width": num(self.half_width),
                "low": num(self.low), "high": num(self.high), "level": self.level}


def mean_ci(values: Iterable[float], level: float = LEVEL) -> Interval:
    """Mean and Student-t confidence interval of ``values`` (NaNs dropped).

    Raises:
        ValueError: ``level`` outside (0, 1).
    """
    if not 0 < level < 1:
        raise ValueError(f"confidence level must be in (0, 1), got {level}")
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(xs)
    if n == 0:
        return Interval(0, math.nan, math.nan, math.nan, level)
    mean = math.fsum(xs) / n
    if n == 1:
        return Interval(1, mean, math.nan, math.nan, level)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    return Interval(n, mean, std, t_quantile(1 - (1 - level) / 2, n - 1) * std / math.sqrt(n), level)


def paired_difference(base: Mapping[object, float], other: Mapping[object, float],
                      level: float = LEVEL) -> Interval:
    """Interval of ``other - base`` over the keys (seeds) both have a value for (NaN values dropped)."""
    keys = [k for k in base if k in other]
    diffs = [other[k] - base[k] for k in keys
             if base[k] is not None and other[k] is not None and not math.isnan(other[k] - base[k])]
    return mean_ci(diffs, level)


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` degrees of freedom (e.g. (0.975, 9) -> 2.262).

    Raises:
        ValueError: ``p`` outside (0, 1) or ``df`` <= 0.
    """
    if not 0 < p < 1 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    if p == 0.5:
        return 0.0
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    x = df / (df + t * t)
    tail = 0.5 * regularized_beta(x, df / 2, 0.5)
    return 1 - tail if t > 0 else tail


def regularized_beta(x: float, a: float, b: float) -> float:
    """I_x(a, b), the regularized incomplete beta function (continued fraction, Numerical Recipes §6.4)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _beta_cf(x, a, b) / a
    return 1 - math.exp(log_front) * _beta_cf(1 - x, b, a) / b


def _beta_cf(x: float, a: float, b: float) -> float:
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1 + aa * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return h
