"""Celery and RedBeat settings, all derived from app.settings (see ../README.md: Configuration).

Choices follow how Celery and Redis behave under faults: late acks with reject-on-worker-lost
so a killed task comes back, prefetch 1 so a long run never hides another behind it, JSON only,
no result backend (Postgres is the status store), and a visibility timeout longer than any run.
"""

from kombu import Exchange, Queue

from app.settings import get_settings

_settings = get_settings()

broker_url = _settings.redis_url
broker_connection_retry_on_startup = True
broker_transport_options = {
    "visibility_timeout": _settings.broker_visibility_timeout,
    "socket_timeout": 10,
    "socket_connect_timeout": 5,
    "socket_keepalive": True,
    "health_check_interval": 25,
}
if _settings.broker_restore_seconds is not None:
    # How often unacked messages older than the visibility timeout are re-delivered
    # (kombu's default is roughly every 100 s). Runway's sweep does not depend on it.
    broker_transport_options |= {
        "unacked_restore_interval": _settings.broker_restore_seconds,
        "unacked_restore_throttle": 1,
    }
# Keep in-flight runs running when Redis blips; their rows decide what happens next.
worker_cancel_long_running_tasks_on_connection_loss = False

task_serializer = "json"
result_serializer = "json"
accept_content = ["json"]
result_accept_content = ["json"]
result_backend = None
result_expires = None  # no backend, so no celery.backend_cleanup entry in beat
task_ignore_result = True

task_acks_late = True
task_reject_on_worker_lost = True
worker_prefetch_multiplier = 1
worker_concurrency = _settings.max_concurrent_jobs
# Runway enforces run time limits itself (app/runs/supervisor.py) and records them as
# `timeout`; its kernel timer is the backstop too. No Celery time limit: the prefork pool
# would keep, in the worker's main process, a timer entry per task for the whole limit
# (a finished task's entry is only marked cancelled): at hundreds of runs a second and an
# hour's limit, millions of entries, about 0.5 KB each, and a heap that grows with them.
task_soft_time_limit = None
task_time_limit = None
# The control queue's few tasks keep Celery's limit as their backstop (they are rare, so
# their timers are too).
_CONTROL_TIME_LIMIT = _settings.run_time_limit_seconds + 2 * _settings.cancel_grace_seconds + 60
task_annotations = {
    name: {"time_limit": _CONTROL_TIME_LIMIT}
    for name in (
        "runway.housekeeping.sweep",
        "runway.housekeeping.retention",
        "runway.limits.release",
    )
}

task_default_queue = _settings.runs_queue
# Each queue has its own direct exchange and key, so a message lands in exactly one queue.
task_queues = tuple(
    Queue(name, Exchange(name, type="direct"), routing_key=name)
    for name in (_settings.runs_queue, _settings.control_queue)
)
task_routes = {
    "runway.runs.*": {"queue": _settings.runs_queue},
    "runway.housekeeping.*": {"queue": _settings.control_queue},
}
imports = ("tasks.runs", "tasks.housekeeping")

# Task events stay off unless someone watches: Flower turns them on in the workers it
# monitors (its enable_events option, on by default); `celery worker -E` does it by hand.
worker_hijack_root_logger = False

timezone = "UTC"
enable_utc = True

beat_scheduler = "app.schedules.beat:RunwayScheduler"
beat_max_loop_interval = 5
redbeat_redis_url = _settings.beat_redis_url
redbeat_key_prefix = f"{_settings.queue_prefix}:redbeat:"
redbeat_lock_timeout = 30
