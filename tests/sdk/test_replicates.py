"""Replicates: each rate outcome also counted into its unit's replicate, for the judge's φ."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rollwise import Context, Reason, evaluate
from rollwise.core import context_values, load_flags, unit_text
from rollwise.core._flagdump import flags_document
from rollwise.core.judgement import (
    LATENCY_BUCKETS,
    REPLICATE_WINDOW,
    latency_bucket,
    parse_replicate,
    replicate_of,
    replicate_segment,
)
from rollwise.sdk._aggregation import Aggregates, Outcome
from rollwise.sdk._cut import AggregateKey, Tally, segment_value
from rollwise.sdk._exposures import UNATTRIBUTABLE
from rollwise.sdk._outbox import encode_batches
from rollwise.sdk._snapshot import LiveRollout, parse_snapshot

NOW = 1_795_000_000.0  # 2026-11-18T11:06:40Z
WINDOW = int(NOW // 900) * 15
#: Staff are served "on" by a rule that reads no unit; everyone else is bucketed by user.
FLAGS = """
metrics:
  signup.error: {kind: rate}
  signup.converted: {kind: rate}
  signup.latency: {kind: latency}
flags:
  new-signup:
    variants: [off, on]
    unit: user
    rules:
      - when: {team: [staff]}
        serve: on
      - percent: 50
        serve: on
