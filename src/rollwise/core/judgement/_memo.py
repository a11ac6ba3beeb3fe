"""Memos keyed by the identity of a stratum, for what the full judgement computes from it again
whenever it judges the same strata (``judge_guards`` on an ``AggregateTable`` that keeps finished
strata, as the server's views and the benchmarks use it; the controller and the simulator judge
incrementally instead). A memo keyed by identity answers without hashing the stratum's
contents. The entry keeps the object itself, so its id cannot be reused while the entry lives;
the memo is cleared when it reaches its limit, so what it holds is bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

_Key = TypeVar("_Key")
_Value = TypeVar("_Value")


class IdentityMemo(Generic[_Key, _Value]):
    def __init__(self, limit: int = 65_536) -> None:
        self._entries: dict[tuple[int, Hashable], tuple[_Key, _Value]] = {}
        self._limit = limit

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def limit(self) -> int:
        return self._limit

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
