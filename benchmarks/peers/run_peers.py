#!/usr/bin/env python3
"""Peer-SDK evaluation benchmark: local boolean flag evaluations per second, one thread.

Runs in its OWN virtualenv (``benchmarks/peers/requirements.txt``), never in rollwise's
dependencies, and imports nothing from rollwise. Every peer SDK is configured offline from
flag definitions generated into a temporary directory, with events, metrics, registration
and polling off, and evaluates the same two flags over the same 10,000 pre-built contexts:

* ``a``: plain 25 % percentage rollout bucketed by the user key.
* ``b``: country in [US, CA, GB, DE] AND email ends with "@example.com" AND the user is in
  the segment ``premium`` (tier in [gold, platinum]), then a 50 % rollout by user key.

Usage::

    python benchmarks/peers/run_peers.py [--seconds S] [--repeats R] [--only NAME]

Exactly one JSON document is written to stdout; everything else goes to stderr. Without
``--only`` every peer is measured in a fresh child interpreter (the script re-runs itself
with ``--only NAME``) so that one SDK's imports, threads and garbage cannot disturb another.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import importlib.metadata
import ipaddress
import json
import logging
import os
import platform
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------------------
# The shared scenario definition
# --------------------------------------------------------------------------------------

POOL_SIZE = 10_000
POOL_SEED = 7
COUNTRIES = ["US", "CA", "GB", "DE", "FR", "JP"]
TIERS = ["free", "silver", "gold", "platinum"]

FLAG_A = "bench-a"
FLAG_B = "bench-b"
SEGMENT = "premium"
TARGET_COUNTRIES = ["US", "CA", "GB", "DE"]
EMAIL_SUFFIX = "@example.com"
PREMIUM_TIERS = ["gold", "platinum"]
ROLLOUT_A_PERCENT = 25
ROLLOUT_B_PERCENT = 50

SCENARIOS = {"a": FLAG_A, "b": FLAG_B}
SHARE_TOLERANCE = 0.03

PEERS = ("growthbook", "launchdarkly", "unleash", "flagd")

DEFAULT_SECONDS = 2.0
DEFAULT_REPEATS = 3
DEFAULT_WARMUP = 0.3
BATCH = 250  # evaluations between two clock reads

# Loggers of the SDKs and their dependencies; all are silenced (see quiet_sdk_logging).
SDK_LOGGERS = (
    "ldclient",
    "UnleashClient",
    "yggdrasil_engine",
    "apscheduler",
    "growthbook",
    "openfeature",
    "json_logic",
    "urllib3",
    "asyncio",
    "grpc",
)

log = logging.getLogger("run_peers")


@dataclass(frozen=True)
class User:
    key: str
    country: str
    email: str
    tier: str

    def attributes(self) -> dict[str, str]:
        return {"country": self.country, "email": self.email, "tier": self.tier}


def build_users() -> list[User]:
    """The deterministic context pool; draw order per user: country, email coin, tier."""
    rng = random.Random(POOL_SEED)
    users = []
    for i in range(POOL_SIZE):
        country = rng.choice(COUNTRIES)
        email = f"user-{i}@example.com" if rng.random() < 0.5 else f"user-{i}@other.org"
        tier = rng.choice(TIERS)
        users.append(User(key=f"user-{i}", country=country, email=email, tier=tier))
    return users


def eligible_b(user: User) -> bool:
    """The targeting part of scenario (b), in plain Python, to check each SDK's answers."""
    return (
        user.country in TARGET_COUNTRIES
        and user.email.endswith(EMAIL_SUFFIX)
        and user.tier in PREMIUM_TIERS
    )


# --------------------------------------------------------------------------------------
# Peer setups. Each returns pre-bound zero-argument evaluation calls, one per user, so the
# timing harness is identical for every SDK: ``for call in batch: call()``.
# --------------------------------------------------------------------------------------


