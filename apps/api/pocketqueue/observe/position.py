"""Where a queued job stands: how many queued jobs are ahead of it, and when it may start.

Read from the published sets (`published:<list>`, the queued jobs of each broker list by
publish time, server clock; lua/includes/job.lua) and the per-minute outcome counts, in
two pipelined round trips for any number of jobs, never by walking the broker's lists.

Workers drain a queue's lists highest priority first and each list oldest first, so the
jobs ahead of one are every job queued at a higher priority, and those of its own list
published before it (its rank in that list's set). The estimate divides the jobs that
must finish before a worker slot frees for it (those ahead, plus one while any job runs)
by the deployment's finishing rate over the last 5 minutes (observe/stats.py's window);
with no job finished in that window there is no rate, and no estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from pocketqueue.jobs.keys import Keys, queue_list, queue_lists
from pocketqueue.jobs.models import Job, JobStatus
from pocketqueue.observe.stats import finish_rate, minutes_up_to, outcome_minutes

ESTIMATE_WINDOW_MINUTES = 5


@dataclass(frozen=True)
class QueuePosition:
    """A queued job's place in line (0: next to start) and its expected wait in seconds (None: no rate yet)."""

    ahead: int
    estimated_start_seconds: float | None


async def queue_positions(
    redis: Redis, keys: Keys, jobs: Sequence[Job], default_queue: str
) -> dict[str, QueuePosition]:
    """Each queued job's position by job id; other jobs (and one that started meanwhile) have none."""
    queued = [job for job in jobs if job.status is JobStatus.QUEUED]
    if not queued:
        return {}
    lists = {job.job_id: queue_list(job.queue or default_queue, job.priority.broker_priority) for job in queued}
    every_list = list(dict.fromkeys(name for job in queued for name in queue_lists(job.queue or default_queue)))
    async with redis.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.zcard(keys.index(JobStatus.PROCESSING.value))
        for name in every_list:
            pipe.zcard(keys.published(name))
        for job_id, name in lists.items():
            pipe.zrank(keys.published(name), job_id)
        (seconds, micros), running, *rest = await pipe.execute()
    now = int(seconds) + int(micros) / 1_000_000
    sizes = dict(zip(every_list, map(int, rest[: len(every_list)]), strict=True))
    ranks = dict(zip(lists, rest[len(every_list) :], strict=True))
    async with redis.pipeline(transaction=False) as pipe:
        for minute in minutes_up_to(now, ESTIMATE_WINDOW_MINUTES + 1):
            pipe.hgetall(keys.stats_minute(minute))
        rate = finish_rate(outcome_minutes(await pipe.execute()), now, ESTIMATE_WINDOW_MINUTES)
    positions: dict[str, QueuePosition] = {}
    for job in queued:
        rank = ranks[job.job_id]
        if rank is None:  # started (or ended) between the record's read and this one
            continue
        own = lists[job.job_id]
        higher = queue_lists(job.queue or default_queue)
        ahead = sum(sizes[name] for name in higher[: higher.index(own)]) + int(rank)
        must_finish = ahead + (1 if int(running) else 0)
        estimate = round(must_finish / rate, 1) if rate > 0 else None
        positions[job.job_id] = QueuePosition(ahead=ahead, estimated_start_seconds=estimate)
    return positions
