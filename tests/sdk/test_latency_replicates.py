"""A latency guard's replicates: per replicate of units, the requests and those beyond the tail
point the client reads from the baseline it recorded in the stage (``_tails.py``)."""

from __future__ import annotations

import json

import pytest

from rollwise.core import InputError, load_flags
from rollwise.core._flagdump import flags_document
from rollwise.core.judgement import latency_bucket, parse_replicate, replicate_of
from rollwise.sdk._aggregation import Aggregates
from rollwise.sdk._snapshot import LiveRollout, parse_snapshot
from rollwise.sdk._tails import MAX_TAILS, TailPoints
from tests.sdk.test_replicates import FLAGS, NOW, ROLLOUT, is_exposed, user

TAILS = {**ROLLOUT, "tails": {"signup.latency": 0.95}}


def rollout(**changes: object) -> LiveRollout:
    flags = flags_document(load_flags(FLAGS, "flags.yaml"))
    document = {"version": 1, "flags": flags, "rollouts": [{**TAILS, **changes}]}
    return parse_snapshot(json.dumps(document)).rollouts[0]


def latency_replicates(sums: Aggregates) -> dict[tuple[bool, int], tuple[int, int]]:
    """(exposed, replicate) -> (requests, beyond) of the latency's replicate rows of a cut."""
    found = {}
    for key, tally in sums.cut().tallies.items():
        replicate = parse_replicate(key[4])
        if replicate is not None and key[5] == "signup.latency":
            assert tally.histogram is None and key[2] == 0
            found[key[3], replicate] = (tally.requests, tally.events)
    return found


def test_no_latency_replicates_before_the_baseline_holds_a_tail_point() -> None:
    """399 baseline latencies are too few for a p95 (20 beyond it): nothing to count beyond."""
    live = rollout()
    sums = Aggregates(clock=lambda: NOW, replicate_interval=0.0)
    baseline = [u for u in range(2000) if not is_exposed(live, user(u))][:399]
    for index in baseline:
        sums.add((live,), user(index), (("signup.latency", 10.0, None),))
    assert latency_replicates(sums) == {}
    sums.add((live,), user(baseline[0]), (("signup.latency", 10.0, None),))
    assert latency_replicates(sums) == {}  # the point is read at this cut, used after it


def test_latency_replicates_count_the_requests_beyond_the_clients_tail_point() -> None:
    """After 400 baseline latencies (380 at 10 ms, 20 at 500 ms), the point is 10 ms's bucket:
    each later latency counts in its user's replicate, and beyond it if slower."""
    live = rollout()
    sums = Aggregates(clock=lambda: NOW, replicate_interval=0.0)
    baseline = [u for u in range(3000) if not is_exposed(live, user(u))]
    for position, index in enumerate(baseline[:400]):
        sums.add(
            (live,), user(index), (("signup.latency", 500.0 if position < 20 else 10.0, None),)
        )
    latency_replicates(sums)  # the cut that reads the point
    assert sums._tails.points == {(7, 2, "signup.latency"): latency_bucket(10.0)}
    expected: dict[tuple[bool, int], list[int]] = {}
    for index in range(300):
        ctx = user(index)
        milliseconds = 10.0 if index % 3 else 11.0  # 11 ms: a bucket beyond 10 ms's
        sums.add((live,), ctx, (("signup.latency", milliseconds, None),))
        counts = expected.setdefault((is_exposed(live, ctx), replicate_of(f"u-{index}")), [0, 0])
        counts[0] += 1
        counts[1] += milliseconds > 10.0
    assert {key: list(value) for key, value in latency_replicates(sums).items()} == expected
    assert any(exposed for exposed, _ in expected) and any(not e for e, _ in expected)


def test_a_new_stage_reads_its_own_tail_point() -> None:
    """The baseline of stage 2 says nothing of stage 3's: a rollout that moved on has no point
    until its new stage's baseline holds enough."""
    live = rollout()
    sums = Aggregates(clock=lambda: NOW, replicate_interval=0.0)
    baseline = [u for u in range(3000) if not is_exposed(live, user(u))]
    for index in baseline[:400]:
        sums.add((live,), user(index), (("signup.latency", 10.0, None),))
    latency_replicates(sums)
    moved = rollout(stage=3)
    sums.add((moved,), user(baseline[0]), (("signup.latency", 10.0, None),))
    assert latency_replicates(sums) == {}


def test_tail_points_forget_stages_without_outcomes_beyond_a_bound() -> None:
    live = rollout()
    points = TailPoints()
    for stage in range(MAX_TAILS + 1):
        points._seen[(7, stage, "signup.latency")] = (0.95, [400])
    points.refresh({(7, MAX_TAILS)})
    assert list(points._seen) == [(7, MAX_TAILS, "signup.latency")]
    assert points.points == {(7, MAX_TAILS, "signup.latency"): 0}
    assert live.tails == {"signup.latency": 0.95}


@pytest.mark.parametrize(
    "tails",
    [{"signup.latency": 1.0}, {"signup.latency": 0}, {"signup.error": 0.95}, {"x": 0.9}, [0.95]],
)
def test_a_snapshot_with_bad_tails_is_refused_naming_the_field(tails: object) -> None:
    flags = flags_document(load_flags(FLAGS, "flags.yaml"))
    document = {"version": 1, "flags": flags, "rollouts": [{**ROLLOUT, "tails": tails}]}
    with pytest.raises(InputError, match=r"rollouts\[0\]\.tails"):
        parse_snapshot(json.dumps(document))


def test_an_older_servers_snapshot_has_no_tails() -> None:
    flags = flags_document(load_flags(FLAGS, "flags.yaml"))
    document = {"version": 1, "flags": flags, "rollouts": [ROLLOUT]}
    assert parse_snapshot(json.dumps(document)).rollouts[0].tails == {}
