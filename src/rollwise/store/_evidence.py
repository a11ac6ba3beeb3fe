"""A decision as it is kept: its numbers as JSON-ready data, written with the decision."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from rollwise.core.judgement import Decision
from rollwise.store import _schema as t


def decision_evidence(decision: Decision) -> dict[str, Any]:
    """A decision's numbers as JSON-ready data (what the decision log shows)."""

    def verdict(v: Any) -> dict[str, Any]:
        shown = {
            "metric": v.metric,
            "kind": v.kind.value,
            "verdict": v.verdict.value,
            "sentence": v.sentence,
            "segment": list(v.segment) if v.segment else None,
            "estimate": v.estimate,
            "lower": v.lower,
            "upper": v.upper,
            "threshold": v.threshold,
            "tolerance": v.tolerance,
            "exposed": [v.exposed.requests, v.exposed.events] if v.exposed else None,
            "baseline": [v.baseline.requests, v.baseline.events] if v.baseline else None,
        }
        if v.dispersion != 1.0:  # the evidence was divided by the dispersion between units
            shown["dispersion"] = v.dispersion
        return shown

    return {
        "verdicts": [verdict(v) for v in decision.verdicts],
        "segments": [verdict(v) for v in decision.segment_verdicts if v.verdict.value != "pending"],
        "gates": [
            {
                "name": g.name,
                "met": g.met,
                "sentence": g.sentence,
                "current": g.current,
                "required": g.required,
            }
            for g in decision.gates
        ],
        "trigger": verdict(decision.trigger) if decision.trigger else None,
    }


def insert_decision(connection: sa.Connection, rollout_id: int, decision: Decision) -> None:
    connection.execute(
        t.decisions.insert().values(
            rollout_id=rollout_id,
            at=decision.at,
            stage=decision.stage,
            move=decision.move.value,
            reasons=list(decision.reasons),
            evidence=decision_evidence(decision),
        )
    )