@dataclass
class PeerSetup:
    version: str
    call: str  # the public call that is timed, for the report
    calls: dict[str, list[Callable[[], object]]]  # scenario -> one call per user
    config: str  # how the SDK was configured, for the report
    #: The same, from a plain dict per user (built once): the SDK's own way of evaluating
    #: for a context that arrives as a dict, conversion included. Scenario -> calls.
    dict_calls: dict[str, list[Callable[[], object]]] = field(default_factory=dict)
    dict_call: str = ""
    components: dict[str, str] = field(default_factory=dict)
    close: Callable[[], None] = lambda: None


def dist_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def setup_growthbook(users: list[User], workdir: Path) -> PeerSetup:
    from growthbook import GrowthBook
    from growthbook.common_types import Feature

    def rollout_rule(rule_id: str, flag: str, percent: int) -> dict[str, Any]:
        # What the GrowthBook app emits for a "Percentage rollout" rule.
        return {
            "id": rule_id,
            "force": True,
            "coverage": percent / 100,
            "hashAttribute": "id",
            "seed": flag,
            "hashVersion": 2,
        }

    rule_b = rollout_rule("rule-b", FLAG_B, ROLLOUT_B_PERCENT)
    rule_b["condition"] = {
        "country": {"$in": TARGET_COUNTRIES},
        # GrowthBook has no "ends with" operator; its UI emits an anchored regex.
        "email": {"$regex": "@example\\.com$"},
        "$savedGroup": {"id": SEGMENT},
    }
    payload = {
        "features": {
            FLAG_A: {
                "defaultValue": False,
                "rules": [rollout_rule("rule-a", FLAG_A, ROLLOUT_A_PERCENT)],
            },
            FLAG_B: {"defaultValue": False, "rules": [rule_b]},
        },
        "savedGroups": {
            SEGMENT: {"type": "condition", "condition": {"tier": {"$in": PREMIUM_TIERS}}},
        },
    }
    (workdir / "growthbook-payload.json").write_text(json.dumps(payload, indent=2))

    # Parse the rules once and share them; per-user instances only hold the attributes.
    features = {
        key: Feature(rules=spec["rules"], defaultValue=spec["defaultValue"])
        for key, spec in payload["features"].items()
    }
    # The synchronous GrowthBook API binds one user to one instance (attributes are
    # instance state), so the per-user instance is the "context object" and is pre-built.
    instances = [
        GrowthBook(
            attributes={"id": u.key, **u.attributes()},
            features=features,
            saved_groups=payload["savedGroups"],
        )
        for u in users
    ]

    # From a plain dict: one shared instance takes each request's attributes (faster than a
    # GrowthBook per request, which costs about as much as an evaluation to build).
    shared = GrowthBook(attributes={}, features=features, saved_groups=payload["savedGroups"])
    plain = [{"id": u.key, **u.attributes()} for u in users]

    def from_dict(flag: str, attributes: dict[str, str]) -> bool:
        shared.set_attributes(attributes)
        return bool(shared.is_on(flag))

    def close() -> None:
        for gb in [*instances, shared]:
            gb.destroy()

    return PeerSetup(
        version=dist_version("growthbook"),
        call="GrowthBook.is_on(key) on a pre-built per-user GrowthBook instance",
        calls={
            scen: [functools.partial(gb.is_on, flag) for gb in instances]
            for scen, flag in SCENARIOS.items()
        },
        dict_calls={
            scen: [functools.partial(from_dict, flag, attributes) for attributes in plain]
            for scen, flag in SCENARIOS.items()
        },
        dict_call="set_attributes(dict) then is_on(key) on one shared GrowthBook instance",
        config=(
            "features + savedGroups passed in memory (no api_host/client_key, so no fetch, "
            "no streaming, no tracking callback)"
        ),
        close=close,
    )


