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
    #: Aggregation window: rate metrics are compared window by window (see RateSample).
    window: timedelta = timedelta(hours=1)
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
