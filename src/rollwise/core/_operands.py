"""The operators of attribute conditions, and the test of one attribute value against an
operand (all but membership and ``exists``, which ``_conditions.py`` reads inline)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum

from rollwise.core._semver import Version, parse_version


class Operator(StrEnum):
    IN = "in"
    NOT_IN = "not_in"
    EQUALS = "equals"
    NOT_EQUALS = "not_equals"
    STARTS_WITH = "starts_with"
    ENDS_WITH = "ends_with"
    CONTAINS = "contains"
    MATCHES = "matches"
    LT = "lt"
    LTE = "lte"
    GT = "gt"
    GTE = "gte"
    SEMVER_EQ = "semver_eq"
    SEMVER_LT = "semver_lt"
    SEMVER_LTE = "semver_lte"
    SEMVER_GT = "semver_gt"
    SEMVER_GTE = "semver_gte"
    BEFORE = "before"
    AFTER = "after"
    CIDR = "cidr"
    EXISTS = "exists"


#: Operators whose operand is a list of values (a single value is read as a list of one).
LIST_OPERATORS = frozenset(
    {
        Operator.IN,
        Operator.NOT_IN,
        Operator.STARTS_WITH,
        Operator.ENDS_WITH,
        Operator.CONTAINS,
        Operator.MATCHES,
        Operator.CIDR,
    }
)

_CACHE_LIMIT = 4096


# --- operand checks --------------------------------------------------------------------------


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def to_timestamp(value: object) -> float | None:
    """Seconds since the epoch for a datetime, an ISO 8601 text or a number; None otherwise."""
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return moment.timestamp()
    if isinstance(value, str):
        try:
            return to_timestamp(datetime.fromisoformat(value.replace("Z", "+00:00")))
        except ValueError:
            return None
    return _number(value)


def _cached(parse: Callable[[str], object]) -> Callable[[str], object]:
    """Memoise a parser of attribute text (app versions, IPs repeat); bounded."""
    cache: dict[str, object] = {}

    def lookup(text: str) -> object:
        try:
            return cache[text]
        except KeyError:
            if len(cache) >= _CACHE_LIMIT:
                cache.clear()
            result = cache[text] = parse(text)
            return result

    return lookup


_Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def _parse_ip(text: str) -> _Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _value_test(operator: Operator, operand: tuple[object, ...]) -> Callable[[object], bool]:
    """A test of one (non-list) attribute value against the operand."""
    if operator in (Operator.STARTS_WITH, Operator.ENDS_WITH, Operator.CONTAINS):
        texts = tuple(str(text) for text in operand)
        if operator is Operator.STARTS_WITH:
            return lambda value: value.__class__ is str and value.startswith(texts)
        if operator is Operator.ENDS_WITH:
            return lambda value: value.__class__ is str and value.endswith(texts)
        return lambda value: value.__class__ is str and any(t in value for t in texts)
    if operator is Operator.MATCHES:
        patterns = tuple(p if isinstance(p, re.Pattern) else re.compile(str(p)) for p in operand)
        return lambda value: value.__class__ is str and any(p.search(value) for p in patterns)
    if operator in (Operator.LT, Operator.LTE, Operator.GT, Operator.GTE):
        limit = float(operand[0])  # type: ignore[arg-type]
        compare = _COMPARE[operator]
        return lambda value: (number := _number(value)) is not None and compare(number, limit)
    if operator.value.startswith("semver_"):
        bound = operand[0]
        if not isinstance(bound, Version):
            raise TypeError("a semver operand must be a Version")
        compare = _COMPARE[_SEMVER_BASE[operator]]
        parse = _cached(parse_version)

        def semver(value: object) -> bool:
            if value.__class__ is not str:
                return False
            version = parse(value)
            return version is not None and compare(version, bound)

        return semver
    if operator is Operator.BEFORE or operator is Operator.AFTER:
        moment = to_timestamp(operand[0])
        if moment is None:
            raise TypeError("a before/after operand must be a timestamp")
        compare = _COMPARE[Operator.LT if operator is Operator.BEFORE else Operator.GT]
        return lambda value: (stamp := to_timestamp(value)) is not None and compare(stamp, moment)
    if operator is Operator.CIDR:
        networks = tuple(ipaddress.ip_network(str(n), strict=False) for n in operand)
        parse_ip = _cached(_parse_ip)

        def in_network(value: object) -> bool:
            if value.__class__ is not str:
                return False
            address = parse_ip(value)
            if not isinstance(address, _Address):
                return False
            return any(address.version == n.version and address in n for n in networks)

        return in_network
    raise ValueError(f"no test for operator {operator}")  # pragma: no cover - enum is closed


def _lt(a: object, b: object) -> bool:
    return a < b  # type: ignore[operator,no-any-return]


def _lte(a: object, b: object) -> bool:
    return a <= b  # type: ignore[operator,no-any-return]


def _gt(a: object, b: object) -> bool:
    return a > b  # type: ignore[operator,no-any-return]


def _gte(a: object, b: object) -> bool:
    return a >= b  # type: ignore[operator,no-any-return]


def _eq(a: object, b: object) -> bool:
    return a == b


_COMPARE: dict[Operator, Callable[[object, object], bool]] = {
    Operator.LT: _lt,
    Operator.LTE: _lte,
    Operator.GT: _gt,
    Operator.GTE: _gte,
    Operator.EQUALS: _eq,
}
_SEMVER_BASE = {
    Operator.SEMVER_EQ: Operator.EQUALS,
    Operator.SEMVER_LT: Operator.LT,
    Operator.SEMVER_LTE: Operator.LTE,
    Operator.SEMVER_GT: Operator.GT,
    Operator.SEMVER_GTE: Operator.GTE,
}