def setup_launchdarkly(users: list[User], workdir: Path) -> PeerSetup:
    from ldclient import Context, LDClient
    from ldclient.config import Config
    from ldclient.integrations import Files

    def rollout(on_weight: int) -> dict[str, Any]:
        # Weights are in 1/1000 of a percent; bucketBy defaults to the context key.
        return {
            "variations": [
                {"variation": 1, "weight": on_weight * 1000},
                {"variation": 0, "weight": 100_000 - on_weight * 1000},
            ]
        }

    def flag(key: str, **extra: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "key": key,
            "version": 1,
            "on": True,
            "variations": [False, True],
            "offVariation": 0,
            "salt": key,
            "targets": [],
            "contextTargets": [],
            "prerequisites": [],
            "rules": [],
            "trackEvents": False,
            "trackEventsFallthrough": False,
        }
        spec.update(extra)
        return spec

    data = {
        "flags": {
            FLAG_A: flag(FLAG_A, fallthrough={"rollout": rollout(ROLLOUT_A_PERCENT)}),
            FLAG_B: flag(
                FLAG_B,
                fallthrough={"variation": 0},
                rules=[
                    {
                        "id": "rule-b",
                        "clauses": [
                            {"attribute": "country", "op": "in", "values": TARGET_COUNTRIES},
                            {"attribute": "email", "op": "endsWith", "values": [EMAIL_SUFFIX]},
                            {"attribute": "", "op": "segmentMatch", "values": [SEGMENT]},
                        ],
                        "rollout": rollout(ROLLOUT_B_PERCENT),
                    }
                ],
            ),
        },
        "segments": {
            SEGMENT: {
                "key": SEGMENT,
                "version": 1,
                "salt": SEGMENT,
                "included": [],
                "excluded": [],
                "rules": [
                    {
                        "id": "premium-tiers",
                        "clauses": [{"attribute": "tier", "op": "in", "values": PREMIUM_TIERS}],
                    }
                ],
            }
        },
    }
    path = workdir / "launchdarkly-flags.json"
    path.write_text(json.dumps(data, indent=2))

    loopback = "http://127.0.0.1:9"  # never contacted; a guard in case anything tries
    config = Config(
        sdk_key="bench-offline",
        update_processor_class=Files.new_data_source(paths=[str(path)], auto_update=False),
        send_events=False,
        diagnostic_opt_out=True,
        base_uri=loopback,
        events_uri=loopback,
        stream_uri=loopback,
    )
    client = LDClient(config=config, start_wait=10)
    if not client.is_initialized():
        client.close()
        raise RuntimeError("LaunchDarkly client did not initialise from the flag file")

    contexts = []
    for u in users:
        builder = Context.builder(u.key).kind("user")
        for name, value in u.attributes().items():
            builder.set(name, value)
        contexts.append(builder.build())
    plain = [{"kind": "user", "key": u.key, **u.attributes()} for u in users]

    def from_dict(flag: str, context: dict[str, str]) -> object:
        return client.variation(flag, Context.from_dict(context), False)

    return PeerSetup(
        version=dist_version("launchdarkly-server-sdk"),
        call="LDClient.variation(key, context, False)",
        calls={
            scen: [functools.partial(client.variation, flag, ctx, False) for ctx in contexts]
            for scen, flag in SCENARIOS.items()
        },
        dict_calls={
            scen: [functools.partial(from_dict, flag, context) for context in plain]
            for scen, flag in SCENARIOS.items()
        },
        dict_call="LDClient.variation(key, Context.from_dict(dict), False)",
        config=(
            "Files.new_data_source(auto_update=False) as update_processor_class, "
            "send_events=False, diagnostic_opt_out=True, service URIs pointed at loopback"
        ),
        close=client.close,
    )


