"""The checks of an SDK event batch that pydantic's own constraints cannot make: no control
characters in its texts, times and windows near the server's clock, events within requests,
sparse histograms in order, replicate rows shaped as replicates (``_batch_models.py`` holds the
models, whose types and bounds pydantic checks in Rust).

They run once per batch, after pydantic (``Batch._rows_hold``), and not as a validator per
field: a batch of a ``by: [tenant]`` plan holds 84 aggregates, and the six Python validators each
of them took cost about 270 µs per batch — 40 % of its validation — on the 2-core machine. The
whole batch is screened in one pass (one regular expression over its texts joined, one loop
over the aggregates); only a batch the screen doubts is walked field by field, in the order of
the fields, to name its first bad one with the message the field's own check gives.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pydantic_core import PydanticCustomError

from rollwise.core.judgement import LATENCY_BUCKETS, REPLICATE_WINDOW, REPLICATES, parse_replicate

if TYPE_CHECKING:
    from rollwise.server._batch_models import Aggregate, Batch

#: Windows and times in a batch lie within this much of the server's clock: an SDK whose clock
#: is further off, or a batch older than this, is refused rather than judged.
MAX_SKEW = timedelta(days=2)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

#: Where a problem is (pydantic's ``loc``), the value refused, and why.
Problem = tuple[tuple[str | int, ...], object, PydanticCustomError]


def first_problem(batch: Batch, now: datetime | None) -> Problem | None:
    """The first field of ``batch`` that a check refuses, in the order of the fields (as
    pydantic validates them), or None."""
    if _clean(batch, now):
        return None
    return next(_problems(batch, now), None)


def _clean(batch: Batch, now: datetime | None) -> bool:
    """True when nothing in ``batch`` can be refused; False when something may be (the walk
    then decides): one pass, with no function called per row but for a replicate's segment."""
    aggregates, exposures, gauges = batch.aggregates, batch.exposures, batch.gauges
    segments = [a.segment for a in aggregates]
    texts = [batch.batch, batch.sdk, *segments, *(a.metric for a in aggregates)]
    texts += [e.unit for e in exposures]
    texts += [g.metric for g in gauges]
    if _CONTROL.search(" ".join(texts)):
        return False
    if any(map(operator.gt, [a.events for a in aggregates], [a.requests for a in aggregates])):
        return False
    low = high = 0
    if now is not None:
        minute, skew = int(now.timestamp() // 60), int(MAX_SKEW.total_seconds() // 60)
        low, high = minute - skew, minute + skew
        times = [e.at for e in exposures] + [g.at for g in gauges]
        if times and (min(times) < now - MAX_SKEW or max(times) > now + MAX_SKEW):
            return False
    lt = operator.lt
    for aggregate in aggregates:
        buckets = aggregate.buckets
        if aggregate.segment[:1] == "~":
            if (
                aggregate.window != REPLICATE_WINDOW
                or parse_replicate(aggregate.segment) is None
                or aggregate.histogram is not None
                or buckets is not None
            ):
                return False
        elif now is not None and not low <= aggregate.window <= high:
            return False
        if buckets:
            if aggregate.histogram is not None or len(buckets) % 2:
                return False
            indices = buckets[::2]
            if indices[-1] >= LATENCY_BUCKETS or not all(map(lt, indices, indices[1:])):
                return False
        elif buckets is not None and aggregate.histogram is not None:
            return False
    return True


def _problems(batch: Batch, now: datetime | None) -> Iterator[Problem]:
    """Every problem of ``batch``, field by field in the order of the fields."""
    for name in ("batch", "sdk"):
        yield from _text(getattr(batch, name), (name,))
    for index, aggregate in enumerate(batch.aggregates):
        for field, value, error in _aggregate_problems(aggregate, now):
            yield ("aggregates", index, field), value, error
    for index, exposure in enumerate(batch.exposures):
        yield from _text(exposure.unit, ("exposures", index, "unit"))
        yield from _time(exposure.at, now, ("exposures", index, "at"))
    for index, gauge in enumerate(batch.gauges):
        yield from _text(gauge.metric, ("gauges", index, "metric"))
        yield from _time(gauge.at, now, ("gauges", index, "at"))


def _text(text: str, where: tuple[str | int, ...]) -> Iterator[Problem]:
    found = _CONTROL.search(text)
    if found is not None:
        yield (
            where,
            text,
            PydanticCustomError(
                "control_character",
                "must not hold control characters (found U+{code:04X})",
                {"code": ord(found.group())},
            ),
        )


def _time(at: datetime, now: datetime | None, where: tuple[str | int, ...]) -> Iterator[Problem]:
    if now is not None and abs(at - now) > MAX_SKEW:
        yield (
            where,
            at,
            PydanticCustomError(
                "out_of_range",
                "must be within {days} days of the server's clock ({now}), got {at}",
                {"days": MAX_SKEW.days, "now": now.isoformat(), "at": at.isoformat()},
            ),
        )


def window_error(window: int, now: datetime) -> PydanticCustomError | None:
    """Why a traffic aggregate's window is refused: too far from the server's clock."""
    minute = int(now.timestamp() // 60)
    skew = int(MAX_SKEW.total_seconds() // 60)
    if abs(window - minute) <= skew:
        return None
    return PydanticCustomError(
        "out_of_range",
        "must be within {days} days of the server's clock (minute {minute} since the epoch), "
        "got {window}",
        {"days": MAX_SKEW.days, "minute": minute, "window": window},
    )


def _aggregate_problems(
    aggregate: Aggregate, now: datetime | None
) -> Iterator[tuple[str, object, PydanticCustomError]]:
    """An aggregate's problems as (field, value, error), in the order of its fields, then those
    of the aggregate as a whole: a replicate aggregate has window 0 and no histogram; window 0
    is a replicate's only; "~" starts no segment but a replicate's."""
    window, segment = aggregate.window, aggregate.segment
    # Window 0 is checked with the segment it needs (below).
    if now is not None and window != REPLICATE_WINDOW:
        error = window_error(window, now)
        if error is not None:
            yield "window", window, error
    for field in ("segment", "metric"):
        for _, text, error in _text(getattr(aggregate, field), ()):
            yield field, text, error
    if aggregate.events > aggregate.requests:
        yield (
            "events",
            aggregate.events,
            PydanticCustomError(
                "events_over_requests",
                "must not exceed requests ({requests}), got {events}",
                {"requests": aggregate.requests, "events": aggregate.events},
            ),
        )
    if aggregate.buckets:
        error = _buckets_error(aggregate.buckets)
        if error is not None:
            yield "buckets", aggregate.buckets, error
    if aggregate.histogram is not None and aggregate.buckets is not None:
        yield (
            "buckets",
            aggregate.buckets,
            PydanticCustomError(
                "histogram_twice",
                "an aggregate has histogram or buckets (the same counts sparse), not both",
            ),
        )
    # parse_replicate takes one spelling per replicate (ASCII digits, no leading zero).
    replicate = parse_replicate(segment) if segment.startswith("~") else None
    if segment.startswith("~") and replicate is None:
        yield (
            "segment",
            segment,
            PydanticCustomError(
                "replicate_segment",
                'a segment starting with "~" must be a replicate, "~replicate=k" with k '
                "in 0 … {last} (no leading zero), got {segment}",
                {"last": REPLICATES - 1, "segment": segment},
            ),
        )
    if replicate is None:
        if window == REPLICATE_WINDOW and now is not None:
            error = window_error(window, now)
            if error is not None:
                yield "window", window, error
        return
    if window != REPLICATE_WINDOW:
        yield (
            "window",
            window,
            PydanticCustomError(
                "replicate_window",
                "must be {zero} for a replicate aggregate (segment {segment}), got {window}",
                {"zero": REPLICATE_WINDOW, "segment": segment, "window": window},
            ),
        )
    if aggregate.histogram is not None or aggregate.buckets is not None:
        field = "histogram" if aggregate.histogram is not None else "buckets"
        yield (
            field,
            getattr(aggregate, field),
            PydanticCustomError(
                "replicate_histogram",
                "a replicate aggregate (segment {segment}) counts requests and events of a "
                "rate metric: it has no histogram",
                {"segment": segment},
            ),
        )


def _buckets_error(buckets: Sequence[int]) -> PydanticCustomError | None:
    """Why sparse buckets (index, count, …) are refused: not pairs, an index past the last
    bucket, or indices not increasing."""
    if len(buckets) % 2:
        return PydanticCustomError(
            "buckets_pairs",
            "must be index, count pairs: an even number of integers, got {length}",
            {"length": len(buckets)},
        )
    previous = -1
    for position in range(0, len(buckets), 2):
        index = buckets[position]
        if index >= LATENCY_BUCKETS:
            return PydanticCustomError(
                "buckets_index",
                "[{position}] is bucket index {index}: there are {count} buckets (0 … {last})",
                {
                    "position": position,
                    "index": index,
                    "count": LATENCY_BUCKETS,
                    "last": LATENCY_BUCKETS - 1,
                },
            )
        if index <= previous:
            return PydanticCustomError(
                "buckets_order",
                "indices must increase, but [{position}] is index {index} after {previous}",
                {"position": position, "index": index, "previous": previous},
            )
        previous = index
    return None
