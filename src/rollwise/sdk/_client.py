"""The client the application calls: local evaluation that never raises, and, when it is
connected to a server, exposures and outcomes attributed to the rollouts running."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal, overload

from rollwise.core import (
    Context,
    ErrorCode,
    FlagSet,
    Reason,
    Resolution,
    evaluate,
    load_flags,
)
from rollwise.core._context import read_in_place
from rollwise.sdk._observation import Observation
from rollwise.sdk._snapshot import EMPTY, LiveRollout, Served, Snapshot
from rollwise.sdk._stats import ClientStats
from rollwise.sdk._telemetry import EvaluationEvents
from rollwise.sdk._throttle import Throttle, logger
from rollwise.sdk._transport import Transport

if TYPE_CHECKING:
    from rollwise.sdk._aggregation import Aggregates, Outcome
    from rollwise.sdk._live import Live

#: observe() names whose metric names are remembered (names come from code: a few dozen).
_MAX_OBSERVED_NAMES = 1024
#: What observe() returns when no rollout is live: stateless, so one serves every thread.
_UNOBSERVED: AbstractContextManager[None] = nullcontext()


class Client:
    """Evaluates flags locally: offline from a flag set, or live from a rollwise server.

    ``Client(flags)`` (or ``Client.from_file("flags.yaml")``) serves a fixed flag set.
    ``Client(url, sdk_key)`` follows the server's snapshot, feeds the exposure ledger and
    attributes the outcomes the application records (``observe``, ``record``, ``track``) to the
    rollouts whose guards name them; call ``close()`` at shutdown (or use ``with``) to send the
    last batch. Both run the same evaluation. Evaluation and recording never raise: on any
    problem they serve the safe default (or, for an unknown flag, the caller's default), log
    why and carry on. Only a constructor given the wrong arguments raises.
    """

    @overload
    def __init__(self, source: FlagSet, *, telemetry: bool = False) -> None: ...

    @overload
    def __init__(
        self,
        source: str | Sequence[str],
        sdk_key: str,
        *,
        cache_path: str | Path | None = None,
        flush_interval: float = 5.0,
        poll_interval: float = 30.0,
        max_pending_batches: int = 200,
        max_keys: int = 50_000,
        ledger_units: Literal["hashed", "plain"] = "hashed",
        clock: Callable[[], float] = time.time,
        transport: Transport | None = None,
        startup_timeout: float = 2.0,
        telemetry: bool = False,
    ) -> None: ...

    def __init__(
        self,
        source: FlagSet | str | Sequence[str],
        sdk_key: str | None = None,
        *,
        cache_path: str | Path | None = None,
        flush_interval: float = 5.0,
        poll_interval: float = 30.0,
        max_pending_batches: int = 200,
        max_keys: int = 50_000,
        ledger_units: Literal["hashed", "plain"] = "hashed",
        clock: Callable[[], float] = time.time,
        transport: Transport | None = None,
        startup_timeout: float = 2.0,
        telemetry: bool = False,
    ) -> None:
        """Offline: ``Client(flags)``. Live: ``Client(url, sdk_key, **options)``, or with a
        list of server URLs (replicas): the client fails over to the next when one does not
        answer.

        A live client serves the snapshot cached at ``cache_path`` (if any) at once, waits up to
        ``startup_timeout`` seconds for the server's, and then keeps it current in the
        background; see docs/sdk.md for the options.

        ``telemetry=True`` writes an OpenTelemetry ``feature_flag.evaluation`` event on the
        current span at every evaluation (``_telemetry.py``; needs ``opentelemetry-api``).

        Raises:
            TypeError: neither a flag set alone nor a URL and an SDK key were given.
            ValueError: an option is out of range, or telemetry is asked for without the
                OpenTelemetry API.
        """
        self._log = Throttle(logger)
        #: Called with each new snapshot's version once it is served (``on_change``).
        self._listeners: tuple[Callable[[int], None], ...] = ()
        self._events = EvaluationEvents(self._log) if telemetry else None
        self._observed_metrics: dict[str, tuple[str, str]] = {}
        self._live: Live | None = None
        self._aggregates: Aggregates | None = None
        #: Hands outcomes over to be attributed (``Deferred.put``); None offline.
        self._put: (
            Callable[[Sequence[LiveRollout], Mapping[str, object], Sequence[Outcome]], None] | None
        ) = None
        if isinstance(source, FlagSet):
            if sdk_key is not None or transport is not None or cache_path is not None:
                raise TypeError("an offline Client takes a FlagSet alone; a live one takes a URL")
            self._use(Snapshot(source.version, source))
            return
        urls: object = [source] if isinstance(source, str) else source
        if (
            not isinstance(urls, list | tuple)
            or not urls
            or not all(isinstance(url, str) and url for url in urls)
            or not isinstance(sdk_key, str)
            or not sdk_key
        ):
            raise TypeError("Client(flags) or Client(url, sdk_key, ...) or Client([urls], ...)")
        if ledger_units not in ("hashed", "plain"):
            raise ValueError(f"ledger_units must be 'hashed' or 'plain', not {ledger_units!r}")
        if min(flush_interval, poll_interval) <= 0 or min(max_pending_batches, max_keys) < 1:
            raise ValueError("intervals must be positive and bounds at least 1")
        # The live machinery (httpx, histogram edges) loads only for a live client.
        from rollwise.sdk._live import Live

        self._use(EMPTY)
        self._live = Live(
            source if isinstance(source, str) else [str(url) for url in urls],
            sdk_key,
            on_snapshot=self._use,
            log=self._log,
            transport=transport,
            cache_path=Path(cache_path) if cache_path is not None else None,
            flush_interval=flush_interval,
            poll_interval=poll_interval,
            max_pending_batches=max_pending_batches,
            max_keys=max_keys,
            hashed=ledger_units == "hashed",
            clock=clock,
        )
        self._aggregates = self._live.aggregates
        self._put = self._live.deferred.put
        self._live.start(startup_timeout)

    @classmethod
    def from_file(cls, path: str | Path, *, telemetry: bool = False) -> Client:
        """A client serving the flags of a YAML flags file (``telemetry``: as ``Client``).

        Raises:
            InputError: the file is invalid (file, line and field path in the message).
            OSError: the file cannot be read.
        """
        file = Path(path)
        return cls(load_flags(file.read_text(encoding="utf-8"), str(file)), telemetry=telemetry)

    def _use(self, snapshot: Snapshot) -> None:
        """Serve ``snapshot`` from now on (one assignment: see ``Served``); tell listeners."""
        self._served = Served(snapshot)
        for listener in self._listeners:
            try:
                listener(snapshot.version)
            except Exception:
                self._log.warning("on_change", "rollwise: a change listener failed", exc_info=True)

    def on_change(self, listener: Callable[[int], None]) -> None:
        """Call ``listener(version)`` whenever a new snapshot starts being served (a flag
        edited, a kill switch flipped, a rollout moved), on the SDK's thread right after the
        swap: evaluations inside it see the new version. Keep it short; what it raises is
        logged (throttled). An offline client's flags never change: it is never called."""
        self._listeners = (*self._listeners, listener)

    @property
    def flags(self) -> FlagSet:
        """The flag set being served (the latest snapshot's, for a live client)."""
        return self._served.snapshot.flags

    # --- evaluation --------------------------------------------------------------------------

    def resolve(
        self, flag: str, context: Context | Mapping[str, object], default: object = None
    ) -> Resolution:
        """The variant ``context`` gets for ``flag``, with the reason."""
        served = self._served
        found = (served.switched.get(flag) if served.switched else None) or served.by_key.get(flag)
        if found is None:
            missing = Resolution.not_found(flag, default)
            if self._events is not None:
                self._events.emit(missing, context, served.version)
            return missing
        resolution = evaluate(found, context)
        if self._events is not None:
            self._events.emit(resolution, context, served.version)
        if resolution.error is ErrorCode.GENERAL or resolution.error is ErrorCode.INVALID_CONTEXT:
            self._log.warning(
                f"evaluate:{flag}",
                "flag %s: %s; serving the safe default",
                flag,
                resolution.message,
            )
        elif flag in served.exposing:
            try:  # evaluate() read the context, so this cannot fail; but never raise
                values = read_in_place(context)
            except Exception:
                return resolution
            self._expose(flag, served.exposing[flag], values, resolution)
        return resolution

    def variant(self, flag: str, context: Context | Mapping[str, object], default: str) -> str:
        """The name of the variant served; ``default`` for an unknown flag."""
        resolution = self.resolve(flag, context)
        return default if resolution.reason is Reason.FLAG_NOT_FOUND else resolution.variant

    def value(self, flag: str, context: Context | Mapping[str, object], default: object) -> object:
        """The value of the variant served; ``default`` for an unknown flag."""
        return self.resolve(flag, context, default).value

    def enabled(
        self, flag: str, context: Context | Mapping[str, object], default: bool = False
    ) -> bool:
        """Whether ``context`` gets a variant other than the flag's safe default."""
        # The same evaluation as resolve(), without its wrapping: this is the most called method.
        served = self._served
        found = (served.switched.get(flag) if served.switched else None) or served.by_key.get(flag)
        if found is None:
            if self._events is not None:
                self._events.emit(Resolution.not_found(flag, default), context, served.version)
            return default
        try:
            resolution = found.program.run(context)
        except Exception:  # never raise into the application: the safe default is not enabled
            self._log.warning(
                f"evaluate:{flag}",
                "flag %s: evaluation failed; serving the safe default",
                flag,
                exc_info=True,
            )
            return False
        rollouts = served.exposing.get(flag)
        if rollouts is not None:
            self._expose(flag, rollouts, read_in_place(context), resolution)
        if self._events is not None:
            self._events.emit(resolution, context, served.version)
        return resolution.enabled

    def _expose(
        self,
        flag: str,
        rollouts: tuple[LiveRollout, ...],
        values: Mapping[str, object],
        resolution: Resolution,
    ) -> None:
        """Feed the ledger: the unit was served ``resolution`` under each of ``rollouts`` (the
        rollouts on ``flag`` in the snapshot ``resolution`` was evaluated from)."""
        aggregates = self._aggregates
        if aggregates is None:
            return
        try:
            for rollout in rollouts:
                aggregates.expose(rollout, resolution, values)
        except Exception:
            self._log.warning(
                f"expose:{flag}", "flag %s: exposure not recorded", flag, exc_info=True
            )

    # --- outcomes ----------------------------------------------------------------------------

    def observe(
        self, name: str, context: Context | Mapping[str, object]
    ) -> AbstractContextManager[None]:
        """Time a block of work: ``with client.observe("checkout", ctx): ...`` records its
        duration as ``<name>.latency`` and whether it raised as ``<name>.error``. An exception
        is re-raised untouched; a cancellation (not an ``Exception``) records nothing."""
        if not self._served.guarding:  # no live rollout guards anything: nothing to time
            return _UNOBSERVED
        return Observation(self, name, context)

    def record(
        self,
        metric: str,
        context: Context | Mapping[str, object],
        value: float | None = None,
        failed: bool | None = None,
    ) -> None:
        """Record one outcome of ``metric``: ``value`` is a duration in milliseconds (a latency
        histogram), ``failed`` whether the request failed (a rate). Never raises."""
        if value is None and failed is None:
            return
        rollouts = self._served.guarding.get(metric)
        if rollouts is not None:
            self._attribute(rollouts, context, ((metric, value, failed),))

    def gauge(self, metric: str, value: float) -> None:
        """Report a system-wide value that is not split by variant (queue depth, consumer
        lag), for gauge guards. Sent with the next batch; a no-op offline. Never raises."""
        aggregates = self._aggregates
        if aggregates is None:
            return
        try:
            aggregates.gauge(metric, float(value))
        except Exception:  # never raise into the application; said once a minute at most
            self._log.warning("gauge", "rollwise: gauge %s: could not record %r", metric, value)

    def track(
        self, event: str, context: Context | Mapping[str, object], happened: bool = True
    ) -> None:
        """Record whether a conversion-like ``event`` happened for this context (a rate of
        ``event``: one request, one event if it happened). Never raises."""
        rollouts = self._served.guarding.get(event)
        if rollouts is not None:
            self._attribute(rollouts, context, ((event, None, happened),))

    def _observed(
        self,
        name: str,
        context: Context | Mapping[str, object],
        milliseconds: float,
        failed: bool,
    ) -> None:
        names = self._observed_metrics.get(name)
        if names is None:
            names = (f"{name}.latency", f"{name}.error")
            if len(self._observed_metrics) < _MAX_OBSERVED_NAMES:
                self._observed_metrics[name] = names
        latency, error = names
        guarding = self._served.guarding
        first, second = guarding.get(latency), guarding.get(error)
        if first is None or first is second:
            rollouts = second
        elif second is None:
            rollouts = first
        else:
            rollouts = tuple(dict.fromkeys(first + second))
        if rollouts is not None:
            self._attribute(
                rollouts, context, ((latency, milliseconds, None), (error, None, failed))
            )

    def _attribute(
        self,
        rollouts: tuple[LiveRollout, ...],
        context: Context | Mapping[str, object],
        outcomes: tuple[Outcome, ...],
    ) -> None:
        put = self._put
        if put is None:
            return
        try:
            # Attributed by the SDK's thread (``_deferred.py``): a plain dict as it is now.
            values = read_in_place(context)
            put(rollouts, values.copy() if values.__class__ is dict else values, outcomes)
        except Exception:
            self._log.warning(
                f"record:{outcomes[0][0]}",
                "metric %s: outcome not recorded",
                outcomes[0][0],
                exc_info=True,
            )

    # --- lifecycle ---------------------------------------------------------------------------

    def flush(self) -> bool:
        """Send what was recorded so far, now, in the calling thread. Returns whether nothing is
        left waiting (False: the server is unreachable; the batches are kept for a retry)."""
        return self._live.outbox.ship(everything=True) if self._live is not None else True

    def close(self, timeout: float = 5.0) -> None:
        """Send the last batch and stop the background threads, waiting at most ``timeout``
        seconds. Idempotent; a no-op for an offline client."""
        if self._live is not None:
            self._live.close(timeout)

    def stats(self) -> ClientStats:
        """The client's counters: snapshot version, batches sent and waiting, what was dropped."""
        if self._live is None:
            return ClientStats(snapshot_version=self._served.version)
        return self._live.stats()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
