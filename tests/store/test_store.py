"""The store, on SQLite and PostgreSQL: nothing lost, nothing doubled, nothing half-written."""

from __future__ import annotations

import random
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from rollwise.core import InputError, RolloutAction
from rollwise.core.judgement import Decision, Move, RolloutStatus
from rollwise.store import (
    AggregateRow,
    ConflictError,
    ExposureRow,
    GaugeRow,
    NotFoundError,
    Role,
    StaleVersionError,
    Store,
)
from rollwise.store._schema import metadata

ROOT = Path(__file__).resolve().parents[2]
FLAGS = (ROOT / "examples/checkout/flags.yaml").read_text()
PLAN = (ROOT / "examples/checkout/plan.yaml").read_text()
NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def _started(store: Store):  # type: ignore[no-untyped-def]
    store.apply_flags(FLAGS, "flags.yaml", "alice", NOW)
    plan = store.save_plan(PLAN, "plan.yaml", "alice", NOW).record
    return store.start_rollout(plan.id, "alice", NOW)


def test_migrations_build_exactly_the_declared_schema(store: Store) -> None:
    """After migrating, the database matches the table definitions (no drift)."""
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_flags_round_trip_and_bad_flags_change_nothing(store: Store) -> None:
    """An applied flags file comes back whole; an invalid one is refused and stores nothing."""
    version = store.apply_flags(FLAGS, "flags.yaml", "alice", NOW).snapshot_version
    flags = store.flags()
    assert set(flags.flags) == {"new-checkout", "search-v2"}
    assert flags.flags["new-checkout"].rules[0].serve == "on"
    assert flags.version == version == store.snapshot_version()
    with pytest.raises(InputError, match=r"bad\.yaml:3"):
        store.apply_flags("flags:\n  f:\n    variants: [only]\n", "bad.yaml", "alice", NOW)
    assert store.snapshot_version() == version
    assert store.flags_text() == FLAGS


def test_kill_switch_survives_reapplying_flags(store: Store) -> None:
    """A kill is kept when the flags file is applied again, and audited."""
    store.apply_flags(FLAGS, "flags.yaml", "alice", NOW)
    store.set_killed("new-checkout", True, "bob", NOW)
    store.apply_flags(FLAGS, "flags.yaml", "alice", NOW)
    assert store.flags().flags["new-checkout"].killed
    assert not store.flags().flags["search-v2"].killed
    assert [e.action for e in store.audit_log(target="new-checkout")] == ["flag.kill"]
    with pytest.raises(NotFoundError, match="unknown flag 'nope'"):
        store.set_killed("nope", True, "bob", NOW)


def test_one_live_rollout_per_flag(store: Store) -> None:
    """A second live rollout of the same flag is refused by the database."""
    rollout = _started(store)
    assert (rollout.status, rollout.stage, rollout.version) == (RolloutStatus.RUNNING, 0, 1)
    again = store.save_plan(PLAN, "plan.yaml", "alice", NOW).record
    assert again.version == 2
    with pytest.raises(ConflictError, match="already has a live rollout"):
        store.start_rollout(again.id, "alice", NOW)


def test_transitions_are_version_checked_and_atomic(store: Store) -> None:
    """A transition from a stale read is refused and writes nothing; a good one writes the
    change, its decision and its audit entry together."""
    rollout = _started(store)
    decision = Decision(Move.EXPAND, 0, NOW + timedelta(hours=1), ("every gate is met",))
    moved = store.transition(
        rollout,
        actor="controller",
        action=RolloutAction.EXPAND,
        now=decision.at,
        stage=1,
        decision=decision,
    )
    assert (moved.stage, moved.version, moved.stage_entered_at) == (1, 2, decision.at)
    audit_before = len(store.audit_log())
    with pytest.raises(StaleVersionError):
        store.transition(rollout, actor="controller", action=RolloutAction.EXPAND, now=NOW, stage=1)
    assert len(store.audit_log()) == audit_before
    assert store.rollout(rollout.id) == moved
    (recorded,) = store.decisions(rollout.id)
    assert (recorded.move, recorded.reasons) == ("expand", ("every gate is met",))


