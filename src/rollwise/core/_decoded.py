"""Decoded JSON read as a document: what the SDK gets from the server, already parsed.

A snapshot arrives as JSON and ``json.loads`` (C) has decoded it. Its flags document is read
from those dicts and lists directly, through the same ``Node`` interface and the same parsers
as a YAML flags file, so it gets the same field checks and the same error messages (without a
line: there is no text to point into). Writing it back to text to read it again with PyYAML's
pure-Python loader took over a second for a thousand flags, on every push of a new version.
A new version is compared with the one before, flag by flag, and only what changed is read.

The limits of ``rollwise.core._document`` hold here too, counted as the YAML loader would have
counted them on the document written as JSON (``json.dumps`` with its default separators): its
size, how deep it nests, how many values it holds, and the characters of its text. Numbers stay
the numbers JSON decoded: the text round trip read ``1e-05`` or ``NaN`` as text (YAML 1.1 floats
need a dot), which was no one's intent.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import repeat
from json.encoder import encode_basestring_ascii

from rollwise.core._document import (
    MAX_DEPTH,
    MAX_DOCUMENT_BYTES,
    MAX_NODES,
    check_integer,
    checked_text,
    excerpt,
)
from rollwise.core._errors import InputError, UnreadableInputError
from rollwise.core._flag import Flag, FlagSet
from rollwise.core._flagfile import parse_flag_set

#: The text of the JSON constants, as ``json.dumps`` writes them.
_NON_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


#: A definition as compact JSON text: what tells one version of a flag from the next. Text and
#: not ``==``, which holds between ``1``, ``1.0`` and ``true``.
_definition = json.JSONEncoder(separators=(",", ":")).encode


@dataclass(frozen=True, slots=True, eq=False)
class DecodedFlags:
    """A flag set read from a decoded flags document, with the definitions it was read from
    (compact JSON text), which the next version of the document is compared with."""

    flags: FlagSet
    #: Flag key → its definition.
    definitions: Mapping[str, str] = field(default_factory=dict, repr=False)
    #: The segments' definitions (the flags' conditions refer to them).
    segments: str = field(default="", repr=False)


def read_flags_document(
    document: Mapping[str, object],
    source: str | None = None,
    *,
    previous: DecodedFlags | None = None,
) -> DecodedFlags:
    """A flags document already decoded from JSON (``{"segments": …, "flags": …}``), read as
    ``load_flags`` reads a file, with no text in between.

    ``previous`` is what an earlier version of the document read to: each flag whose definition
    is the same, under the same segments, is taken from it as it is rather than read and
    compiled again (a kill switch changes one flag of a thousand). The result is the same.

    Raises:
        UnreadableInputError: the document is past a limit of a flags file (size, depth,
            values, characters) or holds something JSON cannot.
        InputError: a field is invalid (with its field path).
    """
    root = read_document(document, source)
    if not isinstance(document, dict):  # parse_flag_set says what was expected
        return DecodedFlags(parse_flag_set(root))
    segments = _definition(document.get("segments"))
    entries = document.get("flags")
    definitions = (
        {key: _definition(value) for key, value in entries.items()}
        if isinstance(entries, dict)
        else {}
    )
    unchanged: dict[str, Flag] = {}
    if previous is not None and previous.segments == segments:
        known = previous.definitions
        unchanged = {
            key: flag
            for key, flag in previous.flags.flags.items()
            if key in definitions and known.get(key) == definitions[key]
        }
    return DecodedFlags(parse_flag_set(root, unchanged), definitions, segments)


class Decoded:
    """One value of a decoded JSON document with where it sits in it (see ``Node``).

    The field path is kept as the parent and the key, and written out only for an error: most
    values are read and never complained about.
    """

    __slots__ = ("_key", "_parent", "data", "source")

    def __init__(
        self, data: object, source: str | None, parent: Decoded | None = None, key: str | int = ""
    ) -> None:
        self.data = data
        self.source = source
        self._parent = parent
        self._key = key

    @property
    def path(self) -> str:
        if self._parent is None:
            return ""
        parent = self._parent.path
        if isinstance(self._key, int):
            return f"{parent}[{self._key}]"
        return f"{parent}.{self._key}" if parent else self._key

    def error(self, message: str) -> InputError:
        return InputError(message, path=self.path, source=self.source)

    # --- shapes -------------------------------------------------------------------------

    @property
    def is_mapping(self) -> bool:
        return isinstance(self.data, dict)

    @property
    def is_sequence(self) -> bool:
        return isinstance(self.data, list)

    @property
    def is_null(self) -> bool:
        return self.data is None

    def mapping(self, what: str = "a mapping") -> dict[str, Decoded]:
        data = self.data
        if not isinstance(data, dict):
            raise self.error(f"expected {what}, got {self.describe()}")
        source = self.source
        # Keys are text: ``read_document`` refused any other.
        return {key: Decoded(value, source, self, key) for key, value in data.items()}

    def sequence(self, what: str = "a list") -> list[Decoded]:
        data = self.data
        if not isinstance(data, list):
            raise self.error(f"expected {what}, got {self.describe()}")
        source = self.source
        return [Decoded(value, source, self, index) for index, value in enumerate(data)]

    def items(self, what: str = "a list") -> list[Decoded]:
        if isinstance(self.data, list):
            return self.sequence(what)
        return [self]

    def value(self) -> object:
        data = self.data
        if isinstance(data, dict | list):
            raise self.error(f"expected a single value, got {self.describe()}")
        if isinstance(data, int) and not isinstance(data, bool):
            try:
                check_integer(data)
            except ValueError as exc:
                raise self.error(f"cannot read {excerpt(self._written())}: {exc}") from None
        return data

    def scalar(self) -> object:
        # JSON has no bare words: "on" arrives as text, and true as a boolean.
        return self.value()

    def text(self, what: str = "a name") -> str:
        data = self.data
        if isinstance(data, str):
            return data
        if data is None or isinstance(data, dict | list):
            raise self.error(f"expected {what}, got {self.describe()}")
        return self._written()

    def describe(self) -> str:
        data = self.data
        if isinstance(data, dict):
            return "a mapping"
        if isinstance(data, list):
            return "a list"
        if data is None:
            return "nothing"
        return excerpt(self._written(), 200)

    def _written(self) -> str:
        """A scalar as the document's text had it: a string as itself, a number as JSON."""
        data = self.data
        return data if isinstance(data, str) else json.dumps(data)


