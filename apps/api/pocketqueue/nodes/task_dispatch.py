"""CeleryTaskDispatchNode: turns a dispatch request into a queued job."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pocketflow import AsyncNode

from pocketqueue.errors import QueueError
from pocketqueue.jobs.message import build_message
from pocketqueue.jobs.models import Job, JobStatus
from pocketqueue.jobs.registry import lookup
from pocketqueue.runtime import QueueRuntime


@dataclass(frozen=True)
class DispatchRequest:
    """What to run: a registered task name and its arguments."""

    task: str
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)


class CeleryTaskDispatchNode(AsyncNode):  # type: ignore[misc]
    """Validates `shared["request"]`, writes the job and its message; "dispatched" or "rejected".

    Sets `shared["job"]` and `shared["job_id"]`, or `shared["error"]` (a QueueError).
    The record, its index entry and the Celery message are written by one Lua script, so
    a dispatch either happens whole or not at all. Not retried: a retry after a lost reply
    could publish twice.
    """

    async def prep_async(self, shared: dict[str, Any]) -> tuple[QueueRuntime, DispatchRequest]:
        return shared["runtime"], shared["request"]

    async def exec_async(self, prep_res: tuple[QueueRuntime, DispatchRequest]) -> Job | QueueError:
        runtime, request = prep_res
        try:
            lookup(request.task).check_arguments(request.args, request.kwargs)
        except QueueError as rejected:
            return rejected
        job = Job(
            job_id=str(uuid.uuid4()),
            task=request.task,
            args=request.args,
            kwargs=request.kwargs,
            status=JobStatus.QUEUED,
            created_at=datetime.now(UTC),
        )
        settings = runtime.settings
        message = build_message(runtime.celery, job.job_id, job.task, job.args, job.kwargs, settings.queue_name)
        await runtime.store.create(job, message, settings.queue_job_ttl_seconds)
        return job

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Job | QueueError) -> str:
        if isinstance(exec_res, QueueError):
            shared["error"] = exec_res
            return "rejected"
        shared["job"] = exec_res
        shared["job_id"] = exec_res.job_id  # so a monitor or cancel node can follow on
        return "dispatched"
