"""Failures that happen outside the task's own process: the hard time limit.

When Celery kills a job's process at QUEUE_TASK_TIME_LIMIT, the task never gets to
write its outcome; the worker's main process reports it here instead.
"""

from __future__ import annotations

from typing import Any

from billiard.exceptions import TimeLimitExceeded
from celery.signals import task_failure

from pocketqueue.jobs.models import JobError


def _record_hard_time_limit(sender: Any = None, task_id: str = "", exception: Any = None, **_: Any) -> None:
    from pocketqueue.worker.tasks import JobTask

    if not isinstance(sender, JobTask) or not isinstance(exception, TimeLimitExceeded):
        return
    limit = sender.app.settings.queue_task_time_limit
    error = JobError(type="TimeLimitExceeded", message=f"time limit exceeded ({limit} s, QUEUE_TASK_TIME_LIMIT)")
    sender.app.job_store.fail(task_id, error, worker=getattr(sender.request, "hostname", None) or "")


task_failure.connect(_record_hard_time_limit, weak=False)
