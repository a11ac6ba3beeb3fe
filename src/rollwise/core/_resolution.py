"""What an evaluation returns: the variant and why."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """Why a variant was served."""

    KILLED = "killed"  # the kill switch is on: the safe default for everyone
    VERSION_BELOW_MINIMUM = "version_below_minimum"  # the app lacks the code for the change
    UNIT_MISSING = "unit_missing"  # the unit attribute is absent: safe default, never a guess
    RULE_MATCH = "rule_match"  # a rule's conditions matched and it serves one variant
    PERCENT = "percent"  # a rule's conditions matched and the unit's bucket is in its percent
    SPLIT = "split"  # a rule split units between variants by bucket
    FALLTHROUGH = "fallthrough"  # no rule matched: the flag's default variant
    FLAG_NOT_FOUND = "flag_not_found"  # the caller's default is served
    ERROR = "error"  # an internal problem: the safe default is served


class ErrorCode(StrEnum):
    FLAG_NOT_FOUND = "flag_not_found"
    INVALID_CONTEXT = "invalid_context"
    UNIT_MISSING = "unit_missing"
    GENERAL = "general"


@dataclass(frozen=True, slots=True)
class Resolution:
    """The result of evaluating a flag for a context.

    ``rule`` is the index of the matched rule in the flag's rules (None when no rule decided).
    Resolutions are shared between evaluations that take the same path, so never mutate one.
    """

    flag: str
    variant: str
    value: object
    reason: Reason
    rule: int | None = None
    error: ErrorCode | None = None
    message: str = ""
    #: Whether the variant is not the flag's safe default.
    enabled: bool = False

    @classmethod
    def not_found(cls, flag: str, default: object) -> Resolution:
        """What a flag the flag set lacks resolves to: the caller's ``default``, with an error."""
        return cls(
            flag,
            "",
            default,
            Reason.FLAG_NOT_FOUND,
            error=ErrorCode.FLAG_NOT_FOUND,
            message=f"unknown flag {flag!r}: serving the caller's default",
        )
