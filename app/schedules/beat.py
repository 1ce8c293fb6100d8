"""Runway's beat scheduler: RedBeat's lock decides which beat leads; Postgres holds schedules.

On every tick, every beat
- calls the ticker, which claims due streams in Postgres (FOR UPDATE SKIP LOCKED, so beats
  that tick at once share the due streams, each handling its own) and creates their runs,
  on Postgres' clock, so beats whose clocks disagree still fire each slot on time;
- sleeps until the next stream is due: at most RUNWAY_TICK_SECONDS, and at least a fifth
  of it, so streams due close together are claimed together.
The leader, the beat holding RedBeat's lock, also runs RedBeat's own entries (housekeeping,
app/schedules/entries.py), executing them here in beat, on a thread of their own, so they
never wait behind pipeline runs. Every beat also delivers webhooks
(app/webhooks/deliverer.py) on threads of its own. A beat that is not leading
(another holds the lock, or Redis lost it) keeps ticking and trying to take the lock instead
of exiting. While Redis does not answer at all (RedBeat's, when it is also the broker), a
beat does not tick: it could not send the runs, and the streams' misfire policies decide
about the slots missed meanwhile. Becoming
leader re-creates RedBeat's entries, so a Redis that restarted empty gets them back, and
starts the entries that run on leading (retention).
"""

from __future__ import annotations

import enum
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import psycopg
from redbeat import RedBeatScheduler
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, get_redis
from redis.exceptions import LockError, RedisError
from sqlalchemy.exc import SQLAlchemyError

from app.schedules import entries, ticker
from app.settings import get_settings
from app.webhooks.deliverer import Deliverer

log = logging.getLogger(__name__)

# Beat sleeps until the next stream is due, but at least tick_seconds / this: streams due
# close together are claimed in one tick.
MIN_SLEEP_FRACTION = 5
# A tick of due streams stops after this share of the lock's timeout; what is left is due
# at once, so the next tick (after RedBeat's, which extends the lock when due) goes on.
TICK_SHARE_OF_LOCK = 3


class Standing(enum.Enum):
    LEADING = "leading"  # holds RedBeat's lock: ticks and runs housekeeping
    FOLLOWING = "following"  # another beat holds it: ticks
    CUT_OFF = "cut off"  # the broker's Redis did not answer: neither, its runs could not go


class RunwayScheduler(RedBeatScheduler):  # type: ignore[misc]
    lock: Any = None

    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.tick_seconds = get_settings().tick_seconds
        self._entries_ready = False
        self._redbeat_due = 0.0
        self._local: dict[str, Future[Any]] = {}
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="runway-housekeeping")
        self._deliverer = Deliverer()

    def setup_schedule(self) -> None:
        """RedBeat's entries are set up when this beat becomes leader, not at start-up."""
        self.app.redbeat_conf.schedule = entries.schedule()

    def tick(self, **kwargs: Any) -> float:
        self._deliverer.start()  # here, not at start-up: beat's process is set up by now
        standing = self._keep_lead(**kwargs)
        if standing is Standing.CUT_OFF:
            return self.tick_seconds
        wait = self._tick_streams()  # leading or not: see the module's docstring
        if standing is Standing.LEADING:
            wait = min(wait, self._redbeat_due - time.monotonic())
        return max(self.tick_seconds / MIN_SLEEP_FRACTION, wait)

    def _keep_lead(self, **kwargs: Any) -> Standing:
        """Lead if this beat can (RedBeat's tick extends the lock and runs housekeeping)."""
        try:
            if not self._lead():
                return Standing.FOLLOWING
            self._tick_redbeat(**kwargs)
        except LockError as error:  # Redis answered: the lock is another's now
            self._lose(error)
            return Standing.FOLLOWING
        except RedisError as error:
            self._lose(error)
            # Cut off from the broker only if RedBeat's Redis is the broker's.
            shared = get_settings().beat_redis_url == get_settings().redis_url
            return Standing.CUT_OFF if shared else Standing.FOLLOWING
        return Standing.LEADING

    def _tick_redbeat(self, **kwargs: Any) -> None:
        """RedBeat's own tick (extend the lock, run due entries), only when it has work:
        its next entry is due, or the lock wants extending."""
        if time.monotonic() < self._redbeat_due:
            return
        wait = float(super().tick(**kwargs))
        self._redbeat_due = time.monotonic() + min(wait, self.lock_timeout / 3)

    def _lead(self) -> bool:
        """Hold the lock, or try once to take it (never blocking); set up entries on taking it."""
        if self.lock is None:
            redis = get_redis(self.app)
            lock = redis.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.tick_seconds)
            lock.lua_extend = redis.register_script(LUA_EXTEND_TO_SCRIPT)
            if not lock.acquire(blocking=False):
                return False
            self.lock = lock
        if not self._entries_ready:
            super().setup_schedule()
            self._entries_ready = True
            self._redbeat_due = 0.0
            log.info("beat: leading (holds %s)", self.lock_key)
            for task in entries.ON_LEADING:
                self._run_local(task)
        return True

    def _lose(self, error: Exception) -> None:
        if self.lock is not None:
            log.warning("beat: lost the lead (%s); waiting to lead again", error)
        else:
            log.warning("beat: cannot take the lead (%s); trying again", error)
        self.lock = None
        self._entries_ready = False

    def _tick_streams(self) -> float:
        """Claim due streams; the seconds until beat should look again."""
        try:
            # A tick never outlives the lock: RedBeat's tick, which extends it, comes between.
            report = ticker.tick(budget_seconds=self.lock_timeout / TICK_SHARE_OF_LOCK)
        except (SQLAlchemyError, psycopg.Error) as error:  # psycopg's: releasing parked runs
            log.warning("beat: tick failed, trying again: %s", error)
            return self.tick_seconds
        if report.next_due is None:
            return self.tick_seconds
        return min(self.tick_seconds, (report.next_due - report.clock).total_seconds())

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kw: Any) -> Any:
        """Housekeeping entries run here in beat, one at a time each; others are sent as usual."""
        if entry.task not in entries.LOCAL:
            return super().apply_async(entry, producer=producer, advance=advance, **kw)
        entry = self.reserve(entry) if advance else entry
        self._run_local(entry.task)
        return None

    def _run_local(self, task: str) -> None:
        """Start a housekeeping entry on beat's own threads, unless it is still running."""
        running = self._local.get(task)
        if running is not None and not running.done():
            log.info("beat: %s still running, not starting it again", task)
            return
        self._local[task] = self._pool.submit(_run_logged, task, entries.LOCAL[task])

    def close(self) -> None:
        self._deliverer.stop()
        self._pool.shutdown(wait=True, cancel_futures=True)
        try:
            super().close()
        except (LockError, RedisError) as error:
            log.warning("beat: could not release the lock: %s", error)


def _run_logged(name: str, function: Any) -> None:
    started = time.monotonic()
    try:
        function()
    except Exception:
        log.exception("beat: %s failed", name)
    else:
        log.debug("beat: %s took %.3fs", name, time.monotonic() - started)
