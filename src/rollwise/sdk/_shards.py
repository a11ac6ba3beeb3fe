"""What one recording thread has counted since the last cut: its rows, under its own lock
(``_aggregation.py`` says why a shard per thread)."""

from __future__ import annotations

import threading

from rollwise.sdk._cut import AggregateKey, Tally
from rollwise.sdk._snapshot import LiveRollout


class Row(Tally):
    """The counts of one (rollout, stage, window, side, segment texts, metric) a thread has
    recorded since the last cut, and the keys they are added to when cut: the whole traffic's
    and one per segment. Counting an outcome into one row, rather than into each of its keys,
    is what keeps recording cheap; the sums at the cut are the same. A replicate's row (one per
    rollout, side, replicate and metric) feeds its replicate's key alone."""

    __slots__ = ("keys", "missing")

    def __init__(self, keys: list[AggregateKey], missing: int) -> None:
        super().__init__()
        self.keys = keys
        #: Keys this row's outcomes would have needed beyond ``max_keys``: each addition to
        #: the row drops (and counts) that many.
        self.missing = missing


#: (rollout, window start, exposed, the text of each ``split_by`` attribute, metric)
RowKey = tuple[LiveRollout, int, bool, tuple[str | None, ...], str]
#: (rollout, exposed, replicate, metric): a replicate's counts span the stage, not a window.
ReplicateKey = tuple[LiveRollout, bool, int, str]


class Shard:
    """One recording thread's rows. Its lock is taken by that thread and by a cut only."""

    __slots__ = ("dropped", "keys", "lock", "replicates", "rows", "thread")

    def __init__(self, thread: threading.Thread) -> None:
        self.lock = threading.Lock()
        self.rows: dict[RowKey, Row] = {}
        #: Rate outcomes per replicate; each row feeds its replicate's key, or none if missing.
        self.replicates: dict[ReplicateKey, Row] = {}
        #: The aggregate keys this shard's rows add to (each counted once against max_keys).
        self.keys: set[AggregateKey] = set()
        self.dropped = 0
        self.thread = thread
