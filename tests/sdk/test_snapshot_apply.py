"""Applying a new snapshot: read from the decoded JSON against the one served, swapped in as a
whole while the application evaluates."""

from __future__ import annotations

import copy
import json
import threading
import time
from typing import Any

from rollwise.sdk._snapshot import parse_snapshot
from tests.sdk.test_live_client import ACME, ROLLOUT, FakeServer, document, live_client, wait_until


def test_a_new_version_reuses_the_flags_it_did_not_change() -> None:
    """A kill switch pushed on the stream is served; the flags it left alone are the very
    objects already served (not read and compiled again)."""
    server = FakeServer(carry=True)
    with live_client(server) as client:
        before = client.flags.flags
        server.publish(document(13, killed=True))
        wait_until(lambda: client.stats().snapshot_version == 13)
        after = client.flags.flags
        assert after["search-v2"] is before["search-v2"]
        assert after["new-checkout"] is not before["new-checkout"]
        assert after["new-checkout"].killed and not client.enabled("new-checkout", ACME)


def test_a_snapshot_read_against_another_equals_one_read_alone() -> None:
    """Reading against the previous snapshot changes nothing but the work done."""
    first = parse_snapshot(json_of(document(12)))
    second = parse_snapshot(json_of(document(13, killed=True)), previous=first)
    alone = parse_snapshot(json_of(document(13, killed=True)))
    assert second.flags == alone.flags and second.version == alone.version == 13
    assert [(r.id, r.flag.key, r.stage) for r in second.rollouts] == [(3, "new-checkout", 1)]
    assert second.rollouts[0].flag is second.flags.flags["new-checkout"]


def json_of(snapshot: dict[str, Any]) -> bytes:
    return json.dumps(snapshot).encode()


def _version(version: int, *, on: bool) -> dict[str, Any]:
    """Snapshot ``version``: new-checkout served ``on`` to every tenant (or to none) under a
    rollout whose id and stage say which: (1, 1) when on, (2, 2) when off."""
    snapshot = document(version)
    flag = snapshot["flags"]["flags"]["new-checkout"]
    flag["rules"] = [{"serve": "on"}] if on else []
    rollout = copy.deepcopy(ROLLOUT)
    rollout["id"] = rollout["stage"] = 1 if on else 2
    snapshot["rollouts"] = [rollout]
    return snapshot


def test_evaluations_in_flight_see_one_snapshot_or_the_other() -> None:
    """While snapshots alternate as fast as the stream delivers them, every exposure recorded
    pairs a snapshot's flag with that same snapshot's rollout, never one with the other."""
    server = FakeServer(_version(1, on=True), carry=True)
    stop = threading.Event()
    failures: list[BaseException] = []
    with live_client(server, ledger_units="plain") as client:

        def publish() -> None:
            version = 1
            while not stop.is_set():
                version += 1
                server.publish(_version(version, on=version % 2 == 1))
                stop.wait(0.002)

        deadline = time.monotonic() + 30

        def evaluate(offset: int) -> None:
            # 20,000 evaluations per thread, and on until the snapshot has changed a few times
            # (a loaded machine may apply few versions while 40,000 evaluations run).
            done = 0
            try:
                while done < 20_000 or (
                    client.stats().snapshot_version < 6 and time.monotonic() < deadline
                ):
                    index = offset + 2 * done
                    context = {**ACME, "tenant": f"t-{index}"}
                    if index % 4 < 2:
                        client.enabled("new-checkout", context)
                    else:
                        client.resolve("new-checkout", context)
                    done += 1
            except BaseException as exc:  # pragma: no cover - reported below
                failures.append(exc)

        threads = [threading.Thread(target=evaluate, args=(n,)) for n in range(2)]
        publisher = threading.Thread(target=publish)
        publisher.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        stop.set()
        publisher.join()
        assert client.flush() is True
        versions = client.stats().snapshot_version
    assert not failures
    assert versions > 3, "the snapshot changed while the application evaluated"
    seen = {(row["rollout"], row["stage"], row["exposed"]) for row in server.exposures()}
    assert seen == {(1, 1, True), (2, 2, False)}
