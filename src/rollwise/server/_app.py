"""The HTTP service: management API, SDK API, dashboard, health, metrics, and the controller
loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from rollwise import __version__
from rollwise.control import Clock, Controller, SystemClock, Webhooks
from rollwise.core import InputError
from rollwise.server import _dashboard, _management, _sdk_api
from rollwise.server._history import DecisionHistory
from rollwise.store import ConflictError, NotFoundError, Role, Store

logger = logging.getLogger("rollwise.server")


class VersionWatch:
    """The snapshot version, and a way for streams to wait until it changes."""

    def __init__(self) -> None:
        self.current = 0
        self._changed = asyncio.Event()

    async def changed(self, last: int) -> None:
        while self.current == last:
            await self._changed.wait()

    def publish(self, version: int) -> None:
        if version != self.current:
            self.current = version
            event, self._changed = self._changed, asyncio.Event()
            event.set()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.batches = Counter(
            "rollwise_event_batches", "SDK event batches", ["result"], registry=self.registry
        )
        self.decisions = Counter(
            "rollwise_decisions",
            "Decisions applied by the controller",
            ["move"],
            registry=self.registry,
        )
        self.snapshot = Gauge(
            "rollwise_snapshot_version", "Snapshot version", registry=self.registry
        )
        self.tick_seconds = Gauge(
            "rollwise_controller_tick_seconds",
            "Duration of the last controller tick",
            registry=self.registry,
        )


def create_app(
    store: Store,
    clock: Clock | None = None,
    *,
    controller: bool = True,
    tick: timedelta = timedelta(seconds=1),
    watch_interval: float = 0.05,
    admin_token: str | None = None,
    webhooks: list[str] | None = None,
) -> FastAPI:
    """The rollwise server around ``store``. ``controller=False`` leaves judging to another
    replica; ``tick`` is the wall time between controller ticks."""
    clock = clock or SystemClock()
    metrics = Metrics()
    if admin_token:
        store.ensure_token(
            admin_token, "bootstrap", Role.ADMIN, "ROLLWISE_ADMIN_TOKEN", clock.now()
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks = [asyncio.create_task(_watch(app, watch_interval))]
        if controller:
            tasks.append(asyncio.create_task(_control(app, tick)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if notifier is not None:
                await asyncio.to_thread(notifier.close)

    app = FastAPI(
        title="rollwise",
        version=__version__,
        description="Gradual rollouts with control: management API and SDK API.",
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.clock = clock
    app.state.metrics = metrics
    app.state.versions = VersionWatch()
    app.state.versions.current = store.snapshot_version()
    notifier = Webhooks(webhooks) if webhooks else None
    app.state.controller = Controller(store, [notifier] if notifier else [])
    app.state.snapshot_cache = None
    app.state.snapshot_lock = threading.Lock()
    app.state.decision_history = DecisionHistory()
    app.include_router(_management.router)
    app.include_router(_sdk_api.router)
    app.include_router(_dashboard.router)

    @app.exception_handler(InputError)
    async def invalid(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse(
            {
                "detail": {
                    "message": exc.message,
                    "path": exc.path,
                    "line": exc.line,
                    "error": str(exc),
                }
            },
            status_code=422,
        )

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(ConflictError)
    async def conflict(request: Request, exc: ConflictError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"])
    def readyz() -> Response:
        """The store answers."""
        try:
            version = store.snapshot_version()
        except Exception as exc:
            return JSONResponse({"status": "unavailable", "detail": str(exc)}, status_code=503)
        return JSONResponse({"status": "ready", "snapshot_version": version})

    @app.get("/metrics", tags=["health"])
    def prometheus() -> Response:
        """Prometheus text format."""
        metrics.snapshot.set(app.state.versions.current)
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def _watch(app: FastAPI, interval: float) -> None:
    """Follow the store's snapshot version (another replica may change it) for the streams."""
    store: Store = app.state.store
    while True:
        try:
            app.state.versions.publish(await asyncio.to_thread(store.snapshot_version))
        except Exception:
            logger.exception("cannot read the snapshot version")
        await asyncio.sleep(interval)


async def _control(app: FastAPI, tick: timedelta) -> None:
    """The controller loop: one tick at a time, never overlapping."""
    controller: Controller = app.state.controller
    metrics: Metrics = app.state.metrics
    loop = asyncio.get_running_loop()
    while True:
        started = loop.time()
        try:
            outcomes: Any = await asyncio.to_thread(controller.tick, app.state.clock.now())
            for outcome in outcomes:
                if outcome.applied:
                    metrics.decisions.labels(outcome.decision.move.value).inc()
        except Exception:
            logger.exception("controller tick failed")
        metrics.tick_seconds.set(loop.time() - started)
        await asyncio.sleep(max(0.0, tick.total_seconds() - (loop.time() - started)))
