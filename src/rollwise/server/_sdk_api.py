"""The SDK API: the snapshot (versioned, ETag), a stream of new versions, event batches."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
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

from rollwise.control import snapshot_document
from rollwise.core.judgement import (
    LATENCY_BUCKETS,
    REPLICATE_WINDOW,
    REPLICATES,
    parse_replicate,
    replicate_segment,
)
from rollwise.server._auth import requires
from rollwise.server._errors import BodyTooLarge
from rollwise.server._writer import Admitted
from rollwise.store import (
    AggregateRow,
    EventBatch,
    ExposureRow,
    GaugeRow,
    Role,
    TokenRecord,
)

router = APIRouter(prefix="/sdk/v1", tags=["sdk"])
SdkKey = Annotated[TokenRecord, Depends(requires(Role.SDK))]

#: A batch larger than this is refused whole (413), before anything is applied.
MAX_BATCH_BYTES = 8 * 1024 * 1024
MAX_ROWS = 50_000
KEEPALIVE_SECONDS = 15.0
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


def _replicate_in(segment: str) -> int | None:
    """The replicate a segment names in its one spelling (``~replicate=7``: ASCII digits, no
    leading zero), so that each replicate is one row of the store; None otherwise."""
    replicate = parse_replicate(segment) if segment.isascii() else None
    if replicate is None or segment != replicate_segment(replicate):
        return None
    return replicate


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
    ) = None

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

    @model_validator(mode="after")
    def _replicate_fits(self, info: ValidationInfo) -> Aggregate:
        """A replicate aggregate has window 0 and no histogram; window 0 is a replicate's
        only; "~" starts no segment but a replicate's."""
        segment = self.segment
        replicate = _replicate_in(segment) if segment.startswith("~") else None
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
            error = _window_error(self.window, now) if now is not None else None
            if self.window == REPLICATE_WINDOW and error is not None:
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
        if self.histogram is not None:
            raise _refused(
                "histogram",
                self.histogram,
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


def snapshot_bytes(app: Any, version: int) -> tuple[int, bytes]:
    """The snapshot as JSON, built once per version and shared by every request and stream:
    after a kill every SDK needs it at once."""
    return _cached_snapshot(app, version)[:2]


def snapshot_frame(app: Any, version: int) -> bytes:
    """The snapshot as one server-sent event, encoded once per version for every stream."""
    return _cached_snapshot(app, version)[2]


def _cached_snapshot(app: Any, version: int) -> tuple[int, bytes, bytes]:
    with app.state.snapshot_lock:
        cached = app.state.snapshot_cache
        if cached is None or cached[0] != version:
            document = snapshot_document(app.state.store)
            body = json.dumps(document, separators=(",", ":")).encode()
            frame = b"event: snapshot\ndata: " + body + b"\n\n"
            cached = app.state.snapshot_cache = (document["version"], body, frame)
        return cached  # type: ignore[no-any-return]


@router.get(
    "/snapshot",
    responses={304: {"description": "not changed since the version in If-None-Match"}},
)
def snapshot(request: Request, key: SdkKey) -> Response:
    """The flags SDKs evaluate, with the live rollouts they attribute outcomes to."""
    version = request.app.state.store.snapshot_version()
    etag = f'"{version}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    served_version, body = snapshot_bytes(request.app, version)
    return Response(body, media_type="application/json", headers={"ETag": f'"{served_version}"'})


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "server-sent events: `event: snapshot` with the snapshot as `data`",
            "content": {
                "text/event-stream": {
                    "schema": {
                        "type": "object",
                        "properties": {"event": {"type": "string"}, "data": {"type": "string"}},
                    }
                }
            },
        }
    },
)
async def stream(request: Request, key: SdkKey, kills: bool = False) -> StreamingResponse:
    """Server-sent events: ``event: snapshot`` whenever the snapshot changes, carrying the whole
    snapshot (``version``, ``flags``, ``rollouts``), so that a kill reaches every SDK without a
    second round trip. With ``kills=true``, a version whose only change was a kill switch
    flipped through this replica comes as ``event: kill`` with ``{"version", "flag",
    "killed"}`` instead (the stream had the version before it): an SDK sets the switch on the
    snapshot it holds, and a thousand-flag snapshot is not read for one switch."""
    versions = request.app.state.versions

    async def events() -> AsyncIterator[bytes]:
        # A change wakes every stream at once: what each does then is kept small (no task per
        # wait, no look at the connection; a gone client is noticed at the next keep-alive,
        # when writing to it fails or it reads as disconnected).
        last = -1
        while True:
            current = versions.current
            if current != last:
                frames = versions.kill_events(last, current) if kills else None
                last = current
                if frames is not None:
                    for frame in frames:
                        yield frame
                else:
                    yield await asyncio.to_thread(snapshot_frame, request.app, current)
            try:
                async with asyncio.timeout(KEEPALIVE_SECONDS):
                    await versions.changed(last)
            except TimeoutError:
                if await request.is_disconnected():
                    return
                yield b": ping\n\n"

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


@router.post(
    "/events",
    status_code=202,
    response_model=None,
    responses={
        200: {"model": Applied, "description": "a batch id seen before: nothing counted again"},
        202: {"model": Applied, "description": "applied"},
        404: {"description": "the batch names an unknown rollout"},
        409: {
            "description": "the batch names a rollout that ended over 5 minutes ago, or a stage "
            "it is not exposing"
        },
        503: {"description": "too many batches are waiting to be written: send it again later"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": Batch.model_json_schema(ref_template="#/components/schemas/{model}")
                }
            },
        }
    },
)
async def events(request: Request, _place: Admitted, key: SdkKey) -> JSONResponse:
    """Apply a batch of aggregates and exposures, once: a retried batch id is not counted
    again. A malformed or oversized batch is refused whole, naming its first bad field. A full
    server answers 503 before anything else, the key included: a refusal costs next to
    nothing, and the SDK sends the batch again with its key."""
    body = await request.body()
    if len(body) > MAX_BATCH_BYTES:
        raise BodyTooLarge(MAX_BATCH_BYTES)
    now = request.app.state.clock.now()
    try:
        batch = Batch.model_validate_json(body, context={"now": now})
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors(include_url=False)]
        ) from None
    received = EventBatch(
        batch.batch,
        f"sdk:{key.name}",
        now,
        tuple(
            AggregateRow(
                a.rollout,
                a.stage,
                a.window,
                a.exposed,
                a.segment,
                a.metric,
                a.requests,
                a.events,
                tuple(a.histogram) if a.histogram is not None else None,
            )
            for a in batch.aggregates
        ),
        tuple(
            ExposureRow(e.rollout, e.unit, e.stage, e.exposed, e.at.astimezone(UTC))
            for e in batch.exposures
        ),
        tuple(GaugeRow(g.metric, g.value, g.at.astimezone(UTC)) for g in batch.gauges),
    )
    # Checked against the store before it is queued: a bad batch is refused whole, naming its
    # first bad row, and never shares a transaction with good ones.
    store = request.app.state.store
    await asyncio.to_thread(
        store.check_batch, received.aggregates, received.exposures, received.gauges, now
    )
    # Answered once its transaction committed (server/_writer.py).
    applied = await request.app.state.writer.write(received)
    request.app.state.metrics.batches.labels("applied" if applied else "duplicate").inc()
    payload: dict[str, Any] = {"applied": applied}
    if not applied:
        payload["duplicate"] = True
    return JSONResponse(payload, status_code=202 if applied else 200)
