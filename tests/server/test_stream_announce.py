"""A kill switch (or a flags file) applied through a replica reaches that replica's SDK streams at
once: the request announces the new version to the streams itself, instead of leaving it to the
replica's next look at the store. Here that look is an hour away, so only the announcement can
deliver it; each stream is sent the snapshot as one event, encoded once per version."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from rollwise import Client
from rollwise.core import Reason
from rollwise.server import create_app
from rollwise.store import Role, Store
from tests._serving import TIMEOUT, server_client, serving

ROOT = Path(__file__).resolve().parents[2]
ADMIN = "rw_admin_stream-announce-test"
CONTEXT = {"tenant": "globex", "app_version": "2.5.0"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A real server whose watch of the store looks once an hour; yields its URL and an SDK
    key, with the example flags applied."""
    store = Store.open(f"sqlite:///{tmp_path / 'announce.db'}")
    app = create_app(store, controller=False, watch_interval=3600.0, admin_token=ADMIN)
    try:
        with serving(app) as url:
            with _admin(url) as admin:
                flags = (ROOT / "examples/checkout/flags.yaml").read_text()
                admin.put("/api/v1/flags", content=flags).raise_for_status()
                key = admin.post("/api/v1/tokens", json={"name": "app", "role": Role.SDK.value})
            yield url, key.json()["secret"]
    finally:
        store.close()


def _admin(url: str) -> httpx.Client:
    """The admin's client."""
    return server_client(url, ADMIN)


def _until(condition: object, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.01)
    return False


def test_a_kill_and_a_flags_file_reach_the_streams_without_the_store_watch(
    server: tuple[str, str],
) -> None:
    url, key = server
    with (
        Client(url, key, flush_interval=60.0, poll_interval=3600.0, startup_timeout=10.0) as client,
        _admin(url) as admin,
    ):
        assert client.stats().stream_connected or _until(lambda: client.stats().stream_connected)
        assert client.resolve("new-checkout", CONTEXT).reason is not Reason.KILLED
        admin.post("/api/v1/flags/new-checkout/kill").raise_for_status()
        assert _until(lambda: client.resolve("new-checkout", CONTEXT).reason is Reason.KILLED)
        admin.post("/api/v1/flags/new-checkout/unkill").raise_for_status()
        assert _until(lambda: client.resolve("new-checkout", CONTEXT).reason is not Reason.KILLED)
        # A flags file with a new description: a new version, announced by the request too.
        before = client.stats().snapshot_version
        flags = (ROOT / "examples/checkout/flags.yaml").read_text()
        changed = flags.replace("The new checkout flow.", "The new checkout flow, v2.")
        version = admin.put("/api/v1/flags", content=changed).json()["snapshot_version"]
        assert version > before
        assert _until(lambda: client.stats().snapshot_version == version)


def _events(lines: Iterator[str], count: int) -> list[tuple[str, str]]:
    """The next ``count`` events of a server-sent event stream, as (type, data)."""
    found: list[tuple[str, str]] = []
    kind, data = "", ""
    for line in lines:
        if line.startswith("event:"):
            kind = line.partition(":")[2].strip()
        elif line.startswith("data:"):
            data = line.partition(":")[2].strip()
        elif not line and data:
            found.append((kind, data))
            kind, data = "", ""
            if len(found) == count:
                break
    return found


@pytest.mark.parametrize("kills", [True, False])
def test_a_stream_that_asks_for_kills_gets_the_switch_not_the_snapshot(
    server: tuple[str, str], kills: bool
) -> None:
    """With ``kills=true`` a kill switch flipped here is ``event: kill`` {version, flag,
    killed}; two in a row are two events; without it (older SDKs), the whole snapshot."""
    url, key = server
    path = "/sdk/v1/stream?kills=true" if kills else "/sdk/v1/stream"
    with (
        server_client(url, key) as sdk,
        _admin(url) as admin,
        sdk.stream("GET", path, timeout=30) as stream,
    ):
        lines = stream.iter_lines()
        ((kind, data),) = _events(lines, 1)
        version = json.loads(data)["version"]
        assert kind == "snapshot"
        admin.post("/api/v1/flags/new-checkout/kill").raise_for_status()
        ((kind, data),) = _events(lines, 1)
        if kills:
            assert (kind, json.loads(data)) == (
                "kill",
                {"version": version + 1, "flag": "new-checkout", "killed": True},
            )
        else:
            document = json.loads(data)
            assert kind == "snapshot" and document["version"] == version + 1
            assert document["flags"]["flags"]["new-checkout"]["killed"] is True
        admin.post("/api/v1/flags/new-checkout/unkill").raise_for_status()
        ((kind, data),) = _events(lines, 1)
        assert kind == ("kill" if kills else "snapshot")
        assert json.loads(data)["version"] == version + 2


