"""Auto-pause: `pause_after_failures: N` pauses a stream after N consecutive failed
scheduled runs. Re-enabling the stream (PATCH) clears `paused_reason`."""

from __future__ import annotations

import logging
from uuid import UUID

import sqlalchemy as sa

from app import db

log = logging.getLogger(__name__)

# One statement: pause only if the stream is enabled, asks for auto-pause, and its last N
# ended scheduled runs all failed. Cancelled runs break a streak; live runs do not count.
_PAUSE = sa.text("""
UPDATE research_streams s
   SET schedule_config = jsonb_set(s.schedule_config, '{enabled}', 'false'::jsonb),
       next_scheduled_run = NULL,
       paused_reason = format('paused after %s consecutive failed scheduled runs',
                              s.schedule_config->>'pause_after_failures'),
       updated_at = now()
 WHERE s.id = :stream_id
   AND (s.schedule_config->>'enabled')::boolean
   AND (s.schedule_config->>'pause_after_failures') IS NOT NULL
   AND (SELECT count(*) FILTER (WHERE recent.status = 'failed')
          FROM (SELECT e.status FROM pipeline_executions e
                 WHERE e.stream_id = s.id AND e.run_type = 'scheduled'
                   AND e.status IN ('completed', 'failed', 'cancelled')
                 ORDER BY e.scheduled_for DESC
                 LIMIT (s.schedule_config->>'pause_after_failures')::int) recent
       ) = (s.schedule_config->>'pause_after_failures')::int
RETURNING s.paused_reason
""")


def after_failed_run(stream_id: UUID) -> bool:
    """Called when a scheduled run of the stream failed for good; True if it paused it."""
    with db.unit_of_work() as conn:
        reason = conn.execute(_PAUSE, {"stream_id": stream_id}).scalar()
    if reason:
        log.warning("stream %s %s", stream_id, reason)
    return reason is not None
