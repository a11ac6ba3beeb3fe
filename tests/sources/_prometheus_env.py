"""A real Prometheus scraping a small service, for the Prometheus source's tests.

The service counts simulated requests by ``app``, ``variant`` and ``code`` and times them in a
histogram, with a traffic thread whose failure probability and latency per (app, variant) a test
sets; Debian's ``prometheus`` binary scrapes it every second into a temporary directory. Tests
skip, saying why, where the binary is absent (``make`` installs it with apt).
"""

from __future__ import annotations

import random
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from tests._serving import free_port

#: Requests per tick of the traffic thread (every 0.1 s): about 60 a second on ``on``, 140 on
#: ``off``, per app.
PER_TICK = {"on": 6, "off": 14}


@dataclass
class Service:
    """The scraped service: set ``failure[app, variant]`` and ``latency[app, variant]`` (s)."""

    port: int
    failure: dict[tuple[str, str], float] = field(default_factory=dict)
    latency: dict[tuple[str, str], float] = field(default_factory=dict)
    sent: dict[tuple[str, str], list[int]] = field(default_factory=dict)


@contextmanager
def service(apps: tuple[str, ...], seed: int = 7) -> Iterator[Service]:
    registry = CollectorRegistry()
    requests = Counter(
        "http_requests", "requests served", ["app", "variant", "code"], registry=registry
    )
    durations = Histogram(
        "http_request_duration_seconds",
        "request duration",
        ["app", "variant"],
        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
        registry=registry,
    )
    port = free_port()
    server, _ = start_http_server(port, "127.0.0.1", registry)
    state = Service(port)
    for app in apps:
        for variant in PER_TICK:
            state.failure[app, variant] = 0.02
            state.latency[app, variant] = 0.02
            state.sent[app, variant] = [0, 0]
            # Every series exists from the first scrape, so increase() sees it start at 0.
            for code in ("200", "500"):
                requests.labels(app, variant, code)
    stop = threading.Event()
    rng = random.Random(seed)

    def traffic() -> None:
        while not stop.is_set():
            for app in apps:
                for variant, count in PER_TICK.items():
                    for _ in range(count):
                        failed = rng.random() < state.failure[app, variant]
                        requests.labels(app, variant, "500" if failed else "200").inc()
                        durations.labels(app, variant).observe(
                            rng.expovariate(1 / state.latency[app, variant])
                        )
                        state.sent[app, variant][0] += 1
                        state.sent[app, variant][1] += failed
            stop.wait(0.1)

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stop.set()
        thread.join(timeout=5)
        server.shutdown()
        server.server_close()


@contextmanager
def prometheus(tmp_path: Path, target_port: int) -> Iterator[str]:
    """Prometheus on loopback scraping ``127.0.0.1:target_port`` every second; yields its URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("Debian's prometheus binary is not installed (make test installs it with apt)")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: service\n    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n"
    )
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def wait_for_samples(url: str, query: str, seconds: float = 60) -> None:
    """Until ``query`` answers a sample: the first scrapes have landed."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        answer = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=5).json()
        if answer.get("data", {}).get("result"):
            return
        time.sleep(0.5)
    raise AssertionError(f"Prometheus has no samples of {query} after {seconds:g} s")
