"""Gauge guards: one system-wide value against absolute limits, no baseline, no statistics."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from rollwise.core._plan import Guard
from rollwise.core.judgement._observations import GaugeReading
from rollwise.core.judgement._verdicts import GuardVerdict, Verdict


def judge_gauge(guard: Guard, readings: Sequence[GaugeReading], now: datetime) -> GuardVerdict:
    """A system-wide value against absolute limits: harm after ``breaches`` breaching readings
    in a row, safe when the latest readings are all within limits. ``readings`` oldest first
    (as the store and the simulator keep them); those after ``now`` are not read."""
    # Readings come in time order: when the newest is not after ``now``, none is.
    recent = (
        readings if readings and readings[-1].at <= now else [r for r in readings if r.at <= now]
    )
    if not recent:
        return GuardVerdict(
            guard.metric, guard.kind, Verdict.PENDING, f"{guard.metric}: no readings yet"
        )

    def breach(index: int) -> str | None:
        reading = recent[index]
        if guard.maximum is not None and reading.value > guard.maximum:
            return f"{reading.value:g} > max {guard.maximum:g}"
        if guard.minimum is not None and reading.value < guard.minimum:
            return f"{reading.value:g} < min {guard.minimum:g}"
        if guard.max_growth_per_minute is not None:
            # Growth against the latest reading at least a minute older.
            for earlier in reversed(recent[:index]):
                minutes = (reading.at - earlier.at) / timedelta(minutes=1)
                if minutes >= 1:
                    growth = (reading.value - earlier.value) / minutes
                    if growth > guard.max_growth_per_minute:
                        return f"grows {growth:.3g}/min > {guard.max_growth_per_minute:g}/min"
                    break
        return None

    latest = recent[-guard.breaches :]
    reasons = [breach(len(recent) - len(latest) + i) for i in range(len(latest))]
    value = recent[-1].value
    limit = guard.maximum if guard.maximum is not None else guard.minimum
    if len(latest) == guard.breaches and all(reasons):
        return GuardVerdict(
            guard.metric,
            guard.kind,
            Verdict.HARM,
            f"{guard.metric}: {reasons[-1]} for {guard.breaches} readings in a row",
            estimate=value,
            threshold=limit,
        )
    if reasons[-1] is None:
        return GuardVerdict(
            guard.metric,
            guard.kind,
            Verdict.SAFE,
            f"{guard.metric} is within its limits ({value:g})",
            estimate=value,
            threshold=limit,
        )
    breached = sum(1 for r in reversed(reasons) if r)
    return GuardVerdict(
        guard.metric,
        guard.kind,
        Verdict.PENDING,
        f"{guard.metric}: {reasons[-1]} ({breached} of {guard.breaches} breaches in a row)",
        estimate=value,
        threshold=limit,
    )
