"""The control plane as a state machine: operators, the controller, SDK batches and stale
readers interleaved at random (Hypothesis) on a real store.

After every step the store must still keep its promises: every status change is one the
rollout table allows, every applied transition has exactly one audit entry, an ended rollout
never changes again, a flag has at most one live rollout, the snapshot SDKs are served always
builds, and a rolled-back flag serves its rollback variant to everyone until it is rolled out
again. A refused request stores nothing at all.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from rollwise.control import Controller, ManualClock, served_flags, snapshot_document
from rollwise.core import LIVE_STATUSES, FlagSet, RolloutAction, evaluate, next_status
from rollwise.core.judgement import Move, RolloutStatus
from rollwise.sdk._snapshot import snapshot_of
from rollwise.store import (
    AggregateRow,
    AuditEntry,
    ConflictError,
    NotFoundError,
    RefusedError,
    RolloutRecord,
    StaleVersionError,
    Store,
)
from rollwise.store import _schema as schema
from rollwise.store._control import FlagsApplied

ROOT = Path(__file__).resolve().parents[2]
FLAGS = (ROOT / "examples/checkout/flags.yaml").read_text()
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
OPERATOR = "operator:alice"

#: What every example ran through, reported at the end of the test (the interleavings figure).
RUN: Counter[str] = Counter()

# --- the files an operator can apply ------------------------------------------------------


def _edit(text: str, old: str, new: str) -> str:
    """``text`` with ``old`` replaced; the example file must still hold ``old``."""
    assert old in text, f"examples/checkout/flags.yaml no longer holds {old!r}"
    return text.replace(old, new)


def _without_flag(text: str, key: str) -> str:
    start = text.index(f"  {key}:\n")
    end = text.find("\n  ", start + len(key) + 4)
    while end != -1 and text[end + 3] == " ":  # deeper indentation: still inside the flag
        end = text.find("\n  ", end + 1)
    return text[:start] + (text[end + 1 :] if end != -1 else "")


@dataclass(frozen=True, slots=True)
class FlagsFile:
    text: str
    #: The flags it defines.
    flags: frozenset[str]
    #: The flags whose plan it leaves without its flag, variant, unit or segment.
    breaks: frozenset[str] = frozenset()


_BOTH = frozenset({"new-checkout", "search-v2"})
_PILOT_SEGMENT = (
    "  pilot-tenants:\n    description: Tenants who agreed to try changes first.\n"
    "    when:\n      - tenant: [acme]\n"
)
_PILOT_RULE = (
    "      - description: the pilot tenant is on\n"
    "        when: {segment: pilot-tenants}\n        serve: on\n"
)
FLAG_FILES: dict[str, FlagsFile] = {
    "as written": FlagsFile(FLAGS, _BOTH),
    "without variant on": FlagsFile(
        _edit(
            _edit(FLAGS, "variants: [off, on]", "variants: [off, beta]"),
            "serve: on\n",
            "serve: beta\n",
        ),
        _BOTH,
        frozenset({"new-checkout"}),
    ),
    "without segment pilot-tenants": FlagsFile(
        _edit(_edit(FLAGS, _PILOT_SEGMENT, ""), _PILOT_RULE, ""),
        _BOTH,
        frozenset({"new-checkout"}),
    ),
    "with new-checkout bucketed by user": FlagsFile(
        _edit(FLAGS, "    unit: tenant\n", "    unit: user\n"), _BOTH, frozenset({"new-checkout"})
    ),
    "without segment eu": FlagsFile(
        _edit(
            _edit(FLAGS, "  eu:\n    when:\n      - region: {starts_with: eu-}\n", ""),
            "          - segment: eu\n",
            "",
        ),
        _BOTH,
        frozenset({"search-v2"}),
    ),
    "without variant treatment": FlagsFile(
        _edit(
            _edit(FLAGS, "[control, treatment]", "[control, ranked]"),
            "treatment: 50",
            "ranked: 50",
        ),
        _BOTH,
        frozenset({"search-v2"}),
    ),
    "without new-checkout": FlagsFile(
        _without_flag(FLAGS, "new-checkout"),
        frozenset({"search-v2"}),
        frozenset({"new-checkout"}),
    ),
    "without search-v2": FlagsFile(
        _without_flag(FLAGS, "search-v2"),
        frozenset({"new-checkout"}),
        frozenset({"search-v2"}),
    ),
}

# --- the plans, and what a rollout of each serves ------------------------------------------

PLANS = {
    "new-checkout": """