def test_a_kill_applied_from_the_event_is_the_servers_snapshot_of_that_version(
    server: tuple[str, str],
) -> None:
    """The snapshot a client makes from ``event: kill`` is the one the server serves for that
    version: the same flags, the same rollouts, the rollout's flag the killed one (outcomes
    are attributed by the rules served)."""
    from rollwise.sdk._snapshot import parse_snapshot

    url, key = server
    with (
        Client(url, key, flush_interval=60.0, poll_interval=3600.0, startup_timeout=10.0) as client,
        # Storing a plan lints it, simulating it: seconds on a busy machine.
        server_client(url, ADMIN, timeout=2 * TIMEOUT) as admin,
    ):
        plan = (ROOT / "examples/checkout/plan.yaml").read_text()
        plan_id = admin.post("/api/v1/plans", content=plan).json()["id"]
        admin.post("/api/v1/rollouts", json={"plan_id": plan_id}).raise_for_status()
        assert _until(lambda: client.stats().stream_connected)
        started = admin.get("/api/v1/flags").json()["snapshot_version"]
        # The start is seen by the store watch only: ask the client to fetch it.
        client._live.follower.refresh()  # type: ignore[union-attr]
        assert client.stats().snapshot_version == started
        version = admin.post("/api/v1/flags/new-checkout/kill").json()["snapshot_version"]
        assert _until(lambda: client.stats().snapshot_version == version)
        served = client._live.follower._snapshot  # type: ignore[union-attr]
        body = httpx.get(
            f"{url}/sdk/v1/snapshot", headers={"Authorization": f"Bearer {key}"}
        ).content
        fetched = parse_snapshot(body)
        assert served.version == fetched.version == version
        assert dict(served.flags.flags) == dict(fetched.flags.flags)
        assert served.flags.flags["new-checkout"].killed
        (rollout,) = served.rollouts
        assert rollout.flag is served.flags.flags["new-checkout"]

        def fields(item: object) -> tuple[object, ...]:
            names = ("id", "flag", "stage", "variant", "unit", "segments", "window_minutes")
            maps = (dict(item.metrics), dict(item.tails))  # type: ignore[attr-defined]
            return (*(getattr(item, name) for name in names), *maps)

        assert [fields(r) for r in served.rollouts] == [fields(r) for r in fetched.rollouts]


def test_a_stale_look_at_the_store_does_not_take_the_version_back(tmp_path: Path) -> None:
    """The watcher reads the store's version in a thread; when that read began before a kill
    this replica announced, its answer is older than the announced version. It must not take
    the version back: OFREP would evaluate, and streams would be sent, the snapshot from before
    the kill (seen once in CI: OFREP answered DEFAULT right after a kill)."""
    store = Store.open(f"sqlite:///{tmp_path / 'stale.db'}")
    store.apply_flags((ROOT / "examples/checkout/flags.yaml").read_text(), "f", "t", _now())
    read = store.snapshot_version
    armed, stalled, release = threading.Event(), threading.Event(), threading.Event()

    def slow_read() -> int:
        version = read()
        if armed.is_set() and not stalled.is_set():
            stalled.set()  # read before the kill, answered after it
            release.wait(30)
        return version

    store.snapshot_version = slow_read  # type: ignore[method-assign]
    app = create_app(store, controller=False, watch_interval=0.01, admin_token=ADMIN)
    seen: list[int] = []
    versions = app.state.versions
    publish = versions.publish

    def recorded(version: int) -> None:
        publish(version)
        seen.append(versions.current)

    versions.publish = recorded
    try:
        with serving(app) as url:
            armed.set()
            assert stalled.wait(30)
            before = versions.current
            with _admin(url) as admin:
                admin.post("/api/v1/flags/new-checkout/kill").raise_for_status()
            killed = versions.current
            assert killed > before
            mark = len(seen)
            release.set()
            time.sleep(0.3)  # the stale answer lands, and later looks after it
            assert seen[mark:] and set(seen[mark:]) == {killed}, seen[mark:]
    finally:
        release.set()
        store.close()


def _now() -> datetime:
    return datetime.now(UTC)


