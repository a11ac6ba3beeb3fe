"""A kill switch pushed as ``event: kill``: served by setting the one flag, without copying the
table of flags, and the same in every respect as the server's whole snapshot of that version."""

from __future__ import annotations

import json
import random

from rollwise import Reason
from rollwise.core import evaluate, load_flags
from rollwise.core._flagdump import flags_document
from rollwise.sdk._snapshot import Served, parse_snapshot, with_kill
from tests.sdk.test_live_client import (
    ACME,
    FLAGS,
    ROLLOUT,
    FakeServer,
    document,
    live_client,
    wait_until,
)

CONTEXTS = [
    ACME,
    {"key": "u-2", "tenant": "globex", "plan": "pro", "app_version": "2.5.0"},
    {"key": "u-3", "tenant": "initech", "country": "DE", "app_version": "1.0.0"},
    {"key": "u-4"},
]


def kill_event(version: int, flag: str, killed: bool) -> tuple[str, str, str]:
    data = json.dumps({"version": version, "flag": flag, "killed": killed})
    return ("event: kill", f"data: {data}", "")


def test_kill_events_are_served_by_the_flag_alone_and_a_whole_snapshot_ends_them() -> None:
    server = FakeServer(carry=True)
    with live_client(server) as client:
        follower = client._live.follower  # type: ignore[union-attr]
        before = client.flags.flags
        table = follower._snapshot.read.by_key
        assert client.enabled("new-checkout", ACME)
        server.announce(*kill_event(13, "new-checkout", True))
        wait_until(lambda: client.stats().snapshot_version == 13)
        assert not client.enabled("new-checkout", ACME)
        assert client.resolve("new-checkout", ACME).reason is Reason.KILLED
        held = follower._snapshot
        assert set(held.switched) == {"new-checkout"}
        assert held.read.by_key is table  # not copied
        # Asked for, the whole set is made once: the other flags are the very objects served.
        after = client.flags
        assert after.version == 13 and after is client.flags
        assert after.flags["new-checkout"].killed
        assert all(after.flags[k] is before[k] for k in before if k != "new-checkout")
        assert held.rollouts[0].flag is after.flags["new-checkout"]
        # Unkilled: the flag read is served again, nothing left over the table.
        server.announce(*kill_event(14, "new-checkout", False))
        wait_until(lambda: client.stats().snapshot_version == 14)
        assert client.enabled("new-checkout", ACME)
        assert not follower._snapshot.switched
        assert follower._snapshot.flag("new-checkout") is before["new-checkout"]
        # A kill whose version does not follow the one held is fetched whole instead.
        server.document = document(16, killed=True)
        server.announce(*kill_event(16, "new-checkout", True))
        wait_until(lambda: client.stats().snapshot_version == 16)
        assert not follower._snapshot.switched and not client.enabled("new-checkout", ACME)
        assert follower._snapshot.read.version == 16


def test_any_sequence_of_kills_serves_what_the_whole_snapshot_of_its_version_serves() -> None:
    """Random kills and unkills over several flags, each applied to the snapshot before it:
    after each, the flags served (looked up as the client does, and as the whole set) evaluate
    as those of the whole snapshot the server has for that version, and only the flags whose
    switch differs from the table read are held apart."""
    flags = load_flags(FLAGS.read_text(encoding="utf-8"))
    keys = sorted(flags.flags)
    whole = {"version": 12, "flags": flags_document(flags), "rollouts": [ROLLOUT]}
    read = parse_snapshot(json.dumps(whole))
    generator = random.Random(20261203)
    for run in range(20):
        snapshot, switches = read, {key: flags.flags[key].killed for key in keys}
        for step in range(12):
            key = generator.choice(keys)
            switches[key] = not switches[key]
            snapshot = with_kill(snapshot, key, switches[key], snapshot.version + 1)
            whole["version"] = snapshot.version
            for name, killed in switches.items():
                whole["flags"]["flags"][name]["killed"] = killed
            expected = parse_snapshot(json.dumps(whole))
            assert snapshot.switched.keys() == {
                k for k in keys if switches[k] != flags.flags[k].killed
            }, (run, step)
            assert snapshot.read is read.read and snapshot.version == expected.version
            served = Served(snapshot)
            for name in keys:
                looked_up = served.switched.get(name, served.by_key[name])
                assert looked_up is snapshot.flag(name) is snapshot.flags.flags[name]
                assert looked_up.killed is switches[name]
                assert [evaluate(looked_up, c) for c in CONTEXTS] == [
                    evaluate(expected.flags.flags[name], c) for c in CONTEXTS
                ], (run, step, name)
            assert snapshot.flags.version == snapshot.version
            (rollout,) = snapshot.rollouts
            assert rollout.flag is snapshot.flag("new-checkout")