def setup_unleash(users: list[User], workdir: Path) -> PeerSetup:
    from UnleashClient import UnleashClient
    from UnleashClient.cache import FileCache
    from UnleashClient.utils import InstanceAllowType

    def flexible_rollout(flag: str, percent: int) -> dict[str, Any]:
        return {
            "name": "flexibleRollout",
            "parameters": {"rollout": str(percent), "stickiness": "userId", "groupId": flag},
            "constraints": [],
            "segments": [],
        }

    strategy_b = flexible_rollout(FLAG_B, ROLLOUT_B_PERCENT)
    strategy_b["constraints"] = [
        {"contextName": "country", "operator": "IN", "values": TARGET_COUNTRIES},
        {"contextName": "email", "operator": "STR_ENDS_WITH", "values": [EMAIL_SUFFIX]},
    ]
    strategy_b["segments"] = [1]
    features = {
        "version": 2,
        "features": [
            {
                "name": FLAG_A,
                "type": "release",
                "enabled": True,
                "impressionData": False,
                "strategies": [flexible_rollout(FLAG_A, ROLLOUT_A_PERCENT)],
            },
            {
                "name": FLAG_B,
                "type": "release",
                "enabled": True,
                "impressionData": False,
                "strategies": [strategy_b],
            },
        ],
        "segments": [
            {
                "id": 1,
                "name": SEGMENT,
                "constraints": [{"contextName": "tier", "operator": "IN", "values": PREMIUM_TIERS}],
            }
        ],
    }
    path = workdir / "unleash-features.json"
    path.write_text(json.dumps(features, indent=2))

    cache = FileCache("rollwise-bench", directory=str(workdir / "unleash-cache"))
    cache.bootstrap_from_file(path)
    client = UnleashClient(
        url="http://127.0.0.1:9/api",  # never contacted: no fetch, registration or metrics
        app_name="rollwise-bench",
        cache=cache,
        disable_metrics=True,
        disable_registration=True,
        refresh_interval=24 * 3600,  # the offline connector's cache reload job
        multiple_instance_mode=InstanceAllowType.SILENTLY_ALLOW,
    )
    client.initialize_client(fetch_toggles=False)
    known = set(client.feature_definitions())
    if not {FLAG_A, FLAG_B} <= known:
        client.destroy()
        raise RuntimeError(f"Unleash did not load the bootstrap file (known: {sorted(known)})")

    contexts = [{"userId": u.key, "properties": u.attributes()} for u in users]

    return PeerSetup(
        version=dist_version("UnleashClient"),
        call="UnleashClient.is_enabled(key, context)",
        calls={
            scen: [functools.partial(client.is_enabled, flag, ctx) for ctx in contexts]
            for scen, flag in SCENARIOS.items()
        },
        # Unleash's context is a plain dict already: the same call.
        dict_calls={
            scen: [functools.partial(client.is_enabled, flag, ctx) for ctx in contexts]
            for scen, flag in SCENARIOS.items()
        },
        dict_call="UnleashClient.is_enabled(key, dict) (its context is a dict already)",
        config=(
            "FileCache.bootstrap_from_file + initialize_client(fetch_toggles=False), "
            "disable_metrics=True, disable_registration=True, refresh_interval=86400"
        ),
        components={"yggdrasil-engine": dist_version("yggdrasil-engine")},
        close=client.destroy,
    )


