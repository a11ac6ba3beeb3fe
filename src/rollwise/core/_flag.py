"""Flags, segments and metrics: the static model that the SDK evaluates."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from types import MappingProxyType

from rollwise.core._conditions import Condition
from rollwise.core._mappings import dict_of
from rollwise.core._program import Program, compile_program
from rollwise.core._semver import Version


@dataclass(frozen=True, slots=True)
class Variant:
    """One value a flag can serve."""

    name: str
    value: object


@dataclass(frozen=True, slots=True)
class Split:
    """Units split between variants by bucket, in the order given (percent weights sum to 100)."""

    weights: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class Rule:
    """One targeting step: conditions and/or a percentage of units → a variant or a split.

    With ``percent``, only that share of the units that meet ``when`` is served (the first
    buckets, so raising it only adds units); the rest fall through to the next rule.
    """

    serve: str | Split
    when: Condition | None = None
    percent: float | None = None
    #: The attribute bucketed for ``percent`` and splits; None means the flag's unit.
    unit: str | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class Segment:
    """A named, reusable set of conditions on context attributes."""

    name: str
    condition: Condition
    description: str = ""


class MetricKind(StrEnum):
    RATE = "rate"  # failures per event (errors, timeouts, mismatches, conversions)
    LATENCY = "latency"  # durations, aggregated in fixed-boundary histograms
    GAUGE = "gauge"  # a system-wide value not split by variant (queue depth, consumer lag)


@dataclass(frozen=True, slots=True)
class Metric:
    """A metric the application reports, declared so plans can be checked against it."""

    name: str
    kind: MetricKind
    description: str = ""


@dataclass(frozen=True, slots=True)
class Flag:
    """A switch in code with named variants; the first variant is the safe default."""

    key: str
    variants: tuple[Variant, ...]
    rules: tuple[Rule, ...] = ()
    #: The variant served when no rule matches; None means the safe default.
    default: str | None = None
    salt: str | None = None
    unit: str = "user"
    min_app_version: Version | None = None
    killed: bool = False
    description: str = ""
    program: Program = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.variants:
            raise ValueError(f"flag {self.key!r} needs at least one variant")
        object.__setattr__(self, "program", compile_program(self))

    def kill_switched(self, killed: bool) -> Flag:
        """This flag with its kill switch set to ``killed``, keeping the compiled program (one
        not compiled yet is made anew by ``replace``, and compiles lazily as ever). A compiled
        flag is copied field by field, not made anew: ``replace`` would check the flag and
        start a program again only for it to be replaced (a kill switch pushed to a thousand
        SDKs pays this a thousand times)."""
        if not self.program.compiled:
            return replace(self, killed=killed)
        changed = object.__new__(Flag)
        for name in Flag.__slots__:
            object.__setattr__(changed, name, getattr(self, name))
        object.__setattr__(changed, "killed", killed)
        object.__setattr__(changed, "program", self.program.kill_switched(changed))
        return changed

    @property
    def safe_default(self) -> Variant:
        return self.variants[0]

    @property
    def fallthrough(self) -> str:
        return self.default if self.default is not None else self.variants[0].name

    @property
    def bucket_salt(self) -> str:
        return self.salt if self.salt is not None else self.key

    def variant(self, name: str) -> Variant | None:
        for variant in self.variants:
            if variant.name == name:
                return variant
        return None


@dataclass(frozen=True, slots=True)
class FlagSet:
    """Segments, metrics and flags read together (a flags file, or a server snapshot)."""

    flags: Mapping[str, Flag] = field(default_factory=dict)
    segments: Mapping[str, Segment] = field(default_factory=dict)
    metrics: Mapping[str, Metric] = field(default_factory=dict)
    version: int = 0
    #: The dict the ``flags`` proxy shows, for lookups on hot paths (``dict.get`` is the
    #: fastest there is). Shared, never changed: read it, do not write to it.
    by_key: dict[str, Flag] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        plain = dict_of(self.flags)
        object.__setattr__(self, "by_key", plain)
        object.__setattr__(self, "flags", MappingProxyType(plain))
        for name in ("segments", "metrics"):
            object.__setattr__(self, name, MappingProxyType(dict_of(getattr(self, name))))

    def with_flags(self, flags: Iterable[Flag], version: int) -> FlagSet:
        """This set with each of ``flags`` in place of the one of its key, as ``version``: the
        table copied once, the segments and metrics shared (kill switches pushed to an SDK)."""
        plain = self.by_key.copy()
        for flag in flags:
            plain[flag.key] = flag
        changed = object.__new__(FlagSet)
        for name, value in (
            ("by_key", plain),
            ("flags", MappingProxyType(plain)),
            ("segments", self.segments),
            ("metrics", self.metrics),
            ("version", version),
        ):
            object.__setattr__(changed, name, value)
        return changed
