"""What applying a flags file would change: per flag, segment and metric, added, removed or
changed and how — what ``rollwise apply --dry-run`` prints, and how an identical file is
recognised as no change at all."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from rollwise.core._flag import Flag, FlagSet


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # "flag", "segment" or "metric"
    name: str
    change: str  # "added", "removed" or "changed"
    details: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            # The flag's key for flag changes ("" otherwise), for readers that list flags only.
            "flag": self.name if self.kind == "flag" else "",
            "change": self.change,
            "details": list(self.details),
        }


def _flag_details(old: Flag, new: Flag) -> Iterator[str]:
    before = {v.name: v.value for v in old.variants}
    after = {v.name: v.value for v in new.variants}
    for name in after.keys() - before.keys():
        yield f"variant {name!r} added"
    for name in before.keys() - after.keys():
        yield f"variant {name!r} removed"
    for name in before.keys() & after.keys():
        if before[name] != after[name]:
            yield f"variant {name!r} value {before[name]!r} → {after[name]!r}"
    if [v.name for v in old.variants] != [v.name for v in new.variants] and (
        old.safe_default.name != new.safe_default.name
    ):
        yield f"safe default {old.safe_default.name!r} → {new.safe_default.name!r}"
    if old.rules != new.rules:
        yield f"rules changed ({len(old.rules)} → {len(new.rules)})"
    if old.default != new.default:
        yield f"default {old.default!r} → {new.default!r}"
    if old.unit != new.unit:
        yield f"unit {old.unit!r} → {new.unit!r}: every unit is bucketed anew"
    if old.bucket_salt != new.bucket_salt:
        yield "salt changed: every unit is bucketed anew"
    if old.min_app_version != new.min_app_version:
        yield f"min_app_version {old.min_app_version} → {new.min_app_version}"
    if old.description != new.description:
        yield "description changed"


def _keyed(kind: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
    for name in sorted(old.keys() | new.keys()):
        if name not in old:
            yield Change(kind, name, "added")
        elif name not in new:
            yield Change(kind, name, "removed")
        elif old[name] != new[name]:
            details = (
                tuple(_flag_details(old[name], new[name])) if kind == "flag" else ("definition",)
            )
            yield Change(kind, name, "changed", details or ("definition",))


def diff_flags(old: FlagSet, new: FlagSet) -> list[Change]:
    """Every difference between two flag sets (kill switches are not part of a file)."""
    return [
        *_keyed("segment", old.segments, new.segments),
        *_keyed("metric", old.metrics, new.metrics),
        *_keyed("flag", old.flags, new.flags),
    ]
