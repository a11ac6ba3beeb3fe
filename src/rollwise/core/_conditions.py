"""Targeting conditions: small composable predicates over context attributes.

Conditions are data (frozen objects that can be shown, compared and serialised); each compiles
once into a plain function over the context's attribute dict, which is what the evaluation hot
path calls. A missing attribute makes every attribute condition false (``not_in`` included); wrap
a condition in ``not`` to say "anything but".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from rollwise.core._context import read_value
from rollwise.core._operands import LIST_OPERATORS, Operator, _value_test

#: A compiled condition: the context's attribute dict → whether it matches.
Predicate = Callable[[Mapping[str, object]], bool]


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
