"""Webhooks: every applied decision, as JSON, to the URLs a team chose; retried, never blocking.

A listener of the controller: the tick only enqueues; a background thread POSTs, retrying with
exponential backoff, and logs what it could not deliver.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx

from rollwise.core.judgement import Decision
from rollwise.store import RolloutRecord, decision_evidence

logger = logging.getLogger("rollwise.control")

#: (url, JSON body) → HTTP status; raises on a connection failure.
Post = Callable[[str, bytes], int]


def _httpx_post(url: str, body: bytes) -> int:
    response = httpx.post(
        url, content=body, headers={"Content-Type": "application/json"}, timeout=5.0
    )
    return response.status_code


def notification(rollout: RolloutRecord, decision: Decision) -> dict[str, Any]:
    """What a webhook receives."""
    return {
        "event": f"rollout.{decision.move.value}",
        "flag": rollout.flag,
        "rollout": rollout.id,
        "status": rollout.status.value,
        "stage": decision.stage,
        "at": decision.at.isoformat(),
        "reasons": list(decision.reasons),
        "evidence": decision_evidence(decision),
    }


class Webhooks:
    def __init__(
        self,
        urls: Sequence[str],
        *,
        attempts: int = 4,
        backoff: float = 0.5,
        post: Post | None = None,
    ) -> None:
        self.urls = list(urls)
        self.attempts = attempts
        self.backoff = backoff
        self._post = post or _httpx_post
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=10_000)
        self._thread = threading.Thread(target=self._deliver, name="rollwise-webhooks", daemon=True)
        self._thread.start()

    def __call__(self, rollout: RolloutRecord, decision: Decision) -> None:
        body = json.dumps(notification(rollout, decision)).encode()
        try:
            self._queue.put_nowait(body)
        except queue.Full:
            logger.warning("webhook queue full: dropped the notification of rollout %s", rollout.id)

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (within ``timeout``) and stop."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _deliver(self) -> None:
        while True:
            body = self._queue.get()
            if body is None:
                return
            for url in self.urls:
                self._send(url, body)

    def _send(self, url: str, body: bytes) -> None:
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                status = self._post(url, body)
                if 200 <= status < 300:
                    return
                problem = f"HTTP {status}"
            except Exception as exc:  # delivery must never stop the thread
                problem = f"{type(exc).__name__}: {exc}"
            if attempt < self.attempts:
                time.sleep(delay)
                delay *= 2
        logger.warning("webhook %s: gave up after %d attempts (%s)", url, self.attempts, problem)
