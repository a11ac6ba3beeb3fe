"""A latency guard's series judged incrementally: the tail counts of ``_tail.py``, window by
window, with the windows older than the open horizon folded into per-stage sums.

``tail_strata`` turns each window's strata into tail counts against a reference point read from
the baseline of the *earlier* windows, then the counts go to the same e-processes as a rate.
Here the open windows (the last ``open_minutes``, where late batches still land) keep their
histograms; a window older than that is folded: its tail counts' log likelihood ratios, its
Mantel-Haenszel terms and its histograms are added to its stage's sums — in window order, the
order ``judge_latency`` adds them — and its histograms are dropped, except its baseline, which
stays while the reference point of a later window may still be read from it. A reference point
reads back from the latest earlier window until it holds enough requests (at most 96 windows),
and how far back that goes never decreases from one window to the next, so the baselines kept
are those the first open window reads back to.

A change to a folded window cannot be replayed from what is kept: the series is then ``stale``
and the caller builds it again from all of the rollout's aggregates (the controller reads them
from the store; it happens for batches more than the open horizon late).
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Sequence

from rollwise.core._plan import Guard, Worse
from rollwise.core.judgement._dispersion import NO_DISPERSION, Dispersion
from rollwise.core.judgement._evidence import (
    HARM_ALTERNATIVES,
    SAFE_ALTERNATIVES,
    _log_mean_exp,
    _stratum_log_ratios,
    discounted,
    discounted_stages,
    mantel_haenszel,
    restarted_log_evidence,
    restarted_upper_bound,
)
from rollwise.core.judgement._histogram import LATENCY_BOUNDARIES_MS, add_histograms
from rollwise.core.judgement._latency import (
    LatencyFacts,
    latency_harmed,
    latency_levels,
    latency_verdict,
    tolerated_latency,
)
from rollwise.core.judgement._observations import LatencySample, RateSample, SegmentKey
from rollwise.core.judgement._tail import (
    _MAX_LOOKBACK,
    _convert,
    _minimum_reference_count,
    _reference,
)
from rollwise.core.judgement._verdicts import GuardVerdict

_WIDTH = len(HARM_ALTERNATIVES)

#: (window's baseline requests, its baseline histogram), as ``_window_baseline`` makes them.
Baseline = tuple[int, tuple[int, ...]]


class _Stage:
    """A stage's folded windows: sums of the harm and safety log ratios and of the
    Mantel-Haenszel terms of their tail counts, and their pooled histograms."""

    __slots__ = ("baseline", "count", "exposed", "harm", "mh", "safe")

    def __init__(self) -> None:
        self.harm = [0.0] * _WIDTH
        self.safe = [0.0] * len(SAFE_ALTERNATIVES)
        self.mh = [0.0, 0.0]
        self.count = 0  # tail strata folded (the harm test's strata; the safety test's alike)
        self.exposed: tuple[int, ...] = ()
        self.baseline: tuple[int, ...] = ()


def _add_ratios(sums: list[float], sample: RateSample, grid: tuple[float, ...]) -> None:
    n_t, x_t = sample.exposed.requests, sample.exposed.events
    n_c, x_c = sample.baseline.requests, sample.baseline.events
    if n_t == 0 or n_c == 0 or x_t + x_c == 0:
        return
    for index, ratio in enumerate(_stratum_log_ratios(n_t, x_t, n_c, x_c, 1.0, grid)):
        sums[index] += ratio


def _add_terms(sums: list[float], sample: RateSample) -> None:
    n_t, n_c = sample.exposed.requests, sample.baseline.requests
    if n_t and n_c:
        total = n_t + n_c
        sums[0] += sample.exposed.events * n_c / total
        sums[1] += sample.baseline.events * n_t / total


class FoldedLatency:
    """One latency guard's series — the whole traffic, or one segment with the whole's baseline
    where it has none — kept as open windows and folded per-stage sums."""

    def __init__(self, guard: Guard, alpha: float, stages: int, *, pooled: bool = True) -> None:
        self.guard = guard
        self.alpha = alpha
        self.stages = stages
        self.quantile = guard.quantile or 0.95
        self.higher = guard.worse is Worse.HIGHER
        self.tolerated = tolerated_latency(guard)
        self.needed = _minimum_reference_count(self.quantile)
        # Bounds or a ``max`` need the histograms pooled: kept unless they will never be asked.
        self.pooled = pooled or guard.maximum is not None
        #: Open windows: window -> stage -> [exposed, baseline] (as judged: paired).
        self.windows: dict[int, dict[int, list[tuple[int, ...]]]] = {}
        self.order: list[int] = []
        #: Baselines of folded windows a reference point may still read, oldest first.
        self.chain: list[Baseline] = []
        self.folded: dict[int, _Stage] = {}
        self.floor: int | None = None  # windows before it are folded
        self.folded_stage = -1
        self.stale = False
        self._chain_bucket: tuple[int | None] | None = None  # the chain's reference point
        # Per open window, what its tail counts were last made from, and them.
        self._converted: dict[int, tuple[tuple[int | None, int], Baseline, list[_Tails]]] = {}
        #: What the tail tests' summed log ratios are divided by (``_dispersion.py``).
        self.dispersion: Dispersion = NO_DISPERSION

    def disperse(self, dispersion: Dispersion) -> None:
        """Divide the tail tests' e-values by this dispersion from now on: the sums are kept
        undivided, so the division applies to all of them alike, as ``judge_latency`` does."""
        self.dispersion = dispersion

    def set(
        self, stage: int, window: int, exposed: tuple[int, ...], baseline: tuple[int, ...]
    ) -> None:
        """A stratum's histograms as judged (a segment's already paired)."""
        if self.floor is not None and window < self.floor:
            self.stale = True
            return
        group = self.windows.get(window)
        if group is None:
            group = self.windows[window] = {}
            insort(self.order, window)
        group[stage] = [exposed, baseline]
        self._converted.pop(window, None)

    def _window(
        self, window: int, current: int, earlier: Sequence[Baseline]
    ) -> tuple[list[tuple[int, tuple[int, ...], tuple[int, ...]]], Baseline, list[_Tails]] | None:
        """One open window as ``tail_strata`` sees it: its strata up to ``current`` (by stage),
        its baseline, and their tail counts against the reference point read from ``earlier``
        (None when it has no stratum up to ``current``)."""
        group = [
            (stage, sides[0], sides[1])
            for stage, sides in sorted(self.windows[window].items())
            if stage <= current
        ]
        if not group:
            return None
        if earlier is self.chain:
            # The first open window reads the folded windows only: their point is kept.
            if self._chain_bucket is None:
                self._chain_bucket = (_reference(earlier, self.quantile, self.needed),)
            bucket = self._chain_bucket[0]
        else:
            bucket = _reference(earlier, self.quantile, self.needed)
        key = (bucket, current)
        known = self._converted.get(window)
        if known is not None and known[0] == key:
            return group, known[1], known[2]
        if len(group) == 1:
            baseline: Baseline = (sum(group[0][2]), tuple(group[0][2]))
        else:
            pooled: tuple[int, ...] = ()
            for _, _, side in group:
                pooled = add_histograms(pooled, side)
            baseline = (sum(pooled), pooled)
        tails: list[_Tails] = []
        if bucket is not None:
            b = self.tolerated(LATENCY_BOUNDARIES_MS[bucket])
            for stage, exposed, base in group:
                if exposed and base:
                    sample = LatencySample(exposed, base, stage, window)
                    tails.append((stage, *_convert(sample, bucket, b, self.higher)))
        self._converted[window] = (key, baseline, tails)
        return group, baseline, tails

    def _fold(self, current: int, boundary: int | None) -> None:
        """Fold the open windows older than ``boundary`` (in order; a window holding a stratum
        of a later stage than ``current`` stops it)."""
        if current < self.folded_stage:
            self.stale = True  # folded windows would have to be read again without that stage
            return
        while boundary is not None and self.order and self.order[0] < boundary:
            window = self.order[0]
            if max(self.windows[window]) > current:
                return
            walked = self._window(window, current, self.chain)
            if walked is None:
                return
            group, baseline, tails = walked
            for stage, harm, safe in tails:
                folded = self._stage(stage)
                _add_ratios(folded.harm, harm, HARM_ALTERNATIVES)
                _add_ratios(folded.safe, safe, SAFE_ALTERNATIVES)
                _add_terms(folded.mh, harm)
                folded.count += 1
            for stage, exposed, base in group:
                folded = self._stage(stage)
                if self.pooled:
                    folded.exposed = add_histograms(folded.exposed, exposed)
                    folded.baseline = add_histograms(folded.baseline, base)
                self.folded_stage = max(self.folded_stage, stage)
            self.chain.append(baseline)
            self._chain_bucket = None
            self._trim()
            del self.windows[window]
            self._converted.pop(window, None)
            self.order.pop(0)
            self.floor = window + 1

    def _stage(self, stage: int) -> _Stage:
        folded = self.folded.get(stage)
        if folded is None:
            folded = self.folded[stage] = _Stage()
        return folded

    def _trim(self) -> None:
        """Keep the baselines the next window's reference point reads (``_reference``)."""
        chain = self.chain
        count = keep = 0
        for requests, _ in reversed(chain[-_MAX_LOOKBACK:]):
            keep += 1
            count += requests
            if count >= self.needed:
                break
        del chain[: len(chain) - keep]

    def _evaluate(
        self, current: int, boundary: int | None, safety: bool
    ) -> tuple[dict[int, list[float]], list[float], dict[int, list[float]], _Walked]:
        """Per stage up to ``current``: harm sums (stages with tail strata), the current stage's
        safety sums, Mantel-Haenszel sums; and the open windows walked."""
        self._fold(current, boundary)
        harm = {stage: list(f.harm) for stage, f in self.folded.items() if stage <= current}
        counts = {stage: f.count for stage, f in self.folded.items() if stage <= current}
        terms = {stage: list(f.mh) for stage, f in self.folded.items() if stage <= current}
        now = self.folded.get(current)
        safe = list(now.safe) if now is not None and now.count else [0.0] * len(SAFE_ALTERNATIVES)
        earlier: list[Baseline] = self.chain
        walked: _Walked = []
        for window in self.order:
            found = self._window(window, current, earlier)
            if found is None:
                continue
            group, baseline, tails = found
            walked.append(group)
            if earlier is self.chain:
                earlier = list(self.chain)
            earlier.append(baseline)
            for stage, tail_harm, tail_safe in tails:
                if stage not in harm:
                    harm[stage] = [0.0] * _WIDTH
                    terms[stage] = [0.0, 0.0]
                    counts[stage] = 0
                _add_ratios(harm[stage], tail_harm, HARM_ALTERNATIVES)
                _add_terms(terms[stage], tail_harm)
                counts[stage] += 1
                if safety and stage == current:
                    _add_ratios(safe, tail_safe, SAFE_ALTERNATIVES)
        present = {stage: sums for stage, sums in harm.items() if counts[stage]}
        return present, safe, terms, walked

    def harmed(self, current: int, boundary: int | None) -> bool:
        """``self.verdict(...).verdict is Verdict.HARM``, computing no more than it needs."""
        if self.guard.tolerance is None or self.guard.maximum is not None:
            return latency_harmed(self.guard, self.alpha, self.facts(current, boundary, True))
        sums, _, _, _ = self._evaluate(current, boundary, False)
        harm = discounted_stages(sums, self.dispersion.phi)
        evidence = restarted_upper_bound(harm) + 1e-9
        if evidence >= latency_levels(self.guard, self.alpha)[0]:
            evidence = restarted_log_evidence(harm, self.stages)
        return latency_harmed(self.guard, self.alpha, LatencyFacts(evidence, None, None))

    def facts(self, current: int, boundary: int | None, pooled: bool) -> LatencyFacts:
        harm, safe, terms, walked = self._evaluate(current, boundary, True)
        sides: list[tuple[int, ...]] = [(), (), (), ()]
        if pooled and not self.pooled:
            raise ValueError("this evidence was kept without the histograms bounds need")
        if pooled:
            for stage, folded in sorted(self.folded.items()):
                if stage <= current:
                    sides[0] = add_histograms(sides[0], folded.exposed)
                    sides[1] = add_histograms(sides[1], folded.baseline)
                if stage == current:
                    sides[2] = add_histograms(sides[2], folded.exposed)
                    sides[3] = add_histograms(sides[3], folded.baseline)
            for group in walked:
                for stage, exposed, base in group:
                    sides[0] = add_histograms(sides[0], exposed)
                    sides[1] = add_histograms(sides[1], base)
                    if stage == current:
                        sides[2] = add_histograms(sides[2], exposed)
                        sides[3] = add_histograms(sides[3], base)
        if self.guard.tolerance is None:
            return LatencyFacts(None, None, None, *sides)
        phi = self.dispersion.phi
        return LatencyFacts(
            restarted_log_evidence(discounted_stages(harm, phi), self.stages),
            _log_mean_exp(discounted(safe, phi)),
            mantel_haenszel(terms),
            *sides,
            dispersion=self.dispersion,
        )

    def verdict(
        self, current: int, boundary: int | None, segment: SegmentKey, bounds: bool
    ) -> GuardVerdict:
        pooled = bounds or self.guard.maximum is not None
        return latency_verdict(
            self.guard, self.alpha, self.facts(current, boundary, pooled), segment
        )


#: A stratum's tail counts: (stage, for the harm test, for the safety test).
_Tails = tuple[int, RateSample, RateSample]
#: The open windows' strata, as walked: per window, (stage, exposed, baseline) up to a stage.
_Walked = list[list[tuple[int, tuple[int, ...], tuple[int, ...]]]]
