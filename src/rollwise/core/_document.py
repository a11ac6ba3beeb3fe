"""YAML read once at the edge into located values.

Every value keeps its field path (``stages[2].bake``) and its line, so that validation errors
point at the exact spot in the file. Scalars keep their raw text too: YAML 1.1 reads a bare
``on``/``off`` as a boolean, but a variant called ``on`` is a name, not ``True``.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml

from rollwise.core._errors import InputError, UnreadableInputError

_STR_TAG = "tag:yaml.org,2002:str"


def _constructor() -> yaml.constructor.SafeConstructor:
    return yaml.constructor.SafeConstructor()


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
        return self.is_scalar and self.value() is None

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
        return _constructor().construct_object(self.node)

    def text(self, what: str = "a name") -> str:
        """The scalar's raw text: ``on`` stays the string ``"on"``."""
        if not isinstance(self.node, yaml.ScalarNode) or self.value() is None:
            raise self.error(f"expected {what}, got {self.describe()}")
        return str(self.node.value)

    def describe(self) -> str:
        if isinstance(self.node, yaml.MappingNode):
            return "a mapping"
        if isinstance(self.node, yaml.SequenceNode):
            return "a list"
        raw = self.node.value
        if self.node.tag != _STR_TAG and _constructor().construct_object(self.node) is None:
            return "nothing"
        return repr(raw)


class Fields:
    """A mapping node read field by field; unknown fields are errors that list the known ones."""

    def __init__(self, node: Located, what: str) -> None:
        self.node = node
        self.entries = node.mapping(what)
        self.what = what
        self._seen: set[str] = set()

    def get(self, name: str) -> Located | None:
        self._seen.add(name)
        entry = self.entries.get(name)
        if entry is None or entry.is_null:
            return None
        return entry

    def require(self, name: str, expected: str) -> Located:
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


def load_document(text: str, source: str | None = None) -> Located:
    """Parse YAML text into a located root node.

    Raises:
        UnreadableInputError: the text is not well-formed YAML (with the line of the problem),
            or holds no document.
    """
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
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
    if node is None:
        raise UnreadableInputError("the document is empty", source=source)
    return Located(node, "", source)
