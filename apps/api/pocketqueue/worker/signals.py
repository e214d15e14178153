"""Failures the worker's main process sees, outside the job's own process.

- The hard time limit: Celery kills the job's process, so the task never writes its outcome.
- A task this worker does not know: Celery discards the message, so the job would stay
  queued forever. (The API accepts only tasks it has imported; a worker started with a
  different TASK_MODULES is the usual cause.)
"""

from __future__ import annotations

from typing import Any

from billiard.exceptions import TimeLimitExceeded
from celery.signals import task_failure, task_unknown

from pocketqueue.jobs.models import JobError


def _record_hard_time_limit(sender: Any = None, task_id: str = "", exception: Any = None, **_: Any) -> None:
    from pocketqueue.worker.tasks import JobTask

    if not isinstance(sender, JobTask) or not isinstance(exception, TimeLimitExceeded):
        return
    limit = sender.app.settings.queue_task_time_limit
    error = JobError(type="TimeLimitExceeded", message=f"time limit exceeded ({limit} s, QUEUE_TASK_TIME_LIMIT)")
    sender.app.job_store.fail(task_id, error, worker=getattr(sender.request, "hostname", None) or "")


def _record_unknown_task(sender: Any = None, name: str = "", id: str = "", **_: Any) -> None:
    store = getattr(sender.app, "job_store", None) if sender is not None else None
    if store is None or not id:
        return
    hostname = getattr(sender, "hostname", None) or "this worker"
    message = f"task {name!r} is not registered on {hostname}; check its TASK_MODULES"
    store.fail(id, JobError(type="TaskNotRegistered", message=message))


task_failure.connect(_record_hard_time_limit, weak=False)
task_unknown.connect(_record_unknown_task, weak=False)
