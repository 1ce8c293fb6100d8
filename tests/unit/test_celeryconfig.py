"""The Celery settings that Runway's guarantees lean on (see CELERY-FACTS)."""

from __future__ import annotations

from app import app
from app.runs.supervisor import BACKSTOP_SECONDS
from app.settings import get_settings


def test_json_only() -> None:
    assert app.conf.task_serializer == "json"
    assert app.conf.accept_content == ["json"]


def test_a_killed_task_comes_back_and_nothing_hides_behind_a_long_run() -> None:
    assert app.conf.task_acks_late is True
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.worker_cancel_long_running_tasks_on_connection_loss is False


def test_visibility_timeout_outlasts_the_backstop() -> None:
    settings = get_settings()
    timeout = app.conf.broker_transport_options["visibility_timeout"]
    backstop = settings.run_time_limit_seconds + 2 * settings.cancel_grace_seconds
    assert timeout > backstop + BACKSTOP_SECONDS


def test_no_celery_time_limit_keeps_a_timer_per_run() -> None:
    """Runway's supervisor enforces the limits; Celery's would keep a timer entry per task
    in the worker's main process for the whole limit, even after the task ended. The
    control queue's rare tasks keep Celery's limit as their backstop."""
    import tasks.housekeeping
    import tasks.runs

    assert app.conf.task_time_limit is None
    assert app.conf.task_soft_time_limit is None
    assert tasks.runs.execute.time_limit is None
    assert tasks.runs.execute_gated.time_limit is None
    for task in (tasks.housekeeping.sweep, tasks.housekeeping.purge, tasks.runs.release):
        assert task.time_limit is not None
        assert task.time_limit < app.conf.broker_transport_options["visibility_timeout"]


def test_each_queue_receives_only_its_own_messages() -> None:
    queues = list(app.conf.task_queues)
    assert len({queue.exchange.name for queue in queues}) == len(queues)
    assert len({queue.routing_key for queue in queues}) == len(queues)
    route = app.amqp.router.route({}, "runway.runs.execute")
    assert route["queue"].name == get_settings().runs_queue


def test_beat_uses_runways_scheduler_with_an_explicit_redis_url() -> None:
    assert app.conf.beat_scheduler == "app.schedules.beat:RunwayScheduler"
    assert app.conf.redbeat_redis_url == get_settings().beat_redis_url


def test_no_result_backend() -> None:
    assert app.conf.result_backend is None
    assert app.conf.task_ignore_result is True


def test_workers_show_flower_no_password_from_any_url() -> None:
    """Flower shows each worker's answer to `conf`: Runway's, with every URL masked."""
    from celery.worker.control import Panel

    from app import flower

    assert Panel.data["conf"] is flower.conf
    table = flower.masked(
        {
            "redbeat_redis_url": "redis://:pw-one@redis:6379/0",
            "nested": {"urls": ["postgresql+psycopg://u:pw-two@db/runway"]},
            "plain": "redis://redis:6379/0",
        }
    )
    assert "pw-one" not in str(table) and "pw-two" not in str(table)
    assert table["plain"] == "redis://redis:6379/0"
