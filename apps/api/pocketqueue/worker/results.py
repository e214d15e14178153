"""RecordBackend: Celery's result backend, answered from the job records.

A job's record already holds its status, result and errors, so Celery's own result
tools (`celery -A pocketqueue.worker result <id>`, `AsyncResult(id).get()`, Flower's
result page) read it instead of a `celery-task-meta-<id>` copy: nothing more is written
per job (no second copy of every result in Redis, no extra command in the finishing
script), and every way a job ends reads truthfully, a cancel, a crash recovery or a
quarantine included. It is read-only: workers never store results (tasks run with
`ignore_result`), and a waiting `get()` polls the record (every half second by default).
"""

from __future__ import annotations

import builtins
from typing import Any

from celery import states
from celery.backends.base import BaseBackend

from pocketqueue.jobs.models import Job, JobError, JobStatus

__all__ = ["BACKEND", "RecordBackend", "celery_meta"]

# What `result_backend` names (Celery imports it by this path).
BACKEND = "pocketqueue.worker.results:RecordBackend"

# The Celery state each record status reads as (a missing record reads as PENDING, as an
# unknown id does in every Celery backend).
STATES = {
    JobStatus.SCHEDULED: states.PENDING,
    JobStatus.QUEUED: states.PENDING,
    JobStatus.PROCESSING: states.STARTED,
    JobStatus.RETRYING: states.RETRY,
    JobStatus.COMPLETED: states.SUCCESS,
    JobStatus.PARTIAL: states.SUCCESS,
    JobStatus.FAILED: states.FAILURE,
    JobStatus.CANCELLED: states.REVOKED,
}


class RecordBackend(BaseBackend):  # type: ignore[misc]  # celery ships no type hints
    """A read-only Celery result backend over PocketQueue's job records."""

    def _get_task_meta_for(self, task_id: str) -> dict[str, Any]:
        job = self.app.job_store.get(task_id)
        if job is None:
            return {"status": states.PENDING, "result": None, "task_id": task_id}
        return celery_meta(job)

    def _store_result(self, task_id: str, result: Any, state: str, *args: Any, **kwargs: Any) -> Any:
        # The record is the store, written by the transition scripts; Celery never asks
        # for a write here (tasks ignore results), and one it did would be a stale copy.
        return result

    def _forget(self, task_id: str) -> None:
        """Nothing to forget: the record expires on its own."""

    def cleanup(self) -> None:
        """Nothing to clean: records expire on their own."""

    def as_uri(self, *args: Any, **kwargs: Any) -> str:
        return "pocketqueue://records"


def celery_meta(job: Job) -> dict[str, Any]:
    """The record as Celery's result meta (the dict a Celery backend stores per task)."""
    state = STATES[job.status]
    error = job.error
    result: Any = None
    if state == states.SUCCESS:
        result = (
            job.result if job.partial_errors is None else {"result": job.result, "partial_errors": job.partial_errors}
        )
    elif state == states.REVOKED:
        result = _exception("TaskRevokedError", "celery.exceptions", f"job {job.job_id} was cancelled")
    elif state in (states.FAILURE, states.RETRY) and error is not None:
        result = _error(error)
    elif state == states.STARTED:
        result = {"hostname": job.worker}
    return {
        "task_id": job.job_id,
        "status": state,
        "result": result,
        "traceback": error.traceback if error is not None and state in states.EXCEPTION_STATES else None,
        "children": [],
        "date_done": job.finished_at.isoformat() if job.finished_at is not None else None,
        # What Celery's extended results carry (AsyncResult.name, .args, ...).
        "name": job.task,
        "args": job.args,
        "kwargs": job.kwargs,
        "worker": job.worker,
        "retries": max(0, job.attempts - 1),
        "queue": job.queue,
    }


def _error(error: JobError) -> dict[str, Any]:
    # A built-in type is rebuilt as itself; any other is rebuilt by Celery as a class of
    # that name (it never imports a module named by stored data).
    is_builtin = isinstance(getattr(builtins, error.type, None), type) and issubclass(
        getattr(builtins, error.type), BaseException
    )
    return _exception(error.type, "builtins" if is_builtin else None, error.message)


def _exception(exc_type: str, exc_module: str | None, message: str) -> dict[str, Any]:
    return {"exc_type": exc_type, "exc_module": exc_module, "exc_message": [message]}
