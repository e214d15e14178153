"""A plain Celery app: the comparison baseline.

Same Redis as broker and result backend, JSON only, results stored, and exactly the
worker settings PocketQueue's worker uses (copied from its Celery config: late acks,
reject on worker lost, prefetch 1, track started, time limits, result expiry,
visibility timeout), with concurrency 2.
`celery -A plain_celery worker` finds `app` here; REDIS_URL names the Redis.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from celery import Celery

QUEUE = "celery"
NOOP = "bench.noop"


# PocketQueue's Celery settings that shape how a worker runs tasks; the baseline gets
# the same values, so the drain compares the job record's cost and nothing else.
SAME_AS_POCKETQUEUE = (
    "task_serializer",
    "result_serializer",
    "accept_content",
    "result_accept_content",
    "task_acks_late",
    "task_reject_on_worker_lost",
    "worker_prefetch_multiplier",
    "task_track_started",
    "task_time_limit",
    "task_soft_time_limit",
    "result_expires",
    "broker_transport_options",
    "result_backend_transport_options",
    "broker_connection_retry_on_startup",
)


def make_app(redis_url: str) -> Celery:
    from pydantic import SecretStr

    from pocketqueue.config import Settings
    from pocketqueue.worker.app import create_celery_app

    reference = create_celery_app(Settings(_env_file=None, redis_url=SecretStr(redis_url)))  # type: ignore[call-arg]
    app = Celery("plain", broker=redis_url, backend=redis_url)
    app.conf.update({name: reference.conf[name] for name in SAME_AS_POCKETQUEUE}, worker_concurrency=2)

    @app.task(name=NOOP, shared=False)  # type: ignore[untyped-decorator]
    def noop(**kwargs: Any) -> None:
        """Does nothing: the cost measured is the queue's own."""

    return app


@cache
def app_from_env() -> Celery:
    """The app for REDIS_URL (required: no default, so nothing touches a Redis by accident)."""
    return make_app(os.environ["REDIS_URL"])


def __getattr__(name: str) -> Any:
    if name == "app":
        return app_from_env()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
