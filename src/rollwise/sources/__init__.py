"""Where guard counts come from besides the SDKs' batches: Prometheus (``PrometheusFeed``).

A source writes counts per stratum into the store — never ratios — so every guard is judged by
the same anytime-valid tests; the controller runs it at each tick (docs/prometheus.md)."""

from rollwise.sources._analysis import Analyses, Judged, SelectorsChanged, UnknownJudgement
from rollwise.sources._prometheus import PrometheusFeed
from rollwise.sources._promql import QueryError

__all__ = [
    "Analyses",
    "Judged",
    "PrometheusFeed",
    "QueryError",
    "SelectorsChanged",
    "UnknownJudgement",
]
