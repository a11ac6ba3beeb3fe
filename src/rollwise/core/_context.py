"""The context of one evaluation: a key plus attributes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import cast

from rollwise.core._errors import InputError

#: What a context attribute may hold.
AttributeValue = str | int | float | bool | None | list[str] | tuple[str, ...]

#: The context's key, and the attribute that falls back to it.
KEY, USER = "key", "user"


class ContextValues(dict[str, AttributeValue]):
    """A ``Context``'s attributes with its key folded in. A class of its own so that readers
    can tell it from a plain dict read in place (``context_values``), whose ``user`` may still
    have to be folded from its key (``folded_user``)."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Context:
    """What the SDK knows about one evaluation.

    ``key`` identifies the subject (usually the user). The unit ``user`` reads the ``user``
    attribute when the context has one and the key otherwise, so a plan with ``unit: user``
    works for contexts built as ``{"key": "u-42", "tenant": "acme"}``.
    """

    key: str | None = None
    attributes: Mapping[str, AttributeValue] = field(default_factory=dict)
    # Everything a condition or a unit can read, with ``key`` (and ``user``) folded in.
    values: ContextValues = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values = ContextValues(self.attributes)
        if self.key is not None:
            values["key"] = self.key
            values.setdefault("user", self.key)
        object.__setattr__(self, "values", values)

    def get(self, attribute: str) -> AttributeValue:
        return self.values.get(attribute)

    @classmethod
    def of(cls, context: Context | Mapping[str, object]) -> Context:
        """Normalise a context given as a plain mapping (``{"key": …, "tenant": …}``).

        Raises:
            InputError: if the key or an attribute has a type a condition cannot use.
        """
        if isinstance(context, Context):
            return context
        if not isinstance(context, Mapping):
            raise InputError(f"a context must be a mapping, got {type(context).__name__}")
        key: str | None = None
        attributes: dict[str, AttributeValue] = {}
        for name, value in context.items():
            if not isinstance(name, str):
                raise InputError(f"attribute names must be text, got {name!r}")
            if name == "key":
                if value is None:
                    continue
                if isinstance(value, bool) or not isinstance(value, str | int):
                    raise InputError("must be text or an integer", path="context.key")
                key = str(value)
            else:
                attributes[name] = _attribute(name, value)
        return cls(key, attributes)


def _attribute(name: str, value: object) -> AttributeValue:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise InputError(
        f"must be text, a number, a boolean or a list of text, got {type(value).__name__}",
        path=f"context.{name}",
    )


#: Attribute types a plain dict may hold that every reader takes as they are (exact types).
_AS_IS = frozenset({str, int, float, bool, type(None)})
_TEXT = frozenset({str})


def context_values(context: Context | Mapping[str, object]) -> Mapping[str, object]:
    """What an evaluation reads from ``context``: ``Context.of(context).values``, or a plain
    dict read in place when that reads the same.

    A dict whose names are text and whose values are text, numbers, booleans, None or lists of
    text is read in place at every call (nothing is kept: a dict changed between two calls is
    read afresh). Nothing in it needs converting: every reader treats a list as the tuple
    ``Context.of`` would make of it. Its ``user``, when it has a text ``key`` and no ``user``,
    is read from the key by ``folded_user``, as a ``Context`` would have it. An integer key
    is copied in as text. Anything else (another mapping, subclasses, values of other types)
    goes through ``Context.of``, so a context that cannot be read fails with the same error
    as it always did. (An evaluation reads a plain dict itself, lazily: ``Program.run`` and
    the conditions read the attributes on its path through ``read_value``.)

    Raises:
        InputError: as ``Context.of``.
    """
    if context.__class__ is not dict:
        return context.values if isinstance(context, Context) else Context.of(context).values
    # One pass, in which names and values are nearly always of the plain types.
    for name, value in context.items():
        kind = value.__class__
        if name.__class__ is str and (kind is str or kind in _AS_IS):
            continue
        if (
            name.__class__ is not str
            or (kind is not list and kind is not tuple)
            or not _TEXT.issuperset(map(type, value))
        ):
            return Context.of(context).values  # Context.of says why, or converts
    key = context.get(KEY)
    if key is None or key.__class__ is str:
        return context
    if key.__class__ is int:
        text = str(key)
        return {**context, KEY: text, USER: context.get(USER, text)}
    return Context.of(context).values  # a key of another type: Context.of says why


def read_in_place(context: Context | Mapping[str, object]) -> Mapping[str, object]:
    """What the SDK's exposures and outcomes read a context through: a ``Context``'s values,
    a plain dict as it is (each rollout's flag checks what it reads, in ``Program.run``; the
    unit and segments are read by readers that take any value), any other mapping through
    ``context_values``."""
    kind: type = context.__class__
    if kind is Context:
        return cast(Context, context).values
    if kind is dict:
        return cast("Mapping[str, object]", context)
    return context_values(context)


#: What ``folded_user`` gives for a key ``Context.of`` refuses: a reader of ``user`` that finds
#: it fails through ``read_value`` with the key's error; a reader that takes any value finds no
#: unit or segment in it.
UNREADABLE_KEY = object()


def read_value(values: Mapping[str, object], name: str, value: object) -> object:
    """``value``, read from attribute ``name`` of ``values``, as a ``Context`` would hold it.

    A plain dict is read in place and lazily: the evaluation looks only at the attributes its
    path reads, and a reader that finds something other than text or None there passes it
    through here. For a plain dict this is what ``Context.of`` makes of that one attribute: a
    number or a boolean as it is, a list of text as a tuple, the key as text (an integer key in
    decimal), and for anything else the ``InputError`` ``Context.of`` raises, naming the
    attribute. A ``Context``'s values (and anything that is not a plain dict) were read already:
    returned as they are."""
    if values.__class__ is not dict or value is None or value.__class__ is str:
        return value
    if name == KEY or value is UNREADABLE_KEY:
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise InputError("must be text or an integer", path="context.key")
        return str(value)
    return _attribute(name, value)


def folded_user(values: Mapping[str, object]) -> object:
    """The ``user`` of a plain dict read in place (``context_values``) that has none: its
    key, as in a ``Context`` (an integer key as text; ``UNREADABLE_KEY`` for a key
    ``Context.of`` refuses). None for anything else. Readers of ``user`` call this when
    ``values.get("user")`` is None."""
    if values.__class__ is dict and USER not in values:
        key = values.get(KEY)
        if key is None or key.__class__ is str:
            return key
        if isinstance(key, str | int) and not isinstance(key, bool):
            return str(key)  # as Context.of makes it
        return UNREADABLE_KEY  # fails the evaluation only where the user is read
    return None
