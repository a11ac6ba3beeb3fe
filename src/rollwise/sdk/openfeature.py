"""The OpenFeature provider: rollwise flags behind the OpenFeature API.

Needs the OpenFeature SDK (``pip install 'rollwise[openfeature]'``)::

    from openfeature import api
    from openfeature.evaluation_context import EvaluationContext
    from rollwise import Client
    from rollwise.sdk.openfeature import RollwiseProvider

    api.set_provider_and_wait(RollwiseProvider(Client.from_file("flags.yaml")))
    client = api.get_client()
    client.get_boolean_value("new-checkout", False, EvaluationContext("u-1", {"tenant": "acme"}))

How rollwise reasons map to OpenFeature reasons and error codes, and why, is in
docs/openfeature.md. Requirement numbers refer to the OpenFeature specification v0.8.0
(https://openfeature.dev/specification/).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, TypeVar

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode as OpenFeatureErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType
from openfeature.flag_evaluation import Reason as OpenFeatureReason
from openfeature.provider import AbstractProvider, Metadata
from openfeature.track import TrackingEventDetails

from rollwise.core import Context, FlagSet, Reason, Resolution
from rollwise.core._remote import OPENFEATURE_REASONS, openfeature_context, openfeature_error

__all__ = ["Resolver", "RollwiseProvider", "to_context"]

logger = logging.getLogger("rollwise.sdk.openfeature")

T = TypeVar("T")
Structure = Sequence[FlagValueType] | Mapping[str, FlagValueType]

#: Requirement 2.2.5: the semantic reason for the value served (rollwise.core._remote).
_REASONS: Mapping[Reason, OpenFeatureReason] = {
    reason: OpenFeatureReason(name) for reason, name in OPENFEATURE_REASONS.items()
}


class Resolver(Protocol):
    """What the provider needs from a rollwise client: the offline ``Client`` and the live one.

    A client may also have ``track(event, context, happened=True)``; the provider calls it
    when present. One that exposes its ``flags`` (a ``FlagSet``) lets the provider name the
    missing unit exactly (see ``RollwiseProvider``).
    """

    def resolve(self, flag: str, context: Context, default: object = None) -> Resolution: ...


class RollwiseProvider(AbstractProvider):
    """An OpenFeature provider that evaluates flags with a rollwise client.

    Never raises into the application (Requirement 1.4.9): a result with an error code carries
    the caller's default, reason ``ERROR`` and no variant; anything else carries the variant
    rollwise served, its value and why. Every result's flag metadata holds ``rollwise.reason``
    (the rollwise reason), ``rollwise.rule`` (the index of the deciding rule, when a rule
    decided) and ``rollwise.ignored_attributes`` (context attributes rollwise cannot read).
    """

    def __init__(self, client: Resolver) -> None:
        super().__init__()
        self._client = client

    @property
    def client(self) -> Resolver:
        return self._client

    def get_metadata(self) -> Metadata:
        """Requirement 2.1.1: the provider's name."""
        return Metadata(name="rollwise")

    # Requirements 2.2.1 and 2.2.2.1: one typed resolution method per flag type.

    def resolve_boolean_details(
        self,
        flag_key: str,
        default_value: bool,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, "boolean", _as_boolean)

    def resolve_string_details(
        self,
        flag_key: str,
        default_value: str,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, "string", _as_string)

    def resolve_integer_details(
        self,
        flag_key: str,
        default_value: int,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, "integer", _as_integer)

    def resolve_float_details(
        self,
        flag_key: str,
        default_value: float,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, "float", _as_float)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Structure,
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Structure]:
        return self._resolve(flag_key, default_value, evaluation_context, "structure", _as_object)

    def track(
        self,
        tracking_event_name: str,
        evaluation_context: EvaluationContext | None = None,
        tracking_event_details: TrackingEventDetails | None = None,
    ) -> None:
        """Requirement 2.7.1 (Tracking): record that ``tracking_event_name`` happened.

        Calls the client's ``track(event, context, happened=…)``; a client without one makes
        this a no-op. ``happened`` is True unless the details carry a boolean ``happened``
        attribute (``TrackingEventDetails().add("happened", False)``: the event's chance came
        and it did not happen). The details' numeric ``value`` is not forwarded.
        """
        track: Callable[..., object] | None = getattr(self._client, "track", None)
        if not callable(track):
            return
        try:
            context, _ = to_context(evaluation_context)
            happened = True
            if tracking_event_details is not None:
                given = tracking_event_details.attributes.get("happened")
                if isinstance(given, bool):
                    happened = given
            track(tracking_event_name, context, happened=happened)
        except Exception:  # tracking must never raise into the application
            logger.warning("tracking event %s failed; dropped", tracking_event_name, exc_info=True)

    def _resolve(
        self,
        flag_key: str,
        default: T,
        evaluation_context: EvaluationContext | None,
        kind: str,
        convert: Callable[[object], T | None],
    ) -> FlagResolutionDetails[T]:
        try:
            context, ignored = to_context(evaluation_context)
            resolution = self._client.resolve(flag_key, context, default)
            metadata: dict[str, bool | int | float | str] = {
                "rollwise.reason": str(resolution.reason)
            }
            if resolution.rule is not None:
                metadata["rollwise.rule"] = resolution.rule
            if ignored:
                metadata["rollwise.ignored_attributes"] = ", ".join(ignored)
            # Requirement 2.2.7: abnormal execution is told by an error code, and then the
            # caller's default is the value (Requirement 1.4.9; the client would substitute it).
            error = self._error_code(resolution, context)
            if error is not None:
                return FlagResolutionDetails(
                    default,
                    error_code=error,
                    error_message=resolution.message or None,
                    reason=OpenFeatureReason.ERROR,
                    flag_metadata=metadata,
                )
            value = convert(resolution.value)
            if value is None:
                return FlagResolutionDetails(
                    default,
                    error_code=OpenFeatureErrorCode.TYPE_MISMATCH,
                    error_message=(
                        f"flag {flag_key!r} served variant {resolution.variant!r} with value "
                        f"{resolution.value!r}, which is not a {kind}"
                    ),
                    reason=OpenFeatureReason.ERROR,
                    flag_metadata=metadata,
                )
            # Requirements 2.2.3–2.2.6 and 2.2.9: value, variant, reason, no error code, metadata.
            return FlagResolutionDetails(
                value,
                reason=_REASONS.get(resolution.reason, OpenFeatureReason.UNKNOWN),
                variant=resolution.variant,
                flag_metadata=metadata,
            )
        except Exception as exc:  # the provider must never raise into the application
            logger.warning(
                "flag %s: evaluation failed; serving the caller's default", flag_key, exc_info=True
            )
            return FlagResolutionDetails(
                default,
                error_code=OpenFeatureErrorCode.GENERAL,
                error_message=f"{type(exc).__name__}: {exc}",
                reason=OpenFeatureReason.ERROR,
            )

    def _error_code(self, resolution: Resolution, context: Context) -> OpenFeatureErrorCode | None:
        flags = getattr(self._client, "flags", None)
        flag = flags.flags.get(resolution.flag) if isinstance(flags, FlagSet) else None
        code = openfeature_error(resolution, flag, context)
        return None if code is None else OpenFeatureErrorCode(code)


def to_context(evaluation_context: EvaluationContext | None) -> tuple[Context, tuple[str, ...]]:
    """The rollwise context for an OpenFeature evaluation context, and the names of the
    attributes rollwise cannot read (``rollwise.core._remote.openfeature_context``)."""
    if evaluation_context is None:
        return Context(), ()
    return openfeature_context(evaluation_context.targeting_key, evaluation_context.attributes)


# Type checks (the value of the variant served must be of the type asked; TYPE_MISMATCH
# otherwise). None means "not of this type": no flag serves None.


def _as_boolean(value: object) -> bool | None:
    return value if isinstance(value, bool) else None


def _as_string(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _as_integer(value: object) -> int | None:
    # bool is an int in Python, but a boolean variant is not a number.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _as_float(value: object) -> float | None:
    if isinstance(value, float):
        return value
    # An integer variant read as a float loses nothing: ``{small: 10}`` is 10.0.
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _as_object(value: object) -> Structure | None:
    # rollwise variants are scalars today; a structure from a future snapshot passes through.
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, list | tuple):
        return list(value)
    return None
