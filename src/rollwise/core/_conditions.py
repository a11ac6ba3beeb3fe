"""Targeting conditions: small composable predicates over context attributes.

Conditions are data (frozen objects that can be shown, compared and serialised); each compiles
once into a plain function over the context's attribute dict, which is what the evaluation hot
path calls. A missing attribute makes every attribute condition false (``not_in`` included); wrap
a condition in ``not`` to say "anything but".
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from rollwise.core._context import read_value
from rollwise.core._semver import Version, parse_version

#: A compiled condition: the context's attribute dict → whether it matches.
Predicate = Callable[[Mapping[str, object]], bool]


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


class Condition:
    """Base of every condition."""

    __slots__ = ()

    def compile(self) -> Predicate:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def attributes(self) -> frozenset[str]:
        """Every context attribute this condition reads."""
        raise NotImplementedError

    def segments(self) -> frozenset[str]:
        """Every segment this condition refers to."""
        return frozenset()


@dataclass(frozen=True, slots=True)
class AttributeCondition(Condition):
    """``attribute <operator> operand``, e.g. ``tenant in [acme, globex]``."""

    attribute: str
    operator: Operator
    operand: tuple[object, ...]

    def describe(self) -> str:
        shown = ", ".join(str(value) for value in self.operand)
        if self.operator in LIST_OPERATORS:
            shown = f"[{shown}]"
        return f"{self.attribute} {self.operator.value} {shown}"

    def attributes(self) -> frozenset[str]:
        return frozenset({self.attribute})

    def compile(self) -> Predicate:
        name = self.attribute
        if self.operator is Operator.EXISTS:
            wanted = bool(self.operand[0])

            def exists(values: Mapping[str, object]) -> bool:
                value = values.get(name)
                if value.__class__ is not str and value is not None:
                    read_value(values, name, value)  # an unreadable value in a dict raises
                return (value is not None) is wanted

            return exists
        if self.operator in _MEMBERSHIP:
            return _membership(name, self.operand, self.operator in _NEGATED)
        test = _value_test(self.operator, self.operand)

        def predicate(values: Mapping[str, object]) -> bool:
            value = values.get(name)
            if value is None:
                return False
            if value.__class__ is not str:
                value = read_value(values, name, value)
            if value.__class__ is tuple or value.__class__ is list:
                return any(test(item) for item in value)
            return test(value)

        return predicate


@dataclass(frozen=True, slots=True)
class AllOf(Condition):
    conditions: tuple[Condition, ...]

    def describe(self) -> str:
        return " and ".join(_grouped(c) for c in self.conditions)

    def attributes(self) -> frozenset[str]:
        return frozenset().union(*(c.attributes() for c in self.conditions))

    def segments(self) -> frozenset[str]:
        return frozenset().union(*(c.segments() for c in self.conditions))

    def compile(self) -> Predicate:
        predicates = [c.compile() for c in self.conditions]
        if len(predicates) == 1:
            return predicates[0]
        if len(predicates) == 2:
            first, second = predicates
            return lambda values: first(values) and second(values)
        if len(predicates) == 3:
            first, second, third = predicates
            return lambda values: first(values) and second(values) and third(values)
        return lambda values: all(p(values) for p in predicates)


@dataclass(frozen=True, slots=True)
class AnyOf(Condition):
    conditions: tuple[Condition, ...]

    def describe(self) -> str:
        return " or ".join(_grouped(c) for c in self.conditions)

    def attributes(self) -> frozenset[str]:
        return frozenset().union(*(c.attributes() for c in self.conditions))

    def segments(self) -> frozenset[str]:
        return frozenset().union(*(c.segments() for c in self.conditions))

    def compile(self) -> Predicate:
        predicates = [c.compile() for c in self.conditions]
        if len(predicates) == 1:
            return predicates[0]
        return lambda values: any(p(values) for p in predicates)


@dataclass(frozen=True, slots=True)
class Not(Condition):
    condition: Condition

    def describe(self) -> str:
        return f"not {_grouped(self.condition)}"

    def attributes(self) -> frozenset[str]:
        return self.condition.attributes()

    def segments(self) -> frozenset[str]:
        return self.condition.segments()

    def compile(self) -> Predicate:
        inner = self.condition.compile()
        return lambda values: not inner(values)


@dataclass(frozen=True, slots=True)
class InSegment(Condition):
    """Membership of a named segment, with the segment's condition resolved in."""

    name: str
    condition: Condition

    def describe(self) -> str:
        return f"in segment {self.name}"

    def attributes(self) -> frozenset[str]:
        return self.condition.attributes()

    def segments(self) -> frozenset[str]:
        return frozenset({self.name}) | self.condition.segments()

    def compile(self) -> Predicate:
        return self.condition.compile()


_MEMBERSHIP = frozenset({Operator.IN, Operator.NOT_IN, Operator.EQUALS, Operator.NOT_EQUALS})
_NEGATED = frozenset({Operator.NOT_IN, Operator.NOT_EQUALS})


def _membership(name: str, operand: tuple[object, ...], negated: bool) -> Predicate:
    """in / equals and their negations. Text, the common case, is tested first and inline.

    Booleans are kept apart from numbers (in Python ``True == 1``; here ``equals: 1`` does not
    match ``true``). A list attribute is "in" if any item is, and "not in" only if none is.
    """
    members = frozenset(value for value in operand if value.__class__ is not bool)
    booleans = frozenset(value for value in operand if value.__class__ is bool)

    def contains(value: object) -> bool:
        if value.__class__ is bool:
            return value in booleans
        try:
            return value in members
        except TypeError:  # unhashable: cannot be a member
            return False

    if negated:

        def not_in(values: Mapping[str, object]) -> bool:
            value = values.get(name)
            if value.__class__ is str:
                return value not in members
            if value is None:
                return False
            value = read_value(values, name, value)
            if value.__class__ is str:  # a dict's integer key, as text
                return value not in members
            if value.__class__ is tuple or value.__class__ is list:
                return not any(contains(item) for item in value)
            return not contains(value)

        return not_in

    def is_in(values: Mapping[str, object]) -> bool:
        value = values.get(name)
        if value.__class__ is str:
            return value in members
        if value is None:
            return False
        value = read_value(values, name, value)
        if value.__class__ is str:  # a dict's integer key, as text
            return value in members
        if value.__class__ is tuple or value.__class__ is list:
            return any(contains(item) for item in value)
        return contains(value)

    return is_in


def _grouped(condition: Condition) -> str:
    text = condition.describe()
    return f"({text})" if isinstance(condition, AllOf | AnyOf) else text


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
