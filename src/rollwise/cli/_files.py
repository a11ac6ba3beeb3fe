"""Reading the files the commands are given."""

from __future__ import annotations

from pathlib import Path

from rollwise.core import FlagSet, Plan, load_flags, load_plan


def read_plan(path: str) -> Plan:
    return load_plan(Path(path).read_text(encoding="utf-8"), path)


def read_flags(path: str) -> FlagSet:
    return load_flags(Path(path).read_text(encoding="utf-8"), path)
