"""What a simulated world looks like: traffic, base rates, and the regression to plant."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

from rollwise.core._errors import InputError

_REGRESSION = re.compile(
    r"\s*(?P<metric>[A-Za-z0-9][A-Za-z0-9_.:/-]*)\s+(?P<how>x|\+)\s*(?P<amount>\d+(\.\d+)?)\s*(?P<unit>ms)?\s*"
)


@dataclass(frozen=True, slots=True)
class Regression:
    """A change for the worse on the exposed side: ``checkout.error x2``, ``checkout.latency
    x1.3`` or ``checkout.latency +40ms``; optionally only within one segment."""

    metric: str
    factor: float = 1.0
    added_ms: float = 0.0
    within: tuple[str, str] | None = None

    @classmethod
    def parse(cls, text: str, within: tuple[str, str] | None = None) -> Regression:
        match = _REGRESSION.fullmatch(text)
        if match is None:
            raise InputError(
                f"expected a regression like 'checkout.error x2' or 'checkout.latency +40ms', "
                f"got {text!r}",
                path="--regression",
            )
        amount = float(match["amount"])
        if match["how"] == "x":
            if match["unit"]:
                raise InputError(
                    "a factor has no unit: write 'x1.3' or '+40ms'", path="--regression"
                )
            return cls(match["metric"], factor=amount, within=within)
        if match["unit"] != "ms":
            raise InputError("an added amount is in milliseconds: '+40ms'", path="--regression")
        return cls(match["metric"], added_ms=amount, within=within)


@dataclass(frozen=True, slots=True)
class Scenario:
    """The simulated service: tenants of Zipf-skewed sizes, an internal team (its own users,
    in tenant ``internal``, with ``team`` set), and request shapes (``traffic_type``)."""

    requests_per_second: float = 50.0
    error_rate: float = 0.01
    latency_p95_ms: float = 120.0
    #: Spread of log-latency (lognormal sigma).
    latency_sigma: float = 0.5
    regression: Regression | None = None
    tenants: int = 20
    #: Zipf exponent of tenant sizes: 0 gives equal tenants.
    tenant_skew: float = 1.0
    #: Shares of traffic by type; the first is the most common.
    traffic_types: tuple[tuple[str, float], ...] = (
        ("card", 0.7),
        ("wallet", 0.25),
        ("invoice", 0.05),
    )
    internal_share: float = 0.02
    internal_team: str = "checkout"
    users_per_tenant: int = 200
    tick: timedelta = timedelta(minutes=1)
    #: Aggregation window; None takes the plan's ``stratum``, as the SDKs do.
    window: timedelta | None = None
    # --- conditions production has (all off by default) -------------------------------------
    #: Share of tenants (every n-th by size) with business hours: no traffic outside
    #: ``business_hours`` (UTC), so they have windows with no aggregates at all.
    quiet_tenants: float = 0.0
    business_hours: tuple[int, int] = (8, 18)
    #: The base rate of every rate metric follows the day: × (1 + amplitude · sin(2π h / 24)).
    daily_amplitude: float = 0.0
    #: Each tenant's own base rate: × exp(σ · N(0, 1)), drawn once per run.
    tenant_rate_sigma: float = 0.0
    #: Per stage, a factor on everyone's base rates and latencies (both sides): what changes
    #: at a stage boundary that has nothing to do with the change rolled out.
    stage_rate_factors: tuple[float, ...] = ()
    stage_latency_factors: tuple[float, ...] = ()
    #: Longest simulated time of one run.
    horizon: timedelta = timedelta(days=30)
    #: Stages that need approval are approved at once (a person's delay is not simulated).
    approve: bool = True
    gauge_level: float = 0.3  # gauges idle at this share of their limit
    tenant_names: tuple[str, ...] = field(default=())

    def names(self) -> tuple[str, ...]:
        if self.tenant_names:
            return self.tenant_names
        known = (
            "acme",
            "globex",
            "initech",
            "umbrella",
            "hooli",
            "stark",
            "wayne",
            "wonka",
            "tyrell",
            "cyberdyne",
            "soylent",
            "aperture",
            "oscorp",
            "pied-piper",
            "vandelay",
            "massive-dynamic",
            "gringotts",
            "monsters-inc",
            "duff",
            "nakatomi",
        )
        return tuple(known[i] if i < len(known) else f"tenant-{i}" for i in range(self.tenants))