def setup_flagd(users: list[User], workdir: Path) -> PeerSetup:
    from openfeature import api
    from openfeature.contrib.provider.flagd import FlagdProvider
    from openfeature.contrib.provider.flagd.config import ResolverType
    from openfeature.evaluation_context import EvaluationContext

    def flag(targeting: dict[str, Any]) -> dict[str, Any]:
        return {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": targeting,
        }

    def fractional(on_percent: int) -> dict[str, Any]:
        # Shorthand form: bucketed by flag key + targetingKey.
        return {"fractional": [["on", on_percent], ["off", 100 - on_percent]]}

    config = {
        "$schema": "https://flagd.dev/schema/v0/flags.json",
        "$evaluators": {SEGMENT: {"in": [{"var": "tier"}, PREMIUM_TIERS]}},
        "flags": {
            FLAG_A: flag(fractional(ROLLOUT_A_PERCENT)),
            FLAG_B: flag(
                {
                    "if": [
                        {
                            "and": [
                                {"in": [{"var": "country"}, TARGET_COUNTRIES]},
                                {"ends_with": [{"var": "email"}, EMAIL_SUFFIX]},
                                {"$ref": SEGMENT},
                            ]
                        },
                        fractional(ROLLOUT_B_PERCENT),
                        "off",
                    ]
                }
            ),
        },
    }
    path = workdir / "flagd-flags.json"
    path.write_text(json.dumps(config, indent=2))

    provider = FlagdProvider(
        resolver_type=ResolverType.IN_PROCESS,
        offline_flag_source_path=str(path),
        # In file mode the deadline is the file watcher's poll period: keep it asleep.
        deadline_ms=24 * 3600 * 1000,
    )
    domain = "rollwise-bench"
    api.set_provider_and_wait(provider, domain=domain)
    client = api.get_client(domain=domain)

    contexts = [EvaluationContext(targeting_key=u.key, attributes=u.attributes()) for u in users]
    plain = [(u.key, u.attributes()) for u in users]

    def from_dict(flag: str, key: str, attributes: dict[str, str]) -> bool:
        return client.get_boolean_value(flag, False, EvaluationContext(key, attributes))

    def close() -> None:
        api.shutdown()

    return PeerSetup(
        version=dist_version("openfeature-provider-flagd"),
        call="OpenFeatureClient.get_boolean_value(key, False, EvaluationContext)",
        calls={
            scen: [
                functools.partial(client.get_boolean_value, flag, False, ctx) for ctx in contexts
            ]
            for scen, flag in SCENARIOS.items()
        },
        dict_calls={
            scen: [functools.partial(from_dict, flag, key, attrs) for key, attrs in plain]
            for scen, flag in SCENARIOS.items()
        },
        dict_call="get_boolean_value(key, False, EvaluationContext(key, dict)) per call",
        config=(
            "FlagdProvider(resolver_type=IN_PROCESS, offline_flag_source_path=<json>, "
            "deadline_ms=86400000) via api.set_provider_and_wait"
        ),
        components={
            "openfeature-sdk": dist_version("openfeature-sdk"),
            "openfeature-flagd-core": dist_version("openfeature-flagd-core"),
        },
        close=close,
    )


SETUPS: dict[str, Callable[[list[User], Path], PeerSetup]] = {
    "growthbook": setup_growthbook,
    "launchdarkly": setup_launchdarkly,
    "unleash": setup_unleash,
    "flagd": setup_flagd,
}

# --------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------


def run_for(batches: list[list[Callable[[], object]]], seconds: float) -> tuple[int, float, float]:
    """Cycle through the pool for ``seconds``; return (evaluations, wall s, other-thread CPU s)."""
    perf = time.perf_counter
    count = 0
    index = 0
    n_batches = len(batches)
    cpu_process = time.process_time()
    cpu_thread = time.thread_time()
    start = perf()
    deadline = start + seconds
    while True:
        batch = batches[index]
        for call in batch:
            call()
        count += len(batch)
        index += 1
        if index == n_batches:
            index = 0
        now = perf()
        if now >= deadline:
            break
    other_cpu = (time.process_time() - cpu_process) - (time.thread_time() - cpu_thread)
    return count, now - start, max(other_cpu, 0.0)


def check_share(
    scenario: str, calls: list[Callable[[], object]], users: list[User]
) -> dict[str, Any]:
    """One full pass over the pool: the flag's on-share and whether it matches the spec."""
    values = [call() for call in calls]
    bad_types = sum(1 for v in values if not isinstance(v, bool))
    on = [v is True for v in values]
    share = sum(on) / len(on)
    result: dict[str, Any] = {"on_share": round(share, 4)}
    problems: list[str] = []
    if scenario == "a":
        expected = ROLLOUT_A_PERCENT / 100
    else:
        eligible = [eligible_b(u) for u in users]
        expected = sum(eligible) / len(eligible) * ROLLOUT_B_PERCENT / 100
        ineligible_on = sum(1 for o, e in zip(on, eligible, strict=True) if o and not e)
        share_of_eligible = sum(1 for o, e in zip(on, eligible, strict=True) if o and e) / max(
            sum(eligible), 1
        )
        result["ineligible_on"] = ineligible_on
        result["on_share_of_eligible"] = round(share_of_eligible, 4)
        if ineligible_on:
            problems.append(f"{ineligible_on} users outside the targeting got 'on'")
    result["expected_on_share"] = round(expected, 4)
    if bad_types:
        problems.append(f"{bad_types} evaluations returned a non-boolean")
    if abs(share - expected) > SHARE_TOLERANCE:
        problems.append(f"on_share {share:.4f} is not within ±{SHARE_TOLERANCE} of {expected:.4f}")
    result["equivalent"] = not problems
    if problems:
        result["problems"] = problems
    return result


