"""Judgement: anytime-valid guard verdicts and the stage decision. Pure, like all of core.

See docs/judgement.md for the methods, their citations and their measured behaviour.
"""

from __future__ import annotations

from rollwise.core.judgement._aggregates import Aggregate, AggregateTable
from rollwise.core.judgement._bernoulli import quantile_bounds, sample_ratio_log_evidence
from rollwise.core.judgement._decision import (
    Decision,
    Judged,
    Move,
    RolloutState,
    RolloutStatus,
    decide,
    harm_alpha,
    harm_budget,
    judge_guard,
    judge_guards,
    segment_alpha,
)
from rollwise.core.judgement._dispersion import (
    REPLICATE_ATTRIBUTE,
    REPLICATE_WINDOW,
    REPLICATES,
    Dispersion,
    Replicates,
    parse_replicate,
    replicate_of,
    replicate_segment,
    replicated_metrics,
    tail_quantiles,
)
from rollwise.core.judgement._evidence import (
    HARM_ALTERNATIVES,
    SAFE_ALTERNATIVES,
    SAFE_ERROR_RATE,
    harm_log_evidence,
    rate_log_evidence,
    restarted_log_evidence,
    stratum_log_ratios,
)
from rollwise.core.judgement._gates import SAMPLE_RATIO_ALPHA, Gate
from rollwise.core.judgement._gauges import judge_gauge
from rollwise.core.judgement._histogram import (
    LATENCY_BOUNDARIES_MS,
    LATENCY_BUCKETS,
    histogram_quantile,
    latency_bucket,
)
from rollwise.core.judgement._latency import judge_latency
from rollwise.core.judgement._observations import (
    Exposure,
    GaugeReading,
    LatencySample,
    Observations,
    RateSample,
    SegmentKey,
    Tally,
)
from rollwise.core.judgement._verdicts import GuardVerdict, Verdict, judge_rate

__all__ = [
    "HARM_ALTERNATIVES",
    "LATENCY_BOUNDARIES_MS",
    "LATENCY_BUCKETS",
    "REPLICATES",
    "REPLICATE_ATTRIBUTE",
    "REPLICATE_WINDOW",
    "SAFE_ALTERNATIVES",
    "SAFE_ERROR_RATE",
    "SAMPLE_RATIO_ALPHA",
    "Aggregate",
    "AggregateTable",
    "Decision",
    "Dispersion",
    "Exposure",
    "Gate",
    "GaugeReading",
    "GuardVerdict",
    "Judged",
    "LatencySample",
    "Move",
    "Observations",
    "RateSample",
    "Replicates",
    "RolloutState",
    "RolloutStatus",
    "SegmentKey",
    "Tally",
    "Verdict",
    "decide",
    "harm_alpha",
    "harm_budget",
    "harm_log_evidence",
    "histogram_quantile",
    "judge_gauge",
    "judge_guard",
    "judge_guards",
    "judge_latency",
    "judge_rate",
    "latency_bucket",
    "parse_replicate",
    "quantile_bounds",
    "rate_log_evidence",
    "replicate_of",
    "replicate_segment",
    "replicated_metrics",
    "restarted_log_evidence",
    "sample_ratio_log_evidence",
    "segment_alpha",
    "stratum_log_ratios",
    "tail_quantiles",
]
