"""The HTTP service: management API, SDK API, dashboard, health, metrics, and the controller
loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from pydantic import BaseModel

from rollwise import __version__
from rollwise.control import Clock, Controller, SystemClock, Webhooks
from rollwise.core import Plan
from rollwise.server import (
    _dashboard,
    _flags_api,
    _judge_api,
    _management,
    _ofrep,
    _ofrep_state,
    _sdk_api,
    _tokens_api,
)
from rollwise.server._batch_models import MAX_BATCH_BYTES
from rollwise.server._errors import (
    MAX_MANAGEMENT_BYTES,
    BodyLimit,
    PrintableUrl,
    install_error_handlers,
)
from rollwise.server._history import DecisionHistory
from rollwise.server._openapi import document_errors
from rollwise.server._writer import BatchWriter
from rollwise.sources import Analyses, PrometheusFeed
from rollwise.store import Role, Store

logger = logging.getLogger("rollwise.server")


class VersionWatch:
    """The snapshot version, and a way for streams to wait until it changes or their next
    keep-alive is due."""

    #: Kill events kept, by version: a stream that fell further behind gets the snapshot.
    KILLS_KEPT = 64
    #: Seconds between keep-alive beats: at each, every stream writes a comment line.
    KEEPALIVE_SECONDS = 15.0

    def __init__(self, keepalive: float = KEEPALIVE_SECONDS) -> None:
        self.current = 0
        self._keepalive = keepalive
        self._changed = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Version → the ``kill`` event of a version whose only change was a kill switch
        #: flipped on this replica.
        self._kills: dict[int, bytes] = {}

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop the streams wait on (``announce`` reaches it from other threads);
        called on it, which starts the keep-alive beats."""
        self._loop = loop
        loop.call_later(self._keepalive, self._beat, loop)

    def _beat(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wake every stream for its keep-alive: one timer for them all, where a timeout per
        stream cost a timer set and cancelled at every change, in every stream (a kill
        switch is written to a thousand streams at once). The beats of a loop the watch was
        attached to before (an app started again, in tests) stop."""
        if loop is self._loop:
            self._wake()
            loop.call_later(self._keepalive, self._beat, loop)

    def announce(self, version: int, kill: tuple[str, bool] | None = None) -> None:
        """``publish`` from a request's worker thread: a change made by this replica reaches its
        streams at once, not at the next look at the store. ``kill`` (flag, killed): the
        version's only change was that kill switch, which streams that asked for it are sent
        as ``event: kill`` instead of the whole snapshot."""
        if kill is not None:
            self.remember_kills({version: kill})
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self.publish, version)

    def remember_kills(self, flips: Mapping[int, tuple[str, bool]]) -> None:
        """Keep the ``kill`` event of each version whose only change was a kill switch flip
        (version → (flag, killed)), the newest ``KILLS_KEPT``."""
        for version, (flag, killed) in flips.items():
            data = json.dumps({"version": version, "flag": flag, "killed": killed})
            self._kills[version] = f"event: kill\ndata: {data}\n\n".encode()
        for old in sorted(self._kills)[: -self.KILLS_KEPT]:
            self._kills.pop(old, None)

    def kill_events(self, last: int, current: int) -> list[bytes] | None:
        """The ``kill`` events that lead from version ``last`` to ``current``, when every version
        between was a kill switch flip (announced here, or found by the watcher); else None
        (send the snapshot)."""
        if last < 0 or current <= last or current - last > self.KILLS_KEPT:
            return None
        frames = [self._kills.get(version) for version in range(last + 1, current + 1)]
        return None if any(frame is None for frame in frames) else frames  # type: ignore[return-value]

    async def wait(self, last: int) -> None:
        """Until the version is other than ``last``, or the next keep-alive beat (then the
        version is still ``last``)."""
        if self.current == last:
            await self._changed.wait()

    def publish(self, version: int) -> None:
        """A newer version only: the watcher's look at the store may have started before a
        change this replica announced, and its older answer must not take the version back
        (streams would send the snapshot from before a kill, OFREP would evaluate it)."""
        if version > self.current:
            self.current = version
            self._wake()

    def _wake(self) -> None:
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
        # Gauges of a server with --workers: the largest over its live processes (the
        # controller's own are zero in the other processes).
        self.snapshot = Gauge(
            "rollwise_snapshot_version",
            "Snapshot version",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.tick_seconds = Gauge(
            "rollwise_controller_tick_seconds",
            "Duration of the last controller tick",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.unjudgeable = Counter(
            "rollwise_unjudgeable_rollouts",
            "Rollouts paused because their data could not be judged (the error is the reason "
            "in their decision log and audit)",
            registry=self.registry,
        )
        self.rebuilds = Counter(
            "rollwise_evidence_rebuilds",
            "Times a rollout's aggregates were read whole (controller start, a rollout it starts "
            "judging, a batch later than a folded window)",
            registry=self.registry,
        )
        self.waiting = Gauge(
            "rollwise_rollouts_waiting",
            "Running rollouts the last controller tick had not read yet, so did not judge "
            "(after a restart, a tick reads rollouts whole for about 2 s)",
            registry=self.registry,
            multiprocess_mode="livemax",
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
    ofrep_rate: float | None = _ofrep.DEFAULT_RATE,
    prometheus_url: str | None = None,
    judgements: Mapping[str, Plan] | None = None,
) -> FastAPI:
    """The rollwise server around ``store``. ``controller=False`` leaves judging to another
    replica; ``tick`` is the wall time between controller ticks; ``ofrep_rate`` the OFREP
    evaluations a second each SDK key may make (None: no limit); ``prometheus_url`` the
    Prometheus that guards with a Prometheus source read when their plan names none;
    ``judgements`` the named judgements Argo Rollouts and Flagger ask about
    (``load_judgements``)."""
    clock = clock or SystemClock()
    metrics = Metrics()
    if admin_token:
        store.ensure_token(
            admin_token, "bootstrap", Role.ADMIN, "ROLLWISE_ADMIN_TOKEN", clock.now()
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.versions.attach(asyncio.get_running_loop())
        tasks = [
            asyncio.create_task(_watch(app, watch_interval)),
            asyncio.create_task(_ofrep_state.write_exposures(app)),
        ]
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
            if feed is not None:
                feed.close()
            judge_feed.close()
            app.state.judge_pool.shutdown(wait=False, cancel_futures=True)
            await asyncio.to_thread(app.state.writer.close)

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
    # Notifications are written with each decision (the outbox) and delivered by the replica
    # that judges: a replica without the controller writes none and delivers none.
    notifier = Webhooks(store, webhooks) if webhooks and controller else None
    # Guards fed by Prometheus are read by the replica that judges, at each tick.
    feed = PrometheusFeed(store, prometheus_url) if controller else None
    app.state.controller = Controller(
        store,
        [notifier] if notifier else [],
        notifier.bodies if notifier else None,
        sources=[feed] if feed is not None else [],
    )
    # SDK batches are written by one thread, a group per transaction; on SQLite it rests
    # between transactions so that other writers (kill switches, decisions) get the lock.
    sqlite = store.engine.dialect.name == "sqlite"
    app.state.writer = BatchWriter(
        store, rest_ratio=0.5 if sqlite else 0.0, min_rest=0.1 if sqlite else 0.02
    )
    app.state.snapshot_cache = None
    app.state.snapshot_lock = threading.Lock()
    app.state.decision_history = DecisionHistory()
    app.state.ofrep = _ofrep_state.OfrepState(ofrep_rate)
    # Argo Rollouts and Flagger analyses: their own reader of Prometheus, on request threads.
    judge_feed = PrometheusFeed(store, prometheus_url)
    app.state.analyses = Analyses(judgements or {}, judge_feed)
    app.state.judge_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rollwise-judge")
    app.include_router(_flags_api.router)
    app.include_router(_management.router)
    app.include_router(_tokens_api.router)
    app.include_router(_sdk_api.router)
    app.include_router(_ofrep.router)
    app.include_router(_judge_api.router)
    app.include_router(_dashboard.router)

    install_error_handlers(app)
    app.add_middleware(
        BodyLimit,
        limits={
            "/api/v1": MAX_MANAGEMENT_BYTES,
            "/sdk/v1": MAX_BATCH_BYTES,
            "/ofrep/v1": _ofrep.MAX_OFREP_BYTES,
            "/judge/v1": _ofrep.MAX_OFREP_BYTES,
        },
    )
    app.add_middleware(PrintableUrl)
    default_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document_errors(default_openapi())
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        responses={503: {"model": NotReady, "description": "the store does not answer"}},
    )
    def readyz(request: Request) -> Response:
        """The store answers. Why it does not is logged, and told only to a known token."""
        try:
            version = store.snapshot_version()
        except Exception as exc:
            logger.error("not ready: the store does not answer: %s", exc)
            body = {"status": "unavailable"}
            if _known_token(request, store):
                body["detail"] = str(exc)
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ready", "snapshot_version": version})

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    def prometheus() -> Response:
        """Prometheus text format."""
        metrics.snapshot.set(app.state.versions.current)
        registry = metrics.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # --workers: every process's counts
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app


class NotReady(BaseModel):
    """What ``/readyz`` answers when the store does not: the reason only to a known token."""

    status: Literal["unavailable"]
    detail: str | None = None


def _known_token(request: Request, store: Store) -> bool:
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return False
    try:
        known = store.authenticate(secret.strip(), now=request.app.state.clock.now())
        return known is not None
    except Exception:
        return False


async def _watch(app: FastAPI, interval: float) -> None:
    """Follow the store's snapshot version (another replica may change it) for the streams."""
    store: Store = app.state.store
    versions: VersionWatch = app.state.versions
    while True:
        try:
            current = await asyncio.to_thread(store.snapshot_version)
            last = versions.current
            if last < current <= last + VersionWatch.KILLS_KEPT:
                # Kill switches flipped through another replica (or another worker) go out
                # to this one's streams as kill events too, not as the whole snapshot; if they
                # cannot be read, the snapshot goes out, as it would without them.
                try:
                    flips = await asyncio.to_thread(store.kill_flips, last, current)
                    versions.remember_kills(flips)
                except Exception:
                    logger.exception("cannot read the kill switch flips")
            versions.publish(current)
        except Exception:
            logger.exception("cannot read the snapshot version")
        await asyncio.sleep(interval)


async def _control(app: FastAPI, tick: timedelta) -> None:
    """The controller loop: one tick at a time, never overlapping."""
    controller: Controller = app.state.controller
    metrics: Metrics = app.state.metrics
    loop = asyncio.get_running_loop()
    failures, rebuilds = controller.judge_failures, controller.rebuilds
    while True:
        started = loop.time()
        try:
            outcomes: Any = await asyncio.to_thread(controller.tick, app.state.clock.now())
            for outcome in outcomes:
                if outcome.applied:
                    metrics.decisions.labels(outcome.decision.move.value).inc()
        except Exception:
            logger.exception("controller tick failed")
        metrics.unjudgeable.inc(controller.judge_failures - failures)
        metrics.rebuilds.inc(controller.rebuilds - rebuilds)
        metrics.waiting.set(controller.waiting)
        failures, rebuilds = controller.judge_failures, controller.rebuilds
        metrics.tick_seconds.set(loop.time() - started)
        await asyncio.sleep(max(0.0, tick.total_seconds() - (loop.time() - started)))
