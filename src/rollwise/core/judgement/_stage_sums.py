"""Per-stage sums of one series' strata, in window order, folded up to a checkpoint: what
``FoldedRates`` (``_folding.py``) keeps of each of its e-processes.

The sums are the same floating-point additions, in the same order, as the full judgement's
(``_run_log_ratios``, ``rate_ratio_of``): each stage's strata in window order, from 0.0. A stage
keeps the sums of its strata up to a checkpoint — those whose window is older than the open
horizon — and adds the ones after it again whenever one of them changed; a change before the
checkpoint starts the stage over from its first stratum.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import Protocol

from rollwise.core.judgement._series import RateSeries, label_of, stage_of


class SeriesView(Protocol):
    """A series as its strata are judged: the raw series, and the whole traffic's where a
    segment is paired with its baseline."""

    series: RateSeries
    whole: RateSeries
    paired: bool
    unit: bool


#: (exposed requests, exposed events, baseline requests, baseline events) of a stratum.
Counts = tuple[int, int, int, int]
#: Adds one stratum's share to a stage's sums.
Add = Callable[[list[float], int, int, int, int], None]


class _Stage:
    __slots__ = ("count", "final", "final_count", "following", "stop", "sums")

    def __init__(self, stage: int, zero: list[float]) -> None:
        self.stop = label_of(stage, -(1 << 40))  # strata labelled before it are in ``sums``
        self.following = label_of(stage + 1, -(1 << 40))  # the next stage's first label
        self.sums = list(zero)
        self.count = 0
        self.final: list[float] | None = None
        self.final_count = 0


class Accumulator:
    """One kind of sums (the harm test's, the safety test's, or the estimate and totals) of one
    series, per stage."""

    __slots__ = ("_add", "_last", "_pending", "_stages", "_zero")

    def __init__(self, add: Add, zero: list[float]) -> None:
        self._add = add
        self._zero = zero
        self._stages: dict[int, _Stage] = {}
        self._pending: dict[int, int] = {}  # stage -> earliest label changed since last read
        self._last: tuple[int, dict[int, list[float]]] | None = None

    def touch(self, label: int) -> None:
        stage = stage_of(label)
        pending = self._pending.get(stage)
        if pending is None or label < pending:
            self._pending[stage] = label

    def stage(self, view: SeriesView, stage: int, boundary: int | None) -> tuple[list[float], int]:
        """The stage's sums over all its strata, and how many strata it has."""
        state = self._stages.get(stage)
        if state is None:
            state = self._stages[stage] = _Stage(stage, self._zero)
        pending = self._pending.pop(stage, None)
        if pending is None and state.final is not None:
            return state.final, state.final_count
        if pending is not None and pending < state.stop:
            state = self._stages[stage] = _Stage(stage, self._zero)  # a change before it
        sums = list(state.sums)
        count = state.count
        # Strata labelled before ``fold`` (their window is older than the boundary) are folded.
        fold = -1 if boundary is None else label_of(stage, boundary)
        add = self._add
        series = view.series
        labels = series.labels
        start = bisect_left(labels, state.stop)
        following = state.following
        end = len(labels)
        if end and labels[-1] >= following:
            end = bisect_left(labels, following, start)
        n_t, x_t, n_c, x_c = series.n_t, series.x_t, series.n_c, series.x_c
        whole = view.whole if view.paired else None
        unit = view.unit
        for position in range(start, end):
            label = labels[position]
            exposed = n_t[position]
            if exposed or not unit:
                requests, events = n_c[position], x_c[position]
                if whole is not None and not requests:
                    other = whole.index(label)
                    if other >= 0:
                        requests, events = whole.n_c[other], whole.x_c[other]
                add(sums, exposed, x_t[position], requests, events)
                count += 1
            if label < fold:
                state.sums, state.stop, state.count = list(sums), label + 1, count
            else:
                fold = -1
        if state.count == count and state.sums == sums:
            sums = state.sums  # all folded: one list for both
        state.final, state.final_count = sums, count
        return sums, count

    def per_stage(
        self, view: SeriesView, current: int, boundary: int | None
    ) -> dict[int, list[float]]:
        """Each stage up to ``current`` that has strata, with its sums (as the full judgement's
        ``_stage_log_ratios`` has them)."""
        last = self._last
        if last is not None and last[0] == current:
            result = last[1]
            for stage in [stage for stage in self._pending if stage <= current]:
                sums, count = self.stage(view, stage, boundary)
                if count:
                    result[stage] = sums
                else:
                    result.pop(stage, None)
            return result
        result = {}
        for stage in range(current + 1):
            sums, count = self.stage(view, stage, boundary)
            if count:
                result[stage] = sums
        self._last = (current, result)
        return result