def measure(
    calls: list[Callable[[], object]], seconds: float, repeats: int, warmup: float
) -> dict[str, Any]:
    batches = [calls[i : i + BATCH] for i in range(0, len(calls), BATCH)]
    run_for(batches, warmup)
    rates: list[float] = []
    other_cpu_share = 0.0
    for _ in range(repeats):
        gc.collect()
        count, wall, other_cpu = run_for(batches, seconds)
        rates.append(count / wall)
        other_cpu_share = max(other_cpu_share, other_cpu / wall)
    return {
        "evals_per_s": round(max(rates)),
        "repeats_evals_per_s": [round(r) for r in rates],
        # CPU used by any thread other than the timing thread, as a share of wall time
        # (worst repeat): shows whether an SDK background thread was busy while timing.
        "background_cpu_share": round(other_cpu_share, 4),
    }


def bench_peer(
    name: str, users: list[User], seconds: float, repeats: int, warmup: float
) -> dict[str, Any]:
    blocked_before = len(BLOCKED_CONNECTIONS)
    result = _bench_peer(name, users, seconds, repeats, warmup)
    blocked = BLOCKED_CONNECTIONS[blocked_before:]
    if blocked:
        log.warning("%s: the network guard blocked: %s", name, ", ".join(blocked))
    if blocked or "error" not in result:
        result["network_blocked"] = blocked
    return result


def _bench_peer(
    name: str, users: list[User], seconds: float, repeats: int, warmup: float
) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"rollwise-peer-{name}-"))
    try:
        try:
            setup = SETUPS[name](users, workdir)
        except Exception as exc:  # any setup failure is reported, not raised
            log.warning("%s: setup failed: %s: %s", name, type(exc).__name__, exc)
            return {"error": f"setup failed: {type(exc).__name__}: {exc}"}
        try:
            result: dict[str, Any] = {
                "version": setup.version,
                "call": setup.call,
                "config": setup.config,
            }
            if setup.components:
                result["components"] = setup.components
            if setup.dict_call:
                result["dict_call"] = setup.dict_call
            measured = [
                *setup.calls.items(),
                *((f"{scenario}_dict", calls) for scenario, calls in setup.dict_calls.items()),
            ]
            for label, calls in measured:
                scenario = label.removesuffix("_dict")
                share = check_share(scenario, calls, users)
                if not share["equivalent"]:
                    log.warning(
                        "%s/%s: NOT equivalent: %s", name, label, "; ".join(share["problems"])
                    )
                timing = measure(calls, seconds, repeats, warmup)
                result[label] = {**timing, **share}
                log.info(
                    "%s/%s: %s evals/s, on_share %.4f (expected %.4f)",
                    name,
                    label,
                    f"{timing['evals_per_s']:,}",
                    share["on_share"],
                    share["expected_on_share"],
                )
            result["threads"] = sorted(t.name for t in threading.enumerate())
            return result
        except Exception as exc:  # an SDK failing mid-run is reported, not raised
            log.warning("%s: run failed: %s: %s", name, type(exc).__name__, exc)
            return {"error": f"run failed: {type(exc).__name__}: {exc}"}
        finally:
            with contextlib.suppress(Exception):
                setup.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --------------------------------------------------------------------------------------
# Isolation: no network, quiet SDKs, clean stdout
# --------------------------------------------------------------------------------------

BLOCKED_CONNECTIONS: list[str] = []


