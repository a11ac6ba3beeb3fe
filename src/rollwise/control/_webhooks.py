"""Webhooks: every applied decision, as JSON, to the URLs a team chose — at least once.

The controller writes each notification into the store's outbox in the transaction of the
decision it reports (``notify=`` of ``Store.transition``), so a crash between the two loses
nothing. Here, one thread per URL delivers from the outbox: retried with jittered exponential
backoff on 5xx, timeouts and refused connections, given up at once on 4xx (the receiver says the
request itself is wrong) or after ``attempts``; one slow URL never delays another. After a
restart, whatever was not delivered is sent.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from rollwise.core.judgement import Decision
from rollwise.store import RolloutRecord, Store, decision_evidence

logger = logging.getLogger("rollwise.control")

#: (url, JSON body) → HTTP status; raises on a connection failure or timeout.
Post = Callable[[str, bytes], int]
#: Longest wait between two attempts.
MAX_BACKOFF = timedelta(minutes=10)
#: How often an idle deliverer looks at the outbox (it is also woken after each decision).
POLL_SECONDS = 1.0


def _httpx_post(url: str, body: bytes) -> int:
    response = httpx.post(
        url, content=body, headers={"Content-Type": "application/json"}, timeout=5.0
    )
    return response.status_code


def _wall() -> datetime:
    return datetime.now(UTC)


def notification(rollout: RolloutRecord, decision: Decision) -> dict[str, Any]:
    """What a webhook receives (``rollout`` as it is after the decision)."""
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
    """Delivers the outbox to ``urls``; the controller writes into it."""

    def __init__(
        self,
        store: Store,
        urls: Sequence[str],
        *,
        attempts: int = 8,
        backoff: float = 0.5,
        post: Post | None = None,
        now: Callable[[], datetime] = _wall,
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self.urls = list(dict.fromkeys(urls))
        self.attempts = attempts
        self.backoff = backoff
        self._post = post or _httpx_post
        self._now = now
        self._rng = rng or random.Random()
        self._stop = threading.Event()
        self._wake = {url: threading.Event() for url in self.urls}
        self._threads = [
            threading.Thread(target=self._deliver, args=(url,), name=f"webhook {url}", daemon=True)
            for url in self.urls
        ]
        for thread in self._threads:
            thread.start()

    def bodies(self, rollout: RolloutRecord, decision: Decision) -> list[tuple[str, bytes]]:
        """The (url, body) rows to write with a decision."""
        body = json.dumps(notification(rollout, decision)).encode()
        return [(url, body) for url in self.urls]

    def __call__(self, rollout: RolloutRecord, decision: Decision) -> None:
        """A listener of the controller: a decision was written, deliver it now."""
        for event in self._wake.values():
            event.set()

    def close(self, timeout: float = 10.0) -> None:
        """Stop delivering; what is undelivered stays in the outbox for the next start."""
        self._stop.set()
        for event in self._wake.values():
            event.set()
        for thread in self._threads:
            thread.join(timeout / max(len(self._threads), 1))

    def _deliver(self, url: str) -> None:
        wake = self._wake[url]
        while not self._stop.is_set():
            try:
                delivered_any = self._deliver_due(url)
            except Exception:  # the store is unreachable: try again later
                logger.exception("webhook %s: cannot read the outbox", url)
                delivered_any = False
            if delivered_any:
                continue
            wake.wait(self._idle_seconds(url))
            wake.clear()

    def _idle_seconds(self, url: str) -> float:
        try:
            due = self.store.next_notification_at(url)
        except Exception:
            return POLL_SECONDS
        if due is None:
            return POLL_SECONDS
        return min(POLL_SECONDS, max(0.0, (due - self._now()).total_seconds()))

    def _deliver_due(self, url: str) -> bool:
        due = self.store.due_notifications(url, self._now())
        for item in due:
            if self._stop.is_set():
                break
            try:
                status = self._post(url, item.body)
                problem = f"HTTP {status}"
                if 200 <= status < 300:
                    self.store.notification_delivered(item.id, self._now())
                    continue
                retry = status >= 500 or status in (408, 429)
            except Exception as exc:  # refused, reset, timed out: the receiver may come back
                problem = f"{type(exc).__name__}: {exc}"
                retry = True
            attempt = item.attempts + 1
            if not retry or attempt >= self.attempts:
                logger.warning(
                    "webhook %s: gave up on notification %d after %d attempt(s) (%s)",
                    url,
                    item.id,
                    attempt,
                    problem,
                )
                self.store.notification_failed(item, problem, self._now(), None)
                continue
            # Exponential backoff with full jitter: receivers that fail together do not all
            # come back at once.
            delay = min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF.total_seconds())
            retry_at = self._now() + timedelta(seconds=delay * (0.5 + self._rng.random() / 2))
            self.store.notification_failed(item, problem, self._now(), retry_at)
        return bool(due)