def test_two_controllers_racing_apply_a_transition_once(store: Store) -> None:
    """Eight threads try the same transition from the same read: exactly one succeeds."""
    rollout = _started(store)
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def attempt() -> None:
        barrier.wait()
        try:
            store.transition(
                rollout, actor="controller", action=RolloutAction.EXPAND, now=NOW, stage=1
            )
            outcomes.append("applied")
        except StaleVersionError:
            outcomes.append("stale")

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["applied"] + ["stale"] * 7
    assert store.rollout(rollout.id).version == 2
    assert [e.action for e in store.audit_log()].count("rollout.expand") == 1


def test_the_audit_log_is_append_only(store: Store) -> None:
    """The database itself refuses to change or delete audit entries."""
    _started(store)
    for statement in ("UPDATE audit SET actor = 'mallory'", "DELETE FROM audit"):
        with (
            pytest.raises(sa.exc.DatabaseError, match="append-only"),
            store.engine.begin() as connection,
        ):
            connection.execute(sa.text(statement))
    assert {e.actor for e in store.audit_log()} == {"alice"}


def test_a_retried_batch_is_counted_once(store: Store) -> None:
    """Ingesting the same batch id twice adds its counts once; histograms add up."""
    rollout = _started(store)
    rows = [
        AggregateRow(rollout.id, 0, 100, True, "", "checkout.error", 500, 9),
        AggregateRow(rollout.id, 0, 100, False, "", "checkout.error", 9500, 95),
        AggregateRow(rollout.id, 0, 100, True, "", "checkout.latency", 500, 0, (1, 2, 3)),
    ]
    exposures = [ExposureRow(rollout.id, "unit-hash-1", 0, True, NOW)]
    assert store.ingest("batch-1", "sdk", rows, exposures, NOW)
    assert not store.ingest("batch-1", "sdk", rows, exposures, NOW)
    assert store.ingest("batch-2", "sdk", rows[2:], [], NOW)
    plan = store.parsed_plan(rollout.plan_id)
    observations = store.observations(rollout, plan)
    (errors,) = observations.rates[("checkout.error", None)]
    assert (errors.exposed.requests, errors.exposed.events, errors.baseline.events) == (500, 9, 95)
    (latency,) = observations.latencies[("checkout.latency", None)]
    assert latency.exposed == (2, 4, 6)
    # Stage 0 is the internal team (a segment): the sample-ratio check cannot use it.
    assert observations.exposure[0].exposed_units == 0
    assert store.ledger(rollout.id) == [("unit-hash-1", 0, NOW)]


def test_the_ledger_keeps_first_sighting_and_first_exposure_apart(store: Store) -> None:
    """A unit first seen unexposed and exposed later counts as unexposed for the sample-ratio
    check of its first stage, and is listed with the stage and time of its exposure."""
    store.apply_flags(FLAGS, "flags.yaml", "alice", NOW)
    plan_text = (
        "flag: new-checkout\nunit: tenant\n"
        "stages: [{name: a, audience: {percent: 5}}, {name: b, audience: {percent: 50}}]\n"
        "guards: [{metric: checkout.error, kind: rate, tolerance: 50%}]\n"
    )
    plan = store.save_plan(plan_text, "plan.yaml", "alice", NOW).record
    rollout = store.start_rollout(plan.id, "alice", NOW)
    later = NOW + timedelta(hours=1)
    store.ingest(
        "b1",
        "sdk",
        [],
        [ExposureRow(rollout.id, "u1", 0, False, NOW), ExposureRow(rollout.id, "u2", 0, True, NOW)],
        NOW,
    )
    store.ingest("b2", "sdk", [], [ExposureRow(rollout.id, "u1", 1, True, later)], later)
    moved = store.transition(
        rollout, actor="controller", action=RolloutAction.EXPAND, now=later, stage=1
    )
    observations = store.observations(moved, store.parsed_plan(plan.id))
    assert (observations.exposure[0].exposed_units, observations.exposure[0].baseline_units) == (
        1,
        1,
    )
    assert store.ledger(rollout.id) == [("u2", 0, NOW), ("u1", 1, later)]


