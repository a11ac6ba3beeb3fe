"""A unit's own ratio (``ratio_interval``) is found by Newton's method; it must land where the
bracket search the shown bounds use (``_flip``) lands, on any strata."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rollwise.core.judgement._evidence import HARM_ALTERNATIVES
from rollwise.core.judgement._intervals import (
    _evidence,
    _flip,
    _newton_flip,
    _ratio_interval,
    _strata,
)

Counts = tuple[tuple[int, int, int, int], ...]


def _bracketed(counts: Counts, log_lower: float, log_upper: float) -> tuple[float, float]:
    """The interval as the bracket search finds it (what ``_ratio_interval`` did before)."""
    strata = _strata([[(*row, 0) for row in counts]])
    below = tuple(1 / a for a in HARM_ALTERNATIVES)
    (lower,) = _flip(lambda t: _evidence(strata, t, HARM_ALTERNATIVES, None), 1, True, [log_lower])
    (upper,) = _flip(lambda t: _evidence(strata, t, below, None), 1, False, [log_upper])
    return (0.0 if lower < 1.001e-3 else lower), (math.inf if upper > 0.999e3 else upper)


def _random_counts(rng: np.random.Generator) -> Counts:
    strata = int(rng.integers(0, 120))
    ratio = float(np.exp(rng.normal(0, 1.0)))  # the unit's true ratio to the others
    rate = float(10 ** rng.uniform(-3.5, -0.5))
    rows = []
    for _ in range(strata):
        n_t = int(rng.integers(0, 3000))
        n_c = int(rng.integers(0, 60_000))
        rows.append(
            (n_t, int(rng.binomial(n_t, min(rate * ratio, 1.0))), n_c, int(rng.binomial(n_c, rate)))
        )
    return tuple(rows)


def _same(found: float, reference: float) -> bool:
    if reference in (0.0, math.inf) or found in (0.0, math.inf):
        return found == reference
    return abs(math.log(found / reference)) < 3e-6  # the bracket search's precision, and some


def test_newton_lands_where_the_bracket_search_does_on_random_strata() -> None:
    rng = np.random.default_rng(20261201)
    bounded = 0
    for _ in range(300):
        counts = _random_counts(rng)
        levels = (float(rng.uniform(2, 9)), float(rng.uniform(2, 9)))
        found = _ratio_interval.__wrapped__(counts, *levels)
        reference = _bracketed(counts, *levels)
        assert _same(found[0], reference[0]) and _same(found[1], reference[1]), (
            counts,
            levels,
            found,
            reference,
        )
        bounded += found[0] > 0 and found[1] < math.inf
    assert bounded > 100  # most draws bound the ratio on both sides: the search was exercised


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ((), (0.0, math.inf)),  # no strata: nothing bounds it
        (((1000, 0, 1000, 0),), (0.0, math.inf)),  # no events
        (((5000, 0, 50_000, 40),), (0.0, None)),  # no exposed events: no lower bound
        (((5000, 40, 50_000, 0),), (None, math.inf)),  # no baseline events: no upper bound
    ],
)
def test_unbounded_sides(counts: Counts, expected: tuple[float | None, float | None]) -> None:
    found = _ratio_interval.__wrapped__(counts, math.log(200), math.log(40))
    reference = _bracketed(counts, math.log(200), math.log(40))
    for side in (0, 1):
        assert _same(found[side], reference[side])
        if expected[side] is not None:
            assert found[side] == expected[side]


def test_the_flip_is_where_the_evidence_meets_the_level() -> None:
    """At the returned θ0 the test sits on its threshold (not merely near the bracket's)."""
    counts = ((4000, 60, 40_000, 400), (3000, 35, 30_000, 310), (5000, 71, 52_000, 480))
    strata = _strata([[(*row, 0) for row in counts]])
    for grid, rising in (
        (HARM_ALTERNATIVES, True),
        (tuple(1 / a for a in HARM_ALTERNATIVES), False),
    ):
        theta = _newton_flip(strata, grid, rising, math.log(100))
        at = _evidence(strata, np.array([[theta]]), grid, None)[0, 0]
        assert at == pytest.approx(math.log(100), abs=1e-6)
        # Just on the rejecting side it rejects, just past it it does not.
        inside, outside = (
            (theta * 0.999, theta * 1.001) if rising else (theta * 1.001, theta * 0.999)
        )
        assert _evidence(strata, np.array([[inside]]), grid, None)[0, 0] > math.log(100)
        assert _evidence(strata, np.array([[outside]]), grid, None)[0, 0] < math.log(100)
