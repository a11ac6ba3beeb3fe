"""What an SDK event batch may hold, bounded and typed before anything of it is stored: the
wire models of ``POST /sdk/v1/events`` (the endpoints are ``_sdk_api.py``)."""

from __future__ import annotations

import operator
import re
from datetime import datetime, timedelta
from typing import Annotated

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from rollwise.core.judgement import (
    LATENCY_BUCKETS,
    REPLICATE_WINDOW,
    REPLICATES,
    parse_replicate,
)

#: A batch larger than this is refused whole (413), before anything is applied.
MAX_BATCH_BYTES = 8 * 1024 * 1024
MAX_ROWS = 50_000
#: Rollout ids and stages are 32-bit integers in the database.
MAX_ID = 2**31 - 1
#: Counts stay exact as JSON numbers in every language (and summable in a 64-bit column).
MAX_COUNT = 2**53
#: Windows and times in a batch lie within this much of the server's clock: an SDK whose clock
#: is further off, or a batch older than this, is refused rather than judged.
MAX_SKEW = timedelta(days=2)

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _printable(text: str) -> str:
    found = _CONTROL.search(text)
    if found is not None:
        raise PydanticCustomError(
            "control_character",
            "must not hold control characters (found U+{code:04X})",
            {"code": ord(found.group())},
        )
    return text


#: Text without NUL or other control characters.
Text = Annotated[
    str,
    AfterValidator(_printable),
    Field(json_schema_extra={"pattern": "^[^\\x00-\\x1f\\x7f]*$"}),
]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Stage = Annotated[int, Field(ge=0, le=MAX_ID)]
#: A latency histogram's non-zero buckets, flat: index, count, index, count, … (the indices
#: checked below). Flat rather than pairs: half the parsing (pydantic), and no object per bucket.
SparseHistogram = Annotated[list[Count], Field(max_length=2 * LATENCY_BUCKETS)]


def _now(info: ValidationInfo) -> datetime | None:
    context = info.context
    return context.get("now") if isinstance(context, dict) else None


def _recent(at: datetime, info: ValidationInfo) -> datetime:
    now = _now(info)
    if now is not None and abs(at - now) > MAX_SKEW:
        raise PydanticCustomError(
            "out_of_range",
            "must be within {days} days of the server's clock ({now}), got {at}",
            {"days": MAX_SKEW.days, "now": now.isoformat(), "at": at.isoformat()},
        )
    return at


#: A time with its zone, within ``MAX_SKEW`` of the server's clock (when it is known).
Recent = Annotated[AwareDatetime, AfterValidator(_recent)]


def _window_error(window: int, now: datetime) -> PydanticCustomError | None:
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


def _refused(field: str, value: object, error: PydanticCustomError) -> ValidationError:
    """A model-level refusal located at one of its fields (so the path names that field)."""
    return ValidationError.from_exception_data(
        "Aggregate", [InitErrorDetails(type=error, loc=(field,), input=value)]
    )


