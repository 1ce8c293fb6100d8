"""Beat's webhook deliverer: sends the outbox's pending deliveries, on threads of its own.

One thread claims due deliveries from Postgres and hands each to a pool of SENDERS threads.
Beat's ticks never wait for it, nor it for them. Per webhook, one attempt at a time, and per
workspace at most PER_WORKSPACE: a slow endpoint holds one sender (for TIMEOUT_SECONDS at
most), and no tenant can hold them all. An endpoint that fails backs off as a whole
(`webhooks.backoff_until`), so while it is down only one of its deliveries is tried at a
time, and the others keep their attempts for when it is back.

Every beat process delivers, leading or not: a claim leases its row in Postgres
(LEASE_SECONDS), so two beats do not send one delivery at once, and a beat that dies while
sending leaves the row to be sent again once the lease is over, with the same event id.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from uuid import UUID

import httpx
import psycopg
from sqlalchemy.exc import SQLAlchemyError

from app import db
from app.runs.outcome import RetryPolicy
from app.settings import get_settings
from app.webhooks import sending, store
from app.webhooks.store import Delivery, Room

log = logging.getLogger(__name__)

SENDERS = 16
PER_WORKSPACE = 4
POLL_SECONDS = 0.5
# Longer than an attempt can take: the DNS lookup (the system resolver's own timeouts, some
# 20 s at worst), sending.TIMEOUT_SECONDS, and recording it.
LEASE_SECONDS = 45.0
# After Postgres failed to answer a claim: wait this long before the next (and log once).
OUTAGE_PAUSE_SECONDS = 5.0
MAX_BACKOFF_SECONDS = 3600.0


class Deliverer:
    def __init__(self, senders: int = SENDERS, poll_seconds: float = POLL_SECONDS) -> None:
        settings = get_settings()
        self.senders = senders
        self.poll_seconds = poll_seconds
        self.allow_private = settings.webhook_allow_private
        self.max_attempts = settings.webhook_max_attempts
        self.policy = RetryPolicy(settings.webhook_retry_base_seconds, MAX_BACKOFF_SECONDS)
        self._busy: dict[UUID, UUID] = {}  # webhooks with an attempt in flight: workspace
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._client: httpx.Client | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start delivering, or start again if the claiming thread died."""
        if self._thread is not None and self._thread.is_alive():
            return
        if self._client is None:
            self._client = sending.new_client()
            self._pool = ThreadPoolExecutor(self.senders, thread_name_prefix="runway-webhook")
        self._thread = threading.Thread(target=self._run, name="runway-webhooks", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop claiming; attempts in flight are abandoned to their lease."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                claimed = self.claim_once()
            except (SQLAlchemyError, psycopg.Error) as error:
                log.warning("webhooks: cannot claim deliveries, trying again: %s", error)
                self._stopping.wait(OUTAGE_PAUSE_SECONDS)
                continue
            except Exception:
                log.exception("webhooks: claiming failed unexpectedly; trying again")
                self._stopping.wait(OUTAGE_PAUSE_SECONDS)
                continue
            if not claimed:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()

    def claim_once(self) -> int:
        """Claim what the free senders can take and start sending it; how many."""
        with self._lock:
            busy = set(self._busy)
            in_flight = Counter(self._busy.values())
        room = Room(
            total=self.senders - len(busy),
            per_workspace=PER_WORKSPACE,
            crowded={ws: max(0, PER_WORKSPACE - n) for ws, n in in_flight.items()},
        )
        if room.total <= 0:
            return 0
        with db.unit_of_work() as conn:
            claimed = store.claim_due(conn, busy, room, LEASE_SECONDS, self.max_attempts)
        assert self._pool is not None
        for delivery in claimed:
            with self._lock:
                self._busy[delivery.webhook_id] = delivery.workspace_id
            self._pool.submit(self._deliver, delivery)
        return len(claimed)

    def _deliver(self, delivery: Delivery) -> None:
        try:
            assert self._client is not None
            attempt = sending.send(self._client, delivery, allow_private=self.allow_private)
            self._record(delivery, attempt)
        except Exception:
            log.exception("webhooks: %r failed unexpectedly; its lease brings it back", delivery)
        finally:
            with self._lock:
                self._busy.pop(delivery.webhook_id, None)
            self._wake.set()

    def _record(self, delivery: Delivery, attempt: sending.Attempt) -> None:
        with db.unit_of_work() as conn:
            if attempt.delivered:
                store.record_delivered(conn, delivery, attempt.status_code or 0)
            else:
                store.record_not_delivered(
                    conn,
                    delivery,
                    code=attempt.status_code,
                    error=attempt.error or "not delivered",
                    max_attempts=self.max_attempts,
                    retry_in=self.policy.delay(delivery.attempt),
                    backoff=self.policy.delay(delivery.failures + 1),
                )
        if not attempt.delivered:
            final = delivery.attempt >= self.max_attempts
            log.log(
                logging.WARNING if final else logging.INFO,
                "webhooks: %r attempt %d %s: %s",
                delivery,
                delivery.attempt,
                "failed for good" if final else "failed",
                attempt.error,
            )
