"""The gate's statements: what a gated run's claim and a release run, under advisory locks
of the run's keys and of its workspace (when it has a cap), taken in one order.

Why locks and several statements rather than one: a run's claim must count the runs of its
keys that are running *now*. One statement sees the database as of its start, before it
waited for a lock; in READ COMMITTED each statement of a transaction starts afresh, so the
lock is taken first and the counting statement then sees every claim that committed before
it. Release takes the same locks, so a run that parked itself (its claim saw a slot taken)
is visible to the release that follows the end of the run that held that slot: no wake-up
is lost (the end of a run looks for waiting runs only after its own commit, and a run that
parks looks again after its own: see gate.after_end). All statements of one gate step are
one transaction, sent in one pipeline: one round trip.
"""

from __future__ import annotations

from app.models import PRIORITY_RANK

RANK = PRIORITY_RANK.replace("priority", "p.priority")
BIG = 2_147_483_647  # "no cap"
RELABEL = 100  # how many of the runs still waiting on a key a release tells why

# The gate's statements are long: planned once per connection, not on every call (a custom
# plan takes longer to make than the statement takes to run).
GENERIC_PLANS = "SET LOCAL plan_cache_mode = force_generic_plan"

# The locks: one transaction-scoped advisory lock per key of the workspace, and one for the
# workspace itself when it has a cap (the key '' is not a valid key), taken in one order
# (by lock id) so that two gate steps never wait on each other in a cycle. Advisory locks
# write nothing: a release with nothing to release commits as a read-only transaction.
_CAPPED = """(SELECT ARRAY['']::text[] FROM workspaces w
               WHERE w.id = {workspace} AND w.max_concurrent_runs IS NOT NULL)"""
_LOCK = """
SELECT count(*) FROM (
  SELECT pg_advisory_xact_lock(ids.id)
    FROM (SELECT DISTINCT hashtextextended({workspace}::text || '/' || k.key, 0) AS id
            FROM {source}
           CROSS JOIN LATERAL unnest({keys} || coalesce({capped}, '{{}}'::text[])) AS k(key)
           {where}) AS ids
   ORDER BY ids.id) AS locked
"""
LOCK = _LOCK.format(
    workspace="%(workspace_id)s::uuid",
    source="(VALUES (1)) AS one",
    keys="%(keys)s::text[]",
    capped=_CAPPED.format(workspace="%(workspace_id)s::uuid"),
    where="",
)
# The same for a run's own workspace and keys (its claim knows only its id).
LOCK_OF_RUN = _LOCK.format(
    workspace="r.workspace_id",
    source="pipeline_executions r",
    keys="r.limit_keys",
    capped=_CAPPED.format(workspace="r.workspace_id"),
    where="WHERE r.id = %(run_id)s",
)

# Why a run may not start now, if it may not: its workspace's cap, then its keys in order
# (concurrency before rate). `{run}` is a relation with workspace_id and limit_keys.
_WINDOW = "make_interval(secs => l.rate_period_seconds)"
BLOCKED = f"""
(SELECT why FROM (
   SELECT 0 AS rank, NULL::text AS key,
          jsonb_build_object('kind', 'workspace', 'key', NULL, 'until', NULL) AS why
     FROM workspaces w
    WHERE w.id = {{run}}.workspace_id AND w.max_concurrent_runs IS NOT NULL
      AND (SELECT count(*) FROM pipeline_executions p
            WHERE p.workspace_id = w.id AND p.status = 'running') >= w.max_concurrent_runs
   UNION ALL
   SELECT 1, l.key, jsonb_build_object('kind', 'concurrency', 'key', l.key, 'until', NULL)
     FROM limits l
    WHERE l.workspace_id = {{run}}.workspace_id AND l.key = ANY({{run}}.limit_keys)
      AND l.max_concurrent IS NOT NULL
      AND (SELECT count(*) FROM pipeline_executions p
            WHERE p.workspace_id = l.workspace_id AND p.gated AND p.waiting_for IS NULL
              AND p.status = 'running' AND p.limit_keys @> ARRAY[l.key]) >= l.max_concurrent
   UNION ALL
   SELECT 2, l.key, jsonb_build_object('kind', 'rate', 'key', l.key, 'until', s.opens)
     FROM limits l
    CROSS JOIN LATERAL (
          SELECT count(*) AS recent, min(t) + {_WINDOW} AS opens
            FROM unnest(l.recent_starts) AS t WHERE t > clock_timestamp() - {_WINDOW}) AS s
    WHERE l.workspace_id = {{run}}.workspace_id AND l.key = ANY({{run}}.limit_keys)
      AND l.rate_count IS NOT NULL AND s.recent >= l.rate_count
   ORDER BY rank, key LIMIT 1) AS blocking)
"""