class Aggregate(BaseModel):
    """One aggregate of a batch: a window's traffic of one stratum, or, with ``window`` 0 and
    segment ``~replicate=k``, one replicate's counts of a rate metric in the stage (the judge's
    dispersion, ``core/judgement/_dispersion.py``)."""

    model_config = ConfigDict(strict=True, extra="forbid")

    rollout: Id
    stage: Stage
    window: int = Field(
        ge=0,
        description="start of the window, minutes since the epoch, within 2 days of the "
        "server's clock; 0 for a replicate aggregate (segment ~replicate=k)",
    )
    exposed: bool
    segment: Text = Field(
        default="",
        max_length=300,
        description='"" (the whole traffic), "attribute=value", or "~replicate=k" with 0 <= k '
        f"< {REPLICATES}",
    )
    metric: Text = Field(min_length=1, max_length=200)
    requests: Count
    events: Count = Field(default=0, description="at most requests")
    histogram: (
        Annotated[list[Count], Field(min_length=LATENCY_BUCKETS, max_length=LATENCY_BUCKETS)] | None
    ) = Field(default=None, description=f"a latency's {LATENCY_BUCKETS} bucket counts")
    buckets: SparseHistogram | None = Field(
        default=None,
        description="the same histogram sparse: its non-zero buckets as index, count, index, "
        f"count, … (indices 0 … {LATENCY_BUCKETS - 1}, increasing; what the Python SDK sends: a "
        "latency spans a few dozen of the buckets); at most one of histogram and buckets",
    )

    @field_validator("window")
    @classmethod
    def _window_is_recent(cls, window: int, info: ValidationInfo) -> int:
        now = _now(info)
        # Window 0 is checked with the segment it needs (``_replicate_fits``).
        if now is not None and window != REPLICATE_WINDOW:
            error = _window_error(window, now)
            if error is not None:
                raise error
        return window

    @field_validator("events")
    @classmethod
    def _events_within_requests(cls, events: int, info: ValidationInfo) -> int:
        requests = info.data.get("requests")
        if isinstance(requests, int) and events > requests:
            raise PydanticCustomError(
                "events_over_requests",
                "must not exceed requests ({requests}), got {events}",
                {"requests": requests, "events": events},
            )
        return events

    @field_validator("buckets")
    @classmethod
    def _buckets_are_pairs(cls, buckets: list[int] | None) -> list[int] | None:
        if not buckets:
            return buckets
        if len(buckets) % 2:
            raise PydanticCustomError(
                "buckets_pairs",
                "must be index, count pairs: an even number of integers, got {length}",
                {"length": len(buckets)},
            )
        indices = buckets[::2]
        if indices[-1] < LATENCY_BUCKETS and all(map(operator.lt, indices, indices[1:])):
            return buckets  # the usual case, checked without a Python loop
        previous = -1
        for position in range(0, len(buckets), 2):
            index = buckets[position]
            if index >= LATENCY_BUCKETS:
                raise PydanticCustomError(
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
                raise PydanticCustomError(
                    "buckets_order",
                    "indices must increase, but [{position}] is index {index} after {previous}",
                    {"position": position, "index": index, "previous": previous},
                )
            previous = index
        return buckets

    @model_validator(mode="after")
    def _replicate_fits(self, info: ValidationInfo) -> Aggregate:
        """A replicate aggregate has window 0 and no histogram; window 0 is a replicate's
        only; "~" starts no segment but a replicate's."""
        if self.histogram is not None and self.buckets is not None:
            raise _refused(
                "buckets",
                self.buckets,
                PydanticCustomError(
                    "histogram_twice",
                    "an aggregate has histogram or buckets (the same counts sparse), not both",
                ),
            )
        segment = self.segment
        # parse_replicate takes one spelling per replicate (ASCII digits, no leading zero).
        replicate = parse_replicate(segment) if segment.startswith("~") else None
        if segment.startswith("~") and replicate is None:
            raise _refused(
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
            now = _now(info)
            if self.window == REPLICATE_WINDOW and now is not None:
                error = _window_error(self.window, now)
                if error is not None:
                    raise _refused("window", self.window, error)
            return self
        if self.window != REPLICATE_WINDOW:
            raise _refused(
                "window",
                self.window,
                PydanticCustomError(
                    "replicate_window",
                    "must be {zero} for a replicate aggregate (segment {segment}), got {window}",
                    {"zero": REPLICATE_WINDOW, "segment": segment, "window": self.window},
                ),
            )
        if self.histogram is not None or self.buckets is not None:
            field = "histogram" if self.histogram is not None else "buckets"
            raise _refused(
                field,
                getattr(self, field),
                PydanticCustomError(
                    "replicate_histogram",
                    "a replicate aggregate (segment {segment}) counts requests and events of a "
                    "rate metric: it has no histogram",
                    {"segment": segment},
                ),
            )
        return self


class ExposureIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    rollout: Id
    unit: Text = Field(min_length=1, max_length=64)
    stage: Stage
    exposed: bool
    at: Recent


class GaugeIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    metric: Text = Field(min_length=1, max_length=200)
    value: float = Field(allow_inf_nan=False)
    at: Recent


class Batch(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    batch: Text = Field(min_length=8, max_length=100)
    sdk: Text = Field(default="", max_length=200)
    aggregates: list[Aggregate] = Field(default_factory=list, max_length=MAX_ROWS)
    exposures: list[ExposureIn] = Field(default_factory=list, max_length=MAX_ROWS)
    gauges: list[GaugeIn] = Field(default_factory=list, max_length=MAX_ROWS)


class Applied(BaseModel):
    applied: bool
    duplicate: bool = False
