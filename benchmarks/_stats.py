"""What the benchmarks compute from their samples."""

from __future__ import annotations

from collections.abc import Sequence


def percentile(values: Sequence[float], share: float) -> float:
    """The sample at ``share`` (0.99: the 99th percentile) of ``values``, nearest rank from
    below; NaN for no values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")
