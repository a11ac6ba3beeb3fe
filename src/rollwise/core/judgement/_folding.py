"""A rate guard's series judged incrementally: per stage, the e-processes' sums folded up to a
checkpoint, and only the strata after it added again when something changes.

The full judgement (``judge_rate``) adds each stage's strata in window order, then combines the
stages (the restarted harm test of ``restarted_log_evidence``, the safety test on the current
stage, the Mantel-Haenszel estimate stage by stage). Here each stage keeps the sums of its
strata up to a checkpoint — the strata whose window is older than the open horizon — and adds
the strata after it, in the same order, whenever one of them changed. So the sums are the same
floating-point additions in the same order as the full judgement's, and the verdicts are the
same to the bit. A change before a stage's checkpoint (a very late batch) drops the checkpoint:
that stage is added up again from its first stratum, from the series kept whole in memory.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import replace
from typing import TYPE_CHECKING

from rollwise.core._plan import Guard, Worse
from rollwise.core.judgement._dispersion import NO_DISPERSION, Dispersion
from rollwise.core.judgement._evidence import (
    RestartedBound,
    StageRow,
    _log_mean_exp,
    add_plain,
    discounted,
    discounted_stages,
    mantel_haenszel,
    ratios_adder,
    restarted_log_evidence,
)
from rollwise.core.judgement._intervals import Row, rate_bounds_many
from rollwise.core.judgement._observations import SegmentKey, Tally
from rollwise.core.judgement._pairing import own_ratio_of
from rollwise.core.judgement._series import RateSeries, stage_of
from rollwise.core.judgement._stage_sums import Accumulator, Counts
from rollwise.core.judgement._verdicts import (
    GuardVerdict,
    RateFacts,
    RateTests,
    Verdict,
    _limit_evidence,
    rate_harmed,
    rate_tests,
    rate_verdict,
)

if TYPE_CHECKING:
    from rollwise.core.judgement._pairing import OwnRatio


class FoldedRates:
    """One rate guard's series — the whole traffic, or one segment paired with the whole's
    baseline window by window — judged from sums kept per stage.

    ``unit``: the segment is a whole unit, judged on its exposed strata against its own history
    (``unit_segment``): its ``OwnRatio`` is found again only when its first exposure or a
    stratum before it changes.
    """

    def __init__(
        self,
        guard: Guard,
        alpha: float,
        stages: int,
        series: RateSeries,
        whole: RateSeries,
        *,
        unit: bool = False,
    ) -> None:
        self.guard = guard
        self.alpha = alpha
        self.stages = stages
        self.series = series
        self.whole = whole
        self.unit = unit
        self.paired = series is not whole
        self.higher = guard.worse is Worse.HIGHER
        self.limited = _limit_evidence(Tally(), guard) is not None
        self.own: OwnRatio | None = None
        #: What the e-values are divided by (``disperse``); a unit's own history keeps none.
        self.dispersion: Dispersion = NO_DISPERSION
        self._first = -1
        self._harmed: tuple[int, bool] | None = None
        self._bound = RestartedBound()  # the harm evidence's bound (``_harm_now``)
        # Mantel-Haenszel numerator and denominator (floats), then the four counts (integers).
        self._plain = Accumulator(add_plain, [0.0, 0.0, 0, 0, 0, 0])
        self._use(rate_tests(guard, alpha, None))

    def _use(self, tests: RateTests) -> None:
        self.tests = tests
        self._harmed = None
        self._harm = (
            None
            if tests.harm_theta is None
            else Accumulator(
                ratios_adder(tests.harm_theta, tests.harm_alternatives),
                [0.0] * len(tests.harm_alternatives),
            )
        )
        self._safe = (
            None
            if tests.safe_theta is None
            else Accumulator(
                ratios_adder(tests.safe_theta, tests.safe_alternatives),
                [0.0] * len(tests.safe_alternatives),
            )
        )
        self._pendings = [
            accumulator._pending
            for accumulator in (self._plain, self._harm, self._safe)
            if accumulator is not None
        ]

    def disperse(self, dispersion: Dispersion) -> None:
        """Divide the e-values by this dispersion from now on (``_dispersion.py``)."""
        # Asked at every tick: the same object (or a unit's, which keeps none) is the usual case.
        if self.unit or dispersion is self.dispersion:
            return
        if dispersion != self.dispersion:
            self.dispersion = dispersion
            self._harmed = None

    def changed(self, label: int, exposed: bool) -> None:
        """The series' own stratum at ``label`` changed, on the exposed side or not."""
        if self.unit:
            if self._first >= 0 and label < self._first:
                self._first = -2  # the history before the first exposure changed: find it again
            if not exposed:
                if self.series.first_exposed < 0:
                    return  # not exposed yet: nothing is judged, its history is read when it is
                position = self.series.index(label)
                if position < 0 or not self.series.n_t[position]:
                    return  # not a judged stratum, before or after
        self._touch(label)

    def whole_changed(self, label: int) -> None:
        """The whole traffic's baseline at ``label`` changed: what this segment is paired with
        where it has no baseline of its own, and what a unit's own history is measured
        against."""
        if self.unit:
            if self._first >= 0 and label < self._first:
                self._first = -2
            elif self.series.first_exposed < 0:
                return  # not exposed yet: nothing judged, and its history is read when it is
        position = self.series.index(label)
        if position < 0 or self.series.n_c[position]:
            return  # not paired there
        if self.unit and not self.series.n_t[position]:
            return
        self._touch(label)

    def _touch(self, label: int) -> None:
        self._harmed = None
        stage = stage_of(label)
        for pending in self._pendings:
            earliest = pending.get(stage)
            if earliest is None or label < earliest:
                pending[stage] = label

    def strata(self, stage: int, start: int) -> list[tuple[int, Counts | None]]:
        """The stage's strata from label ``start`` on, as judged: (label, counts), counts None
        for a stratum that is not judged (a unit's strata without exposed requests)."""
        series = self.series
        labels = series.labels
        lo, hi = series.span(stage)
        lo = bisect_left(labels, start, lo, hi)
        result: list[tuple[int, Counts | None]] = []
        n_t, x_t, n_c, x_c = series.n_t, series.x_t, series.n_c, series.x_c
        for position in range(lo, hi):
            label = labels[position]
            if self.unit and not n_t[position]:
                result.append((label, None))
                continue
            baseline = n_c[position], x_c[position]
            if self.paired and not baseline[0]:
                other = self.whole.index(label)
                if other >= 0:
                    baseline = self.whole.n_c[other], self.whole.x_c[other]
            result.append((label, (n_t[position], x_t[position], *baseline)))
        return result

    def _refresh(self) -> None:
        """Find the unit's own ratio again if its history or first exposure changed."""
        first = self.series.first_exposed
        if not self.unit or first == self._first:
            return
        self._first = first
        own = None if first < 0 else own_ratio_of(self._before(first), self.alpha, self.higher)
        if own != self.own:
            self.own = own
            self._use(rate_tests(self.guard, self.alpha, own))

    def _before(self, first: int) -> list[StageRow]:
        """The unit's strata on the baseline before its first exposure, against the others'
        baseline of the same stage and window (``unit_segment``'s ``before``), as counts."""
        series, whole = self.series, self.whole
        before: list[StageRow] = []
        for position in range(series.index(first)):
            n_c = series.n_c[position]
            if not n_c or series.n_t[position]:
                continue
            label = series.labels[position]
            other = whole.index(label)
            if other < 0 or whole.n_c[other] <= n_c:
                continue
            x_c = series.x_c[position]
            others = whole.n_c[other] - n_c, whole.x_c[other] - x_c
            before.append((n_c, x_c, *others, stage_of(label)))
        return before

    def _totals(
        self, current: int, boundary: int | None
    ) -> tuple[Tally, Tally, Tally, float | None]:
        plain = self._plain.per_stage(self, current, boundary)
        n_t = x_t = n_c = x_c = 0
        for sums in plain.values():
            n_t += int(sums[2])
            x_t += int(sums[3])
            n_c += int(sums[4])
            x_c += int(sums[5])
        now = plain.get(current)
        stage_exposed = Tally(int(now[2]), int(now[3])) if now else Tally()
        estimate = mantel_haenszel({stage: sums[:2] for stage, sums in plain.items()})
        return Tally(n_t, x_t), Tally(n_c, x_c), stage_exposed, estimate

    def harmed(self, current: int, boundary: int | None) -> bool:
        """``self.verdict(...).verdict is Verdict.HARM``, computing no more than it needs."""
        if self.unit and self.series.first_exposed != self._first:
            self._refresh()
        known = self._harmed  # dropped by every change of the strata or of the tests
        if known is not None and known[0] == current:
            return known[1]
        harmed = self._harm_now(current, boundary)
        self._harmed = (current, harmed)
        return harmed

    def _harm_now(self, current: int, boundary: int | None) -> bool:
        tests = self.tests
        evidence = None
        if self._harm is not None:
            per_stage = self._harm.per_stage(self, current, boundary)
            phi = self.dispersion.phi
            evidence = self._bound(per_stage, phi) + 1e-9
            if evidence < tests.log_harm and not self.limited:
                return False
            if evidence >= tests.log_harm:
                evidence = restarted_log_evidence(discounted_stages(per_stage, phi), self.stages)
        exposed = self._totals(current, boundary)[0] if self.limited else Tally()
        return rate_harmed(self.guard, tests, exposed, evidence)

    def verdict(
        self,
        current: int,
        boundary: int | None,
        segment: SegmentKey,
        bounds: bool,
        pending_bounds: bool = True,
    ) -> GuardVerdict:
        verdict, facts = self.unbounded(current, boundary, segment)
        if not self.wants_bounds(verdict, bounds, pending_bounds):
            return verdict
        history, now = self.bounds_strata(current)
        tests = self.tests
        (shown,) = rate_bounds_many(
            [(history, now, tests.log_harm, tests.log_safe)],
            self.higher,
            self.stages,
            [self.dispersion.phi],
        )
        return self.bounded(facts, shown, segment)

    def unbounded(
        self, current: int, boundary: int | None, segment: SegmentKey
    ) -> tuple[GuardVerdict, RateFacts]:
        """The verdict without bounds, and the facts it was made from."""
        self._refresh()
        tests = self.tests
        exposed, baseline, stage_exposed, estimate = self._totals(current, boundary)
        harm = safe = None
        phi = self.dispersion.phi
        if self._harm is not None:
            per_stage = self._harm.per_stage(self, current, boundary)
            harm = restarted_log_evidence(discounted_stages(per_stage, phi), self.stages)
        if self._safe is not None:
            sums, count = self._safe.stage(self, current, boundary)
            logs = [0.0] * len(sums)
            if count:
                for index, value in enumerate(sums):
                    logs[index] += value
            safe = _log_mean_exp(discounted(logs, phi))
        facts = RateFacts(
            exposed,
            baseline,
            stage_exposed,
            estimate,
            harm,
            safe,
            dispersion=self.dispersion,
        )
        return rate_verdict(self.guard, tests, facts, segment, self.own), facts

    def wants_bounds(self, verdict: GuardVerdict, bounds: bool, pending_bounds: bool) -> bool:
        """Whether ``judge_rate`` finds bounds for this verdict."""
        if not bounds or self.tests.theta0 is None:
            return False
        return pending_bounds or verdict.verdict is not Verdict.PENDING

    def bounds_strata(self, current: int) -> tuple[list[Row], list[Row]]:
        """The strata the bounds are found from (``Row``s): up to ``current``, and of it."""
        history = [
            (*counts, stage)
            for stage in range(current + 1)
            for _, counts in self.strata(stage, 0)
            if counts is not None
        ]
        return history, [row for row in history if row[4] == current]

    def bounded(
        self, facts: RateFacts, bounds: tuple[float, float], segment: SegmentKey
    ) -> GuardVerdict:
        return rate_verdict(
            self.guard, self.tests, replace(facts, bounds=bounds), segment, self.own
        )
