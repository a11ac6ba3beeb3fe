"""The one exception tree of rollwise."""

from __future__ import annotations


class RollwiseError(Exception):
    """Root of every error rollwise raises on purpose."""


class InputError(RollwiseError):
    """A file or body could not be turned into a valid core object.

    Names the source, the line (where known), the field path and what would be accepted, so
    that a person can fix the input without reading a traceback.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str = "",
        line: int | None = None,
        source: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.line = line
        self.source = source
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.source or ""
        if self.line is not None:
            where = f"{where}:{self.line}" if where else f"line {self.line}"
        field = f"{self.path}: " if self.path else ""
        return f"{where}: {field}{self.message}" if where else f"{field}{self.message}"


class UnreadableInputError(InputError):
    """The input is not even well-formed (YAML syntax, encoding): nothing could be read."""