def test_exposed_units_are_counted_as_the_ledger_lists_them(store: Store) -> None:
    """Per stage and per window of 5 or 15 minutes, the database's counts are those of the
    ledger's list, with units first exposed on a window's first microsecond, its last, and
    in between; units never exposed are not counted; a unit seen twice counts once."""
    rollout = _started(store)
    rng = random.Random(20261202)
    exposures = []
    for n in range(300):
        window = NOW + timedelta(minutes=15 * rng.randrange(12))
        last = timedelta(minutes=15, microseconds=-1)
        somewhere = timedelta(seconds=rng.uniform(0, 900))
        offset = rng.choice([timedelta(0), last, timedelta(minutes=5), somewhere])
        exposures.append(
            ExposureRow(rollout.id, f"u{n}", rng.randrange(2), rng.random() < 0.8, window + offset)
        )
    store.ingest("b1", "sdk", [], exposures[:200], NOW)
    store.ingest("b2", "sdk", [], exposures[150:], NOW)  # u150 to u199 seen again
    listed = store.ledger(rollout.id)
    assert 150 < len(listed) < 300
    for minutes in (5, 15):
        counted = store.exposed_units(rollout.id, minutes)
        per_stage = Counter(stage for _, stage, _ in listed)
        per_window = Counter(int(at.timestamp() // 60) // minutes * minutes for _, _, at in listed)
        assert dict(counted.per_stage) == dict(per_stage)
        assert list(counted.per_window) == sorted(per_window.items())
        assert counted.total == len(listed)


def test_the_ledger_pages_list_every_exposed_unit_once_in_unit_order(store: Store) -> None:
    """Followed page after page (``after`` = the last unit of the page before), any page size
    lists each exposed unit once, in the units' order, with the stage and time of its first
    exposure; ``from_stage`` keeps the units first exposed at that stage or later; the count is
    of them all, on every page; units never exposed are not listed."""
    rollout = _started(store)
    rng = random.Random(20261202)
    exposures = [
        ExposureRow(
            rollout.id,
            f"unit-{rng.randrange(10**6):06d}",
            rng.randrange(3),
            rng.random() < 0.8,
            NOW + timedelta(minutes=rng.randrange(600)),
        )
        for _ in range(500)
    ]
    store.ingest("b1", "sdk", [], exposures, NOW)
    listed = store.ledger(rollout.id)
    assert 300 < len(listed) < 500
    for from_stage in (0, 1, 2, 3):
        expected = sorted(entry for entry in listed if entry[1] >= from_stage)
        for size in (1, 7, 100, len(listed), 10_000):
            pages: list[list[tuple[str, int, datetime]]] = []
            after = None
            while True:
                entries, more, total = store.ledger_page(
                    rollout.id, after=after, limit=size, from_stage=from_stage
                )
                assert total == len(expected)
                assert len(entries) <= size and (not more or len(entries) == size)
                pages.append(entries)
                if not more:
                    break
                after = entries[-1][0]
            assert [entry for page in pages for entry in page] == expected
            if size == 1 and expected:
                assert len(pages) == len(expected)


def test_a_batch_with_a_bad_row_applies_nothing(store: Store) -> None:
    """A row for a rollout that does not exist refuses the whole batch, naming it."""
    rollout = _started(store)
    rows = [
        AggregateRow(rollout.id, 0, 100, True, "", "checkout.error", 500, 9),
        AggregateRow(rollout.id + 99, 0, 100, True, "", "checkout.error", 1, 1),
    ]
    with pytest.raises(NotFoundError, match=f"unknown rollout\\(s\\): {rollout.id + 99}"):
        store.ingest("batch-x", "sdk", rows, [], NOW)
    assert store.ingest("batch-x", "sdk", rows[:1], [], NOW)  # the id was not used up
    plan = store.parsed_plan(rollout.plan_id)
    (only,) = store.observations(rollout, plan).rates[("checkout.error", None)]
    assert only.exposed.requests == 500


def test_tokens_are_stored_hashed_and_can_be_revoked(store: Store) -> None:
    """A token authenticates by its secret until revoked; the secret is not stored."""
    record, secret = store.create_token("ci", Role.OPERATOR, "alice", NOW)
    assert store.authenticate(secret, NOW) == record
    with store.engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT secret_hash FROM tokens")).scalar_one()
    assert secret not in stored
    store.revoke_token(record.id, "alice", NOW)
    assert store.authenticate(secret) is None
    assert store.authenticate("rw_admin_guess") is None


def test_a_token_revoked_through_another_replica_stops_within_the_cache_time(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two replicas' stores on one database: each keeps a live token's row for
    AUTH_CACHE_SECONDS. A revoke stops the token at once on the replica that made it, and on the
    other once its kept row is older than that (the clock is moved, not waited for); an
    expired token is refused even while kept."""
    from rollwise.store import _tokens

    moment = [1000.0]
    monkeypatch.setattr(_tokens.time, "monotonic", lambda: moment[0])
    first, second = Store.open(store_url), Store.open(store_url)
    try:
        record, secret = first.create_token("sdk", Role.SDK, "alice", NOW)
        assert first.authenticate(secret, NOW) == record
        assert second.authenticate(secret, NOW) == record
        second.revoke_token(record.id, "alice", NOW)
        assert second.authenticate(secret, NOW) is None  # at once where it was revoked
        assert first.authenticate(secret, NOW) == record  # kept there, for now
        moment[0] += _tokens.AUTH_CACHE_SECONDS
        assert first.authenticate(secret, NOW) is None
        short, code = first.create_token(
            "short", Role.SDK, "alice", NOW, expires_at=NOW + timedelta(minutes=1)
        )
        assert first.authenticate(code, NOW) == short
        assert first.authenticate(code, NOW + timedelta(minutes=2)) is None  # kept, expired
    finally:
        first.close()
        second.close()


def test_reopening_keeps_everything(store_url: str) -> None:
    """Close and open again (migrations are idempotent): rollouts and audit are all there."""
    first = Store.open(store_url)
    rollout = _started(first)
    first.close()
    second = Store.open(store_url)
    try:
        assert second.rollout(rollout.id) == rollout
        assert len(second.audit_log()) == 3
    finally:
        second.close()


def test_exposed_samples_add_up_over_windows(store: Store) -> None:
    """min_samples counts the stage's exposed requests over all its windows (and per value of
    min_samples_per), not one window's."""
    rollout = _started(store)
    rows = [
        AggregateRow(rollout.id, 0, window, True, segment, metric, requests, 1)
        for window in (100, 160, 220)
        for metric in ("checkout.error", "checkout.abandoned")
        for segment, requests in (
            ("", 300),
            ("traffic_type=card", 200),
            ("traffic_type=wallet", 100),
        )
    ]
    assert store.ingest("windows", "sdk", rows, [], NOW)
    moved = store.transition(rollout, actor="t", action=RolloutAction.EXPAND, now=NOW, stage=1)
    moved = store.transition(moved, actor="t", action=RolloutAction.EXPAND, now=NOW, stage=2)
    rows = [
        AggregateRow(rollout.id, 2, w, True, s, "checkout.error", n, 0)
        for w in (300, 360)
        for s, n in (("", 50), ("traffic_type=card", 30))
    ]
    assert store.ingest("stage-2", "sdk", rows, [], NOW)
    observations = store.observations(moved, store.parsed_plan(rollout.plan_id))
    assert observations.samples[0] == 900
    assert observations.samples[2] == 100
    assert observations.samples_per[2] == {"card": 60}  # five-percent counts per traffic_type


def test_gauge_readings_are_read_newest_last_and_kept_for_a_day(store: Store) -> None:
    """A plan's gauge guard sees its metric's latest readings in time order; readings older
    than a day are dropped when new ones arrive."""
    rollout = _started(store)
    old = [GaugeRow("payments.queue_depth", 5.0, NOW - timedelta(days=2))]
    assert store.ingest("g-old", "sdk", [], [], NOW - timedelta(days=2), old)
    new = [
        GaugeRow("payments.queue_depth", v, NOW + timedelta(seconds=i))
        for i, v in enumerate((300.0, 1200.0))
    ]
    assert store.ingest("g-new", "sdk", [], [], NOW, new)
    observations = store.observations(rollout, store.parsed_plan(rollout.plan_id))
    assert [r.value for r in observations.gauges["payments.queue_depth"]] == [300.0, 1200.0]