"""
ROLLOUT = {
    "id": 7,
    "flag": "new-signup",
    "stage": 2,
    "variant": "on",
    "unit": "user",
    "metrics": {"signup.error": "rate", "signup.converted": "rate", "signup.latency": "latency"},
    "segments": ["tenant"],
    "window_minutes": 15,
}
ERROR: Outcome = ("signup.error", None, True)
SUCCESS: Outcome = ("signup.error", None, False)


def rollout(**changes: object) -> LiveRollout:
    flags = flags_document(load_flags(FLAGS, "flags.yaml"))
    document = {"version": 1, "flags": flags, "rollouts": [{**ROLLOUT, **changes}]}
    return parse_snapshot(json.dumps(document)).rollouts[0]


def aggregates(max_keys: int = 50_000, clock: Iterator[float] | None = None) -> Aggregates:
    if clock is None:
        return Aggregates(max_keys=max_keys, clock=lambda: NOW, replicate_interval=0.0)
    return Aggregates(max_keys=max_keys, clock=lambda: next(clock), replicate_interval=0.0)


def user(index: int) -> dict[str, object]:
    return {"key": f"u-{index}", "tenant": f"tenant-{index % 5}"}


def is_exposed(live: LiveRollout, ctx: Mapping[str, object]) -> bool:
    served = evaluate(live.flag, ctx)
    assert served.reason not in UNATTRIBUTABLE
    return served.variant == live.variant


def replicate_tallies(tallies: Mapping[AggregateKey, Tally]) -> dict[AggregateKey, Tally]:
    return {key: tally for key, tally in tallies.items() if parse_replicate(key[4]) is not None}


def test_each_users_rate_outcomes_land_in_its_replicate_and_sum_to_the_side() -> None:
    """Outcomes of 300 users land in replicate_of(user) of their side, window 0, no histogram;
    the replicates of a side sum to its whole-traffic requests and events."""
    live = rollout()
    sums = aggregates()
    expected: dict[AggregateKey, list[int]] = {}
    sides = {True: [0, 0], False: [0, 0]}
    for index in range(300):
        ctx = user(index)
        # Half as Context values, half as plain dicts read in place (the user folded from key).
        values = Context.of(ctx).values if index % 2 else context_values(ctx)
        exposed = is_exposed(live, ctx)
        key = (7, 2, 0, exposed, f"~replicate={replicate_of(f'u-{index}')}", "signup.error")
        counts = expected.setdefault(key, [0, 0])
        for request in range(index % 4 + 1):
            failed = (index * 7 + request) % 5 == 0
            sums.add(
                (live,), values, (("signup.latency", 20.0, None), ("signup.error", None, failed))
            )
            counts[0] += 1
            counts[1] += failed
            sides[exposed][0] += 1
            sides[exposed][1] += failed
    tallies = sums.cut().tallies
    replicates = replicate_tallies(tallies)
    assert {key: [t.requests, t.events] for key, t in replicates.items()} == expected
    assert all(t.histogram is None for t in replicates.values())
    assert {key[2] for key in replicates} == {REPLICATE_WINDOW} == {0}
    for exposed, (requests, events) in sides.items():
        whole = tallies[(7, 2, WINDOW, exposed, "", "signup.error")]
        assert (whole.requests, whole.events) == (requests, events)
        mine = [t for key, t in replicates.items() if key[3] is exposed]
        assert sum(t.requests for t in mine) == requests
        assert sum(t.events for t in mine) == events
        assert len(mine) > 30  # 150-odd users per side spread over most of the 64
    assert sides[True][0] > 0 and sides[False][0] > 0 and sides[True][1] > 0


def test_a_replicate_aggregate_encodes_with_window_0_and_no_histogram() -> None:
    """On the wire a replicate is an ordinary aggregate: window 0, segment ~replicate=k."""
    live = rollout(segments=[])
    sums = aggregates()
    ctx = user(4)
    sums.add((live,), context_values(ctx), (ERROR, SUCCESS))
    (batch,) = encode_batches(sums.cut(), sdk="test", hashed=True, new_id=lambda: "b")
    rows = [row for row in json.loads(batch.body)["aggregates"] if row["window"] == 0]
    assert rows == [
        {
            "rollout": 7,
            "stage": 2,
            "window": 0,
            "exposed": is_exposed(live, ctx),
            "segment": replicate_segment(replicate_of("u-4")),
            "metric": "signup.error",
            "requests": 2,
            "events": 1,
        }
    ]


def test_a_user_stays_in_its_replicate_across_cuts_and_windows() -> None:
    """The same user, recorded in three windows across three cuts, feeds one replicate key."""
    live = rollout(segments=[])
    times = [NOW, NOW + 20 * 60, NOW + 2 * 3600]
    sums = aggregates(clock=iter(times))
    ctx = user(42)
    exposed = is_exposed(live, ctx)
    replicate_key = (7, 2, 0, exposed, replicate_segment(replicate_of("u-42")), "signup.error")
    windows = []
    for _ in times:
        sums.add((live,), context_values(ctx), (ERROR,))
        tallies = sums.cut().tallies
        assert set(replicate_tallies(tallies)) == {replicate_key}
        assert (tallies[replicate_key].requests, tallies[replicate_key].events) == (1, 1)
        (whole,) = [key for key in tallies if key[4] == ""]
        windows.append(whole[2])
    assert windows == [WINDOW, WINDOW + 15, WINDOW + 120]  # 11:00, 11:15, 13:00


@settings(max_examples=100, deadline=None)
@given(st.one_of(st.text(min_size=1), st.integers()))
def test_the_replicate_is_that_of_the_units_canonical_text(value: str | int) -> None:
    """Any usable unit value, text or integer, lands in replicate_of(unit_text(value))."""
    live = rollout(unit="account", segments=[])
    sums = aggregates()
    # A rollout's unit need not be the flag's: the flag buckets by user, the replicate by account.
    sums.add((live,), context_values({"key": "u-1", "account": value}), (SUCCESS,))
    (key,) = replicate_tallies(sums.cut().tallies)
    text = unit_text(value)
    assert text is not None
    assert key[4] == replicate_segment(replicate_of(text)) == f"~replicate={replicate_of(text)}"


def test_latency_only_outcomes_make_no_replicate() -> None:
    """record(value=…) and observe()'s latency half count in no replicate; its error half does."""
    live = rollout()
    sums = aggregates()
    for index in range(50):
        sums.add((live,), context_values(user(index)), (("signup.latency", 5.0, None),))
    tallies = sums.cut().tallies
    assert not replicate_tallies(tallies)
    assert sum(t.requests for key, t in tallies.items() if key[4] == "") == 50
    sums.add(
        (live,),
        context_values(user(1)),
        (("signup.latency", 5.0, None), ("signup.error", None, False)),
    )
    assert [key[5] for key in replicate_tallies(sums.cut().tallies)] == ["signup.error"]


