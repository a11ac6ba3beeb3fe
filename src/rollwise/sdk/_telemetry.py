"""OpenTelemetry: one ``feature_flag.evaluation`` event per evaluation, on the current span.

Off unless the application asks (``Client(..., telemetry=True)``), and only where the
OpenTelemetry API is installed: rollwise does not depend on it. The event and its attributes
follow OpenTelemetry's semantic conventions for feature flags
(https://opentelemetry.io/docs/specs/semconv/feature-flags/feature-flags-events/), as the
OpenFeature community's ``openfeature-hooks-opentelemetry`` writes them: a span event named
``feature_flag.evaluation`` on the span current when the flag is evaluated, so it shows in the
trace of the request that asked. Nothing is recorded when no span is recording.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from rollwise.core import Context, Reason, Resolution, context_values
from rollwise.core._remote import OPENFEATURE_REASONS
from rollwise.sdk._throttle import Throttle

EVENT = "feature_flag.evaluation"
PROVIDER = "rollwise"
#: Resolutions that are errors for OpenTelemetry (``error.type``); rollwise served the safe
#: default (or, for an unknown flag, the caller's).
_ERRORS = {Reason.FLAG_NOT_FOUND: "flag_not_found", Reason.ERROR: "general"}


class EvaluationEvents:
    """Writes the ``feature_flag.evaluation`` events of one client."""

    def __init__(self, log: Throttle) -> None:
        """
        Raises:
            ValueError: the OpenTelemetry API is not installed.
        """
        try:
            from opentelemetry import trace
        except ImportError:
            raise ValueError(
                "telemetry=True needs the OpenTelemetry API: pip install opentelemetry-api"
            ) from None
        self._current_span: Callable[[], Any] = trace.get_current_span
        self._log = log

    def emit(
        self, resolution: Resolution, context: Context | Mapping[str, object], version: int
    ) -> None:
        """The event for ``resolution`` of ``context`` (its ``key`` is the evaluation context's
        id), from snapshot ``version``. Never raises into the application."""
        try:
            self._emit(resolution, context, version)
        except Exception:
            self._log.warning(
                "telemetry", "flag %s: telemetry event not written", resolution.flag, exc_info=True
            )

    def _emit(
        self, resolution: Resolution, context: Context | Mapping[str, object], version: int
    ) -> None:
        span = self._current_span()
        if not span.is_recording():
            return
        attributes: dict[str, str] = {
            "feature_flag.key": resolution.flag,
            "feature_flag.provider.name": PROVIDER,
            "feature_flag.version": str(version),
        }
        error = _ERRORS.get(resolution.reason)
        if error is not None:
            attributes["feature_flag.result.reason"] = "error"
            code = resolution.error.value if resolution.error is not None else error
            attributes["error.type"] = code
            if resolution.message:
                attributes["error.message"] = resolution.message
        else:
            reason = OPENFEATURE_REASONS.get(resolution.reason, "UNKNOWN")
            attributes["feature_flag.result.reason"] = reason.lower()
            attributes["feature_flag.result.variant"] = resolution.variant
        try:
            values = context.values if isinstance(context, Context) else context_values(context)
        except Exception:  # a context rollwise cannot read has no id to give
            values = {}
        key = values.get("key")
        if isinstance(key, str):
            attributes["feature_flag.context.id"] = key
        span.add_event(EVENT, attributes)