flag: new-checkout
unit: tenant
variant: on
guards:
  - {metric: checkout.error, kind: rate, tolerance: 50%, on_regression: rollback}
  - {metric: checkout.abandoned, kind: rate, tolerance: 50%, on_regression: pause}
stages:
  - {name: internal, audience: {segments: [internal-team]}, bake: 10m, min_samples: 100}
  - {name: pilot, audience: {segments: [pilot-tenants]}, bake: 10m, min_samples: 100, approval: required}
  - {name: quarter, audience: {percent: 25}, bake: 10m, min_samples: 100, approval: required}
  - {name: all, audience: {percent: 100}, bake: 10m, min_samples: 100}
max_stage_duration: 1d
rollback: {to: off}
""",
    "search-v2": """
flag: search-v2
unit: user
variant: treatment
guards:
  - {metric: checkout.error, kind: rate, tolerance: 50%, on_regression: rollback}
stages:
  - {name: eu, audience: {segments: [eu]}, bake: 5m, min_samples: 100}
  - {name: all, audience: {percent: 100}, bake: 5m, min_samples: 100}
max_stage_duration: 1d
rollback: {to: control}
""",
}
STAGES = {
    "new-checkout": ("internal", "pilot", "quarter", "all"),
    "search-v2": ("eu", "all"),
}
NEEDS_APPROVAL = {"new-checkout": {"pilot", "quarter"}, "search-v2": set()}
EXPOSED_VARIANT = {"new-checkout": "on", "search-v2": "treatment"}
ROLLBACK_VARIANT = {"new-checkout": "off", "search-v2": "control"}
#: Someone in each plan's first stage: served the new variant while its rollout is live.
FIRST_AUDIENCE: dict[str, dict[str, object]] = {
    "new-checkout": {
        "key": "dev-1",
        "tenant": "initech",
        "team": "checkout",
        "app_version": "3.0.0",
    },
    "search-v2": {"key": "eu-1", "region": "eu-west-1", "tier": "pro", "app_version": "3.0.0"},
}
#: Everyone the rollback must reach: the pilot tenant, the internal team, the EU, the rest.
_PEOPLE: list[dict[str, object]] = [
    {
        "key": "a-1",
        "tenant": "acme",
        "team": "checkout",
        "region": "eu-west-1",
        "app_version": "9.0.0",
    },
    {
        "key": "g-1",
        "tenant": "globex",
        "region": "us-east-1",
        "tier": "pro",
        "app_version": "2.4.0",
    },
    {"key": "n-1", "tenant": "initech"},
]
CONTEXTS = _PEOPLE + [
    {"key": f"user-{i}", "tenant": f"tenant-{i}", "region": "eu-central-1", "app_version": "3.1.0"}
    for i in range(8)
]

_OPERATOR_ACTIONS = [RolloutAction.PAUSE, RolloutAction.RESUME, RolloutAction.ROLLBACK]
_STALE_ACTIONS = [*_OPERATOR_ACTIONS, RolloutAction.EXPAND, RolloutAction.COMPLETE]
_STAGE_NAMES = sorted({name for names in STAGES.values() for name in names} | {"nope"})
#: Which rollout a rule acts on: 0 is the newest, larger numbers reach older ones.
_PICKS = st.integers(min_value=0, max_value=6)


# --- fresh databases, one per example -------------------------------------------------------


class Databases(Protocol):
    def fresh(self) -> Store: ...

    def discard(self, store: Store) -> None: ...


class SqliteCopies:
    """A migrated, empty SQLite file, copied for each example (cheaper than migrating)."""

    def __init__(self, url: str, directory: Path) -> None:
        Store.open(url).close()
        self.template = Path(url.removeprefix("sqlite:///"))
        self.directory = directory
        self.count = 0

    def fresh(self) -> Store:
        self.count += 1
        path = self.directory / f"example-{self.count}.db"
        for suffix in ("", "-wal"):
            if Path(f"{self.template}{suffix}").exists():
                shutil.copyfile(f"{self.template}{suffix}", f"{path}{suffix}")
        return Store.open(f"sqlite:///{path}")

    def discard(self, store: Store) -> None:
        path = store.engine.url.database
        store.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


class PostgresTruncated:
    """One migrated schema, emptied for each example (TRUNCATE fires no row trigger, so the
    append-only audit log can be emptied between examples), with its seeded rows put back."""

    def __init__(self, url: str) -> None:
        self.url = url
        store = Store.open(url)
        with store.engine.connect() as connection:
            self.seeded = [dict(row._mapping) for row in connection.execute(sa.select(schema.meta))]
        store.close()

    def fresh(self) -> Store:
        store = Store.open(self.url)
        tables = ", ".join(f'"{table.name}"' for table in schema.metadata.sorted_tables)
        with store.engine.begin() as connection:
            connection.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            connection.execute(schema.meta.insert(), self.seeded)
        return store

    def discard(self, store: Store) -> None:
        store.close()


@dataclass(frozen=True, slots=True)
class Stored:
    """Everything a request could have stored: row counts of every table but the lock's, the
    snapshot version, the rollouts, the flags file, the kill switches."""

    rows: tuple[int, ...]
    snapshot_version: int
    rollouts: tuple[RolloutRecord, ...]
    flags_text: str | None
    kill_switches: dict[str, bool]


# --- the machine ----------------------------------------------------------------------------


def _batch(rollout: RolloutRecord, health: str, requests: int, minute: int) -> list[AggregateRow]:
    """One window of both sides for both metrics; a regression triples one metric's rate."""
    rows = []
    for metric in ("checkout.error", "checkout.abandoned"):
        worse = (health, metric) in {
            ("more errors", "checkout.error"),
            ("more abandons", "checkout.abandoned"),
        }
        exposed_events = requests * (3 if worse else 1) // 100
        rows += [
            AggregateRow(
                rollout.id, rollout.stage, minute, True, "", metric, requests, exposed_events
            ),
            AggregateRow(
                rollout.id, rollout.stage, minute, False, "", metric, 10 * requests, requests // 10
            ),
        ]
    return rows


