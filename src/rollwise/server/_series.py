"""What the dashboard's rollout page draws, read from the store in one go: the stage timeline,
exposure over time, each guard (per window and as judged over time) and per-segment verdicts.

Everything is in simulated time when the server runs on a simulated clock: the times are the
store's, which the controller and the SDKs both took from that clock.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from itertools import accumulate
from typing import Any

from rollwise.core import GuardKind, Plan
from rollwise.core.judgement import (
    GuardVerdict,
    Observations,
    RolloutState,
    RolloutStatus,
    Verdict,
    decide,
    judge_guards,
)
from rollwise.server._guard_series import (
    effect_point,
    effect_points,
    effect_threshold,
    finite,
    gauge_points,
    guard_windows,
    pooled_baseline_quantile,
    window_start,
)
from rollwise.server._history import DecisionHistory
from rollwise.server._timeline import rollout_events, stage_timeline
from rollwise.store import ExposedUnits, RolloutRecord, Store, decision_evidence

#: Audit entries of the flag read to rebuild the timeline (transitions only, never holds).
MAX_AUDIT = 1000
#: Gauge readings read per metric (the store keeps a day of them).
MAX_GAUGE_READINGS = 5000
#: Steps of the exposed-units curve.
MAX_UNIT_POINTS = 240
#: Rows of the segment table (worst first).
MAX_SEGMENT_ROWS = 60
_VERDICT_RANK = {Verdict.HARM: 0, Verdict.PENDING: 1, Verdict.SAFE: 2}
#: What the page shows of a guard's verdict.
_VERDICT_FIELDS = ("verdict", "sentence", "estimate", "lower", "upper", "threshold")


def rollout_series(
    store: Store, record: RolloutRecord, plan: Plan, now: datetime, history: DecisionHistory
) -> dict[str, Any]:
    """The rollout page's data: see docs/api.md (``GET /api/v1/rollouts/{id}/series``)."""
    live = record.status in (RolloutStatus.RUNNING, RolloutStatus.PAUSED)
    until = now if live else (record.ended_at or now)
    killed = store.kill_switches().get(record.flag, False)
    gauges = {
        metric: tuple(r for r in readings if r.at <= until)
        for metric, readings in store.gauge_readings(
            [g.metric for g in plan.guards if g.kind is GuardKind.GAUGE], limit=MAX_GAUGE_READINGS
        ).items()
    }
    # Gauges are system-wide and keep being read after a rollout ends: judge an ended one on
    # the readings up to its end, as the controller last saw them.
    observations = replace(store.followed.observations(record, plan), gauges=gauges)
    decisions = history.read(store, record.id)
    units = store.exposed_units(record.id, int(plan.stratum.total_seconds() // 60))
    events = rollout_events(store.audit_log(limit=MAX_AUDIT, target=record.flag), record, until)
    judged = None
    verdicts: dict[str, dict[str, Any]]
    # A live rollout is judged now. An ended one is shown as its last judged decision saw it:
    # evidence of harm counts when it crosses, and data that trickled in after a rollback
    # must not redraw the verdict the rollout was rolled back on.
    kept = next((d for d in reversed(decisions) if d.evidence.get("verdicts")), None)
    if live or kept is None:
        judged = judge_guards(plan, observations, record.stage, until)
        verdicts = {v.metric: _evidence(v) for v in judged.verdicts}
        segments = _segments(plan, [_evidence(v) for v in judged.segment_verdicts], until, "live")
    else:
        verdicts = {v["metric"]: v for v in kept.evidence["verdicts"]}
        segments = _segments(plan, kept.evidence.get("segments", []), kept.at, "decision")
    guards = []
    for guard in plan.guards:
        verdict = verdicts.get(guard.metric, {"verdict": "pending", "sentence": "not judged"})
        shown: dict[str, Any] = {
            "metric": guard.metric,
            "label": guard.label,
            "kind": guard.kind.value,
            "worse": guard.worse.value,
            "tolerance": guard.tolerance.text if guard.tolerance else None,
            "quantile": guard.quantile,
            "maximum": guard.maximum,
            "minimum": guard.minimum,
            "by": list(guard.by),
            "on_regression": guard.on_regression.value,
            "verdict": {key: _number(verdict.get(key)) for key in _VERDICT_FIELDS},
            "windows": guard_windows(guard, observations, plan.stratum),
            "readings": [],
            "effect": None,
        }
        if guard.kind is GuardKind.GAUGE:
            shown["readings"] = gauge_points(gauges.get(guard.metric, ()), record.started_at, until)
        else:
            now_point = effect_point(verdict, until, record.stage, live=True)
            rate = guard.kind is GuardKind.RATE
            shown["effect"] = {
                "scale": "ratio" if rate else "difference",
                "neutral": 1.0 if rate else 0.0,
                "threshold": finite(verdict.get("threshold"))
                if rate
                else effect_threshold(guard, pooled_baseline_quantile(guard, observations)),
                "points": effect_points(guard, decisions, now_point if live else None),
            }
        guards.append(shown)
    if record.status is RolloutStatus.RUNNING and judged is not None:
        # What the controller would decide now, from the verdicts already judged above.
        state = RolloutState(record.stage, record.stage_entered_at, record.status, killed)
        decision = decide(plan, state, observations, now, record.approvals, judged=judged)
        current: dict[str, Any] | None = {
            "at": decision.at.isoformat(),
            "move": decision.move.value,
            "reasons": list(decision.reasons),
            "gates": decision_evidence(decision)["gates"],
            "live": True,
        }
    elif decisions:
        current = {
            "at": decisions[-1].at.isoformat(),
            "move": decisions[-1].move,
            "reasons": list(decisions[-1].reasons),
            "gates": decisions[-1].evidence.get("gates", []),
            "live": False,
        }
    else:
        current = None
    return {
        "rollout_id": record.id,
        "flag": record.flag,
        "status": record.status.value,
        "stage": record.stage,
        "plan": {"unit": plan.unit, "variant": plan.variant},
        "now": now.isoformat(),
        # The SDKs aggregate per window of the plan's stratum.
        "window_minutes": int(plan.stratum.total_seconds() // 60),
        "killed": killed,
        "decision": current,
        "latest_decision_id": decisions[-1].id if decisions else None,
        "stages": stage_timeline(plan, record, events, units.per_stage),
        "events": events,
        "exposure": _exposure(observations, units, plan.stratum),
        "guards": guards,
        "segments": segments,
    }


def _number(value: Any) -> Any:
    """Stored evidence may hold an unbounded float; JSON may not."""
    return finite(value) if isinstance(value, float) else value


def _evidence(verdict: GuardVerdict) -> dict[str, Any]:
    """A verdict judged now, in the shape the decision log keeps (plus the baseline's
    quantile, which a relative latency tolerance is measured against)."""
    return {
        "metric": verdict.metric,
        "kind": verdict.kind.value,
        "verdict": verdict.verdict.value,
        "sentence": verdict.sentence,
        "segment": list(verdict.segment) if verdict.segment else None,
        "estimate": finite(verdict.estimate),
        "lower": finite(verdict.lower),
        "upper": finite(verdict.upper),
        "threshold": finite(verdict.threshold),
        "tolerance": verdict.tolerance,
        "exposed": [verdict.exposed.requests, verdict.exposed.events] if verdict.exposed else None,
        "baseline": (
            [verdict.baseline.requests, verdict.baseline.events] if verdict.baseline else None
        ),
        "baseline_quantile": finite(verdict.baseline_quantile),
    }


def _exposure(observations: Observations, units: ExposedUnits, length: timedelta) -> dict[str, Any]:
    """Per window of ``length``: requests on each side (of the metric that saw the most: every
    metric is recorded per request) and exposed units so far, from the ledger's counts."""
    per_window: dict[int, dict[str, list[int]]] = {}
    series: list[tuple[str, Iterable[Any]]] = [
        *((metric, s) for (metric, seg), s in observations.rates.items() if seg is None),
        *((metric, s) for (metric, seg), s in observations.latencies.items() if seg is None),
    ]
    for metric, samples in series:
        for sample in samples:
            sides = per_window.setdefault(sample.window, {}).setdefault(metric, [0, 0])
            exposed, baseline = sample.exposed, sample.baseline
            if isinstance(exposed, tuple):  # a latency histogram
                sides[0] += sum(exposed)
                sides[1] += sum(baseline)
            else:
                sides[0] += exposed.requests
                sides[1] += baseline.requests
    # Units exposed by the end of a window: those first exposed in it or before (windows of
    # aggregates and of the ledger's counts start on the same grid).
    starts = [start for start, _ in units.per_window]
    so_far = list(accumulate(count for _, count in units.per_window))
    windows = []
    for window, metrics in sorted(per_window.items()):
        exposed, baseline = max(metrics.values(), key=lambda sides: (sum(sides), sides[0]))
        start = window_start(window)
        end = start + length
        before = bisect_right(starts, window)
        windows.append(
            {
                "start": start.isoformat(),
                "end": end.isoformat(),
                "exposed_requests": exposed,
                "baseline_requests": baseline,
                "exposed_share": exposed / (exposed + baseline) if exposed + baseline else None,
                "exposed_units": so_far[before - 1] if before else 0,
            }
        )
    curve = [
        (window_start(start) + length, total) for start, total in zip(starts, so_far, strict=True)
    ]
    return {"windows": windows, "exposed_units": units.total, "units": _units(curve)}


def _units(curve: Sequence[tuple[datetime, int]]) -> list[dict[str, Any]]:
    """Exposed units so far at the end of each window that exposed some, as a step curve of
    at most ``MAX_UNIT_POINTS`` steps (with more windows, every k-th and the last)."""
    step = max(1, -(-len(curve) // MAX_UNIT_POINTS))
    shown = [*curve[step - 1 : -1 : step], *curve[-1:]]
    return [{"at": at.isoformat(), "units": units} for at, units in shown]


def _share_of_tolerance(plan: Plan, verdict: Mapping[str, Any]) -> float | None:
    """How much of its tolerance the segment's estimate uses: 0 is no change, 1 is at the
    tolerance, above 1 worse than tolerated."""
    estimate, threshold = verdict.get("estimate"), verdict.get("threshold")
    if estimate is None:
        return None
    if verdict.get("kind") == GuardKind.RATE.value:
        if threshold is None or threshold == 1:
            return None
        return finite((estimate - 1) / (threshold - 1))
    guard = next((g for g in plan.guards if g.metric == verdict.get("metric")), None)
    if guard is None:
        return None
    limit = effect_threshold(guard, verdict.get("baseline_quantile"))
    return finite(estimate / limit) if limit else None


def _segments(
    plan: Plan, verdicts: Sequence[Mapping[str, Any]], at: datetime, source: str
) -> dict[str, Any]:
    """Per-segment verdicts, worst first: harm, then pending, then safe; within each, the
    largest share of the tolerance used. Segments with no exposed traffic are left out
    (with a unit split by itself, most segments are all baseline). From the decision log
    (``source: decision``) they are the segments that had reached a verdict then: the log
    does not keep pending ones."""
    rows = []
    hidden = 0
    for verdict in verdicts:
        segment, exposed = verdict.get("segment"), verdict.get("exposed")
        if not segment or not exposed or not exposed[0]:
            hidden += 1
            continue
        baseline = verdict.get("baseline") or [0, 0]
        share = _share_of_tolerance(plan, verdict)
        rows.append(
            (
                _VERDICT_RANK[Verdict(verdict["verdict"])],
                -(share or 0.0),
                -exposed[0],
                {
                    "metric": verdict["metric"],
                    "kind": verdict["kind"],
                    "attribute": segment[0],
                    "value": segment[1],
                    "verdict": verdict["verdict"],
                    "sentence": verdict.get("sentence", ""),
                    "exposed": {"requests": exposed[0], "events": exposed[1]},
                    "baseline": {"requests": baseline[0], "events": baseline[1]},
                    "estimate": finite(verdict.get("estimate")),
                    "lower": finite(verdict.get("lower")),
                    "upper": finite(verdict.get("upper")),
                    "threshold": finite(verdict.get("threshold")),
                    "tolerance": verdict.get("tolerance", ""),
                    "share_of_tolerance": share,
                },
            )
        )
    rows.sort(key=lambda row: row[:3])
    return {
        "at": at.isoformat(),
        "source": source,
        "rows": [row[3] for row in rows[:MAX_SEGMENT_ROWS]],
        "hidden": hidden + max(0, len(rows) - MAX_SEGMENT_ROWS),
    }
