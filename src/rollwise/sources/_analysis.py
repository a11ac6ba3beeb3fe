"""Analyses: a canary judged against its stable version for a deployment tool, one anytime-valid
sequence per analysis however often the tool asks.

A deployment tool (Argo Rollouts' web metric, Flagger's webhooks) asks at every step of its
analysis whether the canary is ``safe``, ``harm`` or ``pending``. Each analysis (named by the
tool: a rollout's revision, a canary's checksum) keeps what was read for it: from its first
question on, each ended window of the judgement's ``stratum`` is read once from Prometheus —
``{variant}`` the canary's selector on the exposed side, the stable one's on the baseline — and
added to the analysis' own aggregates; every question judges all of them with the judgement's
guards, exactly as a rollout's guards are judged (``judge_guard``). So asking every 10 seconds
or every minute is one sequential test, not a fresh test per question, and its false-harm rate
stays at the judgement's ``false_rollback_rate``.

Kept in memory: at most ``MAX_ANALYSES`` analyses, the least recently asked forgotten first;
an analysis asked about again after being forgotten (or after a restart) starts a new sequence,
which is still a valid test, from that moment's windows.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from rollwise.core import GuardKind, Plan
from rollwise.core.judgement import (
    Aggregate,
    AggregateTable,
    Decision,
    GuardVerdict,
    Move,
    Verdict,
    harm_alpha,
    judge_guard,
)
from rollwise.sources._prometheus import PrometheusFeed, _ranges, first_of_metric
from rollwise.sources._promql import QueryError

#: Analyses kept at once.
MAX_ANALYSES = 1_000


class UnknownJudgement(LookupError):
    """No judgement of that name."""


class SelectorsChanged(ValueError):
    """An analysis asked about with other canary or stable selectors than it began with."""


@dataclass
class _Analysis:
    judgement: str
    canary: str
    stable: str
    until: datetime
    table: AggregateTable = field(default_factory=AggregateTable)
    windows: int = 0
    failures: int = 0
    #: Held while the analysis is read and judged: two questions about it at once take turns.
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass(frozen=True, slots=True)
class Judged:
    """The answer to one question about an analysis."""

    verdict: Verdict
    decision: Decision
    windows: int
    #: Set when the last query failed: why (the windows read so far are still judged).
    error: str = ""
    #: Failures in a row, and how many the judgement's guards allow before the answer is an
    #: error.
    failures: int = 0


class Analyses:
    """The analyses of the judgements a server knows (``load_judgements``)."""

    def __init__(self, judgements: Mapping[str, Plan], feed: PrometheusFeed) -> None:
        self.judgements = dict(judgements)
        self._feed = feed
        self._lock = threading.Lock()
        self._analyses: OrderedDict[str, _Analysis] = OrderedDict()

    def judge(self, name: str, analysis: str, canary: str, stable: str, now: datetime) -> Judged:
        """Read what ended since the last question about ``analysis``, and judge it all.

        Raises:
            UnknownJudgement: no judgement ``name``.
            SelectorsChanged: ``analysis`` began as another judgement or with other selectors.
        """
        plan = self.judgements.get(name)
        if plan is None:
            raise UnknownJudgement(name)
        with self._lock:  # the table of analyses only: reads happen under each one's own lock
            state = self._analyses.get(analysis)
            if state is None:
                state = self._analyses[analysis] = _Analysis(name, canary, stable, now)
                while len(self._analyses) > MAX_ANALYSES:
                    self._analyses.popitem(last=False)
            elif (state.judgement, state.canary, state.stable) != (name, canary, stable):
                raise SelectorsChanged(
                    f"analysis {analysis!r} began as judgement {state.judgement!r} with canary "
                    f"{state.canary!r} and stable {state.stable!r}: name a new analysis"
                )
            self._analyses.move_to_end(analysis)
        with state.lock:
            error = self._read(plan, state, now)
            observations = state.table.observations(plan, 0)
            verdicts, segments = [], []
            for guard in plan.guards:
                whole, parts = judge_guard(
                    guard, observations, 0, harm_alpha(plan, guard.on_regression), now, stages=1
                )
                verdicts.append(whole)
                segments.extend(parts)
        # A segment (a tenant, with ``by``) judged harm is harm for the canary.
        harmed = [v for v in segments if v.verdict is Verdict.HARM]
        return Judged(
            Verdict.HARM if harmed else _overall(verdicts),
            Decision(
                Move.HOLD,
                0,
                now,
                tuple(v.sentence for v in [*verdicts, *harmed]),
                tuple(verdicts),
                tuple(segments),
            ),
            state.windows,
            error,
            state.failures,
        )

    def _read(self, plan: Plan, state: _Analysis, now: datetime) -> str:
        """Add the windows that ended since ``state.until``; the error of a failed query ("" if
        none failed). A range is added only once every guard's queries answered for it."""
        self._feed.api.reset()  # a Prometheus down at the last question is asked again
        lag = max(guard.source.lag for guard in plan.guards if guard.source is not None)
        for start, end, _ in _ranges(plan.stratum, state.until, now - lag, 0, state.until):
            rows: list[Aggregate] = []
            window = int(start.timestamp() // 60) // _minutes(plan) * _minutes(plan)
            try:
                for index, guard in enumerate(plan.guards):
                    source = guard.source
                    if source is None or guard.kind is GuardKind.GAUGE:
                        continue  # load_judgements refuses both
                    if first_of_metric(plan, index) != index:
                        continue  # a p95 and a p99 guard share their metric's counts
                    url = source.url or self._feed.default_url
                    if url is None:
                        raise QueryError("no Prometheus URL: set the source's url")
                    by = guard.by[0] if guard.by else None
                    for exposed, selector in ((True, state.canary), (False, state.stable)):
                        found = self._feed.counts(
                            url, source, guard.kind, guard.metric, selector, start, end, by
                        )
                        for segment, (requests, events, histogram) in found.items():
                            rows.append(
                                Aggregate(
                                    0,
                                    window,
                                    exposed,
                                    segment,
                                    guard.metric,
                                    requests,
                                    events,
                                    histogram,
                                )
                            )
            except QueryError as error:
                state.failures += 1
                return str(error)
            for row in rows:
                state.table.put(row)
            state.windows += 1
            state.until = end
        state.failures = 0
        return ""


def _overall(verdicts: list[GuardVerdict]) -> Verdict:
    if any(v.verdict is Verdict.HARM for v in verdicts):
        return Verdict.HARM
    if verdicts and all(v.verdict is Verdict.SAFE for v in verdicts):
        return Verdict.SAFE
    return Verdict.PENDING


def _minutes(plan: Plan) -> int:
    return int(plan.stratum.total_seconds() // 60)
