"""The checkout demo: a simulated checkout service using the real SDK against a real server,
a rollout of ``examples/checkout/plan.yaml`` on a fast simulated clock, and its report."""

from __future__ import annotations

from rollwise.demo._report import build_report, render
from rollwise.demo._run import Demo, DemoOptions, Progress, checkout_files
from rollwise.demo._world import DEFECT_TENANT, World

__all__ = [
    "DEFECT_TENANT",
    "Demo",
    "DemoOptions",
    "Progress",
    "World",
    "build_report",
    "checkout_files",
    "render",
]
