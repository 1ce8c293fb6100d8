"""Auto-pause: `pause_after_failures: N` pauses a stream after N consecutive failed
scheduled runs, and writes `stream.paused` in the same transaction. Re-enabling the stream
(PATCH) clears `paused_reason`."""

from __future__ import annotations

import logging
from uuid import UUID, uuid4

from app import db
from app.streams import store as streams_store
from app.webhooks import outbox

log = logging.getLogger(__name__)


def after_failed_run(stream_id: UUID) -> bool:
    """Called when a scheduled run of the stream failed for good; True if it paused it."""
    with db.unit_of_work() as conn:
        reason = streams_store.pause_if_failing(conn, stream_id)
        if reason:
            outbox.stream_paused(conn, stream_id, uuid4())
    if reason:
        log.warning("stream %s %s", stream_id, reason)
    return reason is not None
