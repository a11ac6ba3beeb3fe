"""Latencies of users as they are, for ``validity.py``: heavy-tailed request counts per user and
a few slow clients, with the replicates an SDK ships for a latency guard's tail.

A slow client (a bad network, an old device) makes *all* of its user's requests slow, so the
requests beyond the p95 come in clumps by user, as failures do from broken clients. Every
request of a user is drawn from its user's distribution; the histograms of a tick are summed
over users, which is exactly a multinomial per (side, kind of client) given the requests beyond
the tail point and those before it.

The replicates are counted as the Python SDK counts them (``rollwise.sdk._tails``): per
replicate of users, the requests and those in a bucket beyond the tail point, the bucket of the
p95 of the baseline recorded so far in the stage, once it holds 20 / (1 - 0.95) requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from rollwise.core.judgement import REPLICATES, replicate_of
from rollwise.core.simulation._simulator import _lognormal_bucket_probabilities
from rollwise.sdk._tails import tail_point

#: The world of ``validity.py``: a generator of ticks from a run's random generator.
World = Callable[[np.random.Generator], Iterator[object]]


def latency_user_world(
    tick: Callable[..., object],
    *,
    users: int,
    share: float,
    per_tick: float,
    p95: float,
    slow_clients: float,
    slow_scale: float,
    tail: float,
    ticks: int,
    exposed_scale: float = 1.0,
    quantile: float = 0.95,
) -> World:
    """``unit: user``: requests per user Pareto(``tail``), a share ``slow_clients`` of users
    whose latencies are × ``slow_scale`` on both sides, each user exposed with probability
    ``share``; the exposed users' latencies × ``exposed_scale``. ``tick`` builds validity's
    ``Tick`` (stage, requests, histograms=…, replicates=…)."""
    replicate = np.array([replicate_of(f"user-{index}") for index in range(users)])
    shapes = {
        (exposed, slow): _lognormal_bucket_probabilities(
            p95, 0.5, (slow_scale if slow else 1.0) * (exposed_scale if exposed else 1.0), 0.0
        )
        for exposed in (True, False)
        for slow in (True, False)
    }
    cumulative = {key: np.cumsum(probabilities) for key, probabilities in shapes.items()}

    def world(rng: np.random.Generator) -> Iterator[object]:
        weights = rng.pareto(tail, users) + 1
        rates = per_tick * weights / weights.sum()
        exposed = rng.random(users) < share
        slow = rng.random(users) < slow_clients
        baseline_seen = np.zeros(len(shapes[False, False]), np.int64)
        for _ in range(ticks):
            point = tail_point(baseline_seen.tolist(), quantile)
            n = rng.poisson(rates)
            beyond = np.zeros(users, np.int64)
            requests: dict[tuple[str, bool], int] = {}
            histograms: dict[tuple[str, bool], np.ndarray] = {}
            for side in (True, False):
                histogram = np.zeros(len(baseline_seen), np.int64)
                for kind in (True, False):
                    members = (exposed == side) & (slow == kind)
                    probabilities = shapes[side, kind]
                    # Below the point and beyond it, each a multinomial given its count.
                    cut = -1 if point is None else point
                    p_beyond = 1.0 - (cumulative[side, kind][cut] if cut >= 0 else 0.0)
                    p_beyond = min(max(p_beyond, 0.0), 1.0)
                    beyond[members] = rng.binomial(n[members], p_beyond)
                    above = int(beyond[members].sum())
                    below = int(n[members].sum()) - above
                    if cut >= 0:
                        low, high = probabilities[: cut + 1], probabilities[cut + 1 :]
                        if below:
                            histogram[: cut + 1] += rng.multinomial(below, low / low.sum())
                        if above:
                            histogram[cut + 1 :] += rng.multinomial(above, high / high.sum())
                    else:
                        histogram += rng.multinomial(below + above, probabilities)
                requests["", side] = int(histogram.sum())
                histograms["", side] = histogram
            baseline_seen += histograms["", False]
            replicates = None
            if point is not None:
                replicates = {
                    side: np.stack(
                        [
                            np.bincount(replicate[exposed == side], n[exposed == side], REPLICATES),
                            np.bincount(
                                replicate[exposed == side], beyond[exposed == side], REPLICATES
                            ),
                        ],
                        axis=1,
                    ).astype(np.int64)
                    for side in (True, False)
                }
            yield tick(0, requests, histograms=histograms, replicates=replicates)

    return world
