"""Seed statistics for the accuracy figures: the 95% interval of a difference of two means."""

from __future__ import annotations

import math


def difference_interval(a: dict, b: dict, level: float = 0.95) -> tuple[float, float]:
    """Welch's interval for mean(a) - mean(b), from {"mean", "std", "n"} summaries over seeds.

    Seeds of the two methods are independent runs (not paired), with unequal spreads, so
    Welch's t with Satterthwaite's degrees of freedom. With one seed on either side there
    is no spread to use: the interval is unbounded.
    """
    from scipy import stats

    diff = a["mean"] - b["mean"]
    if a["n"] < 2 or b["n"] < 2:
        return (-math.inf, math.inf)
    va, vb = a["std"] ** 2 / a["n"], b["std"] ** 2 / b["n"]
    se = math.sqrt(va + vb)
    if se == 0:
        return (diff, diff)
    df = (va + vb) ** 2 / (va**2 / (a["n"] - 1) + vb**2 / (b["n"] - 1))
    half = stats.t.ppf(0.5 + level / 2, df) * se
    return (diff - half, diff + half)
