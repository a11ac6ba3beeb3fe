"""Reading the files the commands are given: any reason a file cannot be read becomes one
line naming the file."""

from __future__ import annotations

from pathlib import Path

from rollwise.core import FlagSet, Plan, UnreadableInputError, load_flags, load_plan


def read_text(path: str) -> str:
    """The file's text.

    Raises:
        UnreadableInputError: it is missing, a directory, not readable, or not UTF-8 text.
    """
    file = Path(path)
    if file.is_dir():
        raise UnreadableInputError(f"cannot read {path}: it is a directory, not a file")
    try:
        return file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UnreadableInputError(
            f"cannot read {path}: it is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} "
            f"at offset {exc.start})"
        ) from None
    except OSError as exc:
        raise UnreadableInputError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_plan(path: str) -> Plan:
    return load_plan(read_text(path), path)


def read_flags(path: str) -> FlagSet:
    return load_flags(read_text(path), path)
