"""Semantic versions (https://semver.org/spec/v2.0.0.html), for app-version conditions.

Precedence follows §11 of the spec: numeric core, then a pre-release ranks below the release,
pre-release identifiers compared numerically when numeric, lexically otherwise. Build metadata
is ignored. A missing minor or patch is read as 0 (``2.4`` = ``2.4.0``), since app versions are
often written that way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SEMVER = re.compile(
    r"v?(0|[1-9]\d*)(?:\.(0|[1-9]\d*))?(?:\.(0|[1-9]\d*))?"
    r"(?:-([0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?"
)


@dataclass(frozen=True, slots=True, order=True)
class Version:
    """A parsed version, ordered by semver precedence."""

    major: int
    minor: int
    patch: int
    # (1,) for a release ranks above any pre-release (0, identifier, …); each identifier is
    # (0, number) or (1, text), so numeric ones rank below alphanumeric ones (spec §11.4.3).
    pre: tuple[int | tuple[int, int | str], ...]

    def __str__(self) -> str:
        core = f"{self.major}.{self.minor}.{self.patch}"
        if self.pre == (1,):
            return core
        return core + "-" + ".".join(str(part[1]) for part in self.pre if isinstance(part, tuple))


def parse_version(text: str) -> Version | None:
    """Parse a version, or return None when the text is not one."""
    match = _SEMVER.fullmatch(text.strip())
    if match is None:
        return None
    major, minor, patch, pre = match.groups()
    rank: tuple[int | tuple[int, int | str], ...] = (1,)
    if pre is not None:
        identifiers: list[int | tuple[int, int | str]] = [0]
        for part in pre.split("."):
            if part.isdigit() and part != "0" and part.startswith("0"):
                return None  # spec §9: numeric identifiers have no leading zeroes
            identifiers.append((0, int(part)) if part.isdigit() else (1, part))
        rank = tuple(identifiers)
    return Version(int(major), int(minor or 0), int(patch or 0), rank)
