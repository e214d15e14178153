"""A plain Celery app, configured the way a typical user would: the comparison baseline.

Same Redis as broker and result backend, JSON only, results stored, and the worker
settings PocketQueue's worker uses (late acks, prefetch 1, concurrency 2).
`celery -A plain_celery worker` finds `app` here; REDIS_URL names the Redis.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from celery import Celery

QUEUE = "celery"
NOOP = "bench.noop"


def make_app(redis_url: str) -> Celery:
    app = Celery("plain", broker=redis_url, backend=redis_url)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=2,
        broker_connection_retry_on_startup=True,
    )

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
