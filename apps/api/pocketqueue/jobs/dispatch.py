"""Dispatch: the one path from a DispatchRequest to a written job, for every caller.

HTTP (CeleryTaskDispatchNode), `task.delay()`, `Client.dispatch()` and a worker adopting a
plain Celery message all plan the job here and write it with the same create.lua call
(`create_args`); only the I/O differs (async or sync Redis). So a job dispatched from
Python is checked exactly as one dispatched over HTTP.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from celery import Celery

from pocketqueue.config import Settings
from pocketqueue.errors import IdempotencyKeyReused, QueueError, UniqueJobActive
from pocketqueue.jobs.message import message_for
from pocketqueue.jobs.models import Job, JobStatus
from pocketqueue.jobs.registry import find, lookup
from pocketqueue.jobs.request import DispatchRequest


@dataclass(frozen=True)
class Idempotency:
    """An idempotency key, the fingerprint of the request it came with, and its TTL."""

    key: str
    fingerprint: str
    ttl_seconds: int


@dataclass(frozen=True)
class Created:
    """What CREATE did: 'created', or why not ('duplicate', 'conflict', 'unique') and the job concerned."""

    outcome: str
    job_id: str


@dataclass(frozen=True)
class Planned:
    """A checked job, ready to write: its record, its message (empty when scheduled) and list."""

    job: Job
    message: str
    queue_list: str
    idempotency: Idempotency | None


def plan(
    request: DispatchRequest,
    settings: Settings,
    app: Celery,
    *,
    registered_only: bool = True,
    now: datetime | None = None,
    job_id: str | None = None,
    publish: bool = True,
    batch: str | None = None,
) -> Planned:
    """Check `request` and build its job; raises QueueError (nothing is written).

    registered_only: refuse a task this process has not registered (HTTP). A Client that
      does not import the task code passes False: a registered task's arguments are still
      checked, an unknown name is sent as Celery's `send_task` would (workers fail it as
      TaskNotRegistered after QUEUE_UNKNOWN_TASK_SECONDS).
    job_id/publish: a worker adopting a message it already holds keeps its id and sends
      nothing (publish=False).
    batch: the batch the job is a child of (pipelines/batches.py).
    """
    now = now or datetime.now(UTC)
    request.check(settings.queue_max_json_depth, now)
    spec = lookup(request.task) if registered_only else find(request.task)
    if spec is not None:
        spec.check_arguments(request.args, request.kwargs)
    run_at = request.run_at(now)
    max_retries = request.max_retries
    if max_retries is None:
        max_retries = spec.max_retries if spec is not None and spec.max_retries is not None else None
    if max_retries is None:
        max_retries = settings.queue_max_retries
    queue = request.queue or (spec.queue if spec is not None else None) or settings.queue_name
    job = Job(
        job_id=job_id or str(uuid.uuid4()),
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
        queue=queue,
        batch=batch,
        dispatched_by=request.dispatched_by,
    )
    message, queue_list = "", ""
    if run_at is None and publish:
        message, queue_list = message_for(app, job, queue)
    idempotency = None
    if request.idempotency_key is not None:
        ttl = settings.queue_idempotency_ttl_seconds
        idempotency = Idempotency(request.idempotency_key, request.fingerprint(), ttl)
    return Planned(job, message, queue_list, idempotency)


def record_arg(job: Job, ttl_seconds: int) -> str:
    """The record's field/value pairs as one JSON array, create.lua's last argument.

    One argument instead of two dozen: redis-py packs each argument in Python, which cost
    more than the rest of a `.delay()` but the round trip; Lua's cjson reads it in a blink.
    """
    pairs = [part for pair in job.to_hash(ttl_seconds).items() for part in pair]
    return json.dumps(pairs, ensure_ascii=False, separators=(",", ":"))


def create_args(prefix: str, planned: Planned, ttl_seconds: int) -> list[Any]:
    """ARGV of create.lua for `planned` (see that script for each one)."""
    job = planned.job
    run_at = f"{job.run_at.timestamp():.6f}" if job.run_at is not None else ""
    idem = planned.idempotency or Idempotency("", "", 0)
    return [
        prefix,
        job.job_id,
        f"{job.created_at.timestamp():.6f}",
        planned.message,
        planned.queue_list,
        run_at,
        idem.key,
        idem.fingerprint,
        idem.ttl_seconds,
        job.unique_key or "",
        record_arg(job, ttl_seconds),
    ]


def refusal(created: Created, request: DispatchRequest) -> QueueError | None:
    """The error a 'conflict' or 'unique' outcome means; None for 'created' and 'duplicate'."""
    if created.outcome == "conflict":
        return IdempotencyKeyReused(request.idempotency_key or "", created.job_id)
    if created.outcome == "unique":
        return UniqueJobActive(request.unique_key or "", created.job_id)
    return None
