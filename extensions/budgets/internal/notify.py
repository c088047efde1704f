"""Notifications decided once and delivered until they arrive: a persistent outbox.

A notification is *decided* when a threshold or silence is first seen; its key is then kept in
the state file (``<data_dir>/budgets/<extension>.json``, written atomically), so neither a
later evaluation nor a restart decides it again. Undelivered notifications wait in the same
file, so a restart resumes their delivery instead of losing them. Delivery retries with
exponential back-off and jitter; a webhook that refuses the body (4xx other than 408/429) or
stays unreachable past ``max_elapsed_time`` drops it, counted.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3

from collector import telemetry
from extensions.budgets.config import WebhookConfig

log = logging.getLogger("agentwatch.extension.budgets")

SENT = telemetry.counter(
    "agentwatch_notifications_sent",
    "Notifications (budget thresholds, silent telemetry) the webhook accepted.",
    ("extension", "kind"),
)
FAILED_ATTEMPTS = telemetry.counter(
    "agentwatch_notification_failed_attempts",
    "Webhook deliveries of a notification that failed (retried or dropped).",
    ("extension",),
)
DROPPED = telemetry.counter(
    "agentwatch_notifications_dropped",
    "Notifications given up on: rejected by the webhook, retried past max_elapsed_time, or "
    "decided with no webhook configured.",
    ("extension", "reason"),
)
PENDING = telemetry.gauge(
    "agentwatch_notifications_pending",
    "Notifications decided but not yet delivered (kept across restarts).",
    ("extension",),
)


@dataclass
class Pending:
    key: str
    body: dict[str, Any]
    decided_at: float
    attempts: int = 0
    next_attempt: float = 0.0


class Outbox:
    """The decided keys (with the time after which they may be forgotten) and the pending
    notifications, kept in one JSON file."""

    def __init__(self, path: Path, extension: str) -> None:
        self.path = path
        self.extension = extension
        self._lock = threading.Lock()
        self.wakeup = threading.Event()
        self.decided: dict[str, float] = {}
        self.pending: list[Pending] = []
        if path.exists():
            try:
                raw = json.loads(path.read_text())
                self.decided = {str(k): float(v) for k, v in raw.get("decided", {}).items()}
                self.pending = [Pending(**p) for p in raw.get("pending", [])]
            except (ValueError, TypeError, AttributeError) as exc:
                raise RuntimeError(
                    f"{path}: not a notification state file ({exc}); move it away to start "
                    "afresh (notifications of the current periods are then sent again)"
                ) from exc
        PENDING.labels(extension).set(len(self.pending))

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        body = {
            "decided": self.decided,
            "pending": [p.__dict__ for p in self.pending],
        }
        with open(tmp, "w") as f:
            json.dump(body, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        PENDING.labels(self.extension).set(len(self.pending))

    def decide(self, key: str, body: dict[str, Any], forget_after: float) -> bool:
        """Queue ``body`` unless ``key`` was decided before; True if it is new."""
        with self._lock:
            if key in self.decided:
                return False
            self.decided[key] = forget_after
            self.pending.append(Pending(key, body, time.time()))
            self._save()
        self.wakeup.set()
        return True

    def forget_expired(self, now: float) -> None:
        """Drop decided keys whose period (or silence) is long over, so the file stays small."""
        with self._lock:
            expired = [k for k, t in self.decided.items() if t < now]
            if expired:
                for k in expired:
                    del self.decided[k]
                self._save()

    def due(self, now: float) -> tuple[Pending | None, float]:
        """The next notification to send now, else None and the seconds until one is due."""
        with self._lock:
            if not self.pending:
                return None, 3600.0
            first = min(self.pending, key=lambda p: p.next_attempt)
            if first.next_attempt <= now:
                return first, 0.0
            return None, first.next_attempt - now

    def done(self, item: Pending) -> None:
        with self._lock:
            self.pending = [p for p in self.pending if p.key != item.key]
            self._save()

    def retry_at(self, item: Pending, when: float) -> None:
        with self._lock:
            item.attempts += 1
            item.next_attempt = when
            self._save()


class WebhookSender:
    """Delivers the outbox in its own thread, oldest due first, one at a time."""

    def __init__(self, outbox: Outbox, config: WebhookConfig | None, extension: str) -> None:
        self.outbox = outbox
        self.config = config
        self.extension = extension
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http = urllib3.PoolManager(retries=False)

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"{self.extension}-webhook", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.outbox.wakeup.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._http.clear()

    def _run(self) -> None:
        while not self._stop.is_set():
            item, wait = self.outbox.due(time.time())
            if item is None:
                self.outbox.wakeup.wait(wait)
                self.outbox.wakeup.clear()
                continue
            self.deliver(item)

    def deliver(self, item: Pending) -> None:
        kind = str(item.body.get("kind", "unknown"))
        if self.config is None:
            DROPPED.labels(self.extension, "no_webhook").inc()
            log.warning("notification not sent, no webhook configured: %s", item.body["text"])
            self.outbox.done(item)
            return
        error, retryable = self._post(item.body)
        if error is None:
            SENT.labels(self.extension, kind).inc()
            log.info("notification sent: %s", item.body["text"])
            self.outbox.done(item)
            return
        FAILED_ATTEMPTS.labels(self.extension).inc()
        retry = self.config.retry
        now = time.time()
        elapsed = now - item.decided_at
        if (
            not retryable
            or not retry.enabled
            or (retry.max_elapsed_time and elapsed >= retry.max_elapsed_time)
        ):
            reason = "rejected" if not retryable else "retries_exhausted"
            DROPPED.labels(self.extension, reason).inc()
            log.error("notification dropped (%s): %s: %s", reason, error, item.body["text"])
            self.outbox.done(item)
            return
        backoff = min(retry.max_interval, retry.initial_interval * 2**item.attempts)
        backoff *= 0.5 + random.random() / 2
        log.warning("webhook failed (%s), retrying in %.1fs", error, backoff)
        self.outbox.retry_at(item, now + backoff)

    def _post(self, body: dict[str, Any]) -> tuple[str | None, bool]:
        """None on success, else the error and whether trying again may help."""
        assert self.config is not None
        headers = {"Content-Type": "application/json", **self.config.headers}
        try:
            resp = self._http.request(
                "POST",
                self.config.url,
                body=json.dumps(body).encode(),
                headers=headers,
                timeout=self.config.timeout,
            )
        except urllib3.exceptions.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}", True
        if 200 <= resp.status < 300:
            return None, True
        return f"HTTP {resp.status}", resp.status >= 500 or resp.status in (408, 429)
