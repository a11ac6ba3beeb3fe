"""The Python SDK: local evaluation against a flag set."""

from __future__ import annotations

from rollwise.sdk._client import Client

__all__ = ["Client"]