# A run that a claim may start now, if the gate lets it: the plain claim's conditions (the
# overlap queue apart, formatted in by the caller), and not parked. Written in the UPDATE
# itself too: a row changed by another transaction meanwhile (a cancel, a duplicate's claim)
# is re-checked against the UPDATE's own conditions only, not against the CTE it came from.
_CLAIMABLE = """{run}.status IN ('pending', 'retrying') AND {run}.attempt < {run}.max_attempts
   AND ({run}.next_attempt_at IS NULL OR {run}.next_attempt_at <= now())
   AND ({run}.waiting_for IS NULL OR {run}.waiting_for ->> 'kind' = 'overlap')"""

# The claim of a gated run: it starts if nothing blocks it (and the usual conditions of a
# claim hold), recording its start in its keys' rate windows; or it parks itself, pending,
# with `waiting_for` saying why, until a release publishes it again. A parked run's claim
# is refused: only a release (which keeps priority order) lets it go.
CLAIM = f"""
WITH target AS (
  SELECT r.id, r.workspace_id, r.limit_keys
    FROM pipeline_executions r
   WHERE r.id = %(run_id)s AND {_CLAIMABLE.format(run="r")} AND {{queue_clear_r}}),
verdict AS (SELECT t.id, {BLOCKED.format(run="t")} AS why FROM target t),
claimed AS (
  UPDATE pipeline_executions p
     SET status = 'running', attempt = attempt + 1, worker = %(worker)s,
         started_at = coalesce(started_at, now()), heartbeat_at = now(),
         next_attempt_at = NULL, waiting_for = NULL, updated_at = now(), gated = true
    FROM verdict v
   WHERE p.id = v.id AND v.why IS NULL
     AND {_CLAIMABLE.format(run="p")} AND {{queue_clear_p}}
  RETURNING p.id, p.pipeline, p.run_type, p.attempt, p.max_attempts, p.stream_id, p.params,
            (SELECT name FROM research_streams s WHERE s.id = p.stream_id) AS stream_name,
            p.priority, p.workspace_id, p.limit_keys, p.gated),
parked AS (
  UPDATE pipeline_executions p SET waiting_for = v.why
    FROM verdict v
   WHERE p.id = v.id AND v.why IS NOT NULL AND {_CLAIMABLE.format(run="p")}
  RETURNING v.why, p.workspace_id, p.limit_keys),
started AS (
  UPDATE limits l
     SET recent_starts = (l.recent_starts || clock_timestamp())[
           greatest(1, cardinality(l.recent_starts) + 2 - l.rate_count):]
    FROM claimed c
   WHERE l.workspace_id = c.workspace_id AND l.key = ANY(c.limit_keys)
     AND l.rate_count IS NOT NULL
  RETURNING 1)
SELECT claimed.*,
       (SELECT why FROM parked) AS waiting_for,
       (SELECT workspace_id FROM parked) AS parked_in,
       (SELECT limit_keys FROM parked) AS parked_keys,
       (SELECT extract(epoch FROM w.next_attempt_at - now())::float8
          FROM pipeline_executions w
         WHERE w.id = %(run_id)s AND w.status IN ('pending', 'retrying')
           AND w.next_attempt_at > now()) AS wait_seconds,
       (SELECT greatest(0, extract(epoch FROM (why ->> 'until')::timestamptz
                                   - clock_timestamp()))::float8
          FROM parked WHERE why ->> 'kind' = 'rate') AS opens_in
  FROM (VALUES (1)) AS one LEFT JOIN claimed ON true
"""

