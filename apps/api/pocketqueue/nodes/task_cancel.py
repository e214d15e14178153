"""TaskCancelNode: cancels a queued or running job, for good."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from celery import Celery
from pocketflow import AsyncNode

from pocketqueue.jobs.models import ACTIVE_STATUSES, Job, JobStatus
from pocketqueue.observe.celery_events import announce_revoked
from pocketqueue.runtime import QueueRuntime

log = logging.getLogger(__name__)


def tell_celery_cancelled(celery: Celery, job: Job, before: str) -> None:
    """After the record says cancelled: stop the running attempt, tell Celery's tools.

    The worker is told to terminate a running job (Celery revoke); if that broadcast is
    lost, the job's own heartbeat still sees the cancel. A `task-revoked` event goes out
    either way, since a job cancelled before it ran never reaches a worker that would send one.
    """
    if before == JobStatus.PROCESSING:
        try:
            celery.control.revoke(job.job_id, terminate=True, signal="SIGTERM")
        except Exception:
            log.warning("revoke of running job %s failed; its heartbeat will stop it", job.job_id, exc_info=True)
    announce_revoked(celery, job, before == JobStatus.PROCESSING)


class TaskCancelNode(AsyncNode):  # type: ignore[misc]
    """Cancels `shared["job_id"]`; action "cancelled", "finished" (too late) or "missing".

    Any active job can be cancelled: scheduled, queued, retrying or processing. The
    cancel is written to the job record first (atomically, in Lua), so it holds even if
    no worker is online: a worker that later receives the message sees "cancelled" and
    drops it, and a scheduled job leaves the schedule. A running job is also stopped: its worker is told to terminate it
    (Celery revoke), and its heartbeat sees the cancel within a third of a lease anyway.
    Celery's tools are told too: a `task-revoked` event, since a job
    cancelled before it ran never reaches a worker that would send one.
    Sets `shared["job"]` to the record after the attempt.
    """

    async def prep_async(self, shared: dict[str, Any]) -> tuple[QueueRuntime, str]:
        return shared["runtime"], shared["job_id"]

    async def exec_async(self, prep_res: tuple[QueueRuntime, str]) -> tuple[str, Job | None]:
        runtime, job_id = prep_res
        before, job = await runtime.store.cancel(job_id)
        if job is not None and before in ACTIVE_STATUSES:
            # Celery's control API is synchronous; keep it off the event loop.
            await asyncio.to_thread(tell_celery_cancelled, runtime.celery, job, before)
        return before, job

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: tuple[str, Job | None]) -> str:
        before, job = exec_res
        if job is None:
            return "missing"
        shared["job"] = job
        if before in ACTIVE_STATUSES:
            log.info("job %s cancelled (was %s)", job.job_id, before)
            return "cancelled"
        return "finished"