class ControlPlane(RuleBasedStateMachine):
    """One store, one controller, one clock; the rules are everything that can happen to them."""

    databases: ClassVar[Databases]
    reads = Bundle("reads")

    def __init__(self) -> None:
        super().__init__()
        RUN["examples"] += 1
        self.store = self.databases.fresh()
        self.clock = ManualClock(START)
        self.controller = Controller(self.store)
        self.store.apply_flags(FLAGS, "flags.yaml", OPERATOR, START)
        self.flags_file = "as written"
        self.plan_ids = {
            flag: self.store.save_plan(text, f"{flag}.yaml", OPERATOR, START).record.id
            for flag, text in PLANS.items()
        }
        self.killed: dict[str, bool] = {}
        self.batches = 0
        self.last_batch: tuple[str, list[AggregateRow]] | None = None
        # What the last check saw.
        self.seen: dict[int, RolloutRecord] = {}
        self.audit: list[AuditEntry] = []
        self.snapshot_version = 0
        self.parsed = False

    def teardown(self) -> None:
        self.databases.discard(self.store)

    # --- helpers ---------------------------------------------------------------------------

    def _pick(self, pick: int) -> RolloutRecord:
        ids = sorted(self.seen)
        return self.store.rollout(ids[-1 - pick % len(ids)])

    def _stored(self) -> Stored:
        """Everything a request could have stored."""
        tables = [t for t in schema.metadata.sorted_tables if t.name != "meta"]
        counts = sa.select(
            *(
                sa.select(sa.func.count()).select_from(t).scalar_subquery().label(t.name)
                for t in tables
            )
        )
        with self.store.engine.connect() as connection:
            rows = tuple(connection.execute(counts).one())
        return Stored(
            rows,
            self.store.snapshot_version(),
            tuple(self.store.rollouts()),
            self.store.flags_text(),
            self.store.kill_switches(),
        )

    def _refused(self, expected: type[Exception], call: Callable[[], object], what: str) -> str:
        """``call`` raises exactly ``expected`` and stores nothing; returns the message."""
        before = self._stored()
        with pytest.raises(expected) as raised:
            call()
        assert type(raised.value) is expected, f"{what}: {raised.value!r}"
        assert self._stored() == before, f"{what} was refused but stored something"
        RUN[f"refused: {what}"] += 1
        return str(raised.value)

    # --- operators --------------------------------------------------------------------------

    @precondition(lambda self: self.seen)
    @rule(pick=_PICKS, action=st.sampled_from(_OPERATOR_ACTIONS))
    def operator_acts(self, pick: int, action: RolloutAction) -> None:
        current = self._pick(pick)

        def act() -> RolloutRecord:
            return self.store.transition(
                current,
                action=action,
                actor=OPERATOR,
                now=self.clock.now(),
                details={"reason": "the state machine says so"},
            )

        after = next_status(current.status, action)
        if after is None:
            message = self._refused(ConflictError, act, f"{action} of a {current.status} rollout")
            assert f"cannot {action.value} a rollout that is {current.status.value}" in message
            return
        moved = act()
        assert (moved.status, moved.stage, moved.version, moved.approvals) == (
            after,
            current.stage,
            current.version + 1,
            current.approvals,
        )
        RUN[f"applied: {action}"] += 1

    @precondition(lambda self: self.seen)
    @rule(pick=_PICKS, stage=st.sampled_from(_STAGE_NAMES))
    def operator_approves(self, pick: int, stage: str) -> None:
        current = self._pick(pick)
        names = STAGES[current.flag]

        def approve() -> RolloutRecord:
            return self.store.approve(current.id, stage, OPERATOR, self.clock.now())

        if stage not in names:
            message = self._refused(RefusedError, approve, "approval of an unknown stage")
            assert f"no stage {stage!r}" in message
            return
        acceptable = (
            current.status in LIVE_STATUSES
            and names.index(stage) == current.stage + 1
            and stage in NEEDS_APPROVAL[current.flag]
            and stage not in current.approvals
        )
        if not acceptable:
            self._refused(ConflictError, approve, "approval that is not due")
            return
        moved = approve()
        assert moved.approvals == tuple(sorted({*current.approvals, stage}))
        assert (moved.status, moved.stage, moved.version) == (
            current.status,
            current.stage,
            current.version + 1,
        )
        RUN["applied: approve"] += 1

    @rule(flag=st.sampled_from(["new-checkout", "search-v2", "no-such-flag"]), killed=st.booleans())
    def operator_switches(self, flag: str, killed: bool) -> None:
        def switch() -> tuple[int, bool]:
            return self.store.set_killed(flag, killed, OPERATOR, self.clock.now())

        if flag not in FLAG_FILES[self.flags_file].flags:
            self._refused(NotFoundError, switch, "kill switch of an unknown flag")
            return
        before = self._stored()
        version, changed = switch()
        assert changed == (self.killed.get(flag, False) != killed)
        if changed:
            assert version == before.snapshot_version + 1
            RUN["applied: kill switch"] += 1
        else:
            assert version == before.snapshot_version
            assert self._stored() == before, "a kill switch already in place stored something"
            RUN["no-op: kill switch"] += 1
        self.killed[flag] = killed

    @rule(flag=st.sampled_from(sorted(PLANS)), as_text=st.booleans())
    def operator_starts(self, flag: str, as_text: bool) -> None:
        def start() -> RolloutRecord:
            return self.store.start_rollout(
                None if as_text else self.plan_ids[flag],
                OPERATOR,
                self.clock.now(),
                text=PLANS[flag] if as_text else None,
            )

        if any(r.flag == flag for r in self.store.rollouts(live=True)):
            message = self._refused(ConflictError, start, "a second live rollout")
            assert "already has a live rollout" in message
            return
        if flag in FLAG_FILES[self.flags_file].breaks:
            self._refused(RefusedError, start, "a plan its flags no longer fit")
            return
        started = start()
        assert (started.flag, started.status, started.stage, started.version) == (
            flag,
            RolloutStatus.RUNNING,
            0,
            1,
        )
        RUN["applied: start"] += 1

    @rule(name=st.sampled_from(sorted(FLAG_FILES)), prune=st.booleans(), dry_run=st.booleans())
    def operator_applies_flags(self, name: str, prune: bool, dry_run: bool) -> None:
        file, current = FLAG_FILES[name], FLAG_FILES[self.flags_file]

        def apply() -> FlagsApplied:
            return self.store.apply_flags(
                file.text, f"{name}.yaml", OPERATOR, self.clock.now(), dry_run=dry_run, prune=prune
            )

        dropped = current.flags - file.flags
        live = {r.flag for r in self.store.rollouts(live=True)}
        if dropped and not prune:
            message = self._refused(ConflictError, apply, "a flags file dropping flags")
            assert all(key in message for key in dropped) and "prune" in message
            return
        if file.breaks & live:
            message = self._refused(ConflictError, apply, "a flags file breaking a live rollout")
            assert all(f"flag {key}" in message for key in file.breaks & live), message
            return
        before = self._stored()
        applied = apply()
        assert applied.changed == (name != self.flags_file)
        if dry_run or name == self.flags_file:
            assert applied.snapshot_version == before.snapshot_version
            assert self._stored() == before, "a dry run or an identical file stored something"
            RUN["no-op: flags file"] += 1
            return
        assert applied.snapshot_version == before.snapshot_version + 1
        self.flags_file = name
        RUN["applied: flags file"] += 1

    # --- the SDKs and the controller --------------------------------------------------------

    @precondition(lambda self: self.seen)
    @rule(
        pick=_PICKS,
        health=st.sampled_from(["healthy", "more errors", "more abandons"]),
        requests=st.sampled_from([300, 5_000, 50_000]),
    )
    def sdk_reports(self, pick: int, health: str, requests: int) -> None:
        rollout = self._pick(pick)
        self.batches += 1
        batch = f"batch-{self.batches:05d}"
        rows = _batch(rollout, health, requests, int(self.clock.now().timestamp() // 60))
        assert self.store.ingest(batch, "sdk:state-machine", rows, [], self.clock.now())
        self.last_batch = (batch, rows)
        RUN[f"batch: {health}"] += 1

    @precondition(lambda self: self.last_batch is not None)
    @rule()
    def sdk_retries_its_last_batch(self) -> None:
        assert self.last_batch is not None
        batch, rows = self.last_batch
        ids = sorted(self.seen)
        before = self.store.data_fingerprints(ids)
        assert not self.store.ingest(batch, "sdk:state-machine", rows, [], self.clock.now())
        assert self.store.data_fingerprints(ids) == before
        RUN["batch: retried"] += 1

    @rule(minutes=st.one_of(st.integers(0, 60), st.integers(61, 3 * 24 * 60)))
    def controller_ticks(self, minutes: int) -> None:
        now = self.clock.advance(timedelta(minutes=minutes))
        for outcome in self.controller.tick(now):
            # Nothing else acts between its read and its write: every move it makes applies.
            assert outcome.applied == (outcome.decision.move is not Move.HOLD), outcome
            RUN[f"controller: {outcome.decision.move}"] += 1

    # --- stale readers ----------------------------------------------------------------------

    @precondition(lambda self: self.seen)
    @rule(target=reads, pick=_PICKS)
    def someone_reads_a_rollout(self, pick: int) -> RolloutRecord:
        return self._pick(pick)

    @rule(record=reads, action=st.sampled_from(_STALE_ACTIONS))
    def someone_acts_on_what_they_read(self, record: RolloutRecord, action: RolloutAction) -> None:
        """An operator (or a second controller) acts on a read taken steps ago."""
        stages = len(STAGES[record.flag])
        if action is RolloutAction.EXPAND and record.stage + 1 >= stages:
            action = RolloutAction.COMPLETE  # past the last stage a controller completes
        current = self.store.rollout(record.id)

        def act() -> RolloutRecord:
            return self.store.transition(
                record,
                action=action,
                actor="operator:bob",
                now=self.clock.now(),
                stage=record.stage + 1 if action is RolloutAction.EXPAND else None,
                details={"reason": "acting on an old read"},
            )

        if next_status(record.status, action) is None:
            self._refused(ConflictError, act, f"{action} of a read that was {record.status}")
        elif current.version != record.version:
            message = self._refused(StaleVersionError, act, f"{action} of a stale read")
            assert f"changed since version {record.version}" in message
        else:
            moved = act()
            assert moved.version == record.version + 1
            RUN[f"applied: {action} of a read still current"] += 1

    # --- what must hold after every step ----------------------------------------------------

    @invariant()
    def the_store_keeps_its_promises(self) -> None:
        RUN["steps"] += 1
        rollouts = {r.id: r for r in self.store.rollouts()}
        audit = list(reversed(self.store.audit_log(limit=1_000_000)))
        self._transitions_follow_the_table(rollouts, audit)
        self._one_live_rollout_per_flag(rollouts)
        self._the_snapshot_builds_and_rollbacks_hold(rollouts)
        self.seen, self.audit = rollouts, audit

    def _transitions_follow_the_table(
        self, rollouts: dict[int, RolloutRecord], audit: list[AuditEntry]
    ) -> None:
        assert audit[: len(self.audit)] == self.audit, "the audit log is append-only"
        entries: dict[int, list[AuditEntry]] = {}
        for entry in audit[len(self.audit) :]:
            if entry.action.startswith("rollout."):
                entries.setdefault(entry.details["rollout_id"], []).append(entry)
        assert set(self.seen) <= set(rollouts), "a rollout disappeared"
        for rollout_id, now in rollouts.items():
            new = entries.get(rollout_id, [])
            before = self.seen.get(rollout_id)
            if before is None:
                assert (now.status, now.stage, now.version) == (RolloutStatus.RUNNING, 0, 1)
                assert [e.action for e in new] == ["rollout.start"]
                continue
            if now.version == before.version:
                assert now == before, f"rollout {rollout_id} changed without a new version"
                assert new == [], f"rollout {rollout_id}: audited {new} without a change"
                continue
            assert before.status in LIVE_STATUSES, f"an ended rollout changed: {before} → {now}"
            assert now.version == before.version + 1, f"versions {before.version} → {now.version}"
            assert len(new) == 1, f"rollout {rollout_id}: {before} → {now} audited as {new}"
            entry = new[0]
            action = RolloutAction(entry.action.removeprefix("rollout."))
            assert next_status(before.status, action) is now.status, (before, action, now)
            assert entry.details["from_version"] == before.version
            if action is RolloutAction.EXPAND:
                assert (now.stage, now.stage_entered_at) == (before.stage + 1, entry.at)
            else:
                assert (now.stage, now.stage_entered_at) == (before.stage, before.stage_entered_at)
            if action is RolloutAction.APPROVE:
                assert len(now.approvals) == len(before.approvals) + 1
                assert set(before.approvals) < set(now.approvals)
            else:
                assert now.approvals == before.approvals
            assert (now.ended_at is not None) == (now.status not in LIVE_STATUSES)
        # Over the whole history: the start and one entry per applied transition.
        counts = Counter(
            e.details.get("rollout_id") for e in audit if e.action.startswith("rollout.")
        )
        for rollout_id, now in rollouts.items():
            assert counts[rollout_id] == now.version, f"rollout {rollout_id}: {counts} vs {now}"

    @staticmethod
    def _one_live_rollout_per_flag(rollouts: dict[int, RolloutRecord]) -> None:
        live = Counter(r.flag for r in rollouts.values() if r.status in LIVE_STATUSES)
        assert all(count == 1 for count in live.values()), live

    def _the_snapshot_builds_and_rollbacks_hold(self, rollouts: dict[int, RolloutRecord]) -> None:
        version = self.store.snapshot_version()
        assert version >= self.snapshot_version, "the snapshot version went back"
        document: dict[str, Any] = snapshot_document(self.store)
        assert document["version"] == version
        served, _ = served_flags(self.store)
        assert {r["id"] for r in document["rollouts"]} == {
            r.id for r in rollouts.values() if r.status in LIVE_STATUSES and r.flag in served.flags
        }
        rolled_back = self._served_as_promised(served, rollouts)
        if rolled_back and (version != self.snapshot_version or not self.parsed):
            # And as an SDK reads the JSON it is sent (a YAML parse: once per new version).
            self._served_as_promised(snapshot_of(json.loads(json.dumps(document))).flags, rollouts)
            self.parsed = True
        self.snapshot_version = version

    def _served_as_promised(self, served: FlagSet, rollouts: dict[int, RolloutRecord]) -> bool:
        """A killed or rolled-back flag serves its safe variant to everyone; a live rollout
        serves its variant to its first stage's audience. Returns whether a flag is served
        rolled back."""
        rolled_back = False
        for key, flag in served.flags.items():
            assert flag.killed == self.killed.get(key, False)
            latest = max(
                (r for r in rollouts.values() if r.flag == key), key=lambda r: r.id, default=None
            )
            if flag.killed or (latest is not None and latest.status is RolloutStatus.ROLLED_BACK):
                safe = ROLLBACK_VARIANT[key]
                served_to = {evaluate(flag, context).variant for context in CONTEXTS}
                assert served_to == {safe}, f"{key} ({latest}) serves {served_to}, not only {safe}"
                RUN["checked: serves the safe variant"] += 1
                rolled_back = rolled_back or not flag.killed
            elif latest is not None and latest.status in LIVE_STATUSES:
                resolution = evaluate(flag, FIRST_AUDIENCE[key])
                assert resolution.variant == EXPOSED_VARIANT[key], (latest, resolution)
        return rolled_back


def _report() -> str:
    shown = ", ".join(f"{name} {count}" for name, count in sorted(RUN.items()))
    return f"{RUN['examples']} interleavings, {RUN['steps']} steps checked ({shown})"


def test_no_interleaving_breaks_the_control_plane(
    store_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Operators, the controller, SDK batches and stale readers in any order never make the
    store skip the table, lose an audit entry, revive an ended rollout, run two rollouts of a
    flag, or serve a snapshot that does not build or that exposes a rolled-back change."""
    if store_url.startswith("sqlite"):
        databases: Databases = SqliteCopies(store_url, tmp_path)
        examples = 200
    else:  # each PostgreSQL example costs a TRUNCATE and a connection: fewer of them
        databases = PostgresTruncated(store_url)
        examples = 25
    machine = type("ControlPlaneTest", (ControlPlane,), {"databases": databases})
    RUN.clear()
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
    report = _report()
    with capsys.disabled():
        print(f"\n[{store_url.split(':')[0]}] {report}")
    assert RUN["examples"] >= examples, report
