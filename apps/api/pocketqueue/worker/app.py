"""The Celery app: JSON only, late acks, one job at a time per process, bounded results.

Celery's own tools see the jobs: workers send task events (Flower, `celery events`) unless
QUEUE_TASK_EVENTS=false, and the result backend reads the job records (results.py).
"""

from __future__ import annotations

import os
from functools import cached_property

import redis
from celery import Celery

from pocketqueue.config import Settings
from pocketqueue.jobs.keys import PRIORITY_SEPARATOR, PRIORITY_STEPS, Keys
from pocketqueue.jobs.registry import import_task_modules, lookup, registered_names
from pocketqueue.jobs.worker_store import WorkerJobStore
from pocketqueue.worker.broker import broker_transport
from pocketqueue.worker.results import BACKEND
from pocketqueue.worker.task_events import BatchedTaskEvents


class PocketQueueCelery(Celery):  # type: ignore[misc]  # celery ships no type hints
    """A Celery app that knows PocketQueue's settings and job store."""

    def __init__(self, settings: Settings) -> None:
        # The job records are the result store: `celery result`, AsyncResult and Flower
        # read them, and no job's result is copied into a `celery-task-meta-*` key.
        super().__init__("pocketqueue", broker=settings.broker_url(), backend=BACKEND)
        self.settings = settings
        self.keys = Keys(settings.queue_key_prefix)

    @cached_property
    def job_store(self) -> WorkerJobStore:
        # Created on first use; redis-py resets its pool in a forked child, so prefork
        # children never share the parent's sockets.
        client = redis.Redis.from_url(
            self.settings.resolved_redis_url(), decode_responses=True, socket_connect_timeout=5, socket_timeout=30
        )
        return WorkerJobStore(client, self.keys)

    @cached_property
    def janitor_store(self) -> WorkerJobStore:
        # The janitor's own client: it runs in a thread of the main process.
        client = redis.Redis.from_url(
            self.settings.resolved_redis_url(), decode_responses=True, socket_connect_timeout=5, socket_timeout=30
        )
        return WorkerJobStore(client, self.keys)


def create_celery_app(settings: Settings, import_tasks: bool = True) -> PocketQueueCelery:
    """The app workers and the API run; `import_tasks=False` for a client that only sends jobs."""
    if import_tasks:
        import_task_modules(settings.task_modules)
    app = PocketQueueCelery(settings)
    keys = app.keys
    task_routes = {name: {"queue": spec.queue} for name in registered_names() if (spec := lookup(name)).queue}
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_accept_content=["json"],
        task_default_queue=settings.queue_name,
        # A job is acknowledged only when it has finished; if its process dies, the
        # message goes back to the queue (the job record decides whether it runs again).
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_track_started=True,
        # Flower and `celery events` see the jobs; published in batches (task_events.py).
        worker_send_task_events=settings.queue_task_events,
        task_time_limit=settings.queue_task_time_limit,
        task_soft_time_limit=settings.queue_task_soft_time_limit,
        # A task declared with queue= is routed there by Celery's own callers too
        # (apply_async, send_task, beat, Flower) when they use this app.
        task_routes=task_routes,
        result_expires=settings.queue_job_ttl_seconds,
        # kombu's Redis transport, with one client for its plain commands (broker.py).
        broker_transport=broker_transport(settings.broker_url()),
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout,
            # Look for unacknowledged messages every few seconds instead of every ~100.
            "unacked_restore_interval": max(1, settings.visibility_timeout // 6),
            "unacked_restore_throttle": 1,
            # One list per priority (see jobs/keys.py), popped highest first.
            "priority_steps": list(PRIORITY_STEPS),
            "sep": PRIORITY_SEPARATOR,
            "queue_order_strategy": "priority",
            # Per deployment (see Keys.unacked): another deployment's visibility timeout
            # must never restore this one's in-flight messages.
            "unacked_key": keys.unacked,
            "unacked_index_key": keys.unacked_index,
            "unacked_mutex_key": keys.unacked_mutex,
        },
        result_backend_transport_options={"visibility_timeout": settings.visibility_timeout},
        broker_connection_retry_on_startup=True,
        worker_concurrency=settings.worker_concurrency,
    )
    app.steps["consumer"].add(BatchedTaskEvents)
    import pocketqueue.worker.signals  # noqa: F401  (connects the failure hook)

    return app


def worker_argv(settings: Settings) -> list[str]:
    """Arguments for `celery worker`; the pid in the node name keeps local workers apart."""
    return [
        "worker",
        f"--loglevel={settings.log_level}",
        f"--concurrency={settings.worker_concurrency}",
        f"--queues={','.join(settings.consumed_queues)}",
        f"--hostname=pocketqueue.{os.getpid()}@%h",
    ]
