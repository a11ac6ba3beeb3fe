"""Memos keyed by the identity of a stratum, for what is computed from it at every tick.

The controller and the simulator judge the same finished strata again at every tick; where the
stratum object is the same one (the simulator's ``AggregateTable`` keeps it), a memo keyed by its
identity answers without hashing its contents. The entry keeps the object itself, so its id
cannot be reused while the entry lives; the memo is cleared when it is full.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

_Key = TypeVar("_Key")
_Value = TypeVar("_Value")


class IdentityMemo(Generic[_Key, _Value]):
    def __init__(self, limit: int = 200_000) -> None:
        self._entries: dict[tuple[int, Hashable], tuple[_Key, _Value]] = {}
        self._limit = limit

    def get(self, item: _Key, extra: Hashable, compute: Callable[[], _Value]) -> _Value:
        """The value for ``(item, extra)``, computed once while ``item`` is the same object."""
        key = (id(item), extra)
        entry = self._entries.get(key)
        if entry is not None and entry[0] is item:
            return entry[1]
        value = compute()
        if len(self._entries) >= self._limit:
            self._entries.clear()
        self._entries[key] = (item, value)
        return value
