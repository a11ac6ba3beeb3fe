"""The SDK API: the snapshot (versioned, ETag), a stream of new versions, event batches."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import (
    ValidationError,
)

from rollwise.control import snapshot_document
from rollwise.server._auth import requires
from rollwise.server._batch_models import MAX_BATCH_BYTES, Applied, Batch
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
    flipped (through this replica, or through another, seen at this one's next look at the
    store) comes as ``event: kill`` with ``{"version", "flag", "killed"}`` instead (the stream
    had the version before it): an SDK sets the switch on the snapshot it holds, and a
    thousand-flag snapshot is not read for one switch."""
    versions = request.app.state.versions

    async def events() -> AsyncIterator[bytes]:
        # A change wakes every stream at once: what each does then is kept small (no task or
        # timer per wait, no look at the connection; a gone client is noticed at the next
        # keep-alive beat, when writing to it fails or it reads as disconnected).
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
            await versions.wait(last)
            if versions.current == last:  # the keep-alive beat
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
                tuple(a.buckets) if a.buckets is not None else None,
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
