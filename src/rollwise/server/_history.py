"""The decision log as the dashboard's charts read it, followed incrementally.

Decisions are append-only, so each rollout's recent decisions are kept in memory and only the
ones kept since the last read are fetched: a page polling every second does not re-read (and
re-parse) hundreds of evidence documents each time.
"""

from __future__ import annotations

import threading
from collections import deque

from rollwise.store import DecisionRecord, Store

#: The newest decisions kept per rollout (holds are kept every few minutes).
MAX_DECISIONS = 500


class DecisionHistory:
    """Per rollout, its newest ``MAX_DECISIONS`` decisions, oldest first. Thread-safe: the
    server answers requests from a thread pool."""

    def __init__(self, keep: int = MAX_DECISIONS) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self._kept: dict[int, deque[DecisionRecord]] = {}

    def read(self, store: Store, rollout_id: int) -> list[DecisionRecord]:
        """The rollout's newest decisions, oldest first, after fetching those kept since the
        last read."""
        with self._lock:
            kept = self._kept.get(rollout_id)
            after = kept[-1].id if kept else None
        fresh = store.decisions(rollout_id, limit=self._keep, after=after)
        with self._lock:
            kept = self._kept.setdefault(rollout_id, deque(maxlen=self._keep))
            newest = kept[-1].id if kept else 0
            # Another request may have added some of them meanwhile: keep each once, in order.
            kept.extend(d for d in reversed(fresh) if d.id > newest)
            return list(kept)
