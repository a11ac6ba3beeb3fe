"""The demo's report: what happened, on what evidence, and who was exposed.

Everything is read back from the store, as it would be after a real rollout: the audit log
gives the timeline, the decision log the evidence, the ledger the units exposed and the stored
aggregates the requests. The service's own count of what it served rides along, so the two can
be compared.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from rollwise.core import Plan
from rollwise.demo._service import Traffic
from rollwise.store import AuditEntry, Store, outcome_totals

#: Ledger entries the text report lists (the JSON has them all).
_LEDGER_LINES = 12
#: The metric counted once per checkout: its requests are the checkouts.
REQUESTS_METRIC = "checkout.error"


def build_report(
    store: Store,
    rollout_id: int,
    plan: Plan,
    traffic: Traffic,
    *,
    ended_at: datetime,
    wall_seconds: float,
    dashboard: str,
) -> dict[str, Any]:
    """The report as JSON-ready data (what ``--json`` writes and ``render`` prints)."""
    rollout = store.rollout(rollout_id)
    stages = plan.stages
    decisions = store.decisions(rollout_id, limit=1000)
    final = next((d for d in decisions if d.move != "hold"), None)
    trigger = final.evidence.get("trigger") if final is not None else None
    status = rollout.status.value
    outcome = status if status in ("rolled_back", "completed", "paused") else "unfinished"
    entries = _audit_entries(store, rollout.flag, rollout_id, rollout.started_at)

    totals = outcome_totals(store, rollout_id, REQUESTS_METRIC)
    exposed = [row for row in totals if row.exposed]
    baseline = [row for row in totals if not row.exposed]
    ledger = store.ledger(rollout_id)
    per_stage = [
        {
            "stage": stages[index].name,
            "units_first_exposed": sum(1 for _, s, _ in ledger if s == index),
            "requests_exposed": sum(r.requests for r in exposed if r.stage == index),
            "failed_requests_exposed": sum(r.events for r in exposed if r.stage == index),
        }
        for index in range(rollout.stage + 1)
    ]
    blast_radius: dict[str, Any] = {
        "units_exposed": len(ledger),
        "requests_exposed": sum(r.requests for r in exposed),
        "failed_requests_exposed": sum(r.events for r in exposed),
        "requests_baseline": sum(r.requests for r in baseline),
        "failed_requests_baseline": sum(r.events for r in baseline),
        "per_stage": per_stage,
        "units": [
            {"unit": unit, "stage": stages[stage].name, "first_exposed": at.isoformat()}
            for unit, stage, at in ledger
        ],
    }
    segment = (trigger or {}).get("segment")
    if segment:
        attribute, value = segment
        rows = outcome_totals(store, rollout_id, REQUESTS_METRIC, f"{attribute}={value}")
        blast_radius["trigger_segment"] = {
            "segment": f"{attribute}={value}",
            "requests_exposed": sum(r.requests for r in rows if r.exposed),
            "failed_requests_exposed": sum(r.events for r in rows if r.exposed),
        }

    return {
        "outcome": outcome,
        "flag": rollout.flag,
        "rollout_id": rollout_id,
        "stage": {"index": rollout.stage, "name": stages[rollout.stage].name},
        "trigger": _trigger(trigger, final.at if final else None)
        if outcome != "completed"
        else None,
        "reasons": list(final.reasons) if final is not None else [],
        "timeline": _timeline(entries, plan, rollout.started_at),
        "blast_radius": blast_radius,
        "ledger": _irreversible(plan, rollout.stage, ledger, entries, rollout.started_at),
        "service": {
            "requests": traffic.requests,
            "requests_served_new": traffic.exposed,
            "failed_requests_served_new": traffic.exposed_failed,
            "skipped": traffic.skipped,
            "straddled": traffic.straddled,
            "sdk_batches": traffic.sdk,
            "tenants_served_new": sorted(n for n, s in traffic.tenants.items() if s.exposed),
            "last_served_new_at": _iso(
                max(
                    (s.last_exposed_at for s in traffic.tenants.values() if s.last_exposed_at),
                    default=None,
                )
            ),
        },
        "durations": {
            "simulated_seconds": round((ended_at - rollout.started_at).total_seconds(), 1),
            "wall_seconds": round(wall_seconds, 1),
            "started_at": rollout.started_at.isoformat(),
            "ended_at": ended_at.isoformat(),
        },
        "dashboard": dashboard,
    }


def _trigger(trigger: dict[str, Any] | None, at: datetime | None) -> dict[str, Any] | None:
    if trigger is None:
        return None
    segment = trigger.get("segment")
    return {
        "guard": trigger["metric"],
        "kind": trigger["kind"],
        "segment": "=".join(segment) if segment else None,
        "verdict": trigger["verdict"],
        "evidence": trigger["sentence"],
        "estimate": trigger.get("estimate"),
        "lower": trigger.get("lower"),
        "upper": trigger.get("upper"),
        "tolerance": trigger.get("tolerance"),
        "threshold": trigger.get("threshold"),
        "exposed": trigger.get("exposed"),
        "baseline": trigger.get("baseline"),
        "at": at.isoformat() if at else None,
    }


_EVENTS = {
    "rollout.start": "started",
    "rollout.approve": "approved",
    "rollout.expand": "expanded",
    "rollout.pause": "paused",
    "rollout.resume": "resumed",
    "rollout.rollback": "rolled back",
    "rollout.complete": "completed",
}


def _audit_entries(store: Store, flag: str, rollout_id: int, started: datetime) -> list[AuditEntry]:
    """The rollout's audit entries (and its flag's kill switch), oldest first."""
    return [
        e
        for e in reversed(store.audit_log(limit=1000, target=flag))
        if e.at >= started
        and (e.details.get("rollout_id") == rollout_id or e.action.startswith("flag."))
    ]


def _timeline(entries: list[AuditEntry], plan: Plan, started: datetime) -> list[dict[str, Any]]:
    timeline = []
    for entry in entries:
        details = entry.details
        event = _EVENTS.get(entry.action, entry.action)
        if entry.action == "rollout.start":
            event = f"started at {plan.stages[0].name}"
        elif entry.action == "rollout.expand":
            event = f"expanded to {plan.stages[int(details['stage']) + 1].name}"
        elif entry.action == "rollout.approve":
            event = f"approved entering {details.get('reason', '?')}"
        elif entry.action in ("flag.kill", "flag.unkill"):
            event = "kill switch on" if entry.action == "flag.kill" else "kill switch off"
        reasons = details.get("reasons") or ([details["reason"]] if details.get("reason") else [])
        if entry.action == "rollout.approve":
            reasons = []
        timeline.append(
            {
                "at": entry.at.isoformat(),
                "after": short_duration(entry.at - started),
                "actor": entry.actor,
                "event": event,
                "reasons": list(reasons),
            }
        )
    return timeline


def _irreversible(
    plan: Plan,
    reached: int,
    ledger: list[tuple[str, int, datetime]],
    entries: list[AuditEntry],
    started: datetime,
) -> dict[str, Any]:
    """The ledger as the irreversible stage leaves it: every unit exposed once the rollout
    entered that stage may hold data only the new variant writes, and needs follow-up."""
    index = next((i for i, s in enumerate(plan.stages) if s.irreversible), None)
    if index is None:
        return {"irreversible_stage": None, "entered": False, "units": []}
    entered_at = _entered(entries, index, started)
    entered = reached >= index and entered_at is not None
    units = (
        [
            {
                "unit": unit,
                "first_exposed_stage": plan.stages[stage].name,
                "first_exposed": at.isoformat(),
                # Audiences only grow, so a unit exposed earlier stayed in the audience.
                "exposed_before_irreversible": stage < index,
            }
            for unit, stage, at in ledger
        ]
        if entered
        else []
    )
    return {
        "irreversible_stage": plan.stages[index].name,
        "entered": entered,
        "entered_at": entered_at.isoformat() if entered_at else None,
        "units": units,
    }


def _entered(entries: list[AuditEntry], stage: int, started: datetime) -> datetime | None:
    """When the rollout entered ``stage``: its start, or the expansion into it."""
    if stage == 0:
        return started
    return next(
        (
            e.at
            for e in entries
            if e.action == "rollout.expand" and int(e.details.get("stage", -1)) + 1 == stage
        ),
        None,
    )


def render(report: dict[str, Any]) -> str:
    """The report as text for the terminal."""
    lines = []
    outcome = report["outcome"]
    stage = report["stage"]["name"]
    headline = {
        "rolled_back": f"ROLLED BACK at stage {stage}",
        "completed": "COMPLETED: every stage passed; the holdback stays as the baseline",
        "paused": f"PAUSED at stage {stage}: a person should look",
    }.get(outcome, f"UNFINISHED at stage {stage}")
    durations = report["durations"]
    simulated = short_duration(timedelta(seconds=durations["simulated_seconds"]))
    lines.append(f"rollwise demo report: {report['flag']}: {headline}")
    lines.append(
        f"  {simulated} of simulated time in {durations['wall_seconds']:.0f}s of wall time"
    )
    lines.append("")
    lines.append("Timeline")
    for item in report["timeline"]:
        reason = f": {item['reasons'][0]}" if item["reasons"] else ""
        lines.append(f"  +{item['after']:<11} {item['actor']:<22} {item['event']}{reason}")
    trigger = report["trigger"]
    if trigger:
        lines.append("")
        lines.append("Evidence that triggered the decision")
        where = f" for {trigger['segment']}" if trigger["segment"] else " (all traffic)"
        lines.append(f"  guard {trigger['guard']}{where}: {trigger['verdict']}")
        lines.append(f"  {trigger['evidence']}")
        if trigger["exposed"] and trigger["baseline"]:
            (n1, e1), (n0, e0) = trigger["exposed"], trigger["baseline"]
            lines.append(
                f"  exposed {e1:,} of {n1:,} ({_share(e1, n1)}), "
                f"baseline {e0:,} of {n0:,} ({_share(e0, n0)})"
            )
    radius = report["blast_radius"]
    lines.append("")
    title = "Exposure" if outcome == "completed" else "Blast radius"
    lines.append(f"{title} (from the ledger and the stored aggregates)")
    lines.append(
        f"  {radius['units_exposed']} tenants exposed; {radius['requests_exposed']:,} checkouts "
        f"served the new flow, {radius['failed_requests_exposed']:,} of them failed "
        f"({_share(radius['failed_requests_exposed'], radius['requests_exposed'])}; baseline "
        f"{_share(radius['failed_requests_baseline'], radius['requests_baseline'])})"
    )
    for row in radius["per_stage"]:
        lines.append(
            f"  {row['stage']:<14} +{row['units_first_exposed']} tenants  "
            f"{row['requests_exposed']:>8,} exposed checkouts  "
            f"{row['failed_requests_exposed']:>6,} failed"
        )
    last = report["service"]["last_served_new_at"]
    if trigger and trigger["at"] and last and outcome == "rolled_back":
        lag = datetime.fromisoformat(last) - datetime.fromisoformat(trigger["at"])
        lines.append(
            f"  the last checkout on the new flow was served {max(lag.total_seconds(), 0):.0f}s "
            f"(simulated) after the decision, as the SDKs received the rollback"
        )
    if "trigger_segment" in radius:
        seg = radius["trigger_segment"]
        lines.append(
            f"  of which {seg['segment']}: {seg['requests_exposed']:,} exposed checkouts, "
            f"{seg['failed_requests_exposed']:,} failed"
        )
    ledger = report["ledger"]
    if ledger["irreversible_stage"]:
        lines.append("")
        name = ledger["irreversible_stage"]
        if ledger["entered"]:
            lines.append(
                f"Ledger: stage {name} is irreversible (entered {ledger['entered_at'][:16]}); "
                f"these tenants may hold data in the new format and need follow-up:"
            )
            shown = ledger["units"][:_LEDGER_LINES]
            for unit in shown:
                since = (
                    "exposed before it, still in the audience"
                    if unit["exposed_before_irreversible"]
                    else f"first exposed in {unit['first_exposed_stage']}"
                )
                lines.append(f"  {unit['unit']:<22} {since} ({unit['first_exposed'][:16]})")
            if len(ledger["units"]) > len(shown):
                lines.append(f"  … and {len(ledger['units']) - len(shown)} more (all in --json)")
        else:
            lines.append(f"Ledger: the irreversible stage {name} was never entered: a clean undo.")
    lines.append("")
    lines.append(f"Dashboard: {report['dashboard']}")
    return "\n".join(lines)


def short_duration(span: timedelta) -> str:
    """A span to the minute, as people read it: "2d 14h 05m", "6h 44m", "35m"."""
    minutes = max(int(span.total_seconds() // 60), 0)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days}d {hours}h {minutes:02d}m"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.2%}" if whole else "n/a"
