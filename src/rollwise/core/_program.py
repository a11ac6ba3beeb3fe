"""A flag compiled once into the shape the evaluation hot path wants.

Every resolution a flag can return is built here, ahead of time, so an evaluation allocates
nothing: it checks the kill switch and the app version, walks the rules' predicates and, for a
percentage or split, hashes the unit once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from struct import Struct
from typing import TYPE_CHECKING, cast

from rollwise.core._bucketing import (
    BUCKETS,
    bucket_of,
    percent_to_buckets,
    salt_prefix,
    unit_text,
)
from rollwise.core._bucketing import SHA256 as _sha256
from rollwise.core._conditions import Predicate
from rollwise.core._context import (
    KEY,
    USER,
    Context,
    ContextValues,
    context_values,
    folded_user,
    read_value,
)
from rollwise.core._resolution import ErrorCode, Reason, Resolution
from rollwise.core._semver import parse_version

if TYPE_CHECKING:
    from rollwise.core._flag import Flag

_first_uint64 = Struct(">Q").unpack_from
_VERSION_ATTRIBUTE = "app_version"
_VERSION_CACHE_LIMIT = 1024


#: A compiled rule: (predicate or None, the attribute to bucket or None when the rule serves one
#: variant to all who match, upper bucket bounds (exclusive) one per resolution, resolutions).
#: A unit whose bucket is past the last bound falls through. Plain tuples: they unpack fastest.
CompiledRule = tuple[Predicate | None, str | None, tuple[int, ...], tuple[Resolution, ...]]


class Program:
    """The compiled evaluation of one flag."""

    __slots__ = (
        "_killed",
        "_min_version",
        "_prefix",
        "_reads_user",
        "_rules",
        "_source",
        "_version_cache",
        "below_minimum",
        "fallthrough",
        "flag",
        "killed",
        "run",
        "unit_missing",
    )

    def __init__(self, flag: Flag) -> None:
        """Check the flag (every variant a rule or the default names exists: the same
        ValueError as ever, when the flag is made); the rest is compiled at the first
        evaluation (``_compile``), so that a process reading a thousand-flag snapshot pays
        for the flags it evaluates, when it evaluates them."""
        self.flag = flag.key
        names = {variant.name for variant in flag.variants}
        for name in _served_names(flag):
            if name not in names:
                raise ValueError(f"flag {flag.key!r} has no variant {name!r}")
        self._prefix = salt_prefix(flag.bucket_salt)
        self._source: Flag | None = flag
        # ``run`` is an attribute: the first call compiles and puts the compiled ``_run`` in
        # its place, so every later call costs what a method call costs, and no check.
        self.run: Callable[[Context | Mapping[str, object]], Resolution] = self._first_run

    def _first_run(self, context: Context | Mapping[str, object]) -> Resolution:
        self._compile()
        return self._run(context)

    def _compile(self) -> None:
        """Build every resolution and rule of the flag. Two threads may compile the same
        flag at once: each builds the same values, and ``run`` moves to ``_run`` last."""
        flag = self._source
        if flag is None:
            return  # compiled already
        safe = flag.safe_default

        def resolution(
            variant: str,
            reason: Reason,
            rule: int | None = None,
            error: ErrorCode | None = None,
            message: str = "",
        ) -> Resolution:
            chosen = flag.variant(variant)
            if chosen is None:
                raise ValueError(f"flag {flag.key!r} has no variant {variant!r}")
            return Resolution(
                flag.key, variant, chosen.value, reason, rule, error, message, variant != safe.name
            )

        self._killed = flag.killed
        self.killed = resolution(safe.name, Reason.KILLED, message="the kill switch is on")
        self._min_version = flag.min_app_version
        self.below_minimum = resolution(
            safe.name,
            Reason.VERSION_BELOW_MINIMUM,
            message=f"{_VERSION_ATTRIBUTE} is missing or below {flag.min_app_version}",
        )
        self._version_cache: dict[object, bool] = {}
        self._prefix = salt_prefix(flag.bucket_salt)
        self.fallthrough = resolution(flag.fallthrough, Reason.FALLTHROUGH)
        self.unit_missing: dict[str, Resolution] = {}
        rules: list[CompiledRule] = []
        # A condition on ``user`` reads a plain dict's folded user (see context_values).
        self._reads_user = any(
            rule.when is not None and USER in rule.when.attributes() for rule in flag.rules
        )
        for index, rule in enumerate(flag.rules):
            predicate = rule.when.compile() if rule.when is not None else None
            unit = rule.unit or flag.unit
            if rule.percent is None and isinstance(rule.serve, str):
                rules.append(
                    (predicate, None, (), (resolution(rule.serve, Reason.RULE_MATCH, index),))
                )
                continue
            self.unit_missing.setdefault(
                unit,
                resolution(
                    safe.name,
                    Reason.UNIT_MISSING,
                    error=ErrorCode.UNIT_MISSING,
                    message=f"the context has no usable {unit!r} (text or integer) to bucket by",
                ),
            )
            share = percent_to_buckets(rule.percent if rule.percent is not None else 100.0)
            if isinstance(rule.serve, str):
                limits: tuple[int, ...] = (share,)
                served: tuple[Resolution, ...] = (resolution(rule.serve, Reason.PERCENT, index),)
            else:
                # A split divides the rule's share of buckets between variants, in order.
                bounds, total = [], 0.0
                for _, weight in rule.serve.weights:
                    total += weight
                    bounds.append(round(share * total / 100.0))
                bounds[-1] = share
                limits = tuple(bounds)
                served = tuple(
                    resolution(name, Reason.SPLIT, index) for name, _ in rule.serve.weights
                )
            rules.append((predicate, unit, limits, served))
        self._rules = tuple(rules)
        self._source = None  # no cycle flag → program → flag once compiled
        self.run = self._runner()

    def _runner(self) -> Callable[[Context | Mapping[str, object]], Resolution]:
        """``_run``, or ``_run_bucketed`` for the commonest shape of a flag in a rollout: one
        percentage or split for everyone, no kill switch, no minimum version."""
        rules = self._rules
        if (
            not self._killed
            and self._min_version is None
            and len(rules) == 1
            and rules[0][0] is None
            and rules[0][1] is not None
        ):
            return self._run_bucketed
        return self._run

    @property
    def compiled(self) -> bool:
        return self._source is None

    def kill_switched(self, flag: Flag) -> Program:
        """The program of ``flag``, this compiled program's flag with only its kill switch
        flipped: copied with the switch set, not compiled again, so a kill pushed to an SDK
        costs the next evaluation nothing (compiling a flag takes about as long as a hundred
        evaluations)."""
        copy = Program.__new__(Program)
        for name in Program.__slots__:
            object.__setattr__(copy, name, getattr(self, name))
        copy._killed = flag.killed
        copy.run = copy._runner()  # bound to the copy, not to this program
        return copy

    def _run(self, context: Context | Mapping[str, object]) -> Resolution:
        """Evaluate a context as the application passes it. May raise on a broken predicate,
        or ``InputError`` for a context that cannot be read; ``evaluate`` is the never-raising
        entry point.

        A ``Context`` (or its values) is evaluated as it is. A plain dict is read in place and
        lazily: the evaluation reads the attributes its path reads, as it reads a
        ``Context``'s, and each reader that finds anything but text or None passes it through
        ``read_value``, which gives what ``Context.of`` would make of it (a list of text as a
        tuple, an integer key as text) or raises its ``InputError``. So a dict evaluates as
        the ``Context`` of the attributes the evaluation reads, what it never reads is never
        looked at, and a dict is never copied or written to on its way here (a condition on
        ``user`` reads a copy with the user folded in from the key). Any other mapping goes
        through ``context_values`` whole.
        """
        kind: type = context.__class__
        if kind is ContextValues or kind is dict:
            values = cast("Mapping[str, object]", context)
        elif kind is Context:
            values = cast(Context, context).values
        else:
            values = context_values(context)
        if self._killed:
            return self.killed
        if self._min_version is not None:
            version = values.get(_VERSION_ATTRIBUTE)
            if version.__class__ is not str:
                version = read_value(values, _VERSION_ATTRIBUTE, version)
            if not self._version_ok(version):
                return self.below_minimum
        if self._reads_user and (user := folded_user(values)) is not None:
            values = {**values, USER: user}  # read (and checked) only where a rule reads it
        bucket = -1
        bucketed_unit = None
        for predicate, unit, limits, resolutions in self._rules:
            if predicate is not None and not predicate(values):
                continue
            if unit is None:
                return resolutions[0]
            if unit != bucketed_unit:
                text = values.get(unit)
                if text.__class__ is not str or not text:
                    # folded_user(), inlined: a plain dict's key is its user (context_values).
                    if text is None and unit == USER and values.__class__ is dict:
                        if USER not in values:
                            text = values.get(KEY)
                            if text is not None and text.__class__ is not str:
                                text = read_value(values, KEY, text)
                    else:
                        text = read_value(values, unit, text)
                    if text.__class__ is not str or not text:
                        text = unit_text(text)
                        if text is None:
                            return self.unit_missing[unit]
                # Inlined bucket_of(): this is the hottest line of the SDK.
                bucket = _first_uint64(_sha256(self._prefix + text.encode()).digest())[0] % BUCKETS
                bucketed_unit = unit
            if bucket < limits[0]:
                return resolutions[0]
            for limit, resolution in zip(limits, resolutions):  # noqa: B905
                if bucket < limit:
                    return resolution
        return self.fallthrough

    def _run_bucketed(self, context: Context | Mapping[str, object]) -> Resolution:
        """``_run`` for a flag of one rule with no condition that buckets (``_runner``): the
        same steps without those that cannot apply. A context it does not read at once (not
        a ``Context`` or a plain dict, or no text unit) goes through ``_run``."""
        kind: type = context.__class__
        if kind is Context:
            values: Mapping[str, object] = cast(Context, context).values
        elif kind is dict or kind is ContextValues:
            values = cast("Mapping[str, object]", context)
        else:
            return self._run(context)
        _, unit, limits, resolutions = self._rules[0]
        text = values.get(cast(str, unit))
        if text is None and unit == USER and kind is dict and USER not in values:
            text = values.get(KEY)  # folded_user(): a plain dict's key is its user
        if text.__class__ is not str or not text:
            return self._run(context)
        bucket = _first_uint64(_sha256(self._prefix + text.encode()).digest())[0] % BUCKETS
        if bucket < limits[0]:
            return resolutions[0]
        if bucket >= limits[-1]:
            return self.fallthrough  # past the share (a generator here cost a third of a call)
        for limit, resolution in zip(limits, resolutions):  # noqa: B905  (a split's later slices)
            if bucket < limit:
                return resolution
        return self.fallthrough

    def bucket(self, unit_value: str) -> int:
        return bucket_of(self._prefix, unit_value)

    def _version_ok(self, value: object) -> bool:
        cache = self._version_cache
        try:
            return cache[value]
        except (KeyError, TypeError):
            pass
        minimum = self._min_version
        version = parse_version(value) if isinstance(value, str) else None
        result = version is not None and minimum is not None and version >= minimum
        if isinstance(value, str):
            if len(cache) >= _VERSION_CACHE_LIMIT:
                cache.clear()
            cache[value] = result
        return result


def _served_names(flag: Flag) -> list[str]:
    """Every variant name the flag's default and rules serve."""
    names = [flag.fallthrough]
    for rule in flag.rules:
        if isinstance(rule.serve, str):
            names.append(rule.serve)
        else:
            names.extend(name for name, _ in rule.serve.weights)
    return names


def compile_program(flag: Flag) -> Program:
    """Compile a flag; raises ValueError when a rule names a variant the flag lacks."""
    return Program(flag)