def test_a_latency_guards_metric_with_a_failure_flag_makes_no_replicate() -> None:
    """record(latency metric, value=…, failed=…): the server takes replicates of rate guards
    only (it would refuse the whole batch), so a latency guard's metric gets none."""
    live = rollout()
    sums = aggregates()
    sums.add((live,), context_values(user(4)), (("signup.latency", 480.0, True),))
    tallies = sums.cut().tallies
    assert not replicate_tallies(tallies)
    assert sum(t.requests for key, t in tallies.items() if key[4] == "") == 1


def test_a_rate_outcome_with_a_duration_feeds_its_replicate_no_histogram() -> None:
    """record(value=…, failed=…) fills the row's histogram but only the replicate's counts."""
    live = rollout(segments=[])
    sums = aggregates()
    sums.add((live,), context_values(user(3)), (("signup.error", 480.0, True),))
    tallies = sums.cut().tallies
    (replicate,) = replicate_tallies(tallies).values()
    assert (replicate.requests, replicate.events, replicate.histogram) == (1, 1, None)
    (whole,) = [t for key, t in tallies.items() if key[4] == ""]
    assert whole.histogram is not None and len(whole.histogram) == LATENCY_BUCKETS
    assert whole.histogram[latency_bucket(480.0)] == 1


def test_a_context_without_the_unit_counts_in_no_replicate() -> None:
    """A staff context without a key is served by a rule that needs no unit: it counts for the
    exposed side, but in no replicate. Without the unit and that rule it counts nowhere."""
    live = rollout(segments=[])
    sums = aggregates()
    staff = context_values({"team": "staff"})
    resolution = live.flag.program.run(staff)
    assert resolution.reason is Reason.RULE_MATCH and resolution.variant == "on"
    sums.add((live,), staff, (ERROR, SUCCESS, ("signup.converted", None, True)))
    tallies = sums.cut().tallies
    assert not replicate_tallies(tallies)
    whole = tallies[(7, 2, WINDOW, True, "", "signup.error")]
    assert (whole.requests, whole.events) == (2, 1)
    assert tallies[(7, 2, WINDOW, True, "", "signup.converted")].requests == 1
    # A user attribute of the wrong type is no unit either.
    nobody = context_values({"user": ["u-1"], "team": "staff"})
    sums.add((live,), nobody, (ERROR,))
    assert not replicate_tallies(sums.cut().tallies)
    # Without the rule, a context without the unit is UNIT_MISSING: nothing at all.
    assert live.flag.program.run(context_values({"team": "web"})).reason is Reason.UNIT_MISSING
    sums.add((live,), context_values({"team": "web"}), (ERROR,))
    assert not sums.cut()


def test_each_rate_metric_has_its_own_replicates() -> None:
    """Two rate metrics of one context: one replicate key each, in the same replicate."""
    live = rollout(segments=[])
    sums = aggregates()
    ctx = user(9)
    sums.add((live,), context_values(ctx), (ERROR, ("signup.converted", None, False)))
    keys = sorted(replicate_tallies(sums.cut().tallies))
    segment = replicate_segment(replicate_of("u-9"))
    exposed = is_exposed(live, ctx)
    assert keys == [
        (7, 2, 0, exposed, segment, "signup.converted"),
        (7, 2, 0, exposed, segment, "signup.error"),
    ]


def _users_in_distinct_replicates(live: LiveRollout, count: int) -> list[dict[str, object]]:
    """``count`` exposed users, each in a replicate of its own."""
    found: dict[int, dict[str, object]] = {}
    for index in range(10_000):
        ctx = user(index)
        replicate = replicate_of(f"u-{index}")
        if replicate not in found and is_exposed(live, ctx):
            found[replicate] = ctx
            if len(found) == count:
                return list(found.values())
    raise AssertionError("not enough users")


