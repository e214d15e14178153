"""Settling due batches: the janitor leader's half of the fan-in (batches.py has the rest).

A batch becomes due in the Lua step that ends its last child (or, under fail_fast, its
first failed one). Each tick the leader takes the due batches and, for each:
- completed, with a callback: dispatches it with the idempotency key
  `batch:<id>:on_complete`, so a leader that dies between the dispatch and noting it
  (or two leaders for a moment) gets the same job back: exactly one callback;
- failed (fail_fast): cancels every child still active (cancel.lua, as a user's cancel);
and only then takes the batch off the due set.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

from pocketqueue.errors import IdempotencyKeyReused, QueueError
from pocketqueue.jobs.models import Priority

if TYPE_CHECKING:
    from pocketqueue.worker.app import PocketQueueCelery

log = logging.getLogger(__name__)

DUE_PER_TICK = 50


def settle_due_batches(app: PocketQueueCelery) -> int:
    """Settle up to DUE_PER_TICK due batches; returns how many."""
    store = app.janitor_store
    due = [str(batch_id) for batch_id in store.redis.zrange(store.keys.batches_due, 0, DUE_PER_TICK - 1)]
    for batch_id in due:
        meta = {str(k): str(v) for k, v in store.redis.hgetall(store.keys.batch(batch_id)).items()}
        if meta.get("state") == "completed" and "on_complete" in meta and not meta.get("on_complete_job"):
            job_id = _dispatch_callback(app, batch_id, meta)
            if job_id is not None:
                store.redis.hset(store.keys.batch(batch_id), "on_complete_job", job_id)
        elif meta.get("state") == "failed":
            children = store.redis.hgetall(store.keys.batch_children(batch_id))
            for child, status in children.items():
                if status == "":
                    store.cancel(str(child))
        store.redis.zrem(store.keys.batches_due, batch_id)
    return len(due)


def _dispatch_callback(app: PocketQueueCelery, batch_id: str, meta: dict[str, str]) -> str | None:
    from pocketqueue.client.sync import Client

    callback = json.loads(meta["on_complete"])
    kwargs = {**callback["kwargs"], "batch": callback_input(app, batch_id, meta)}
    client = Client(app.settings, celery=app)
    options: dict[str, Any] = {"idempotency_key": f"batch:{batch_id}:on_complete", "tags": callback["tags"]}
    options["priority"] = Priority(callback["priority"])
    for name in ("max_retries", "queue"):
        if callback[name] is not None:
            options[name] = callback[name]
    try:
        handle = client.dispatch(callback["task"], callback["args"], kwargs, **options)
    except IdempotencyKeyReused as exc:  # dispatched already (a leader that died before noting it)
        return exc.job_id
    except QueueError as exc:  # e.g. the task is no longer registered: noted, never retried forever
        log.error("batch %s: on_complete %s not dispatched: %s", batch_id, callback["task"], exc.detail)
        return None
    log.info("batch %s: %s on_complete job %s", batch_id, "had" if handle.duplicate else "dispatched", handle.job_id)
    return handle.job_id


def callback_input(app: PocketQueueCelery, batch_id: str, meta: dict[str, str]) -> dict[str, Any]:
    """What the callback receives as `batch=`: the batch's counts, and each child's status and
    result by job id (results left out, `results_included: false`, past QUEUE_MAX_RESULT_BYTES)."""
    store = app.janitor_store
    children = [str(child) for child in store.redis.hkeys(store.keys.batch_children(batch_id))]
    with store.redis.pipeline(transaction=False) as pipe:
        for child in children:
            pipe.hmget(store.keys.job(child), "status", "result")
        replies = pipe.execute()
    jobs: dict[str, dict[str, Any]] = {}
    size = 0
    for child, (status, result) in zip(children, replies, strict=True):
        jobs[child] = {"status": status, "result": json.loads(result) if result else None}
        size += len(result or "")
    included = size <= app.settings.queue_max_result_bytes
    if not included:
        jobs = {child: {"status": entry["status"]} for child, entry in jobs.items()}
    counts = {name[2:]: int(value) for name, value in meta.items() if name.startswith("n:") and int(value) > 0}
    return {"batch_id": batch_id, "counts": counts, "jobs": jobs, "results_included": included}
