"""Evaluation in OpenFeature's words, for every path that speaks them.

The in-process OpenFeature provider (``rollwise.sdk.openfeature``) and the server's OFREP
endpoints (``rollwise.server._ofrep``) both turn an OpenFeature evaluation context into a
rollwise ``Context`` and a ``Resolution`` into OpenFeature's reason and error code. They do it
here, once, so that a context gets the same variant, reason and error from either path.
Requirement numbers refer to the OpenFeature specification v0.8.0
(https://openfeature.dev/specification/); the reasons and error codes are its
``Resolution Reason`` and ``Error Code`` values, which OFREP carries as text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from rollwise.core._context import Context
from rollwise.core._evaluation import explain
from rollwise.core._flag import Flag
from rollwise.core._resolution import ErrorCode, Reason, Resolution

#: The context attribute values rollwise conditions and units can read.
Attribute = str | int | float | bool | tuple[str, ...]

#: Requirement 2.2.5: the semantic reason for the value served. Errors are decided apart
#: (``openfeature_error``).
OPENFEATURE_REASONS: Mapping[Reason, str] = {
    Reason.KILLED: "DISABLED",
    # The app-version gate is targeting on the ``app_version`` attribute: an old app gets the
    # safe default by design, not by accident.
    Reason.VERSION_BELOW_MINIMUM: "TARGETING_MATCH",
    # Reached only when the missing unit is not the targeting key (see openfeature_error).
    Reason.UNIT_MISSING: "DEFAULT",
    Reason.RULE_MATCH: "TARGETING_MATCH",
    Reason.PERCENT: "SPLIT",
    Reason.SPLIT: "SPLIT",
    Reason.FALLTHROUGH: "DEFAULT",
}

_ERROR_CODES: Mapping[ErrorCode, str] = {
    ErrorCode.FLAG_NOT_FOUND: "FLAG_NOT_FOUND",
    ErrorCode.INVALID_CONTEXT: "INVALID_CONTEXT",
    ErrorCode.GENERAL: "GENERAL",
}

#: The units the targeting key supplies: ``key`` always, ``user`` when no ``user`` attribute.
_KEY_UNITS = frozenset({"key", "user"})


def openfeature_context(
    targeting_key: str | None, attributes: Mapping[str, object]
) -> tuple[Context, tuple[str, ...]]:
    """The rollwise context for an OpenFeature evaluation context, and what was left out.

    The targeting key (Requirement 3.1.1) becomes the context's key, so it is also the ``user``
    unit unless a ``user`` attribute is given; an empty key is no key. Custom fields
    (Requirement 3.1.2) are kept when rollwise can read them: text, numbers, booleans and
    lists of text as they are, a datetime as ISO 8601 text (which the ``before``/``after``
    operators read, naive as UTC). Structures and lists holding anything but text are left
    out, and their names returned sorted: a condition on them sees a missing attribute.
    """
    readable: dict[str, Attribute] = {}
    ignored: list[str] = []
    for name, value in attributes.items():
        converted = _attribute(value)
        if converted is None:
            if value is not None:
                ignored.append(name)
            continue
        readable[name] = converted
    return Context(targeting_key or None, readable), tuple(sorted(ignored))


def _attribute(value: object) -> Attribute | None:
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


def openfeature_error(resolution: Resolution, flag: Flag | None, context: Context) -> str | None:
    """The OpenFeature error code of ``resolution`` (Requirement 2.2.7), or None when it is not
    an error. ``flag`` is the flag evaluated, when known: with it a missing unit is named
    exactly. A missing targeting key is an integration error OpenFeature names
    (``TARGETING_KEY_MISSING``); any other missing unit (no tenant, say) is a context the flag
    cannot bucket, which rollwise answers with the safe default and no error."""
    if resolution.reason is Reason.UNIT_MISSING:
        return "TARGETING_KEY_MISSING" if _lacks_targeting_key(flag, context) else None
    if resolution.reason is Reason.FLAG_NOT_FOUND:
        return "FLAG_NOT_FOUND"
    if resolution.reason is Reason.ERROR or resolution.error is not None:
        if resolution.error is None:
            return "GENERAL"
        return _ERROR_CODES.get(resolution.error, "GENERAL")
    return None


def _lacks_targeting_key(flag: Flag | None, context: Context) -> bool:
    """Whether the unit that was missing is the one the targeting key would have supplied."""
    if context.key is not None:
        return False  # the key was there: the missing unit is another attribute
    if flag is None:
        return True  # the unit cannot be named without the flag; the key is missing, say so
    steps = explain(flag, context).steps
    if steps and steps[-1].unit is not None and steps[-1].unit_value is None:
        return steps[-1].unit in _KEY_UNITS
    return True
