"""A kill switch flipped on a flag the SDK holds: the flag's compiled program is copied with the
switch set rather than compiled again, and the flag set is rebuilt around it with one copy of
its flags. What evaluations return must be what a flag read with that switch returns."""

from __future__ import annotations

from dataclasses import fields, replace

import pytest

from rollwise.core import FlagSet, Reason, evaluate, load_flags
from tests.core.test_program_lazy import CONTEXTS, FLAGS


@pytest.mark.parametrize("compiled", [True, False])
def test_a_kill_switched_flag_answers_as_a_flag_read_with_that_switch(compiled: bool) -> None:
    flags = load_flags(FLAGS)
    for key, flag in flags.flags.items():
        before = [evaluate(flag, context) for context in CONTEXTS] if compiled else None
        killed = flag.kill_switched(True)
        assert killed.killed and not flag.killed
        assert all(evaluate(killed, c).reason is Reason.KILLED for c in CONTEXTS), key
        # The copy did not change the program it was made from.
        if before is not None:
            assert [evaluate(flag, context) for context in CONTEXTS] == before
        revived = killed.kill_switched(False)
        fresh = replace(flag, killed=False)  # compiled anew from the flag's fields
        assert [evaluate(revived, c) for c in CONTEXTS] == [evaluate(fresh, c) for c in CONTEXTS]
        assert (
            revived.program is not flag.program and revived.program.run.__self__ is revived.program
        )


def test_a_flag_set_with_one_flag_changed_shares_the_rest() -> None:
    flags = load_flags(FLAGS)
    killed = flags.flags["checkout"].kill_switched(True)
    changed = flags.with_flags([killed], flags.version + 1)
    assert changed.version == flags.version + 1
    assert changed.flags["checkout"] is killed and changed.by_key["checkout"] is killed
    assert changed.flags["search"] is flags.flags["search"]
    assert dict(changed.flags) == changed.by_key and changed.by_key is not flags.by_key
    assert changed.segments is flags.segments and changed.metrics is flags.metrics
    # Made without __init__: every field must still be set (one added later included).
    assert all(hasattr(changed, field.name) for field in fields(FlagSet))
    assert changed == replace(
        flags, flags={**flags.flags, "checkout": killed}, version=changed.version
    )
    assert not flags.flags["checkout"].killed  # the set it was made from is unchanged
    with pytest.raises(TypeError):
        changed.flags["search"] = killed  # type: ignore[index]


def test_dict_of_copies_every_kind_of_mapping_as_dict_does() -> None:
    from collections import OrderedDict
    from collections.abc import Iterator, Mapping
    from types import MappingProxyType

    from rollwise.core._mappings import dict_of

    class Plain(Mapping[str, int]):  # a Mapping with no copy()
        def __getitem__(self, key: str) -> int:
            return {"a": 1, "b": 2}[key]

        def __iter__(self) -> Iterator[str]:
            return iter(("a", "b"))

        def __len__(self) -> int:
            return 2

    source = {"a": 1, "b": 2}
    for mapping in (
        source,
        MappingProxyType(source),
        OrderedDict(source),
        MappingProxyType(OrderedDict(source)),
        Plain(),
        MappingProxyType(Plain()),
    ):
        copied = dict_of(mapping)
        assert type(copied) is dict and copied == source
        assert copied is not source
