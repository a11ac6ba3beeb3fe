"""A server snapshot: the flags to evaluate and the rollouts running on them.

Decoded once, when it arrives (or is read back from the cache file), into core objects: the
JSON is decoded by ``json.loads`` and its flags document read from the dicts by core, with the
checks of a flags file and no YAML in between; the flags a new version did not change are
taken from the snapshot before it. The evaluation and attribution paths then read attributes,
never JSON.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from rollwise.core import Flag, FlagSet, InputError
from rollwise.core._decoded import DecodedFlags, read_flags_document


@dataclass(frozen=True, slots=True, eq=False)
class LiveRollout:
    """A rollout running on a flag, as the SDK needs it to attribute outcomes.

    ``flag`` is the flag object of the same snapshot, so an attribution always evaluates the
    rules the rollout's stage compiled to. ``metrics`` maps each guarded metric to its kind.
    Compared by identity: one object per rollout per snapshot.
    """

    id: int
    flag: Flag
    stage: int
    variant: str
    unit: str
    metrics: Mapping[str, str]
    segments: tuple[str, ...] = ()
    samples_per: str | None = None
    #: Length of the aggregation windows in minutes: the plan's stratum, a divisor of 60.
    #: 60 only for a snapshot from an older server that does not send it (it aggregated hourly).
    window_minutes: int = 60
    #: Per latency metric judged against the baseline, the quantile of the tail point the SDK
    #: counts replicates beyond (``tail_quantiles``); empty from an older server.
    tails: Mapping[str, float] = field(default_factory=dict)
    #: The attributes an outcome is also counted by: ``segments`` then ``samples_per``, once each.
    split_by: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        extra = (self.samples_per,) if self.samples_per else ()
        object.__setattr__(self, "split_by", tuple(dict.fromkeys(self.segments + extra)))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One version of what the server wants SDKs to evaluate."""

    version: int
    #: The flags as read: from a whole snapshot, a flags file, or the version before a kill.
    read: FlagSet
    rollouts: tuple[LiveRollout, ...] = ()
    #: The flags as read from the server's document: the next version is read against it.
    decoded: DecodedFlags | None = field(default=None, repr=False, compare=False)
    #: Flag key → the flag with the kill switch an ``event: kill`` set since ``read`` was read,
    #: for the few flags whose switch differs from ``read``'s. A kill is served by this alone:
    #: copying a thousand flags' table for one switch cost each SDK about 50 µs on the path
    #: to the application (issue 12); the whole table is made only if ``flags`` is asked for.
    switched: Mapping[str, Flag] = field(default_factory=dict, repr=False)
    #: Flag key → the rollouts running on it (their exposures feed the ledger).
    exposing: Mapping[str, tuple[LiveRollout, ...]] = field(init=False, repr=False)
    #: Metric name → the rollouts whose guards name it (its outcomes are attributed to them).
    guarding: Mapping[str, tuple[LiveRollout, ...]] = field(init=False, repr=False)
    _flags: FlagSet | None = field(init=False, default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        exposing: dict[str, list[LiveRollout]] = {}
        guarding: dict[str, list[LiveRollout]] = {}
        for rollout in self.rollouts:
            exposing.setdefault(rollout.flag.key, []).append(rollout)
            for metric in rollout.metrics:
                guarding.setdefault(metric, []).append(rollout)
        # Metrics guarded by the same rollouts share one tuple, so that observe() can tell
        # with ``is`` that its two metrics need one evaluation per rollout.
        shared: dict[tuple[LiveRollout, ...], tuple[LiveRollout, ...]] = {}
        object.__setattr__(
            self, "exposing", MappingProxyType({k: tuple(v) for k, v in exposing.items()})
        )
        object.__setattr__(
            self,
            "guarding",
            MappingProxyType(
                {k: shared.setdefault(tuple(v), tuple(v)) for k, v in guarding.items()}
            ),
        )

    @property
    def flags(self) -> FlagSet:
        """The flag set served, as of ``version``: ``read`` with the kill switches set since."""
        if self._flags is None:
            flags = self.read
            if self.switched or flags.version != self.version:
                flags = flags.with_flags(self.switched.values(), self.version)
            object.__setattr__(self, "_flags", flags)
            return flags
        return self._flags

    def flag(self, key: str) -> Flag | None:
        """The flag ``key`` as served, without making the whole table."""
        return self.switched.get(key) or self.read.by_key.get(key)


EMPTY = Snapshot(version=0, read=FlagSet())

_NO_ROLLOUTS: Mapping[str, tuple[LiveRollout, ...]] = {}
_NO_FLAGS: dict[str, Flag] = {}


class Served:
    """What one snapshot serves, in the shapes the hot paths look things up in. A new snapshot
    replaces the whole object in one assignment, and every call reads it once: an evaluation in
    flight sees the old snapshot or the new one, never the flags of one with the rollouts of
    the other. A flag is looked up in ``switched`` (the kill switches set since the table was
    read, usually none) over ``by_key``."""

    __slots__ = ("by_key", "exposing", "guarding", "snapshot", "switched", "version")

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.version = snapshot.version
        # Plain dicts: the hot paths look a flag (or a metric) up on every call.
        self.by_key: dict[str, Flag] = snapshot.read.by_key  # shared, never written
        self.switched = dict(snapshot.switched) if snapshot.switched else _NO_FLAGS
        self.exposing = dict(snapshot.exposing) if snapshot.exposing else _NO_ROLLOUTS
        self.guarding = dict(snapshot.guarding) if snapshot.guarding else _NO_ROLLOUTS


def parse_snapshot(
    body: bytes | str, source: str = "snapshot", previous: Snapshot | None = None
) -> Snapshot:
    """Read a snapshot body: ``{"version": …, "flags": <flags document>, "rollouts": […]}``.

    ``previous`` is the snapshot being served: the flags this one did not change are taken from
    it rather than read again.

    Raises:
        InputError: the body is not valid JSON of that shape, its flags document is invalid,
            or a rollout names a flag or variant the document does not have.
    """
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"not JSON: {exc}", source=source) from exc
    return snapshot_of(document, source, previous)


