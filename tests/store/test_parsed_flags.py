"""The applied flags file is parsed once per version, by whichever path stored it or first
read it, and what every path sees is what a parse of the stored text gives."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

import rollwise.store._control as control
from rollwise.core import FlagSet
from rollwise.store import ConflictError, Store

ROOT = Path(__file__).resolve().parents[2]
FLAGS = (ROOT / "examples/checkout/flags.yaml").read_text()
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """The source of every flags file the store parses from now on."""
    seen: list[str | None] = []
    real = control.load_flags

    def counted(text: str, source: str | None = None) -> FlagSet:
        seen.append(source)
        return real(text, source)

    monkeypatch.setattr(control, "load_flags", counted)
    return seen


def test_a_kill_switch_after_an_apply_reads_no_file(
    store: Store, store_url: str, parses: list[str | None]
) -> None:
    """After an apply, a kill switch, the flags read and a second apply of a changed file parse
    only the files the applies were given (the first kill switch after applying a thousand
    flags spent about 0.7 s parsing the file it had just stored); and each version kept is
    the one stored: a second store on the same database, which parses the stored text, reads
    the same flags."""
    store.apply_flags(FLAGS, "flags.yaml", "alice", NOW)
    store.set_killed("new-checkout", True, "bob", NOW)
    first = store.flags()
    changed = FLAGS.replace("        percent: 25\n", "        percent: 30\n", 1)
    assert changed != FLAGS
    store.apply_flags(changed, "edited.yaml", "alice", NOW)
    store.set_killed("search-v2", True, "bob", NOW)
    second = store.flags()
    assert parses == ["flags.yaml", "edited.yaml"]

    other = Store.open(store_url)
    try:
        assert other.flags() == second
    finally:
        other.close()
    assert parses[-1] == "stored flags"  # the other store did parse the stored text
    assert first != second
    assert second.flags["new-checkout"].killed and second.flags["search-v2"].killed


def test_a_refused_file_is_not_kept(store: Store, parses: list[str | None]) -> None:
    """A file the apply refuses (it drops a flag without ``prune``) is not what later reads
    see: they keep the one stored."""
    store.apply_flags(FLAGS, "flags.yaml", "alice", NOW)
    kept = store.flags()
    dropped = FLAGS.replace("  search-v2:", "  search-v3:", 1)
    with pytest.raises(ConflictError, match="leaves out"):
        store.apply_flags(dropped, "dropped.yaml", "alice", NOW)
    assert store.flags() == kept
    assert "search-v2" in store.flags().flags
    assert parses == ["flags.yaml", "dropped.yaml"]
