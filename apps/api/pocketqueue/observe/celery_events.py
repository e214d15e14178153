"""Celery task events for what a task's own body never reports, so Flower follows the record.

A worker's task sends its own events (received, started, succeeded, retried, failed) as it
runs. Some outcomes are decided elsewhere: a cancel by the API, a crash recovery or a
quarantine by a worker's main process, a job failed for want of a worker with its task.
These send the event Celery would have, by the job's id, so Flower and `celery events`
never keep showing STARTED for a job whose worker died (and, for a job adopted from a
plain Celery caller that expects results, write its outcome to Celery's backend). They are a courtesy to Celery's
tools: the record is the truth, so an event that cannot be sent is logged, never raised.
Sent whether or not task events are on: they are rare (no job pays for them), and one
sending process cannot know whether a watcher turned the workers' events on since
(Flower does, every 5 s).
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from celery import Celery

from pocketqueue.jobs.models import Job, JobError, JobStatus
from pocketqueue.observe.celery_results import write_outcome, write_record

log = logging.getLogger(__name__)

# Celery files every task event under a host: an API process, which runs no task, uses this.
API_HOST = f"pocketqueue-api@{socket.gethostname()}"


def announce(celery: Celery, event: str, job_id: str, task: str, hostname: str | None, **fields: Any) -> None:
    """Send one task event (`task-failed`, ...) as `hostname` (default: the API's)."""
    try:
        with celery.events.default_dispatcher(hostname=hostname or API_HOST) as dispatcher:
            # `name` too: a job that no worker received is otherwise nameless to Flower.
            dispatcher.send(event, uuid=job_id, name=task, **fields)
    except Exception:  # the outcome holds in the record; Flower just keeps the last state
        log.warning("%s event for job %s not sent", event, job_id, exc_info=True)


def announce_failed(celery: Celery, job_id: str, task: str, error: JobError, hostname: str | None) -> None:
    """The job failed for good (into the dead letters) without its task raising.

    A job adopted from a plain Celery caller that expects results gets FAILURE in Celery's
    backend too (a crash recovery out of retries, a quarantine, a missing task, ...).
    """
    announce(celery, "task-failed", job_id, task, hostname, **_error_fields(error))
    write_record(celery, job_id)


def announce_retried(celery: Celery, job_id: str, task: str, error: JobError, hostname: str | None) -> None:
    """The attempt ended without its task raising (its worker died), and the job runs again."""
    announce(celery, "task-retried", job_id, task, hostname, **_error_fields(error))


def announce_revoked(celery: Celery, job: Job, terminated: bool) -> None:
    """The job was cancelled: as the worker that last ran it, else as the API.

    `job` is the record as the cancel left it: a Celery caller that expects results gets REVOKED.
    """
    announce(
        celery, "task-revoked", job.job_id, job.task, job.worker, terminated=terminated, signum=None, expired=False
    )
    write_outcome(celery, job)


def tell_celery_cancelled(celery: Celery, job: Job, before: str) -> None:
    """After the record says cancelled: stop the running attempt, tell Celery's tools.

    The worker is told to terminate a running job (Celery revoke); if that broadcast is
    lost, the job's own heartbeat still sees the cancel. A `task-revoked` event goes out
    either way, since a job cancelled before it ran never reaches a worker that would send one.
    """
    if before == JobStatus.PROCESSING.value:
        try:
            celery.control.revoke(job.job_id, terminate=True, signal="SIGTERM")
        except Exception:
            log.warning("revoke of running job %s failed; its heartbeat will stop it", job.job_id, exc_info=True)
    announce_revoked(celery, job, before == JobStatus.PROCESSING.value)


def _error_fields(error: JobError) -> dict[str, str]:
    # As Celery's own failure events carry them: the exception's repr, and its traceback.
    return {"exception": f"{error.type}({error.message!r})", "traceback": error.traceback or ""}
