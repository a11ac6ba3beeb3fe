"""The simulated checkout: who buys, how they pay, and what goes wrong.

Tenants are shops of very different sizes (a Zipf-like long tail), each with its own mix of
payment shapes: card, wallet and invoice (wholesale shops pay mostly by invoice). The company's
own staff check out too, from the ``staff`` tenant, marked with their team. A payments queue
rises and falls over the day and peaks during the nightly settlement.

The new checkout costs a few milliseconds for everyone, and has one defect: its invoice step
mishandles one tenant's payment integration, so a share of that tenant's invoice payments fail.
Everything here is pure: outcomes are drawn from the ``random.Random`` passed in.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Shape(StrEnum):
    """How a checkout is paid."""

    CARD = "card"
    WALLET = "wallet"
    INVOICE = "invoice"


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    #: Share of all checkouts.
    weight: float
    #: Share of this tenant's checkouts per shape: card, wallet, invoice.
    mix: tuple[float, float, float]
    #: Members of an internal team (their contexts carry ``team``).
    team: str | None = None


#: Shops, largest first. Wholesale shops pay mostly by invoice.
_SHOPS = (
    "acme",
    "granite-tools",
    "copperleaf",
    "northstar-pharma",
    "harbor-lights",
    "bluebird-books",
    "oakridge-wholesale",
    "driftwood-outdoor",
    "emberline",
    "fernhill-foods",
    "saltmarsh-seafood",
    "juniper-home",
    "kestrel-bikes",
    "lumen-labs",
    "maple-and-co",
    "quarry-supply",
    "redwood-office",
    "pebble-toys",
    "tidewater-travel",
    "umber-ceramics",
    "velvet-finch",
    "willow-garden",
    "yellowtail-sports",
    "zephyr-audio",
    "amberfield",
    "basalt-builders",
    "cinder-coffee",
    "dovetail-furniture",
    "elmstreet-grocers",
    "foxglove-beauty",
    "glacier-water",
    "hollow-oak-wines",
    "indigo-print",
    "jasper-jewels",
    "kite-and-string",
    "larkspur-pets",
    "meadowlark-dairy",
    "nimbus-cloud-parts",
    "orchard-lane",
    "pinecone-games",
    "quill-stationery",
    "riverbend-hardware",
    "sable-fashion",
    "thistle-tea",
    "upland-farms",
    "vantage-optics",
    "wren-and-bell",
)
#: Shops that sell to other businesses, who pay by invoice.
_WHOLESALE = frozenset(
    {
        "granite-tools",
        "northstar-pharma",
        "harbor-lights",
        "oakridge-wholesale",
        "quarry-supply",
        "redwood-office",
        "basalt-builders",
        "nimbus-cloud-parts",
        "riverbend-hardware",
    }
)
STAFF_TENANT = "staff"
TEAMS = ("checkout", "payments", "support")
#: The tenant whose invoice integration the new checkout mishandles. It falls in the first
#: 5 % of buckets of the flag ``new-checkout``, so the ``five-percent`` stage exposes it.
DEFECT_TENANT = "harbor-lights"


def tenants() -> tuple[Tenant, ...]:
    """The shops (weights ∝ 1/rank, a long tail) and the staff, weights summing to 1."""
    staff_share = 0.05
    raw = [1.0 / rank for rank in range(1, len(_SHOPS) + 1)]
    scale = (1.0 - staff_share) / sum(raw)
    shops = tuple(
        Tenant(
            name,
            weight * scale,
            (0.35, 0.15, 0.50) if name in _WHOLESALE else (0.62, 0.30, 0.08),
        )
        for name, weight in zip(_SHOPS, raw, strict=True)
    )
    staff = tuple(
        Tenant(STAFF_TENANT, staff_share / len(TEAMS), (0.6, 0.3, 0.1), team) for team in TEAMS
    )
    return (*shops, *staff)


@dataclass(frozen=True, slots=True)
class Checkout:
    """One checkout request: who, how it was paid, and its context for the SDK."""

    tenant: Tenant
    shape: Shape
    user: int

    def context(self) -> dict[str, object]:
        context: dict[str, object] = {
            "key": f"{self.tenant.name}/u{self.user}",
            "tenant": self.tenant.name,
            "traffic_type": self.shape.value,
            "app_version": "2.5.0",
        }
        if self.tenant.team is not None:
            context["team"] = self.tenant.team
        return context


@dataclass(frozen=True, slots=True)
class Result:
    failed: bool
    latency_ms: float
    abandoned: bool


@dataclass(frozen=True, slots=True)
class World:
    """The checkout's behaviour. ``defect=False`` is the healthy new checkout."""

    defect: bool = True
    #: Errors per checkout on either side, whatever the shape.
    base_error_rate: float = 0.01
    #: Share of the defect tenant's invoice payments that fail on the new checkout.
    defect_failure_rate: float = 0.12
    #: What the new checkout costs everyone, in milliseconds.
    latency_cost_ms: float = 8.0
    #: Median and log-spread of checkout latency (p95 ≈ 370 ms).
    latency_median_ms: float = 180.0
    latency_sigma: float = 0.45
    base_abandon_rate: float = 0.05
    #: A failed checkout is abandoned this often.
    abandon_after_failure: float = 0.6

    def population(self) -> tuple[tuple[Tenant, ...], list[float]]:
        shops = tenants()
        return shops, list(_cumulative([t.weight for t in shops]))

    def draw(
        self, rng: random.Random, population: tuple[tuple[Tenant, ...], list[float]]
    ) -> Checkout:
        shops, cumulative = population
        tenant = shops[_pick(cumulative, rng.random())]
        shape = (Shape.CARD, Shape.WALLET, Shape.INVOICE)[
            _pick(list(_cumulative(tenant.mix)), rng.random())
        ]
        return Checkout(tenant, shape, rng.randrange(400))

    def serve(self, rng: random.Random, checkout: Checkout, new: bool) -> Result:
        """The outcome of one checkout on the old (``new=False``) or the new checkout."""
        error_rate = self.base_error_rate
        if (
            new
            and self.defect
            and checkout.tenant.name == DEFECT_TENANT
            and checkout.shape is Shape.INVOICE
        ):
            error_rate = 1 - (1 - error_rate) * (1 - self.defect_failure_rate)
        failed = rng.random() < error_rate
        latency = self.latency_median_ms * math.exp(self.latency_sigma * rng.gauss(0.0, 1.0))
        if new:
            latency += self.latency_cost_ms
        abandon = self.abandon_after_failure if failed else self.base_abandon_rate
        return Result(failed, latency, rng.random() < abandon)


def queue_depth(at: datetime, rng: random.Random) -> float:
    """Messages waiting for the payment workers: follows the day, peaks during the nightly
    settlement (02:00-02:30), stays well under the plan's limit of 1,000."""
    hour = at.hour + at.minute / 60
    daily = 180 + 120 * math.sin((hour - 9) / 24 * 2 * math.pi)
    settlement = 420 if at.hour == 2 and at.minute < 30 else 0
    return max(0.0, daily + settlement + rng.gauss(0, 25))


def _cumulative(weights: tuple[float, ...] | list[float]) -> list[float]:
    total = sum(weights)
    running = 0.0
    result = []
    for weight in weights:
        running += weight / total
        result.append(running)
    result[-1] = 1.0
    return result


def _pick(cumulative: list[float], u: float) -> int:
    # A linear scan: the heaviest entries come first, so it ends early on most draws.
    for index, edge in enumerate(cumulative):
        if u < edge:
            return index
    return len(cumulative) - 1
