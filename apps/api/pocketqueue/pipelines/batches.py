"""Batches: N jobs dispatched together as children of one batch, fanned in to one callback.

    POST /api/queue/batches   {"jobs": [dispatch bodies], "on_complete": a dispatch body, "policy": "continue"}
    Client().dispatch_batch([{"task": "pages.ocr", "args": [1]}, ...], on_complete={"task": "books.join"})

Every child is planned and checked as a single dispatch is; then the batch's record and
every child are written in one Redis transaction (MULTI/EXEC), so a batch is all there or
not at all. Each child's record names its batch; the Lua step that ends a child counts it
in the batch (job.lua `fan_in`), so no count is lost whatever dies. When the last child
ends (or, under `fail_fast`, the first fails) the batch is due, and the janitor leader
settles it (fan_in.py): dispatches `on_complete` exactly once, or cancels what is left.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from celery import Celery

from pocketqueue.config import Settings
from pocketqueue.errors import InvalidRequest, NotFound, QueueError
from pocketqueue.jobs.dispatch import Planned, create_args, plan
from pocketqueue.jobs.keys import Keys
from pocketqueue.jobs.registry import find, lookup
from pocketqueue.jobs.request import DispatchRequest

POLICIES = ("continue", "fail_fast")
# The keyword argument the callback receives: what the batch did (see fan_in.callback_input).
CALLBACK_ARGUMENT = "batch"


class BatchNotFound(NotFound):
    title = "Batch not found"
    slug = "batch-not-found"

    def __init__(self, batch_id: str) -> None:
        super().__init__(f"No batch {batch_id!r} (never created, or expired with its jobs).")
        self.batch_id = batch_id


@dataclass(frozen=True)
class BatchRequest:
    """Jobs to dispatch as one batch; `on_complete` runs once when they have all ended.

    policy: "continue" (a failed child is counted, the rest run on, the callback runs with
    every outcome) or "fail_fast" (the first failed child fails the batch, the children
    still active are cancelled, and the callback does not run).
    """

    jobs: list[DispatchRequest]
    on_complete: DispatchRequest | None = None
    policy: str = "continue"


@dataclass(frozen=True)
class PlannedBatch:
    batch_id: str
    children: list[Planned]
    record: dict[str, str] = field(repr=False)


def plan_batch(request: BatchRequest, settings: Settings, app: Celery, *, registered_only: bool = True) -> PlannedBatch:
    """Check every part of `request` and plan its jobs; raises QueueError, writing nothing."""
    if not 1 <= len(request.jobs) <= settings.queue_max_batch_jobs:
        raise InvalidRequest(f"a batch holds 1 to {settings.queue_max_batch_jobs} jobs (QUEUE_MAX_BATCH_JOBS)")
    if request.policy not in POLICIES:
        raise InvalidRequest(f"policy must be one of {', '.join(POLICIES)}")
    for position, child in enumerate(request.jobs):
        if child.idempotency_key is not None or child.unique_key is not None:
            raise InvalidRequest(f"jobs[{position}]: a batch's jobs take no idempotency_key or unique_key")
    now = datetime.now(UTC)
    batch_id = str(uuid.uuid4())
    # Each job its own creation time, 1 µs apart: the listing orders jobs by it, and a
    # batch of jobs sharing one time would be a long tie for every page to sort out by id.
    children = [
        plan(
            child,
            settings,
            app,
            registered_only=registered_only,
            now=now + timedelta(microseconds=position),
            batch=batch_id,
        )
        for position, child in enumerate(request.jobs)
    ]
    record = {
        "batch_id": batch_id,
        "total": str(len(children)),
        "done": "0",
        "policy": request.policy,
        "state": "running",
        "created_at": f"{now.timestamp():.6f}",
    }
    if request.on_complete is not None:
        record["on_complete"] = json.dumps(_callback(request.on_complete, settings, now, registered_only))
    return PlannedBatch(batch_id, children, record)


def _callback(request: DispatchRequest, settings: Settings, now: datetime, registered_only: bool) -> dict[str, Any]:
    """The callback, checked now (it is dispatched later, by the janitor) and kept as JSON."""
    if request.idempotency_key or request.unique_key or request.delay_seconds is not None or request.eta:
        raise InvalidRequest("on_complete takes no idempotency_key, unique_key, delay_seconds or eta")
    if CALLBACK_ARGUMENT in request.kwargs:
        raise InvalidRequest(
            f"on_complete's kwargs must not hold {CALLBACK_ARGUMENT!r}: the batch's outcome goes in it"
        )
    request.check(settings.queue_max_json_depth, now)
    spec = lookup(request.task) if registered_only else find(request.task)
    if spec is not None:
        spec.check_arguments(request.args, {**request.kwargs, CALLBACK_ARGUMENT: {}})
    return {
        "task": request.task,
        "args": request.args,
        "kwargs": request.kwargs,
        "priority": request.priority.value,
        "max_retries": request.max_retries,
        "tags": request.tags,
        "queue": request.queue,
    }


def queue_batch(pipe: Any, keys: Keys, planned: PlannedBatch, create_source: str, ttl_seconds: int) -> None:
    """Queue the batch's writes on `pipe`, a transaction pipeline (sync or async: the calls
    only queue commands). The script is loaded inside the transaction, so a Redis that lost
    its script cache can never apply the batch's record without its jobs."""
    meta, children = keys.batch(planned.batch_id), keys.batch_children(planned.batch_id)
    pipe.script_load(create_source)
    pipe.hset(meta, mapping=planned.record)
    pipe.hset(children, mapping={child.job.job_id: "" for child in planned.children})
    pipe.expire(meta, ttl_seconds)
    pipe.expire(children, ttl_seconds)
    sha = hashlib.sha1(create_source.encode()).hexdigest()  # Redis names scripts by their SHA-1
    for child in planned.children:
        pipe.evalsha(sha, 0, *create_args(keys.prefix, child, ttl_seconds))


def check_batch_replies(replies: list[Any], planned: PlannedBatch) -> None:
    """Every job of the batch was created (the transaction's replies say so), or raise."""
    created = [reply for reply in replies[5:] if isinstance(reply, list) and reply and reply[0] == "created"]
    if len(created) != len(planned.children):
        raise QueueError(f"batch {planned.batch_id}: Redis created {len(created)} of {len(planned.children)} jobs")


@dataclass(frozen=True)
class Batch:
    """A batch as the API shows it."""

    batch_id: str
    state: str  # running | completed | failed
    policy: str
    total: int
    done: int
    counts: dict[str, int]  # children per final status
    jobs: list[str]
    created_at: datetime
    finished_at: datetime | None
    on_complete: str | None  # the callback's task
    on_complete_job: str | None  # its job, once dispatched


def read_batch(meta: Mapping[Any, Any], children: Mapping[Any, Any]) -> Batch | None:
    """A Batch from its two hashes (None: there is no such batch, or it expired)."""
    if not meta:
        return None
    callback = json.loads(meta["on_complete"])["task"] if "on_complete" in meta else None
    finished = meta.get("finished_at")
    return Batch(
        batch_id=meta["batch_id"],
        state=meta["state"],
        policy=meta["policy"],
        total=int(meta["total"]),
        done=int(meta.get("done", "0")),
        counts={name[2:]: int(value) for name, value in meta.items() if name.startswith("n:") and int(value) > 0},
        jobs=list(children),
        created_at=datetime.fromtimestamp(float(meta["created_at"]), UTC),
        finished_at=datetime.fromtimestamp(float(finished), UTC) if finished else None,
        on_complete=callback,
        on_complete_job=meta.get("on_complete_job") or None,
    )