def _is_loopback(host: object) -> bool:
    if not isinstance(host, str):
        return False
    if host.lower() in {"localhost", "ip6-localhost", "ip6-loopback"}:
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def install_network_guard() -> None:
    """Refuse (and record) any connection or name lookup that is not loopback."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def allowed(sock: socket.socket, address: Any) -> bool:
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return True
        if _is_loopback(address[0]):
            return True
        BLOCKED_CONNECTIONS.append(f"connect {address[0]}:{address[1]}")
        return False

    def connect(self: socket.socket, address: Any) -> None:
        if not allowed(self, address):
            raise OSError(f"run_peers network guard: blocked connection to {address!r}")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not allowed(self, address):
            return 111  # ECONNREFUSED
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_loopback(
            host.decode() if isinstance(host, bytes) else host
        ):
            BLOCKED_CONNECTIONS.append(f"resolve {host!r}")
            raise socket.gaierror(f"run_peers network guard: blocked lookup of {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo


def quiet_sdk_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[run_peers] %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    # Everything else is silenced: the root and every SDK logger drop all records.
    logging.getLogger().setLevel(logging.CRITICAL + 1)
    for name in SDK_LOGGERS:
        sdk_logger = logging.getLogger(name)
        sdk_logger.setLevel(logging.CRITICAL + 1)
        sdk_logger.propagate = False
    warnings.simplefilter("ignore")


@contextlib.contextmanager
def json_stdout() -> Iterator[Any]:
    """Yield a handle on the real stdout; meanwhile fd 1 and sys.stdout go to stderr."""
    sys.stdout.flush()
    real = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    saved = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield real
    finally:
        sys.stdout = saved
        real.close()


# --------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------


def run_child(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """Measure one peer in a fresh interpreter (this script with --only NAME)."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--only",
        name,
        "--seconds",
        str(args.seconds),
        "--repeats",
        str(args.repeats),
        "--warmup",
        str(args.warmup),
    ]
    if args.cpu is not None:
        cmd += ["--cpu", str(args.cpu)]
    budget = 300 + 4 * (args.warmup + args.repeats * args.seconds)
    try:
        proc = subprocess.run(
            cmd, stdout=subprocess.PIPE, stderr=None, text=True, timeout=budget, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": f"child process timed out after {budget:.0f}s"}
    try:
        doc = json.loads(proc.stdout)
        peer: dict[str, Any] = doc["peers"][name]
    except (ValueError, KeyError, TypeError):
        tail = proc.stdout.strip()[-300:]
        return {"error": f"child process exited {proc.returncode} without a result: {tail!r}"}
    return peer


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="timed s per repeat")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="best one is kept")
    parser.add_argument("--warmup", type=float, default=DEFAULT_WARMUP, help="untimed warm-up s")
    parser.add_argument("--only", choices=PEERS, help="measure one peer, in this process")
    parser.add_argument("--cpu", type=int, help="pin the measuring process(es) to this CPU")
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="measure all peers in this process instead of one child process each",
    )
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.repeats < 1 or args.warmup < 0:
        parser.error("--seconds must be > 0, --repeats >= 1, --warmup >= 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    quiet_sdk_logging()
    with json_stdout() as out:
        install_network_guard()
        if args.cpu is not None:
            os.sched_setaffinity(0, {args.cpu})
        peers: dict[str, Any] = {}
        if args.only or args.in_process:
            users = build_users()
            for name in [args.only] if args.only else PEERS:
                peers[name] = bench_peer(name, users, args.seconds, args.repeats, args.warmup)
        else:
            for name in PEERS:
                log.info("%s: measuring in a child process", name)
                peers[name] = run_child(name, args)
        doc: dict[str, Any] = {
            "peers": peers,
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "machine": platform.machine(),
            "pool_size": POOL_SIZE,
            "seconds": args.seconds,
            "repeats": args.repeats,
            "warmup_s": args.warmup,
            "cpu_affinity": sorted(os.sched_getaffinity(0)),
        }
        json.dump(doc, out, indent=2)
        out.write("\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
