"""The client the application calls: local evaluation that never raises."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from rollwise.core import (
    Context,
    ErrorCode,
    FlagSet,
    Reason,
    Resolution,
    evaluate,
    load_flags,
)

logger = logging.getLogger("rollwise.sdk")


class Client:
    """Evaluates flags locally against a flag set.

    ``Client.from_file("flags.yaml")`` works offline from a flags file; the evaluation is the
    exact one the live SDK uses. Evaluation methods never raise: on any problem they return
    the safe default (or, for an unknown flag, the caller's default) and log why.
    """

    def __init__(self, flags: FlagSet) -> None:
        self._flags = flags
        # A plain dict: the hot path looks a flag up on every call.
        self._by_key = dict(flags.flags)

    @classmethod
    def from_file(cls, path: str | Path) -> Client:
        """A client serving the flags of a YAML flags file.

        Raises:
            InputError: the file is invalid (file, line and field path in the message).
            OSError: the file cannot be read.
        """
        file = Path(path)
        return cls(load_flags(file.read_text(encoding="utf-8"), str(file)))

    @property
    def flags(self) -> FlagSet:
        return self._flags

    def resolve(
        self, flag: str, context: Context | Mapping[str, object], default: object = None
    ) -> Resolution:
        """The variant ``context`` gets for ``flag``, with the reason."""
        found = self._by_key.get(flag)
        if found is None:
            return Resolution(
                flag,
                "",
                default,
                Reason.FLAG_NOT_FOUND,
                error=ErrorCode.FLAG_NOT_FOUND,
                message=f"unknown flag {flag!r}: serving the caller's default",
            )
        resolution = evaluate(found, context)
        if resolution.error is ErrorCode.GENERAL or resolution.error is ErrorCode.INVALID_CONTEXT:
            logger.warning("flag %s: %s; serving the safe default", flag, resolution.message)
        return resolution

    def variant(self, flag: str, context: Context | Mapping[str, object], default: str) -> str:
        """The name of the variant served; ``default`` for an unknown flag."""
        resolution = self.resolve(flag, context)
        return default if resolution.reason is Reason.FLAG_NOT_FOUND else resolution.variant

    def value(self, flag: str, context: Context | Mapping[str, object], default: object) -> object:
        """The value of the variant served; ``default`` for an unknown flag."""
        return self.resolve(flag, context, default).value

    def enabled(
        self, flag: str, context: Context | Mapping[str, object], default: bool = False
    ) -> bool:
        """Whether ``context`` gets a variant other than the flag's safe default."""
        # The same evaluation as resolve(), without its wrapping: this is the most called method.
        found = self._by_key.get(flag)
        if found is None:
            return default
        try:
            values = context.values if context.__class__ is Context else Context.of(context).values
            return found.program.run(values).enabled
        except Exception:  # never raise into the application: the safe default is not enabled
            logger.warning(
                "flag %s: evaluation failed; serving the safe default", flag, exc_info=True
            )
            return False
