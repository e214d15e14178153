"""The worker registry, read: every live worker from its heartbeat, and whether it is stalled.

Each worker's janitor refreshes `worker:<name>` (JSON, with a TTL) and its entry in the
`workers` set every lease/3 (jobs/lua/announce.lua, worker/heartbeat.py). A read costs
three round trips whatever the number of jobs: the set (and Redis's clock), the
heartbeats (MGET), then one pipeline for the running jobs' progress and each consumed
queue's oldest waiting job. A name whose key has lapsed (a worker killed) is dropped.

A worker is stalled (computed here, at read time, so the rule can change without a
worker upgrade) when it is alive but not doing its share:
- it does not consume a queue it started with (`celery control cancel_consumer`, or a
  consumer that never came back), unless it is shutting down; or
- it consumes in name only: a job has waited in one of its queues for longer than
  `stall_seconds` while it had a free slot and received no message for as long (the
  silent stall after a Redis reconnect, celery#10205).
Either is flagged within `stall_seconds` plus one heartbeat (lease/3) of its start: by
default 60 + 10 s. The bound is QUEUE_RECOVERY_SECONDS because a message that was lost
is published again within it (janitor.py): a lost message never makes a worker stalled.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from redis.asyncio import Redis

from pocketqueue.config import Settings
from pocketqueue.jobs.keys import Keys, queue_lists


class RunningJob(BaseModel):
    """A job a worker is running, with the progress its record holds."""

    job_id: str
    task: str
    started_at: datetime | None = None
    progress: int | None = None
    step: str | None = None


class WorkerView(BaseModel):
    """A live worker, from its heartbeat; times are the worker's own clock."""

    name: str
    host: str
    pid: int
    concurrency: int
    queues: list[str]
    tasks: list[str]
    started_at: datetime
    last_seen: datetime = Field(description="When it last refreshed its heartbeat (every lease/3)")
    running: list[RunningJob]
    consuming: bool = Field(description="Whether it still consumes every queue it started with")
    last_message_at: datetime | None = Field(default=None, description="When it last received a job message")
    stopping: bool = Field(default=False, description="In a warm shutdown: finishing its jobs, taking no new ones")
    stalled: bool = False
    stall_reason: str | None = None


def stall_seconds(settings: Settings) -> float:
    """How long jobs wait on an idle, consuming worker before it counts as stalled."""
    return float(settings.queue_recovery_seconds)


async def read_workers(redis: Redis, keys: Keys, settings: Settings) -> list[WorkerView]:
    """Every live worker, by name, with its running jobs' progress and whether it is stalled."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.zrange(keys.workers, 0, -1)
        (seconds, micros), names = await pipe.execute()
    if not names:
        return []
    now = float(seconds) + micros / 1e6
    beats = await redis.mget([keys.worker(name) for name in names])
    workers = [view for view in map(_parse, beats) if view is not None]
    gone = [name for name, beat in zip(names, beats, strict=True) if beat is None]
    queues = sorted({queue for worker in workers for queue in worker.queues})
    running = [job for worker in workers for job in worker.running]
    async with redis.pipeline(transaction=False) as pipe:
        if gone:  # lapsed: killed before it could retire, or retired just now
            pipe.zrem(keys.workers, *gone)
        for job in running:
            pipe.hmget(keys.job(job.job_id), "progress", "step")
        for queue in queues:
            for queue_list in queue_lists(queue):
                pipe.zrange(keys.published(queue_list), 0, 0, withscores=True)
        replies = await pipe.execute()
    replies = replies[1:] if gone else replies
    for job, (progress, step) in zip(running, replies[: len(running)], strict=True):
        job.progress = int(progress) if progress else None
        job.step = step or None
    waits = _oldest_waits(queues, replies[len(running) :], now)
    bound = stall_seconds(settings)
    for worker in workers:
        worker.stall_reason = stall_reason(worker, waits, bound)
        worker.stalled = worker.stall_reason is not None
    return sorted(workers, key=lambda worker: worker.name)


def stall_reason(worker: WorkerView, waits: dict[str, float], bound: float) -> str | None:
    """Why `worker` is stalled, or None; `waits`: per queue, how long its oldest queued job has waited (s)."""
    if worker.stopping:
        return None
    if not worker.consuming:
        return (
            f"not consuming {', '.join(worker.queues)}: its consumer was cancelled "
            "(celery control cancel_consumer) or did not come back"
        )
    waited = max((waits.get(queue, 0.0) for queue in worker.queues), default=0.0)
    free = worker.concurrency - len(worker.running)
    # Both durations as of its last heartbeat, by its own clock: no clock skew between machines.
    idle = (worker.last_seen - (worker.last_message_at or worker.started_at)).total_seconds()
    if waited < bound or free <= 0 or idle < bound:
        return None
    return (
        f"received no job for {idle:.0f} s with {free} of {worker.concurrency} slots free, while a job "
        f"has waited {waited:.0f} s in {', '.join(worker.queues)} (over {bound:g} s): it consumes in name only"
    )


def _parse(beat: Any) -> WorkerView | None:
    if beat is None:
        return None
    try:
        info: dict[str, Any] = json.loads(beat)
        return WorkerView.model_validate(info)
    except (ValueError, ValidationError):  # a worker of an older version: no registry entry to show
        return None


def _oldest_waits(queues: list[str], replies: list[Any], now: float) -> dict[str, float]:
    """Per queue, how long its oldest queued job has waited (Redis's clock), from ZRANGE 0 0 replies."""
    replies_of = iter(replies)
    waits: dict[str, float] = {}
    for queue in queues:  # one reply per list of the queue, in queue_lists order
        oldest = [score for _ in queue_lists(queue) for _, score in next(replies_of)]
        waits[queue] = max(0.0, now - min(oldest)) if oldest else 0.0
    return waits
