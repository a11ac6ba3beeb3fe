"""How a segment's strata meet a baseline: paired by stage and window, and, for a segment that
is a whole unit, against its own history before exposure (docs/judgement.md, "Strata" and
"Segments")."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from rollwise.core.judgement._evidence import SAFE_ERROR_RATE, StageRow, rate_ratio_of, stage_row
from rollwise.core.judgement._intervals import ratio_interval
from rollwise.core.judgement._memo import IdentityMemo
from rollwise.core.judgement._observations import LatencySample, RateSample, Tally


@dataclass(frozen=True, slots=True)
class OwnRatio:
    """A unit's own rate as a multiple of the other units' (same windows), measured while it was
    on the baseline: ``lower`` ≤ ρ ≤ ``upper`` anytime-valid, ``estimate`` the point estimate.

    With ``unit: tenant`` a tenant is wholly exposed or not, so it can only be compared with
    other tenants, and tenants have base rates of their own. If ρ is stable (a tenant's rate
    moves with the others' over the day), exposed at ratio θρ means θ ≤ θ0 whenever the exposed
    ratio is ≤ θ0·ρ; so harm is tested against θ0·upper and safety against θ0·lower, each at
    half the level, the other half spent on the interval (a union bound).
    """

    lower: float
    estimate: float
    upper: float

    def scales(self, higher_is_worse: bool) -> tuple[float, float]:
        """(factor on θ0 for the harm test, for the safety test)."""
        return (self.upper, self.lower) if higher_is_worse else (self.lower, self.upper)

    @property
    def known(self) -> bool:
        """Whether the unit's history bounds its ratio at all (and on both sides)."""
        return math.isfinite(self.upper) and self.lower > 0 and self.estimate > 0

    def describe(self) -> str:
        if not self.known:
            return "no history on the baseline before exposure to compare with yet"
        return (
            f"which ran at {self.estimate:.2f}× the others' rate before exposure "
            f"({self.lower:.2f}–{self.upper:.2f})"
        )


def paired_rates(samples: Sequence[RateSample], whole: Sequence[RateSample]) -> list[RateSample]:
    """A segment that is all exposed in a stratum (split by the unit itself, or a tenant with
    quiet hours on the baseline side) is compared with the whole traffic's baseline *of the
    same stage and window* — never of another window, which would compare one hour of the
    day with another."""
    baselines = {(s.stage, s.window): s.baseline for s in whole}
    paired = []
    for sample in samples:
        if sample.baseline.requests == 0:
            baseline = baselines.get((sample.stage, sample.window))
            if baseline is not None:
                # The same paired object while neither side changes: what is judged of it is
                # then reused from one tick to the next (see _evidence._RUNS).
                sample = _PAIRED.get(
                    sample,
                    baseline,
                    lambda: replace(sample, baseline=baseline),  # noqa: B023
                )
        paired.append(sample)
    return paired


_PAIRED: IdentityMemo[RateSample, RateSample] = IdentityMemo()


def paired_latencies(
    samples: Sequence[LatencySample], whole: Sequence[LatencySample]
) -> list[LatencySample]:
    """``paired_rates`` for latency histograms."""
    baselines = {(s.stage, s.window): s.baseline for s in whole}
    paired = []
    for sample in samples:
        if not any(sample.baseline):
            baseline = baselines.get((sample.stage, sample.window))
            if baseline is not None:
                sample = replace(sample, baseline=baseline)
        paired.append(sample)
    return paired


def unit_segment(
    samples: Sequence[RateSample], whole: Sequence[RateSample], alpha: float, higher: bool
) -> tuple[list[RateSample], OwnRatio | None]:
    """A segment that is a whole unit (``unit: tenant``, ``by: [tenant]``): its strata on the
    exposed side, each paired with the other units' baseline of the same stage and window; and,
    once it has any, its own ratio to the others from the windows before its first exposure, in
    which it was on the baseline (``OwnRatio``), at half the segment's levels."""
    exposed = [sample for sample in samples if sample.exposed.requests]
    if not exposed:
        return [], None
    first = min((s.stage, s.window) for s in exposed)
    earlier = [
        s
        for s in samples
        if s.baseline.requests and not s.exposed.requests and (s.stage, s.window) < first
    ]
    baselines = {(s.stage, s.window): s.baseline for s in whole}
    everyone = [baselines.get((s.stage, s.window)) for s in earlier]
    # The ratio is found at the segment's level and on its guard's side: both are in the key
    # (a segment's level is its position's, and positions move when a late batch reorders).
    key = (tuple(earlier), tuple(everyone), alpha, higher)
    known = _OWN.get(key[0][0] if earlier else None)
    if known is not None and known[0] == key:
        own = known[1]
    else:
        before = [
            RateSample(
                sample.baseline,
                Tally(
                    total.requests - sample.baseline.requests, total.events - sample.baseline.events
                ),
                sample.stage,
                sample.window,
            )
            for sample, total in zip(earlier, everyone, strict=True)
            if total is not None and total.requests > sample.baseline.requests
        ]
        own = own_ratio(before, alpha, higher)
        if earlier:
            if len(_OWN) >= OWN_LIMIT:
                _OWN.clear()
            _OWN[earlier[0]] = (key, own)
    return paired_rates(exposed, whole), own


def own_ratio(before: Sequence[RateSample], alpha: float, higher: bool) -> OwnRatio:
    """A unit's ratio to the other units from its strata while on the baseline (``before``: its
    baseline as the exposed side, the others' as the baseline), at half the segment's levels."""
    return own_ratio_of([stage_row(sample) for sample in before], alpha, higher)


def own_ratio_of(rows: Sequence[StageRow], alpha: float, higher: bool) -> OwnRatio:
    """``own_ratio`` of strata given as (n_T, x_T, n_C, x_C, stage) rows (the incremental
    judgement keeps counts, not ``RateSample``s)."""
    harm_level = math.log(2 / alpha)
    safe_level = math.log(2 / SAFE_ERROR_RATE)
    lower, upper = ratio_interval(
        tuple(row[:4] for row in rows),
        safe_level if higher else harm_level,
        harm_level if higher else safe_level,
    )
    return OwnRatio(lower, rate_ratio_of(rows) or 0.0, upper)


OWN_LIMIT = 1_024
#: A unit's own ratio by its history (the strata and the baselines it was computed from, kept
#: and compared by value; a unit's history stops growing once it is exposed), and by the level
#: and side it was found at.
_OWN: dict[
    RateSample | None,
    tuple[tuple[tuple[RateSample, ...], tuple[Tally | None, ...], float, bool], OwnRatio],
] = {}
