"""The worker: the Celery app (`pocketqueue.worker:celery_app`) and the `@task` decorator.

The app is built on first access, not at import, so importing this package never reads
settings. `celery -A pocketqueue.worker ...` finds it as `celery` (Celery looks for
`app`, which here is a submodule, then `celery`).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from pocketqueue.config import get_settings
from pocketqueue.worker.app import PocketQueueCelery, create_celery_app
from pocketqueue.worker.tasks import JobCancelled, JobContext, task

__all__ = ["JobCancelled", "JobContext", "PocketQueueCelery", "get_celery_app", "task"]


@lru_cache
def get_celery_app() -> PocketQueueCelery:
    return create_celery_app(get_settings())


def __getattr__(name: str) -> Any:
    if name in ("celery_app", "celery"):
        return get_celery_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
