"""The controller: ticks, the rollout state machine, the snapshot SDKs are served."""

from __future__ import annotations

from rollwise.control._clock import Clock, ManualClock, ScaledClock, SystemClock
from rollwise.control._controller import ACTOR, Controller, Listener, Outcome
from rollwise.control._snapshot import served_flags, snapshot_document
from rollwise.control._webhooks import Webhooks, notification

__all__ = [
    "ACTOR",
    "Clock",
    "Controller",
    "Listener",
    "ManualClock",
    "Outcome",
    "ScaledClock",
    "SystemClock",
    "Webhooks",
    "notification",
    "served_flags",
    "snapshot_document",
]