# Release: the runs parked on each key (and, when asked, on the workspace's cap) that fit
# in what is free now, in priority order then oldest first, lose `waiting_for` and come
# back to be published. Free room counts the runs on their way to a slot (released, not
# yet claimed) as taken. A rate key out of permits, with runs still parked on it, answers
# when its next permit frees (`opens_in`): the caller schedules a release for then.
_WAITING = """
  SELECT EXISTS (SELECT 1 FROM pipeline_executions p
                  WHERE p.workspace_id = %(workspace_id)s
                    AND p.status IN ('pending', 'retrying') AND p.waiting_for IS NOT NULL
                    AND (p.waiting_for ->> 'key') = ANY(%(keys)s::text[]))
      OR EXISTS (SELECT 1 FROM pipeline_executions p
                  WHERE p.workspace_id = %(workspace_id)s
                    AND p.status IN ('pending', 'retrying') AND p.waiting_for IS NOT NULL
                    AND (p.waiting_for ->> 'key') IS NULL
                    AND p.waiting_for ->> 'kind' = 'workspace') AS present"""
# Whether any run waits on these keys or on the workspace's cap: after a gated run ends, a
# release follows only if so (see gate.after_end for why that loses no wake-up).
WAITING = _WAITING

_ROOM = f"""
waiting AS ({_WAITING}),
ws_free AS (
  SELECT coalesce((
    SELECT w.max_concurrent_runs - (
             SELECT count(*) FROM pipeline_executions p
              WHERE p.workspace_id = w.id
                AND (p.status = 'running'
                     OR (p.status = 'pending' AND p.gated AND p.waiting_for IS NULL)))
      FROM workspaces w WHERE w.id = %(workspace_id)s AND w.max_concurrent_runs IS NOT NULL),
    {BIG}) AS free),
room AS (
  SELECT k.key,
         least(ws_free.free, slots.free, permits.free) AS free,
         CASE WHEN ws_free.free <= 0
                THEN jsonb_build_object('kind', 'workspace', 'key', NULL, 'until', NULL)
              WHEN slots.free <= 0
                THEN jsonb_build_object('kind', 'concurrency', 'key', k.key, 'until', NULL)
              WHEN permits.free <= 0
                THEN jsonb_build_object('kind', 'rate', 'key', k.key, 'until', permits.opens)
         END AS why,
         CASE WHEN l.rate_count IS NOT NULL THEN permits.opens END AS opens
    FROM unnest(%(keys)s::text[]) AS k(key)
   CROSS JOIN ws_free
    LEFT JOIN limits l ON l.workspace_id = %(workspace_id)s AND l.key = k.key
   CROSS JOIN LATERAL (
         SELECT count(*) AS holding, count(*) FILTER (WHERE p.status = 'pending') AS admitted
           FROM pipeline_executions p
          WHERE p.workspace_id = %(workspace_id)s AND p.gated AND p.waiting_for IS NULL
            AND p.status IN ('pending', 'running') AND p.limit_keys @> ARRAY[k.key]) AS h
   CROSS JOIN LATERAL (
         SELECT count(*) AS recent, min(t) + {_WINDOW} AS opens
           FROM unnest(l.recent_starts) AS t WHERE t > clock_timestamp() - {_WINDOW}) AS s
   CROSS JOIN LATERAL (
         SELECT coalesce(l.max_concurrent - h.holding, {BIG}) AS free) AS slots
   CROSS JOIN LATERAL (
         SELECT coalesce(l.rate_count - h.admitted - s.recent, {BIG}) AS free,
                coalesce(s.opens, clock_timestamp() + {_WINDOW}) AS opens) AS permits
   WHERE (SELECT present FROM waiting))"""

_ON_WORKSPACE = "(p.waiting_for ->> 'key') IS NULL AND p.waiting_for ->> 'kind' = 'workspace'"
_PARKED = f"""
          SELECT p.id FROM pipeline_executions p
           WHERE p.workspace_id = %(workspace_id)s
             AND p.status IN ('pending', 'retrying') AND p.waiting_for IS NOT NULL
             AND {{which}}
           ORDER BY {RANK}, p.created_at, p.id"""

