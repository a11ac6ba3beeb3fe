"""``Client.observe``'s context manager: times the block it guards and records it."""

from __future__ import annotations

from collections.abc import Mapping
from time import perf_counter
from types import TracebackType
from typing import TYPE_CHECKING

from rollwise.core import Context

if TYPE_CHECKING:
    from rollwise.sdk._client import Client


class Observation:
    """The context manager ``Client.observe`` returns: times its block with ``perf_counter``."""

    __slots__ = ("_client", "_context", "_name", "_started")

    def __init__(self, client: Client, name: str, context: Context | Mapping[str, object]) -> None:
        self._client = client
        self._name = name
        self._context = context  # ``_started`` is set by ``__enter__``

    def __enter__(self) -> None:
        self._started = perf_counter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        elapsed = (perf_counter() - self._started) * 1000.0
        if exc_type is None or issubclass(exc_type, Exception):
            self._client._observed(self._name, self._context, elapsed, exc_type is not None)
        # Returning None lets an exception propagate as it was raised.
