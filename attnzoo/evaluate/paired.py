"""Paired comparison of two models trained on the same seeds: mean difference and its 95% t interval.

Runs that share a seed share their initialisation stream and batch order, so the per-seed difference
removes much of the seed-to-seed noise that a difference of means would carry. The interval is Student's
t on the ``n`` per-seed differences (``n - 1`` degrees of freedom); an interval that excludes 0 is the
evidence of an effect at this budget, one that includes 0 is not evidence of no effect.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

# Two-sided 95% quantiles t(0.975, df) for df = 1..30 (standard tables, 4 decimals).
_T975 = (12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
         2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
         2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423)
_Z975 = 1.959963984540054


def t_quantile_975(df: int) -> float:
    """Student's t 97.5% quantile (the half-width factor of a two-sided 95% interval) for ``df`` >= 1.

    A table up to 30 degrees of freedom, beyond it the Cornish-Fisher expansion around the normal
    quantile (error below 1e-4 there), so no statistics package is needed.
    """
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975
    return (z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
            + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3))


@dataclass(frozen=True)
class PairedDifference:
    """``mean`` of the per-seed differences (model minus baseline) and its 95% interval; ``low``/``high``
    are None when ``n`` < 2 (no interval from one pair)."""

    n: int
    mean: float
    low: float | None
    high: float | None

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and (self.low > 0 or self.high < 0)


def paired_difference(model: dict[int, float], baseline: dict[int, float]) -> PairedDifference | None:
    """Compare per-seed scores on the seeds both have; None when they share no seed.

    Raises ValueError on a non-finite score, so a NaN never turns into a confident-looking interval.
    """
    seeds = sorted(set(model) & set(baseline))
    if not seeds:
        return None
    diffs = [model[s] - baseline[s] for s in seeds]
    if not all(math.isfinite(d) for d in diffs):
        raise ValueError(f"non-finite score among seeds {seeds}")
    mean = statistics.fmean(diffs)
    if len(diffs) < 2:
        return PairedDifference(1, mean, None, None)
    half = t_quantile_975(len(diffs) - 1) * statistics.stdev(diffs) / math.sqrt(len(diffs))
    return PairedDifference(len(diffs), mean, mean - half, mean + half)
