"""The SDK API: the snapshot (versioned, ETag), a stream of new versions, event batches."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field, ValidationError

from rollwise.control import snapshot_document
from rollwise.server._auth import requires
from rollwise.store import AggregateRow, ExposureRow, GaugeRow, Role, TokenRecord

router = APIRouter(prefix="/sdk/v1", tags=["sdk"])
SdkKey = Annotated[TokenRecord, Depends(requires(Role.SDK))]

#: A batch larger than this is refused whole (413), before anything is applied.
MAX_BATCH_BYTES = 8 * 1024 * 1024
MAX_ROWS = 50_000
KEEPALIVE_SECONDS = 15.0


class Aggregate(BaseModel):
    rollout: int = Field(ge=1)
    stage: int = Field(ge=0)
    window: int = Field(ge=0, description="start of the window, minutes since the epoch")
    exposed: bool
    segment: str = Field(default="", max_length=300)
    metric: str = Field(min_length=1, max_length=200)
    requests: int = Field(ge=0)
    events: int = Field(default=0, ge=0)
    histogram: list[Annotated[int, Field(ge=0)]] | None = None


class ExposureIn(BaseModel):
    rollout: int = Field(ge=1)
    unit: str = Field(min_length=1, max_length=64)
    stage: int = Field(ge=0)
    exposed: bool
    at: datetime


class GaugeIn(BaseModel):
    metric: str = Field(min_length=1, max_length=200)
    value: float
    at: datetime


class Batch(BaseModel):
    batch: str = Field(min_length=8, max_length=100)
    sdk: str = Field(default="", max_length=200)
    aggregates: list[Aggregate] = Field(default_factory=list, max_length=MAX_ROWS)
    exposures: list[ExposureIn] = Field(default_factory=list, max_length=MAX_ROWS)
    gauges: list[GaugeIn] = Field(default_factory=list, max_length=MAX_ROWS)


def snapshot_bytes(app: Any, version: int) -> tuple[int, bytes]:
    """The snapshot as JSON, built once per version and shared by every request and stream:
    after a kill every SDK needs it at once."""
    with app.state.snapshot_lock:
        cached = app.state.snapshot_cache
        if cached is None or cached[0] != version:
            document = snapshot_document(app.state.store)
            body = json.dumps(document, separators=(",", ":")).encode()
            cached = app.state.snapshot_cache = (document["version"], body)
        return cached  # type: ignore[no-any-return]


@router.get("/snapshot")
def snapshot(request: Request, key: SdkKey) -> Response:
    """The flags SDKs evaluate, with the live rollouts they attribute outcomes to."""
    version = request.app.state.store.snapshot_version()
    etag = f'"{version}"'
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers={"ETag": etag})
    served_version, body = snapshot_bytes(request.app, version)
    return Response(body, media_type="application/json", headers={"ETag": f'"{served_version}"'})


@router.get("/stream")
async def stream(request: Request, key: SdkKey) -> StreamingResponse:
    """Server-sent events: ``event: snapshot`` whenever the snapshot changes, carrying the whole
    snapshot (``version``, ``flags``, ``rollouts``), so that a kill reaches every SDK without a
    second round trip."""
    versions = request.app.state.versions

    async def events() -> AsyncIterator[str]:
        last = -1
        while not await request.is_disconnected():
            current = versions.current
            if current != last:
                last = current
                _, body = await asyncio.to_thread(snapshot_bytes, request.app, current)
                yield f"event: snapshot\ndata: {body.decode()}\n\n"
            try:
                await asyncio.wait_for(versions.changed(last), timeout=KEEPALIVE_SECONDS)
            except TimeoutError:
                yield ": ping\n\n"

    return StreamingResponse(
        events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
    )


@router.post("/events", status_code=202)
async def events(request: Request, key: SdkKey) -> JSONResponse:
    """Apply a batch of aggregates and exposures, once: a retried batch id is not counted
    again. A malformed or oversized batch is refused whole."""
    body = await request.body()
    if len(body) > MAX_BATCH_BYTES:
        return JSONResponse({"detail": f"the batch is larger than {MAX_BATCH_BYTES} bytes"}, 413)
    try:
        batch = Batch.model_validate_json(body)
    except ValidationError as exc:
        problems = [
            {"path": ".".join(str(part) for part in error["loc"]), "message": error["msg"]}
            for error in exc.errors()[:20]
        ]
        return JSONResponse({"detail": problems}, status_code=422)
    store = request.app.state.store
    now = request.app.state.clock.now()
    applied = await asyncio.to_thread(
        store.ingest,
        batch.batch,
        f"sdk:{key.name}",
        [
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
        ],
        [
            ExposureRow(e.rollout, e.unit, e.stage, e.exposed, e.at.astimezone(UTC))
            for e in batch.exposures
        ],
        now,
        [GaugeRow(g.metric, g.value, g.at.astimezone(UTC)) for g in batch.gauges],
    )
    request.app.state.metrics.batches.labels("applied" if applied else "duplicate").inc()
    payload: dict[str, Any] = {"applied": applied}
    if not applied:
        payload["duplicate"] = True
    return JSONResponse(payload, status_code=202 if applied else 200)
