"""What an SDK event batch may hold, bounded and typed before anything of it is stored: the
wire models of ``POST /sdk/v1/events`` (the endpoints are ``_sdk_api.py``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import InitErrorDetails

from rollwise.core.judgement import LATENCY_BUCKETS, REPLICATES
from rollwise.server._batch_checks import first_problem

#: A batch larger than this is refused whole (413), before anything is applied.
MAX_BATCH_BYTES = 8 * 1024 * 1024
MAX_ROWS = 50_000
#: Rollout ids and stages are 32-bit integers in the database.
MAX_ID = 2**31 - 1
#: Counts stay exact as JSON numbers in every language (and summable in a 64-bit column).
MAX_COUNT = 2**53

#: Text without NUL or other control characters (checked for the whole batch at once:
#: ``Batch._rows_hold``).
Text = Annotated[str, Field(json_schema_extra={"pattern": "^[^\\x00-\\x1f\\x7f]*$"})]
Count = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Stage = Annotated[int, Field(ge=0, le=MAX_ID)]
#: A latency histogram's non-zero buckets, flat: index, count, index, count, … (the indices
#: checked below). Flat rather than pairs: half the parsing (pydantic), and no object per bucket.
SparseHistogram = Annotated[list[Count], Field(max_length=2 * LATENCY_BUCKETS)]


def _now(info: ValidationInfo) -> datetime | None:
    context = info.context
    return context.get("now") if isinstance(context, dict) else None


#: A time with its zone, within ``MAX_SKEW`` of the server's clock when it is known (checked
#: for the whole batch at once: ``Batch._rows_hold``).
Recent = AwareDatetime


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

    @model_validator(mode="after")
    def _rows_hold(self, info: ValidationInfo) -> Batch:
        """What the fields' types and bounds cannot say, checked for the whole batch at once
        (``_batch_checks.py``): the first field refused is named, as its own check would."""
        problem = first_problem(self, _now(info))
        if problem is not None:
            where, value, error = problem
            raise ValidationError.from_exception_data(
                "Batch", [InitErrorDetails(type=error, loc=where, input=value)]
            )
        return self


class Applied(BaseModel):
    applied: bool
    duplicate: bool = False
