"""A rollout's raw strata as the incremental judgement keeps them: compact, and labelled so that
one number orders them by (stage, window).

Rate strata are kept whole, as four integer columns (40 bytes a stratum with the label): the
bounds shown to people and a unit's own history need every stratum, and a late batch may
change any of them. Latency histograms are kept only for the open windows (see
``_latency_state.py``): once a window is folded into its series' sums, only its baseline's
histogram may still be needed, as the reference point of the windows after it.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left

_STAGE = 1 << 41
_OFFSET = 1 << 40


def label_of(stage: int, window: int) -> int:
    """One integer per (stage, window), in (stage, window) order (windows within ±2**40)."""
    return stage * _STAGE + window + _OFFSET


def stage_of(label: int) -> int:
    return label // _STAGE


def window_of(label: int) -> int:
    return label % _STAGE - _OFFSET


class RateSeries:
    """A rate metric's strata for one segment: requests and events per side, by label."""

    __slots__ = ("counted", "first_exposed", "labels", "n_c", "n_t", "x_c", "x_t")

    def __init__(self, *, counted: bool = False) -> None:
        #: Only counted (exposed requests per value of ``min_samples_per``): the baseline side
        #: is not kept.
        self.counted = counted
        self.labels = array("q")
        self.n_t = array("q")
        self.x_t = array("q")
        self.n_c = array("q")
        self.x_c = array("q")
        #: Label of the first stratum with exposed requests (-1: none yet).
        self.first_exposed = -1

    def __len__(self) -> int:
        return len(self.labels)

    def index(self, label: int) -> int:
        """The position of ``label``, or -1."""
        labels = self.labels
        count = len(labels)
        if count and labels[-1] == label:
            return count - 1
        position = bisect_left(labels, label)
        return position if position < count and labels[position] == label else -1

    def span(self, stage: int) -> tuple[int, int]:
        """Positions [lo, hi) of the stage's strata."""
        labels = self.labels
        lo = bisect_left(labels, label_of(stage, -_OFFSET))
        return lo, bisect_left(labels, label_of(stage + 1, -_OFFSET), lo)

    def set(self, label: int, exposed: bool, requests: int, events: int) -> int | None:
        """Set one side of a stratum. Returns the side's requests before (0 for a new stratum),
        or None when nothing changed."""
        labels = self.labels
        count = len(labels)
        if count and labels[-1] == label:  # the newest stratum again: the usual case
            position, inserted = count - 1, False
        else:
            position = count if not count or labels[-1] < label else bisect_left(labels, label)
            inserted = position == count or labels[position] != label
            if inserted:
                for column in (self.n_t, self.x_t, self.n_c, self.x_c):
                    column.insert(position, 0)
                labels.insert(position, label)
        requests_column, events_column = (self.n_t, self.x_t) if exposed else (self.n_c, self.x_c)
        before = requests_column[position]
        if not inserted and before == requests and events_column[position] == events:
            return None
        requests_column[position] = requests
        events_column[position] = events
        if exposed:
            if requests and (self.first_exposed < 0 or label < self.first_exposed):
                self.first_exposed = label
            elif not requests and label == self.first_exposed:
                self.first_exposed = next(
                    (labels[i] for i in range(position + 1, len(labels)) if self.n_t[i]), -1
                )
        return before

    def head(self) -> tuple[int, int, int] | None:
        """(stage, window, -size) of the first stratum: how segments are ordered."""
        if not self.labels:
            return None
        first = self.labels[0]
        size = self.n_t[0] + self.n_c[0]
        return stage_of(first), window_of(first), -size


class LatencySeries:
    """A latency metric's histograms for one segment, by label, for the windows not folded yet;
    and its first stratum (what orders segments), which is kept when its window is folded."""

    __slots__ = ("earliest", "first", "first_size", "open")

    def __init__(self) -> None:
        self.open: dict[int, list[tuple[int, ...]]] = {}
        self.first = -1
        self.first_size = 0
        self.earliest: int | None = None  # the earliest window with a stratum

    def set(self, label: int, exposed: bool, histogram: tuple[int, ...]) -> int | None:
        """Set one side; returns the side's requests before, or None when nothing changed."""
        sides = self.open.get(label)
        if sides is None:
            sides = self.open[label] = [(), ()]
        side = 0 if exposed else 1
        before = sides[side]
        if before == histogram and before:
            return None
        sides[side] = histogram
        window = window_of(label)
        if self.earliest is None or window < self.earliest:
            self.earliest = window
        if self.first < 0 or label <= self.first:
            self.first = label
            self.first_size = sum(sides[0]) + sum(sides[1])
        return sum(before)

    def drop_before(self, window: int) -> None:
        """Forget the histograms of the windows before ``window`` (they are folded)."""
        for old in [key for key in self.open if window_of(key) < window]:
            del self.open[old]

    def head(self) -> tuple[int, int, int] | None:
        if self.first < 0:
            return None
        return stage_of(self.first), window_of(self.first), -self.first_size