def test_replicate_keys_count_against_max_keys_and_drops_are_counted() -> None:
    """With max_keys 3: the whole traffic's key and two replicates fit; a third replicate's
    outcomes are dropped and counted, the whole traffic's still counted; a cut frees room."""
    live = rollout(segments=[])
    sums = aggregates(max_keys=3)
    first, second, third = _users_in_distinct_replicates(live, 3)
    for ctx in (first, second, third, third, first):
        sums.add((live,), context_values(ctx), (ERROR,))
    tallies = sums.cut().tallies
    assert len(tallies) == 3
    assert tallies[(7, 2, WINDOW, True, "", "signup.error")].requests == 5
    replicates = {key[4]: t.requests for key, t in replicate_tallies(tallies).items()}
    assert replicates == {
        replicate_segment(replicate_of(str(first["key"]))): 2,
        replicate_segment(replicate_of(str(second["key"]))): 1,
    }
    assert sums.outcomes_dropped == 2
    sums.add((live,), context_values(third), (ERROR,))
    assert len(sums.cut().tallies) == 2
    assert sums.outcomes_dropped == 2


def test_keys_go_to_outcomes_in_the_order_they_need_them_replicates_too() -> None:
    """With max_keys 2, a replicate can take the slot a later segment key needed, and a
    segment key the slot of a later replicate: each missing key drops one addition."""
    live = rollout()
    replicate = replicate_segment(replicate_of("u-0"))
    sums = aggregates(max_keys=2)
    sums.add((live,), context_values({"key": "u-0"}), (ERROR,))  # "", replicate
    sums.add((live,), context_values(user(0)), (ERROR,))  # "", replicate; tenant-0 missing
    tallies = sums.cut().tallies
    assert {key[4]: t.requests for key, t in tallies.items()} == {"": 2, replicate: 2}
    assert sums.outcomes_dropped == 1
    sums.add((live,), context_values(user(0)), (ERROR, SUCCESS))  # "", tenant-0; replicate missing
    tallies = sums.cut().tallies
    assert {key[4]: t.requests for key, t in tallies.items()} == {"": 2, "tenant=tenant-0": 2}
    assert sums.outcomes_dropped == 3


def _reference_add(
    tallies: dict[AggregateKey, list[Any]],
    live: LiveRollout,
    values: dict[str, object],
    outcomes: tuple[Outcome, ...],
    max_keys: int,
) -> int:
    """Outcomes counted into every key one by one, the replicate's last; returns the drops."""
    resolution = evaluate(live.flag, values)
    if resolution.reason in UNATTRIBUTABLE:
        return 0
    exposed = resolution.variant == live.variant
    segments = [""]
    tenant = segment_value(values.get("tenant"))
    if tenant:
        segments.append(f"tenant={tenant}")
    unit = unit_text(Context.of(values).get("user"))
    dropped = 0
    for metric, milliseconds, failed in outcomes:
        keys = [(7, 2, WINDOW, exposed, segment, metric) for segment in segments]
        if failed is not None and unit is not None:
            keys.append((7, 2, 0, exposed, replicate_segment(replicate_of(unit)), metric))
        for key in keys:
            if key not in tallies:
                if len(tallies) >= max_keys:
                    dropped += 1
                    continue
                tallies[key] = [0, 0, None]
            tally = tallies[key]
            tally[0] += 1
            tally[1] += bool(failed)
            if milliseconds is not None and key[2] != 0:
                if tally[2] is None:
                    tally[2] = [0] * LATENCY_BUCKETS
                tally[2][latency_bucket(milliseconds)] += 1
    return dropped