RELEASE = f"""
WITH {_ROOM},
chosen AS (
  SELECT c.id FROM room
   CROSS JOIN LATERAL ({_PARKED.format(which="(p.waiting_for ->> 'key') = room.key")}
           LIMIT greatest(room.free, 0)) AS c
  UNION
  SELECT c.id FROM ws_free
   CROSS JOIN LATERAL ({_PARKED.format(which=_ON_WORKSPACE)}
           LIMIT greatest(ws_free.free, 0)) AS c
   WHERE (SELECT present FROM waiting)),
released AS (
  UPDATE pipeline_executions p SET waiting_for = NULL, updated_at = now()
    FROM chosen c
   WHERE p.id = c.id AND p.waiting_for IS NOT NULL AND p.status IN ('pending', 'retrying')
  RETURNING p.id, p.priority),
-- The head of each key's line learns why it still waits (a new run parks provisionally).
relabelled AS (
  UPDATE pipeline_executions p SET waiting_for = room.why
    FROM room
   CROSS JOIN LATERAL ({_PARKED.format(which="(p.waiting_for ->> 'key') = room.key")}
           OFFSET greatest(room.free, 0) LIMIT {RELABEL}) AS c
   WHERE room.why IS NOT NULL AND p.id = c.id AND p.waiting_for IS DISTINCT FROM room.why
     AND p.waiting_for IS NOT NULL AND p.status IN ('pending', 'retrying')
  RETURNING p.id)
SELECT id, priority, NULL::text AS key, NULL::float8 AS opens_in FROM released
UNION ALL
SELECT NULL, NULL, room.key,
       greatest(0, extract(epoch FROM room.opens - clock_timestamp()))::float8
  FROM room
 WHERE room.why ->> 'kind' = 'rate'
   AND EXISTS ({_PARKED.format(which="(p.waiting_for ->> 'key') = room.key")} LIMIT 1)
"""

# A release scheduled for when a rate window opens: one per key at a time. Answers the
# seconds to wait when this call is the one that scheduled it.
SCHEDULE_WAKE = """
UPDATE limits
   SET wake_at = now() + make_interval(secs => %(seconds)s)
 WHERE workspace_id = %(workspace_id)s AND key = %(key)s
   AND (wake_at IS NULL OR wake_at <= now()
        OR wake_at > now() + make_interval(secs => %(seconds)s))
RETURNING %(seconds)s::float8
"""

WOKEN = """
UPDATE limits SET wake_at = NULL
 WHERE workspace_id = %(workspace_id)s AND key = %(key)s AND wake_at IS NOT NULL
"""

# Where a sweep looks for lost wake-ups: every key (or workspace cap) with runs parked on
# it for a while. One release each; the release itself decides whether any may start.
PARKED_KEYS = """
SELECT workspace_id, waiting_for ->> 'key'
  FROM pipeline_executions
 WHERE status IN ('pending', 'retrying') AND waiting_for IS NOT NULL
   AND waiting_for ->> 'kind' <> 'overlap'
   AND updated_at < now() - make_interval(secs => %(idle)s)
 GROUP BY 1, 2
 ORDER BY min(updated_at)
 LIMIT %(limit)s
"""

# Creating runs: whether they are gated (limit keys, or a workspace with a cap), and where
# a new gated run parks until its first release.
CAPPED = """
SELECT id FROM workspaces WHERE id = ANY(CAST(:ids AS uuid[])) AND max_concurrent_runs IS NOT NULL
"""


def parking(capped: str, keys: str) -> str:
    """gate.parking as a SQL expression of `capped` (boolean) and `keys` (text[]), for a
    statement that creates a run from its stream's row: the same rule, which a test holds
    to gate.parking's answers."""
    return f"""CASE
    WHEN {capped} THEN jsonb_build_object('kind', 'workspace', 'key', NULL, 'until', NULL)
    WHEN cardinality({keys}) > 0
        THEN jsonb_build_object('kind', 'concurrency', 'key', ({keys})[1], 'until', NULL)
END"""