def test_a_kill_through_another_replica_reaches_the_streams_as_a_kill_event(
    tmp_path: Path,
) -> None:
    """Two replicas on one database. A kill switch flipped through one reaches the other's
    streams at its next look at the store as ``event: kill`` (that version, that flag), not as
    the whole snapshot each SDK would read; a flags file, or two flips of one flag between two
    looks, as the snapshot."""
    url = f"sqlite:///{tmp_path / 'replicas.db'}"
    first, second = Store.open(url), Store.open(url)
    near = create_app(first, controller=False, watch_interval=3600.0, admin_token=ADMIN)
    far = create_app(second, controller=False, watch_interval=0.02, admin_token=ADMIN)
    flags = (ROOT / "examples/checkout/flags.yaml").read_text()
    try:
        with serving(near) as near_url, serving(far) as far_url:
            admin = _admin(near_url)
            version = admin.put("/api/v1/flags", content=flags).json()["snapshot_version"]
            key = admin.post("/api/v1/tokens", json={"name": "app", "role": Role.SDK.value})
            with server_client(far_url, key.json()["secret"]) as sdk:
                # The far replica's streams follow its watcher, not the store: wait for both.
                assert _until(lambda: sdk.get("/sdk/v1/snapshot").json()["version"] == version)
                assert _until(lambda: far.state.versions.current == version)
                with sdk.stream("GET", "/sdk/v1/stream?kills=true", timeout=30) as stream:
                    lines = stream.iter_lines()
                    ((kind, data),) = _events(lines, 1)
                    assert (kind, json.loads(data)["version"]) == ("snapshot", version)
                    admin.post("/api/v1/flags/new-checkout/kill").raise_for_status()
                    ((kind, data),) = _events(lines, 1)
                    assert (kind, json.loads(data)) == (
                        "kill",
                        {"version": version + 1, "flag": "new-checkout", "killed": True},
                    )
                    changed = flags.replace("The new checkout flow.", "The new checkout, v2.")
                    admin.put("/api/v1/flags", content=changed).raise_for_status()
                    ((kind, data),) = _events(lines, 1)
                    assert kind == "snapshot" and json.loads(data)["version"] == version + 2
            # Both flips of a flag before the far replica looks: the first is not a kill
            # event any more (the switch's row holds the second), so the snapshot goes out.
            assert first.kill_flips(version + 2, version + 2) == {}
            first.set_killed("new-checkout", False, "t", _now())
            first.set_killed("new-checkout", True, "t", _now())
            assert first.kill_flips(version + 2, version + 4) == {
                version + 4: ("new-checkout", True)
            }
            admin.close()
    finally:
        first.close()
        second.close()


def test_streams_are_kept_alive_by_one_beat_and_still_get_every_change(tmp_path: Path) -> None:
    """Every stream writes ``: ping`` at each keep-alive beat (one timer for them all, here
    every 0.2 s instead of 15), and a change between beats still comes as its event."""
    from rollwise.server._app import VersionWatch

    store = Store.open(f"sqlite:///{tmp_path / 'beat.db'}")
    app = create_app(store, controller=False, watch_interval=3600.0, admin_token=ADMIN)
    app.state.versions = VersionWatch(keepalive=0.2)
    try:
        with (
            serving(app) as url,
            _admin(url) as admin,
        ):
            flags = (ROOT / "examples/checkout/flags.yaml").read_text()
            admin.put("/api/v1/flags", content=flags).raise_for_status()
            key = admin.post("/api/v1/tokens", json={"name": "app", "role": Role.SDK.value})
            with (
                server_client(url, key.json()["secret"]) as sdk,
                sdk.stream("GET", "/sdk/v1/stream?kills=true", timeout=30) as first,
                sdk.stream("GET", "/sdk/v1/stream?kills=true", timeout=30) as second,
            ):
                streams = [first.iter_lines(), second.iter_lines()]
                for lines in streams:
                    assert [kind for kind, _ in _events(lines, 1)] == ["snapshot"]
                for lines in streams:
                    pings = 0
                    for line in lines:
                        if line == ": ping":
                            pings += 1
                            if pings == 3:
                                break
                        else:
                            assert line == "", f"only keep-alives between changes: {line!r}"
                admin.post("/api/v1/flags/new-checkout/kill").raise_for_status()
                for lines in streams:
                    ((kind, data),) = _events(lines, 1)
                    assert kind == "kill" and json.loads(data)["killed"] is True
    finally:
        store.close()