OUTCOMES = st.sampled_from(
    [
        (("signup.latency", 12.5, None), ("signup.error", None, True)),
        (("signup.latency", 480.0, None), ("signup.error", None, False)),
        (("signup.error", None, True),),
        (("signup.error", 30.0, False),),
        (("signup.latency", 0.2, None),),
        (("signup.converted", None, True),),
    ]
)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([None, *range(40)]),
            st.sampled_from(["staff", "web"]),
            st.sampled_from(["acme", "", None, 3]),
            OUTCOMES,
        ),
        max_size=120,
    ),
    st.integers(1, 80),
)
def test_counting_by_rows_and_replicates_sums_to_counting_by_keys(
    calls: list[tuple[int | None, str, object, tuple[Outcome, ...]]], max_keys: int
) -> None:
    """Whatever is recorded, the cut holds the tallies, and drops, of counting each outcome
    into each of its keys, replicates included, with at most max_keys keys."""
    live = rollout()
    sums = aggregates(max_keys=max_keys)
    expected: dict[AggregateKey, list[Any]] = {}
    dropped = 0
    for index, team, tenant, outcomes in calls:
        ctx: dict[str, object] = {"team": team, "tenant": tenant}
        if index is not None:
            ctx["key"] = f"u-{index}"
        sums.add((live,), context_values(ctx), outcomes)
        dropped += _reference_add(expected, live, ctx, outcomes, max_keys)
    cut = sums.cut()
    assert {k: [t.requests, t.events, t.histogram] for k, t in cut.tallies.items()} == expected
    assert sums.outcomes_dropped == dropped


def test_replicates_are_cut_once_a_minute_and_add_up_meanwhile() -> None:
    """Flushes every few seconds carry windows' rows; the replicates' rows go out once a minute
    (or at an explicit flush), with everything counted since they last went: no count lost,
    none twice."""
    live = rollout(segments=[])
    elapsed = [0.0]
    sums = Aggregates(clock=lambda: NOW, monotonic=lambda: elapsed[0])
    shipped: dict[tuple[object, ...], int] = {}
    recorded = 0
    for second in range(0, 130, 5):
        elapsed[0] = float(second)
        for index in range(10):
            sums.add((live,), context_values(user(index)), (("signup.error", None, False),))
            recorded += 1
        found = replicate_tallies(sums.cut().tallies)
        for key, tally in found.items():
            shipped[key] = shipped.get(key, 0) + tally.requests
        assert bool(found) == (second in (0, 60, 120)), second
    assert sum(shipped.values()) == recorded - 10  # the last 5 s wait for the next minute
    sums.add((live,), context_values(user(1)), (("signup.error", None, True),))
    assert replicate_tallies(sums.cut(everything=True).tallies)  # an explicit flush takes them


def test_a_stage_left_behind_ships_its_replicates_at_the_next_cut() -> None:
    """Within the minute, the rollout moves on a stage: the replicates of the stage it left go
    at the next cut (the server takes a stage it left only for a while, and would refuse the
    whole batch after a second move), those of the new stage keep adding up."""
    before, after = rollout(stage=2), rollout(stage=3)
    elapsed = [0.0]
    sums = Aggregates(clock=lambda: NOW, monotonic=lambda: elapsed[0])
    sums.add((before,), context_values(user(1)), (("signup.error", None, True),))
    assert {key[1] for key in replicate_tallies(sums.cut().tallies)} == {2}  # the first cut
    elapsed[0] = 5.0
    sums.add((before,), context_values(user(1)), (("signup.error", None, True),))
    assert not replicate_tallies(sums.cut().tallies)  # still recording stage 2: it waits
    elapsed[0] = 10.0
    sums.add((after,), context_values(user(1)), (("signup.error", None, False),))
    found = replicate_tallies(sums.cut().tallies)
    assert [(key[1], tally.requests, tally.events) for key, tally in found.items()] == [(2, 1, 1)]
    elapsed[0] = 60.0
    found = replicate_tallies(sums.cut().tallies)
    assert [(key[1], tally.requests, tally.events) for key, tally in found.items()] == [(3, 1, 0)]