def snapshot_of(
    document: object, source: str = "snapshot", previous: Snapshot | None = None
) -> Snapshot:
    """A snapshot from its decoded JSON (see ``parse_snapshot``).

    Raises:
        InputError: as ``parse_snapshot``.
    """
    if not isinstance(document, dict):
        raise InputError("must be a JSON object", source=source)
    version = _integer(document.get("version"), "version", source)
    flags_document = document.get("flags")
    if not isinstance(flags_document, dict):
        raise InputError("must be a flags document (an object)", path="flags", source=source)
    decoded = read_flags_document(
        flags_document, source, previous=previous.decoded if previous is not None else None
    )
    flags = replace(decoded.flags, version=version)
    entries = document.get("rollouts", [])
    if not isinstance(entries, list):
        raise InputError("must be a list", path="rollouts", source=source)
    rollouts = tuple(
        _rollout(entry, flags, f"rollouts[{index}]", source) for index, entry in enumerate(entries)
    )
    return Snapshot(version, flags, rollouts, decoded)


def with_kill(snapshot: Snapshot, key: str, killed: bool, version: int) -> Snapshot:
    """``snapshot`` with ``key``'s kill switch set, as version ``version``: what the server's
    snapshot of that version is when a kill switch was its only change (``event: kill``). The
    table of flags is not copied: the flag goes into ``switched`` (or leaves it, when the switch
    is back to what was read). The rollouts on the flag are given the new flag object, so that
    outcomes are attributed by the rules now served. ``decoded`` stays the one read from a
    document: the next whole snapshot is compared with what was read, never with what a kill
    changed.

    Raises:
        KeyError: the snapshot has no flag ``key``.
    """
    read = snapshot.read.by_key[key]
    switched = dict(snapshot.switched)
    if read.killed == killed:
        switched.pop(key, None)
        changed = read
    else:
        changed = switched[key] = read.kill_switched(killed)
    rollouts = tuple(
        replace(rollout, flag=changed) if rollout.flag.key == key else rollout
        for rollout in snapshot.rollouts
    )
    return Snapshot(version, snapshot.read, rollouts, snapshot.decoded, switched)


def _rollout(entry: object, flags: FlagSet, path: str, source: str) -> LiveRollout:
    if not isinstance(entry, dict):
        raise InputError("must be an object", path=path, source=source)
    key = _text(entry.get("flag"), f"{path}.flag", source)
    flag = flags.flags.get(key)
    if flag is None:
        raise InputError(f"names flag {key!r}, which the snapshot lacks", path=path, source=source)
    variant = _text(entry.get("variant"), f"{path}.variant", source)
    if flag.variant(variant) is None:
        raise InputError(
            f"flag {key!r} has no variant {variant!r}", path=f"{path}.variant", source=source
        )
    metrics = entry.get("metrics", {})
    if not isinstance(metrics, dict) or not all(
        isinstance(name, str) and isinstance(kind, str) for name, kind in metrics.items()
    ):
        raise InputError("must map metric names to kinds", path=f"{path}.metrics", source=source)
    segments = entry.get("segments") or []
    if not isinstance(segments, list) or not all(isinstance(s, str) for s in segments):
        raise InputError("must be a list of attributes", path=f"{path}.segments", source=source)
    samples_per = entry.get("samples_per")
    if samples_per is not None:
        samples_per = _text(samples_per, f"{path}.samples_per", source)
    # Absent from snapshots of older servers, which meant hourly windows.
    window_minutes = _integer(entry.get("window_minutes", 60), f"{path}.window_minutes", source)
    if not 1 <= window_minutes <= 60 or 60 % window_minutes:
        raise InputError(
            f"must be a whole number of minutes that divides an hour, got {window_minutes}",
            path=f"{path}.window_minutes",
            source=source,
        )
    tails = entry.get("tails") or {}
    if not isinstance(tails, dict) or not all(
        isinstance(name, str)
        and isinstance(quantile, float)
        and 0 < quantile < 1
        and metrics.get(name) == "latency"
        for name, quantile in tails.items()
    ):
        raise InputError(
            "must map latency metrics to quantiles between 0 and 1",
            path=f"{path}.tails",
            source=source,
        )
    return LiveRollout(
        id=_integer(entry.get("id"), f"{path}.id", source),
        flag=flag,
        stage=_integer(entry.get("stage"), f"{path}.stage", source),
        variant=variant,
        unit=_text(entry.get("unit"), f"{path}.unit", source),
        metrics=MappingProxyType(dict(metrics)),
        segments=tuple(segments),
        samples_per=samples_per,
        window_minutes=window_minutes,
        tails=MappingProxyType(dict(tails)),
    )


def _integer(value: object, path: str, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError("must be an integer", path=path, source=source)
    return value


def _text(value: object, path: str, source: str) -> str:
    if not isinstance(value, str) or not value:
        raise InputError("must be non-empty text", path=path, source=source)
    return value
