"""The context of one evaluation: a key plus attributes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rollwise.core._errors import InputError

#: What a context attribute may hold.
AttributeValue = str | int | float | bool | None | list[str] | tuple[str, ...]


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
    values: dict[str, AttributeValue] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values: dict[str, AttributeValue] = dict(self.attributes)
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
