"""TaskCancelNode: cancels a queued or running job, for good."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pocketflow import AsyncNode

from pocketqueue.jobs.models import ACTIVE_STATUSES, Job
from pocketqueue.observe.celery_events import tell_celery_cancelled
from pocketqueue.runtime import QueueRuntime

log = logging.getLogger(__name__)


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
