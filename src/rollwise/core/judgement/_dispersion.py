"""How far requests of one unit move together: the dispersion φ that discounts a rate guard's
evidence when units differ.

The rate tests treat requests as independent given the rates. Assignment is by unit (a user, a
tenant) and a unit sends many requests; when units differ — a few users' clients are broken,
some send a thousand times more requests than others — the exposed side's rate carries the
luck of which units it drew, and a request-level test grows sure of a difference that is only
that luck (issue 9: 15.9 % false rollbacks on an A/A with heavy-tailed users and 2 % broken
clients).

**Random groups** (Wolter, *Introduction to Variance Estimation*, 2nd ed., 2007, ch. 2): each
unit falls in one of ``REPLICATES`` replicates by a hash of its value, independent of the flag's
bucketing, and the SDK ships, per stage, side and rate metric, each replicate's requests and
events (cumulative; ``Aggregate``s with ``window`` 0 and segment ``~replicate=k``). A replicate
holds whole units, so the spread of its rate around the side's rate measures the variance of
that rate *between units*, whatever their number of requests or own rates:

    v = k / (k - 1) · Σ_r (x_r - r̂ n_r)² / N²        (k replicates with requests, N, X totals)

and φ = v / (r̂ (1 - r̂) / N), the ratio to the binomial variance the tests assume (1 when
requests are independent, in expectation). Units are assigned to the sides at random, so under
the null both sides estimate the same φ: the two estimates are pooled by their degrees of
freedom. The tests then use every stratum's log likelihood ratio divided by φ — for a normal
score that is exactly the likelihood ratio under the inflated variance — the plug-in variance
of Johari, Koomen, Pekelis & Walsh's mSPRT ("Peeking at A/B tests", KDD 2017). It is
asymptotically, not exactly, an e-process; ``benchmarks/validity.py`` measures its level.

φ is used only upward (max(1, φ̂)): an estimate below 1 is noise, and taking it would make the
tests surer than the request-level ones. The price with independent requests is the noise of φ̂
above 1 (the cost in exposed requests to detection is in docs/judgement.md). A side with fewer
than two replicates holding requests gives no estimate of its own, and neither side one when
both have too few units: φ is then 1, and the linter's warning about coarse units applies.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from rollwise.core._plan import GuardKind, Plan

#: Replicates: up to 63 degrees of freedom per side for φ̂.
REPLICATES = 64
#: The segment attribute of replicate aggregates (``~replicate=17``); "~" starts no attribute a
#: plan can split by.
REPLICATE_ATTRIBUTE = "~replicate"
#: The window label replicate aggregates carry: their counts are the stage's, not a window's.
REPLICATE_WINDOW = 0


def replicate_of(unit: str) -> int:
    """The replicate of a unit value (its canonical text, ``unit_text``): CRC-32 of its UTF-8
    bytes, modulo ``REPLICATES`` — in every language's standard library, and unrelated to the
    SHA-256 bucketing that decides exposure, so each replicate holds exposed and baseline units
    in the rollout's proportions."""
    return zlib.crc32(unit.encode()) % REPLICATES


def replicate_segment(replicate: int) -> str:
    return f"{REPLICATE_ATTRIBUTE}={replicate}"


def parse_replicate(text: str) -> int | None:
    """The replicate of a segment text ``~replicate=k``; None for any other segment, and for a
    replicate outside ``[0, REPLICATES)`` or not in canonical decimal."""
    attribute, _, value = text.partition("=")
    if attribute != REPLICATE_ATTRIBUTE or not (value.isascii() and value.isdigit()):
        return None
    if len(value) > 2 or value != str(int(value)):
        return None  # one spelling per replicate: no leading zeros
    replicate = int(value)
    return replicate if replicate < REPLICATES else None


@dataclass(frozen=True, slots=True)
class Dispersion:
    """φ as the tests use it (≥ 1), and what it is made of, for the decision's sentence."""

    phi: float = 1.0
    exposed: float | None = None  # the exposed side's estimate, None without one
    baseline: float | None = None
    replicates: int = 0  # replicates with requests, both sides

    @property
    def applied(self) -> bool:
        return self.phi > 1.0

    def describe(self) -> str:
        """For the verdict's sentence: "units differ (φ = 3.2 over 64 replicates)"."""
        return f"units differ (φ = {self.phi:.1f} over {self.replicates} replicates)"


NO_DISPERSION = Dispersion()


