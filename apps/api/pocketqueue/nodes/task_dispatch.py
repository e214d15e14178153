"""CeleryTaskDispatchNode: turns a dispatch request into a queued (or scheduled) job."""

from __future__ import annotations

from typing import Any

from pocketflow import AsyncNode
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pocketqueue.errors import DispatchOutcomeUnknown, JobNotFound, QueueError
from pocketqueue.jobs.dispatch import plan, refusal
from pocketqueue.jobs.models import Job
from pocketqueue.jobs.request import DispatchRequest
from pocketqueue.runtime import QueueRuntime

Outcome = tuple[str, Job | QueueError]


class CeleryTaskDispatchNode(AsyncNode):  # type: ignore[misc]
    """Validates `shared["request"]` and writes the job; "dispatched", "duplicate" or "rejected".

    `shared["registered_only"]` (default True) refuses a task this process has not
    registered; an AsyncClient without the task code sets it False (see jobs/dispatch.py).

    Sets `shared["job"]` and `shared["job_id"]` (for "duplicate": the job the idempotency
    key created first), or `shared["error"]` (a QueueError). The record, its index entry
    and the Celery message (or the schedule entry, for a delayed job), the idempotency
    key and the unique key are written by one Lua script: a dispatch happens whole or not
    at all, and concurrent duplicates create one job; a resend of it after a lost reply
    finds its own record (create.lua). If Redis stops answering mid-write the outcome is
    unknown: it raises DispatchOutcomeUnknown, which names the job id to look up.
    """

    async def prep_async(self, shared: dict[str, Any]) -> tuple[QueueRuntime, DispatchRequest, bool]:
        return shared["runtime"], shared["request"], shared.get("registered_only", True)

    async def exec_async(self, prep_res: tuple[QueueRuntime, DispatchRequest, bool]) -> Outcome:
        runtime, request, registered_only = prep_res
        settings = runtime.settings
        try:
            planned = plan(request, settings, runtime.celery, registered_only=registered_only)
        except QueueError as rejected:
            return "rejected", rejected
        job = planned.job
        try:
            created = await runtime.store.create(planned, settings.queue_job_ttl_seconds)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise DispatchOutcomeUnknown(job.job_id) from exc
        if created.outcome == "created":
            return "dispatched", job
        if created.outcome == "duplicate":
            original = await runtime.store.get(created.job_id)
            return ("duplicate", original) if original is not None else ("rejected", JobNotFound(created.job_id))
        return "rejected", refusal(created, request) or QueueError(f"create.lua answered {created.outcome!r}")

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Outcome) -> str:
        action, value = exec_res
        if isinstance(value, QueueError):
            shared["error"] = value
            return "rejected"
        shared["job"] = value
        shared["job_id"] = value.job_id  # so a monitor or cancel node can follow on
        return action
