"""Celery's result meta for a job, and Celery's own result backend for callers that expect it.

`celery_meta` reads a record as the dict a Celery backend stores per task; PocketQueue's
RecordBackend answers Celery's result tools with it (worker/results.py).

A plain Celery client knows nothing of records: `AsyncResult(id).get()` on its own app
(`Celery(broker=..., backend="redis://...")`) reads the `celery-task-meta-<id>` key and
listens on its channel. So for a job adopted from such a caller's message (one that did
not ask to ignore its result: `Job.celery.result`), each state the record reaches is also
written there, by Celery's own RedisBackend on the job store's Redis, after the record:
that copy never shows an outcome the record does not. Best effort, like the task events
(celery_events.py): the record is the truth, and a write that fails is logged, never raised.
"""

from __future__ import annotations

import builtins
import logging
import os
from typing import Any

from celery import Celery, states
from celery.backends.redis import RedisBackend

from pocketqueue.jobs.models import Job, JobError, JobStatus

__all__ = ["celery_meta", "write_outcome", "write_record", "write_started"]

log = logging.getLogger(__name__)

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


# One backend (and so one connection pool) per process and Redis: a forked child makes its own.
_backends: dict[tuple[int, str], RedisBackend] = {}


def _backend(app: Celery) -> RedisBackend:
    url: str = app.settings.resolved_redis_url()
    key = (os.getpid(), url)
    if key not in _backends:
        # On PocketQueue's app for its settings: JSON, and result_expires = the job TTL, so
        # the copy expires with the record.
        _backends[key] = RedisBackend(app=app, url=url)
    return _backends[key]


def write_outcome(app: Celery, job: Job) -> None:
    """Write the state `job`'s record is in to Celery's backend, if its caller expects it."""
    if job.celery is None or not job.celery.result:
        return
    meta = celery_meta(job)
    state = meta["status"]
    if state == states.PENDING:  # Celery's answer for an id it has no result for
        return
    try:
        backend = _backend(app)
        result = meta["result"]
        if state in states.EXCEPTION_STATES:
            # Celery's backend serialises an exception, not the dict of one.
            result = backend.exception_to_python(result)
        backend.store_result(job.job_id, result, state, traceback=meta["traceback"])
    except Exception:  # the record holds the outcome; only this caller's copy is missing
        log.warning("job %s: its %s result could not be written to Celery's backend", job.job_id, state, exc_info=True)


def write_record(app: Celery, job_id: str) -> None:
    """write_outcome() for the record as it is now (read from the job store)."""
    try:
        job = app.job_store.get(job_id)
    except Exception:
        log.warning("job %s: its record could not be read for Celery's backend", job_id, exc_info=True)
        return
    if job is not None:
        write_outcome(app, job)


def write_started(app: Celery, job_id: str, worker: str) -> None:
    """Celery's STARTED (its task_track_started), for a caller that expects results."""
    try:
        _backend(app).store_result(job_id, {"pid": os.getpid(), "hostname": worker}, states.STARTED)
    except Exception:
        log.warning("job %s: STARTED could not be written to Celery's backend", job_id, exc_info=True)
