"""The Python SDK: local evaluation, offline from a flag set or live from a rollwise server,
with exposures and outcomes attributed to the rollouts running (docs/sdk.md)."""

from __future__ import annotations

from rollwise.sdk._client import Client
from rollwise.sdk._stats import ClientStats
from rollwise.sdk._transport import Reply, StreamRefused, Transport

__all__ = ["Client", "ClientStats", "Reply", "StreamRefused", "Transport"]
