"""The live terminal view of the demo: stage, exposure, guards and decisions as they happen.

On a terminal it redraws in place (Rich); otherwise (a log, CI) it prints a line per event and
a short status line every few seconds.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from rollwise.demo._report import short_duration
from rollwise.demo._run import Progress

_VERDICT_STYLE = {"safe": "green", "harm": "bold red", "pending": "yellow"}


def _stage_strip(progress: Progress) -> Text:
    strip = Text()
    for index, name in enumerate(progress.stage_names):
        if index < progress.stage or (index == progress.stage and progress.status == "completed"):
            strip.append(f" ✓ {name} ", style="green")
        elif index == progress.stage:
            style = {"rolled_back": "bold white on red", "paused": "bold black on yellow"}.get(
                progress.status, "bold white on blue"
            )
            strip.append(f" ▶ {name} ", style=style)
        else:
            strip.append(f"   {name} ", style="dim")
        strip.append(" ")
    return strip


def _number(value: Any, kind: str) -> str:
    """A rate guard's estimate is a ratio, a latency guard's a difference in ms, a gauge's a
    reading."""
    if not isinstance(value, int | float):
        return "–"
    if kind == "rate":
        return f"{value:.2f}×"
    if kind == "latency":
        return f"{value:+.0f} ms"
    return f"{value:,.0f}"


def _guards(progress: Progress) -> Table:
    table = Table(box=None, padding=(0, 1), show_edge=False, header_style="bold")
    table.add_column("guard")
    table.add_column("verdict")
    table.add_column("estimate", justify="right")
    table.add_column("bounds", justify="right")
    table.add_column("tolerance", justify="right")
    worst = sorted(
        (v for v in progress.segments if v["verdict"] == "harm"),
        key=lambda v: -(v.get("estimate") or 0),
    )
    for verdict in (*progress.verdicts, *worst[:3]):
        name = verdict["metric"]
        if verdict.get("segment"):
            name += f" [{'='.join(verdict['segment'])}]"
        kind = verdict.get("kind", "")
        bounds = (
            f"[{_number(verdict.get('lower'), kind)}, {_number(verdict.get('upper'), kind)}]"
            if verdict.get("lower") is not None
            else ""
        )
        table.add_row(
            Text(name),  # not markup: "[tenant=…]" would read as a style tag
            Text(verdict["verdict"], style=_VERDICT_STYLE.get(verdict["verdict"], "")),
            _number(verdict.get("estimate"), kind),
            Text(bounds),
            Text(verdict.get("tolerance") or _number(verdict.get("threshold"), kind)),
        )
    return table


def _gates(progress: Progress) -> Text:
    text = Text()
    for gate in progress.gates:
        text.append("✓ " if gate["met"] else "… ", style="green" if gate["met"] else "yellow")
        text.append(f"{gate['sentence']}\n")
    return text


def render(progress: Progress, dashboard: str) -> Group:
    """One frame of the live view."""
    in_stage = short_duration(progress.now - progress.stage_entered_at)
    traffic = progress.traffic
    header = Text.assemble(
        ("rollwise demo", "bold"),
        f" · new-checkout · {progress.now:%a %d %b %H:%M} simulated",
        (f" (1 s = {short_duration(timedelta(seconds=progress.speed))})", "dim"),
        f" · {progress.wall_seconds:.0f}s",
    )
    status = Text.assemble(
        ("status ", "dim"),
        (progress.status.replace("_", " "), "bold"),
        f" · in {progress.stage_names[progress.stage]} for {in_stage}",
    )
    exposure = Text.assemble(
        ("traffic ", "dim"),
        f"{traffic.requests:,} checkouts · {traffic.exposed:,} served the new checkout "
        f"({traffic.exposed / max(traffic.requests, 1):.1%}) · {traffic.exposed_failed:,} "
        f"of those failed · tenants on it: "
        f"{sum(1 for s in traffic.tenants.values() if s.exposed)}",
    )
    events = Text("\n".join(progress.events) or "–")
    judging: tuple[Any, ...] = ()
    if progress.status == "running":
        judging = (Text(""), Text("gates", style="bold"), _gates(progress), _guards(progress))
    return Group(
        header,
        _stage_strip(progress),
        status,
        exposure,
        *judging,
        Text(""),
        Text("decisions and actions", style="bold"),
        events,
        Text(""),
        Text.assemble(("dashboard ", "dim"), dashboard),
    )


class LiveView:
    """Call with each ``Progress``; use as a context manager around the run."""

    def __init__(self, dashboard: str, stream: TextIO | None = None) -> None:
        self.dashboard = dashboard
        self.console = Console(file=stream, highlight=False, soft_wrap=True)
        self._live: Live | None = None
        self._seen: set[str] = set()
        self._last_line = -1.0

    def __enter__(self) -> LiveView:
        if self.console.is_terminal:
            self._live = Live(console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        else:
            self.console.print(f"dashboard: {self.dashboard}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def __call__(self, progress: Progress) -> None:
        if self._live is not None:
            self._live.update(render(progress, self.dashboard))
            return
        for event in self._new(progress.events):
            self.console.print(event)
        if progress.wall_seconds - self._last_line >= 10:
            self._last_line = progress.wall_seconds
            verdicts = ", ".join(f"{v['metric']} {v['verdict']}" for v in progress.verdicts)
            self.console.print(
                f"{progress.now:%a %H:%M} {progress.status} in "
                f"{progress.stage_names[progress.stage]} · {progress.traffic.requests:,} "
                f"checkouts, {progress.traffic.exposed:,} on the new one · {verdicts}"
            )

    def _new(self, events: Iterable[str]) -> list[str]:
        fresh = [e for e in events if e not in self._seen]
        self._seen.update(fresh)
        return fresh
