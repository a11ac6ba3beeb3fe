"""YAML read once at the edge into located values.

Every value keeps its field path (``stages[2].bake``) and its line, so that validation errors
point at the exact spot in the file. Scalars keep their raw text too: YAML 1.1 reads a bare
``on``/``off`` as a boolean, but a variant called ``on`` is a name, not ``True``.

Every flags file and plan comes through here, from a person or from the network, so reading
is bounded: the size of the text, its characters, how deep it nests and how many values it
holds once its aliases are expanded. A document past a limit is refused with the limit named,
before it costs more than reading that far.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, Self, TypeVar

import yaml

from rollwise.core._errors import InputError, UnreadableInputError

_STR_TAG = "tag:yaml.org,2002:str"
_NULL_TAG = "tag:yaml.org,2002:null"
_INT_TAG = "tag:yaml.org,2002:int"
#: Bare words YAML 1.1 reads as booleans, which in a flags file are usually names.
_YAML11_BOOL_WORDS = {"yes", "no", "on", "off", "y", "n"}

#: The largest document read, in bytes of UTF-8: far beyond any real flags file or plan.
MAX_DOCUMENT_BYTES = 1024 * 1024
#: The deepest nesting of lists and mappings.
MAX_DEPTH = 64
#: The most values (scalars, lists, mappings) a document may hold, counting every alias as
#: a copy of what it names: "billion laughs" (aliases of aliases) is refused, not expanded.
MAX_NODES = 100_000
#: Magnitudes beyond this are no count, percentage or duration anyone means.
MAX_INTEGER = 2**63

# What YAML itself refuses (PyYAML's reader), found first so the error can name the line:
# C0 controls but tab, newline and carriage return; DEL; C1 controls but NEL; surrogates.
_UNPRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)

_SURROGATE = re.compile("[\ud800-\udfff]")
# In values, after escapes: C0 controls but tab, newline and carriage return; DEL; C1.
_ESCAPED_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f]")


def _constructor() -> yaml.constructor.SafeConstructor:
    return yaml.constructor.SafeConstructor()


def _construct(node: yaml.ScalarNode) -> object:
    """The scalar as YAML types it; ``ValueError`` if its text cannot be that type (a date
    like ``2026-13-45``, an integer of ten thousand digits)."""
    if node.tag == _INT_TAG and len(node.value) > 100:
        raise ValueError("a number beyond ±2^63 is not accepted")
    try:
        value = _constructor().construct_object(node)
    except (ValueError, OverflowError, ArithmeticError) as exc:
        raise ValueError(str(exc)) from None
    if isinstance(value, int) and not isinstance(value, bool):
        check_integer(value)
    return value


def excerpt(text: str, limit: int = 40) -> str:
    """``text`` quoted for an error message, cut to ``limit`` characters."""
    return repr(text) if len(text) <= limit else repr(text[: limit - 1] + "…")


def check_integer(value: int) -> None:
    """Refuse an integer no count, percentage or duration is.

    Raises:
        ValueError: its magnitude is beyond ``MAX_INTEGER``.
    """
    if abs(value) > MAX_INTEGER:
        raise ValueError("a number beyond ±2^63 is not accepted")


def checked_text(value: str) -> str:
    """A text value after its escapes, as a document may hold it: ``"\\ud83d\\ude00"`` (a
    UTF-16 pair, as JSON writes it) becomes the one character it encodes.

    Raises:
        ValueError: it holds a lone surrogate, or a control character other than tab, newline
            and carriage return (in a document they can only have been written as escapes).
    """
    if _SURROGATE.search(value):
        try:
            value = value.encode("utf-16", "surrogatepass").decode("utf-16")
        except UnicodeDecodeError:
            raise ValueError(
                "a value holds an escaped lone UTF-16 surrogate, which is no character"
            ) from None
    found = _ESCAPED_CONTROL.search(value)
    if found is not None:
        raise ValueError(
            f"a value holds the control character U+{ord(found.group()):04X} (written as "
            "an escape); only tab and newline are allowed"
        )
    return value


class Node(Protocol):
    """One value of a document being read, wherever it came from: a YAML file (``Located``) or
    decoded JSON (``rollwise.core._decoded.Decoded``). The flags parser reads documents only
    through this, so that both kinds get the same checks and the same errors."""

    @property
    def path(self) -> str:
        """The field path, like ``flags.new-checkout.rules[0]`` (empty for the root)."""
        ...

    def error(self, message: str) -> InputError:
        """An error about this value, naming its path (and line, where there is one)."""
        ...

    @property
    def is_mapping(self) -> bool: ...

    @property
    def is_sequence(self) -> bool: ...

    @property
    def is_null(self) -> bool: ...

    def mapping(self, what: str = "a mapping") -> Mapping[str, Self]:
        """The entries of a mapping; an error naming ``what`` was expected otherwise."""
        ...

    def sequence(self, what: str = "a list") -> Sequence[Self]:
        """The items of a list; an error naming ``what`` was expected otherwise."""
        ...

    def items(self, what: str = "a list") -> Sequence[Self]:
        """A list, or a single value read as a list of one."""
        ...

    def value(self) -> object:
        """The scalar, typed (int, float, bool, None, str; a YAML file may also hold dates)."""
        ...

    def scalar(self) -> object:
        """As ``value``, except that YAML 1.1's bare yes/no/on/off stay text (usually names)."""
        ...

    def text(self, what: str = "a name") -> str:
        """The scalar as written: ``on`` stays ``"on"``, ``2`` is ``"2"``."""
        ...

    def describe(self) -> str:
        """What the value is, for an error message: ``a mapping``, ``nothing``, ``'acme'``."""
        ...