def read_document(document: Mapping[str, object], source: str | None = None) -> Decoded:
    """The root of a decoded JSON document, once it is known to be within the limits.

    Raises:
        UnreadableInputError: the document is past a limit of ``rollwise.core._document``
            (counted on it written as JSON), holds text no document may hold, a key that is not
            text, or a value JSON cannot hold.
    """
    limits = _Limits(source)
    if isinstance(document, dict | list):
        values, size = limits.measure(document, 1)
    else:  # parse_flag_set says what was expected
        values, size = 1, limits.scalar(document)
    # The YAML reader checked the size of the text first and counted values as it read; a
    # document past several limits may be refused here for another one of them.
    if size > MAX_DOCUMENT_BYTES:
        raise UnreadableInputError(
            f"the document is larger than {MAX_DOCUMENT_BYTES} bytes (1 MiB)", source=source
        )
    if values > MAX_NODES:
        raise UnreadableInputError(
            f"the document holds more than {MAX_NODES} values (aliases counted as copies)",
            source=source,
        )
    return Decoded(document, source)


class _Limits:
    """Measures a document as the YAML loader would have measured it written as JSON: how many
    values it holds (every key is one), how deep it nests, how long its text is, and which
    characters its text holds. The walk is the cost of reading a snapshot that is not in C, so
    the common cases (exact JSON types, plain ASCII text) take the shortest path."""

    __slots__ = ("source",)

    def __init__(self, source: str | None) -> None:
        self.source = source

    def measure(self, collection: object, depth: int) -> tuple[int, int]:
        """``(values, characters)`` of a collection and everything in it."""
        if depth > MAX_DEPTH:
            raise self._refuse(f"the document nests deeper than {MAX_DEPTH} levels")
        pairs: Iterable[tuple[object, object]]
        if isinstance(collection, dict):
            # Itself and its keys; "{", "}", ", " between entries and ": " in each.
            values, size = 1 + len(collection), 4 * len(collection) or 2
            pairs = collection.items()
        elif isinstance(collection, list):
            # Itself; "[", "]" and ", " between items.
            values, size = 1, 2 * len(collection) or 2
            pairs = zip(repeat(None), collection)
        else:
            raise TypeError(f"a {type(collection).__name__} is no collection")
        # Key, value, key, value…: the order the YAML reader met them in, so that the first
        # problem met is the one named.
        for key, child in pairs:
            if key is not None:
                if key.__class__ is not str:
                    raise self._refuse(f"a key is {type(key).__name__}, not text")
                if key.isascii() and key.isprintable() and '"' not in key and "\\" not in key:
                    size += len(key) + 2
                else:
                    size += self._text(key)
            kind = child.__class__
            if kind is str:
                text: str = child  # type: ignore[assignment]
                if text.isascii() and text.isprintable() and '"' not in text and "\\" not in text:
                    size += len(text) + 2
                else:
                    size += self._text(text)
                values += 1
            elif kind is dict or kind is list or isinstance(child, dict | list):
                inner, length = self.measure(child, depth + 1)
                values += inner
                size += length
            else:
                size += self.scalar(child)
                values += 1
        return values, size

    def scalar(self, value: object) -> int:
        """The length of a scalar's JSON text."""
        if value is None or value is True:
            return 4
        if value is False:
            return 5
        if isinstance(value, bool):  # pragma: no cover - bool has two values
            return 4
        if isinstance(value, int):
            return len(int.__repr__(value))
        if isinstance(value, float):
            if math.isfinite(value):
                return len(float.__repr__(value))
            return len(_NON_FINITE.get(value, "NaN"))
        if isinstance(value, str):
            return self._text(value)
        raise self._refuse(f"a value is {type(value).__name__}, which JSON cannot hold")

    def _text(self, text: str) -> int:
        """The length of text that needs escapes in JSON, once its characters are checked."""
        try:
            checked_text(text)
        except ValueError as exc:
            raise self._refuse(str(exc)) from None
        return len(encode_basestring_ascii(text))

    def _refuse(self, message: str) -> UnreadableInputError:
        return UnreadableInputError(message, source=self.source)
