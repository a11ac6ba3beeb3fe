"""The checkout example's flags and a `by: [tenant]` plan on it: what the ingestion tests (the
store's and the server writer's) write batches for."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FLAGS = (ROOT / "examples/checkout/flags.yaml").read_text()
PLAN = """
flag: new-checkout
unit: tenant
guards:
  - {metric: checkout.error, kind: rate, tolerance: 50%, by: [tenant]}
  - {metric: checkout.latency, kind: latency, quantile: 0.95, tolerance: 50ms}
stages:
  - {name: internal, audience: {segments: [internal-team]}, bake: 30m}
  - {name: pilot-tenant, audience: {segments: [pilot-tenants]}, bake: 4h}
  - {name: five-percent, audience: {percent: 5}, bake: 6h}
"""
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
