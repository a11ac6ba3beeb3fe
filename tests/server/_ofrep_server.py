"""A real rollwise server for the OFREP tests: uvicorn in a thread on a free loopback port, a
flags file with every kind of variant value, a rollout running on one flag, and an SDK key."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from rollwise.server import create_app
from rollwise.store import Role, Store
from tests._serving import server_client, serving

ADMIN = "rw_admin_ofrep-test"

#: Boolean, text, integer and float values; units by the targeting key, by an attribute, by
#: ``user``; rules on text, numbers, lists and versions.
FLAGS = """
segments:
  eu:
    when:
      - region: {starts_with: eu-}
metrics:
  checkout.error: {kind: rate}
flags:
  new-checkout:
    variants: [off, on]
    unit: tenant
    min_app_version: 2.4.0
    rules:
      - when: {tenant: [acme]}
        serve: on
      - percent: 25
        serve: on
  search-v2:
    variants: [control, treatment]
    rules:
      - when:
          - segment: eu
          - not: {tier: free}
        percent: 50
        serve: {split: {control: 50, treatment: 50}}
  page-size:
    variants: {small: 10, large: 50}
    unit: key
    rules:
      - when: {roles: {contains: admin}}
        serve: large
      - percent: 30
        serve: large
  discount:
    variants: {none: 0.0, some: 0.15}
    rules:
      - when: {age: {gte: 65}}
        serve: some
"""

PLAN = """
flag: search-v2
unit: user
variant: treatment
guards:
  - {metric: checkout.error, kind: rate, tolerance: 50%}
stages:
  - {name: some, audience: {percent: 40}}
  - {name: all, audience: {percent: 100}}
"""


@dataclass
class OfrepServer:
    url: str
    key: str
    store: Store
    rollout: int

    def admin(self) -> httpx.Client:
        return server_client(self.url, ADMIN)


@contextmanager
def ofrep_server(tmp_path: Path, **options: Any) -> Iterator[OfrepServer]:
    """The server, with ``FLAGS`` applied and ``PLAN`` running; ``options`` go to
    ``create_app``."""
    store = Store.open(f"sqlite:///{tmp_path / 'ofrep.db'}")
    options.setdefault("controller", False)
    try:
        with serving(create_app(store, admin_token=ADMIN, **options)) as url:
            with server_client(url, ADMIN) as admin:
                admin.put("/api/v1/flags", content=FLAGS).raise_for_status()
                started = admin.post("/api/v1/rollouts", json={"plan": PLAN})
                started.raise_for_status()
                key = admin.post("/api/v1/tokens", json={"name": "app", "role": Role.SDK.value})
                key.raise_for_status()
            yield OfrepServer(url, key.json()["secret"], store, int(started.json()["id"]))
    finally:
        store.close()