N = TypeVar("N", bound=Node)


@dataclass(frozen=True, slots=True)
class Located:
    """One node of a YAML document with where it came from."""

    node: yaml.Node
    path: str
    source: str | None

    @property
    def line(self) -> int:
        return int(self.node.start_mark.line) + 1

    def error(self, message: str) -> InputError:
        """An error about this node, naming its path and line."""
        return InputError(message, path=self.path, line=self.line, source=self.source)

    def child_path(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    # --- shapes -------------------------------------------------------------------------

    @property
    def is_mapping(self) -> bool:
        return isinstance(self.node, yaml.MappingNode)

    @property
    def is_sequence(self) -> bool:
        return isinstance(self.node, yaml.SequenceNode)

    @property
    def is_scalar(self) -> bool:
        return isinstance(self.node, yaml.ScalarNode)

    @property
    def is_null(self) -> bool:
        return isinstance(self.node, yaml.ScalarNode) and self.node.tag == _NULL_TAG

    def mapping(self, what: str = "a mapping") -> dict[str, Located]:
        """The entries of a mapping node, keyed by the raw key text; duplicate keys are errors."""
        if not isinstance(self.node, yaml.MappingNode):
            raise self.error(f"expected {what}, got {self.describe()}")
        entries: dict[str, Located] = {}
        for key_node, value_node in self.node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise Located(key_node, self.path, self.source).error("keys must be plain names")
            key = str(key_node.value)
            if key in entries:
                located_key = Located(key_node, self.child_path(key), self.source)
                raise located_key.error(f"duplicate key {key!r}")
            entries[key] = Located(value_node, self.child_path(key), self.source)
        return entries

    def sequence(self, what: str = "a list") -> list[Located]:
        if not isinstance(self.node, yaml.SequenceNode):
            raise self.error(f"expected {what}, got {self.describe()}")
        return [Located(n, self.child_path(i), self.source) for i, n in enumerate(self.node.value)]

    def items(self, what: str = "a list") -> list[Located]:
        """A list, or a single value read as a list of one."""
        if self.is_sequence:
            return self.sequence(what)
        return [self]

    def value(self) -> object:
        """The scalar as YAML types it (int, float, bool, None, str, datetime)."""
        if not isinstance(self.node, yaml.ScalarNode):
            raise self.error(f"expected a single value, got {self.describe()}")
        try:
            return _construct(self.node)
        except ValueError as exc:
            raise self.error(f"cannot read {excerpt(self.node.value)}: {exc}") from None

    def scalar(self) -> object:
        """As ``value``, except that YAML 1.1's yes/no/on/off stay text (usually names)."""
        value = self.value()
        if isinstance(value, bool) and str(self.node.value).lower() in _YAML11_BOOL_WORDS:
            return str(self.node.value)
        return value

    def text(self, what: str = "a name") -> str:
        """The scalar's raw text: ``on`` stays the string ``"on"``."""
        if not isinstance(self.node, yaml.ScalarNode) or self.is_null:
            raise self.error(f"expected {what}, got {self.describe()}")
        return str(self.node.value)

    def describe(self) -> str:
        if isinstance(self.node, yaml.MappingNode):
            return "a mapping"
        if isinstance(self.node, yaml.SequenceNode):
            return "a list"
        if self.is_null:
            return "nothing"
        return excerpt(str(self.node.value), 200)


class Fields(Generic[N]):
    """A mapping node read field by field; unknown fields are errors that list the known ones."""

    def __init__(self, node: N, what: str) -> None:
        self.node = node
        self.entries = node.mapping(what)
        self.what = what
        self._seen: set[str] = set()

    def get(self, name: str) -> N | None:
        self._seen.add(name)
        entry = self.entries.get(name)
        if entry is None or entry.is_null:
            return None
        return entry

    def require(self, name: str, expected: str) -> N:
        entry = self.get(name)
        if entry is None:
            raise self.node.error(f"missing field {name!r}: expected {expected}")
        return entry

    def done(self, known: tuple[str, ...] = ()) -> None:
        """Fail on any field that was never asked for (a typo should not pass silently)."""
        known_names = sorted(set(known) | self._seen)
        for name, entry in self.entries.items():
            if name not in self._seen and name not in known:
                raise entry.error(
                    f"unknown field {name!r} in {self.what}; known fields: {', '.join(known_names)}"
                )


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting as it composes: it stops at the first value past a
    limit, before the composer (which recurses once per level) nests any deeper."""

    def __init__(self, text: str, source: str | None) -> None:
        super().__init__(text)
        self.source = source
        self.depth = 0
        self.total = 0
        self.sizes: dict[Any, int] = {}

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            # An alias is a copy of what it names, however many aliases that holds.
            self._grow(self.sizes.get(event.anchor, 1), event)
            return super().compose_node(parent, index)
        before = self.total
        self._grow(1, event)
        nests = isinstance(event, yaml.CollectionStartEvent)
        if nests:
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise self._limit(f"the document nests deeper than {MAX_DEPTH} levels", event)
        try:
            node = super().compose_node(parent, index)
        finally:
            if nests:
                self.depth -= 1
        if event.anchor is not None:
            self.sizes[event.anchor] = self.total - before
        if isinstance(node, yaml.ScalarNode) and isinstance(node.value, str):
            node.value = self._checked(node.value, event)
        return node

    def _checked(self, value: str, event: yaml.Event) -> str:
        """A scalar's value after its escapes (see ``checked_text``)."""
        try:
            return checked_text(value)
        except ValueError as exc:
            raise self._limit(str(exc), event) from None

    def _grow(self, count: int, event: yaml.Event) -> None:
        self.total += count
        if self.total > MAX_NODES:
            raise self._limit(
                f"the document holds more than {MAX_NODES} values (aliases counted as copies)",
                event,
            )

    def _limit(self, message: str, event: yaml.Event) -> UnreadableInputError:
        mark = event.start_mark
        line = int(mark.line) + 1 if mark is not None else None
        return UnreadableInputError(message, line=line, source=self.source)


def check_text(text: str, source: str | None = None) -> None:
    """Refuse text no flags file or plan is: over ``MAX_DOCUMENT_BYTES``, or holding a NUL or
    another control character (tab, newline and carriage return are fine).

    Raises:
        UnreadableInputError: naming the limit, or the character and its line.
    """
    if len(text) > MAX_DOCUMENT_BYTES or len(text.encode("utf-8", "surrogatepass")) > (
        MAX_DOCUMENT_BYTES
    ):
        raise UnreadableInputError(
            f"the document is larger than {MAX_DOCUMENT_BYTES} bytes (1 MiB)", source=source
        )
    found = _UNPRINTABLE.search(text)
    if found is not None:
        line = text.count("\n", 0, found.start()) + 1
        raise UnreadableInputError(
            f"the character U+{ord(found.group()):04X} is not allowed in a YAML document "
            "(no NUL or other control character; tab and newline are fine)",
            line=line,
            source=source,
        )


def load_document(text: str, source: str | None = None) -> Located:
    """Parse YAML text into a located root node, within the limits of this module.

    Raises:
        UnreadableInputError: the text is not well-formed YAML (with the line of the problem),
            holds no document, or is past a limit (size, characters, depth, values).
    """
    check_text(text, source)
    loader = _BoundedLoader(text, source)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = int(mark.line) + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        if exc.problem and exc.context and exc.context_mark is not None:
            # e.g. "while parsing a flow sequence (from line 3): expected ',' or ']'"
            problem = f"{exc.context} (from line {exc.context_mark.line + 1}): {exc.problem}"
        raise UnreadableInputError(f"invalid YAML: {problem}", line=line, source=source) from exc
    except yaml.YAMLError as exc:
        raise UnreadableInputError(f"invalid YAML: {exc}", source=source) from exc
    finally:
        loader.dispose()
    if node is None:
        raise UnreadableInputError("the document is empty", source=source)
    return Located(node, "", source)