def tail_quantiles(plan: Plan) -> dict[str, float]:
    """Per latency metric a guard of ``plan`` compares with the baseline (a tolerance; counts
    from the SDK, not another source), the quantile of the tail point its test counts beyond:
    the highest, if several guards name the metric. The SDK counts, per replicate of units,
    the requests slower than its own baseline's quantile there, and φ of those counts discounts
    the tail test as a rate's φ discounts a rate test: the indicator "beyond the tail point"
    of a unit's requests moves together as its failures do."""
    found: dict[str, float] = {}
    for guard in plan.guards:
        if guard.kind is GuardKind.LATENCY and guard.tolerance is not None and guard.source is None:
            quantile = guard.quantile or 0.95
            found[guard.metric] = max(quantile, found.get(guard.metric, 0.0))
    return found


def replicated_metrics(plan: Plan) -> frozenset[str]:
    """The metrics of ``plan`` whose replicate aggregates the judge reads: every rate guard's,
    and the latency metrics of ``tail_quantiles``."""
    rates = {guard.metric for guard in plan.guards if guard.kind is GuardKind.RATE}
    return frozenset(rates | set(tail_quantiles(plan)))


def side_dispersion(counts: list[tuple[int, int]]) -> tuple[float, int, int] | None:
    """(φ̂, k, X) of one side from its replicates' (requests, events); None without an estimate
    (fewer than two replicates with requests, or no events, or every request an event)."""
    k = total_n = total_x = 0
    for n, x in counts:
        if n:
            k += 1
            total_n += n
            total_x += x
    if k < 2 or total_x == 0 or total_x >= total_n:
        return None
    rate = total_x / total_n
    spread = 0.0
    for n, x in counts:
        if n:
            residual = x - rate * n
            spread += residual * residual
    phi = k / (k - 1) * spread / (total_n * rate * (1.0 - rate))
    return phi, k, total_x


def dispersion(exposed: list[tuple[int, int]], baseline: list[tuple[int, int]]) -> Dispersion:
    """φ of a rate metric from its replicates on each side (cumulative over the rollout): the
    two sides' estimates pooled by their degrees of freedom (k - 1 each). Units are assigned at
    random, so under the null both sides estimate the same dispersion; pooling halves the noise
    of φ̂, and a side with too few units for an estimate of its own (one exposed tenant) takes
    the other side's."""
    t = side_dispersion(exposed)
    c = side_dispersion(baseline)
    if t is None and c is None:
        return NO_DISPERSION
    weight_t = t[1] - 1 if t else 0
    weight_c = c[1] - 1 if c else 0
    pooled = ((t[0] * weight_t if t else 0.0) + (c[0] * weight_c if c else 0.0)) / (
        weight_t + weight_c
    )
    return Dispersion(
        phi=max(1.0, pooled),
        exposed=t[0] if t else None,
        baseline=c[0] if c else None,
        replicates=(t[1] if t else 0) + (c[1] if c else 0),
    )


class Replicates:
    """A rollout's replicate aggregates, one per (metric, stage, side, replicate): ``put`` sets a
    key's counts (a later put replaces them, like the store's upsert), ``of`` is a metric's φ."""

    def __init__(self) -> None:
        self._counts: dict[str, dict[tuple[int, bool, int], tuple[int, int]]] = {}
        self._known: dict[str, Dispersion] = {}

    def put(
        self, metric: str, stage: int, exposed: bool, replicate: int, requests: int, events: int
    ) -> None:
        self._counts.setdefault(metric, {})[(stage, exposed, replicate)] = (requests, events)
        self._known.pop(metric, None)

    def put_segment(
        self,
        text: str,
        metric: str,
        stage: int,
        exposed: bool,
        requests: int,
        events: int,
        histogram: object,
    ) -> bool:
        """Put an aggregate of an internal segment (text starting with "~"): kept if it is a
        replicate's counts, ignored otherwise (it is never a stratum). Whether it was kept."""
        replicate = parse_replicate(text)
        if replicate is None or histogram is not None:
            return False
        self.put(metric, stage, exposed, replicate, requests, events)
        return True

    def of(self, metric: str) -> Dispersion:
        """φ of ``metric`` from its replicates of every stage so far."""
        known = self._known.get(metric)
        if known is not None:
            return known
        counts = self._counts.get(metric)
        if not counts:
            return NO_DISPERSION
        sides: dict[bool, list[tuple[int, int]]] = {
            True: [(0, 0)] * REPLICATES,
            False: [(0, 0)] * REPLICATES,
        }
        for (_, exposed, replicate), (n, x) in counts.items():
            cells = sides[exposed]
            old = cells[replicate]
            cells[replicate] = (old[0] + n, old[1] + x)
        found = self._known[metric] = dispersion(sides[True], sides[False])
        return found
