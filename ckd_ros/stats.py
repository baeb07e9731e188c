"""The latency percentile, defined once, so a p99 in a benchmark table, a bag replay summary and
the node's /diagnostics are the same statistic. Free of torch: the node's worker uses it.
"""

from __future__ import annotations

from collections.abc import Iterable


def percentile(values: Iterable[float], q: float) -> float:
    """Nearest-rank ``q``-th percentile (0-100) of ``values``: always one of the measured values,
    never an interpolation between two, so a tail figure is a latency some frame really had. NaN
    when there are none (a node that has not tracked yet)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]
