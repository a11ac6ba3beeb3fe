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
from datetime import datetime
from typing import Protocol, TypeVar

from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode as OpenFeatureErrorCode
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType
from openfeature.flag_evaluation import Reason as OpenFeatureReason
from openfeature.provider import AbstractProvider, Metadata
from openfeature.track import TrackingEventDetails

from rollwise.core import Context, ErrorCode, FlagSet, Reason, Resolution, explain

__all__ = ["Resolver", "RollwiseProvider", "to_context"]

logger = logging.getLogger("rollwise.sdk.openfeature")

T = TypeVar("T")
Structure = Sequence[FlagValueType] | Mapping[str, FlagValueType]

#: The context attribute values rollwise conditions and units can read.
_Attribute = str | int | float | bool | tuple[str, ...]

#: Requirement 2.2.5: the semantic reason for the value served. Errors are decided apart.
_REASONS: Mapping[Reason, OpenFeatureReason] = {
    Reason.KILLED: OpenFeatureReason.DISABLED,
    # The app-version gate is targeting on the ``app_version`` attribute: an old app gets the
    # safe default by design, not by accident.
    Reason.VERSION_BELOW_MINIMUM: OpenFeatureReason.TARGETING_MATCH,
    # Reached only when the missing unit is not the targeting key (see _error_code).
    Reason.UNIT_MISSING: OpenFeatureReason.DEFAULT,
    Reason.RULE_MATCH: OpenFeatureReason.TARGETING_MATCH,
    Reason.PERCENT: OpenFeatureReason.SPLIT,
    Reason.SPLIT: OpenFeatureReason.SPLIT,
    Reason.FALLTHROUGH: OpenFeatureReason.DEFAULT,
}

_ERROR_CODES: Mapping[ErrorCode, OpenFeatureErrorCode] = {
    ErrorCode.FLAG_NOT_FOUND: OpenFeatureErrorCode.FLAG_NOT_FOUND,
    ErrorCode.INVALID_CONTEXT: OpenFeatureErrorCode.INVALID_CONTEXT,
    ErrorCode.GENERAL: OpenFeatureErrorCode.GENERAL,
}

#: The units the targeting key supplies: ``key`` always, ``user`` when no ``user`` attribute.
_KEY_UNITS = frozenset({"key", "user"})


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
        if resolution.reason is Reason.UNIT_MISSING:
            # A missing targeting key is an integration error OpenFeature names; any other
            # missing unit (no tenant, say) is a context the flag cannot bucket, which rollwise
            # answers with the safe default and no error.
            if self._lacks_targeting_key(resolution.flag, context):
                return OpenFeatureErrorCode.TARGETING_KEY_MISSING
            return None
        if resolution.reason is Reason.FLAG_NOT_FOUND:
            return OpenFeatureErrorCode.FLAG_NOT_FOUND
        if resolution.reason is Reason.ERROR or resolution.error is not None:
            if resolution.error is None:
                return OpenFeatureErrorCode.GENERAL
            return _ERROR_CODES.get(resolution.error, OpenFeatureErrorCode.GENERAL)
        return None

    def _lacks_targeting_key(self, flag: str, context: Context) -> bool:
        """Whether the unit that was missing is the one the targeting key would have supplied."""
        if context.key is not None:
            return False  # the key was there: the missing unit is another attribute
        unit = self._missing_unit(flag, context)
        # Without the flag's definition the unit cannot be named; the key is missing, say so.
        return unit is None or unit in _KEY_UNITS

    def _missing_unit(self, flag: str, context: Context) -> str | None:
        flags = getattr(self._client, "flags", None)
        found = flags.flags.get(flag) if isinstance(flags, FlagSet) else None
        if found is None:
            return None
        steps = explain(found, context).steps
        if steps and steps[-1].unit is not None and steps[-1].unit_value is None:
            return steps[-1].unit
        return None


def to_context(evaluation_context: EvaluationContext | None) -> tuple[Context, tuple[str, ...]]:
    """The rollwise context for an OpenFeature evaluation context, and what was left out.

    The targeting key (Requirement 3.1.1) becomes the context's key, so it is also the ``user``
    unit unless a ``user`` attribute is given; an empty key is no key. Custom fields
    (Requirement 3.1.2) are kept when rollwise can read them: text, numbers, booleans and
    lists of text as they are, a datetime as ISO 8601 text (which the ``before``/``after``
    operators read, naive as UTC). Structures and lists holding anything but text are left
    out, and their names returned sorted: a condition on them sees a missing attribute.
    """
    if evaluation_context is None:
        return Context(), ()
    attributes: dict[str, _Attribute] = {}
    ignored: list[str] = []
    for name, value in evaluation_context.attributes.items():
        readable = _attribute(value)
        if readable is None:
            if value is not None:
                ignored.append(name)
            continue
        attributes[name] = readable
    return Context(evaluation_context.targeting_key or None, attributes), tuple(sorted(ignored))


def _attribute(value: object) -> _Attribute | None:
    if isinstance(value, str | int | float):  # bool is an int
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    if (
        isinstance(value, Sequence)
        and not isinstance(value, bytes)
        and all(isinstance(item, str) for item in value)
    ):
        return tuple(value)
    return None


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
