"""CeleryTaskDispatchNode: turns a dispatch request into a queued (or scheduled) job."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pocketflow import AsyncNode
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pocketqueue.errors import DispatchOutcomeUnknown, IdempotencyKeyReused, JobNotFound, QueueError, UniqueJobActive
from pocketqueue.jobs.message import message_for
from pocketqueue.jobs.models import Job, JobStatus
from pocketqueue.jobs.registry import lookup
from pocketqueue.jobs.request import DispatchRequest
from pocketqueue.jobs.store import Idempotency
from pocketqueue.runtime import QueueRuntime

Outcome = tuple[str, Job | QueueError]


class CeleryTaskDispatchNode(AsyncNode):  # type: ignore[misc]
    """Validates `shared["request"]` and writes the job; "dispatched", "duplicate" or "rejected".

    Sets `shared["job"]` and `shared["job_id"]` (for "duplicate": the job the idempotency
    key created first), or `shared["error"]` (a QueueError). The record, its index entry
    and the Celery message (or the schedule entry, for a delayed job), the idempotency
    key and the unique key are written by one Lua script: a dispatch happens whole or not
    at all, and concurrent duplicates create one job; a resend of it after a lost reply
    finds its own record (create.lua). If Redis stops answering mid-write the outcome is
    unknown: it raises DispatchOutcomeUnknown, which names the job id to look up.
    """

    async def prep_async(self, shared: dict[str, Any]) -> tuple[QueueRuntime, DispatchRequest]:
        return shared["runtime"], shared["request"]

    async def exec_async(self, prep_res: tuple[QueueRuntime, DispatchRequest]) -> Outcome:
        runtime, request = prep_res
        settings = runtime.settings
        now = datetime.now(UTC)
        try:
            request.check(settings.queue_max_json_depth, now)
            spec = lookup(request.task)
            spec.check_arguments(request.args, request.kwargs)
        except QueueError as rejected:
            return "rejected", rejected
        run_at = request.run_at(now)
        max_retries = request.max_retries
        if max_retries is None:
            max_retries = spec.max_retries if spec.max_retries is not None else settings.queue_max_retries
        job = Job(
            job_id=str(uuid.uuid4()),
            task=request.task,
            args=list(request.args),
            kwargs=request.kwargs,
            status=JobStatus.SCHEDULED if run_at is not None else JobStatus.QUEUED,
            priority=request.priority,
            max_retries=max_retries,
            created_at=now,
            run_at=run_at,
            idempotency_key=request.idempotency_key,
            unique_key=request.unique_key,
            tags=dict(request.tags),
            queue=settings.queue_name,
        )
        message, queue_list = ("", "") if run_at is not None else message_for(runtime.celery, job, settings.queue_name)
        idempotency = None
        if request.idempotency_key is not None:
            ttl = settings.queue_idempotency_ttl_seconds
            idempotency = Idempotency(request.idempotency_key, request.fingerprint(), ttl)
        try:
            created = await runtime.store.create(job, message, queue_list, settings.queue_job_ttl_seconds, idempotency)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise DispatchOutcomeUnknown(job.job_id) from exc
        if created.outcome == "created":
            return "dispatched", job
        if created.outcome == "duplicate":
            original = await runtime.store.get(created.job_id)
            return ("duplicate", original) if original is not None else ("rejected", JobNotFound(created.job_id))
        if created.outcome == "conflict":
            return "rejected", IdempotencyKeyReused(request.idempotency_key or "", created.job_id)
        return "rejected", UniqueJobActive(request.unique_key or "", created.job_id)

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Outcome) -> str:
        action, value = exec_res
        if isinstance(value, QueueError):
            shared["error"] = value
            return "rejected"
        shared["job"] = value
        shared["job_id"] = value.job_id  # so a monitor or cancel node can follow on
        return action
