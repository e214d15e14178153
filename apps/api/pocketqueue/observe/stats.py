"""Queue stats: depth, delayed jobs, counts per status, recent throughput, run times per task.

Everything is read from what the transition scripts keep beside the records
(lua/includes/observe.lua), in two pipelined round trips (a third only for tasks that have
run-time data but are not registered in this process), never by scanning keys:

1. Redis server TIME, the size and oldest entry of each broker list's published set, the
   broker lists' lengths, the size of every status index, and the hosts that write counters;
2. the per-minute outcome hashes of the last 16 minutes (named from that server time), the
   tasks with run times (from the hosts' counter hashes) and the run-time lists.

Depth counts jobs, not messages: a list's published set holds exactly the queued jobs whose
message went to it (lua/includes/job.lua), while the broker list also holds messages no job
waits on (a running job's message the broker handed back after its visibility timeout, a
cancelled job's message not yet dropped by a worker); those lengths are `messages`.

Throughput windows: "the last N minutes" is the N whole minutes before the current one
plus the current minute so far, and the rates are divided by that window's real length
(`window_seconds`, between N and N+1 minutes). So a job that just finished counts at
once, and a rate never jumps at the turn of a minute.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field
from redis.asyncio import Redis

from pocketqueue.jobs.keys import Keys, queue_lists
from pocketqueue.jobs.models import FINISHED_STATUSES, JobStatus, Priority
from pocketqueue.jobs.registry import registered_names

WINDOWS_MINUTES = (1, 5, 15)
# The outcome hashes expire after 65 minutes (observe.lua): the widest window plus the
# current minute is well inside that, and so is the hour of `history`.
MINUTES_READ = max(WINDOWS_MINUTES) + 1
MAX_HISTORY_MINUTES = 60
FINAL = tuple(status.value for status in JobStatus if status in FINISHED_STATUSES)
RUNTIME_SUM = "runtime_sum\t"
HSCAN_COUNT = 10_000  # one call covers a host's whole counter hash in practice
DELAYED = (JobStatus.SCHEDULED.value, JobStatus.RETRYING.value)  # counted per queue (Keys.delayed)
# Priorities in the order queue_lists() names the lists (high, normal, low).
PRIORITIES = sorted(Priority, key=lambda priority: priority.broker_priority)


class QueueDepth(BaseModel):
    """One queue: its waiting messages per priority, its delayed jobs, the oldest waiting job's age."""

    name: str
    depth: dict[Priority, int] = Field(description="Queued jobs per priority (waiting for a worker)")
    waiting: int = Field(description="Queued jobs, all priorities together")
    messages: dict[Priority, int] = Field(
        description="Messages in each priority's broker list (LLEN): the queued jobs' messages, and any the "
        "broker holds for jobs no longer waiting (redelivered while running, or cancelled)"
    )
    scheduled: int = Field(description="The queue's jobs delayed until their run time")
    retrying: int = Field(description="The queue's jobs waiting out a retry backoff")
    oldest_waiting_seconds: float | None = Field(
        description="How long the longest-waiting queued job has waited (null: none waiting)"
    )


class Throughput(BaseModel):
    """Jobs that finished in the last `minutes` minutes (the current minute included), per final status."""

    minutes: int
    window_seconds: float = Field(description="The window's real length: `minutes` whole minutes + this one so far")
    finished: dict[str, int] = Field(description="How many reached each final status in the window")
    per_minute: dict[str, float] = Field(description="The same, per minute of the window")


class TaskRuntime(BaseModel):
    """Run time percentiles of a task's recent runs (its last 1,000 to 1,099), nearest-rank."""

    task: str
    samples: int
    p50_seconds: float | None
    p95_seconds: float | None


class MinuteOutcomes(BaseModel):
    """How many jobs reached each final status in one minute (Redis server time)."""

    minute: datetime = Field(description="The minute's start")
    counts: dict[str, int]


class QueueStats(BaseModel):
    """The queue at one moment (Redis server time)."""

    at: datetime
    queues: list[QueueDepth]
    statuses: dict[JobStatus, int] = Field(description="Jobs per status (finished ones until trimmed or expired)")
    throughput: list[Throughput]
    runtimes: list[TaskRuntime]
    dead_letters: int = Field(description="Failed jobs in the dead-letter set")
    history: list[MinuteOutcomes] = Field(
        default_factory=list,
        description="Outcomes per minute, oldest first, the current minute last (as many as `history_minutes`)",
    )


async def read_stats(redis: Redis, keys: Keys, default_queue: str, history_minutes: int = 0) -> QueueStats:
    """The stats of every queue a job was sent to (and `default_queue`), and of the whole deployment;
    with `history_minutes`, that many minutes of outcomes too (read in the same round trip)."""
    sent_to: set[str] = await redis.smembers(keys.queues)  # type: ignore[assignment]  # decoded replies
    names = sorted({default_queue, *sent_to})
    lists = [name for queue in names for name in queue_lists(queue)]
    async with redis.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.zrange(keys.metrics(), 0, -1)
        for name in lists:
            pipe.zcard(keys.published(name))
        for name in lists:
            pipe.zrange(keys.published(name), 0, 0, withscores=True)
        for name in lists:
            pipe.llen(name)
        for status in JobStatus:
            pipe.zcard(keys.index(status.value))
        # '': jobs written before records named their queue, counted on the default queue.
        for queue in ("", *names):
            for kind in DELAYED:
                pipe.zcard(keys.delayed(kind, queue))
        (seconds, micros), hosts, *rest = await pipe.execute()
    now = int(seconds) + int(micros) / 1_000_000
    n = len(lists)
    statuses = dict(zip(JobStatus, map(int, rest[3 * n : 3 * n + len(JobStatus)]), strict=True))
    counted = iter(map(int, rest[3 * n + len(JobStatus) :]))
    unnamed = {kind: next(counted) for kind in DELAYED}
    delayed = {queue: {kind: next(counted) for kind in DELAYED} for queue in names}
    for kind, count in unnamed.items():
        delayed[default_queue][kind] += count
    read = minutes_up_to(now, max(MINUTES_READ, min(history_minutes, MAX_HISTORY_MINUTES)))
    minutes, task_runtimes = await _recent(redis, keys, read, hosts)
    history = last_minutes(read, minutes, history_minutes)
    per_queue = len(PRIORITIES)
    depths = []
    for index, queue in enumerate(names):
        part = slice(index * per_queue, (index + 1) * per_queue)
        queued = [int(count) for count in rest[:n][part]]
        oldest = [float(rows[0][1]) for rows in rest[n : 2 * n][part] if rows]
        lengths = [int(length) for length in rest[2 * n : 3 * n][part]]
        depth = QueueDepth(
            name=queue,
            depth=dict(zip(PRIORITIES, queued, strict=True)),
            waiting=sum(queued),
            messages=dict(zip(PRIORITIES, lengths, strict=True)),
            scheduled=delayed[queue][JobStatus.SCHEDULED.value],
            retrying=delayed[queue][JobStatus.RETRYING.value],
            oldest_waiting_seconds=max(0.0, now - min(oldest)) if oldest else None,
        )
        depths.append(depth)
    return QueueStats(
        at=datetime.fromtimestamp(now, tz=UTC),
        queues=depths,
        statuses=statuses,
        throughput=[throughput(minutes, now, window) for window in WINDOWS_MINUTES],
        runtimes=[runtime_percentiles(task, samples) for task, samples in sorted(task_runtimes.items())],
        dead_letters=statuses[JobStatus.FAILED],
        history=history,
    )


async def _recent(
    redis: Redis, keys: Keys, minutes: range, hosts: Sequence[str]
) -> tuple[list[dict[str, int]], dict[str, list[float]]]:
    """The outcome counts of each minute (oldest first), and the recent run times per task."""
    registered = registered_names()
    async with redis.pipeline(transaction=False) as pipe:
        for minute in minutes:
            pipe.hgetall(keys.stats_minute(minute))
        for host in hosts:
            pipe.hscan(keys.metrics(host), 0, match=f"{RUNTIME_SUM}*", count=HSCAN_COUNT)
        for task in registered:
            pipe.lrange(keys.runtimes(task), 0, -1)
        replies = await pipe.execute()
    counts = outcome_minutes(replies[: len(minutes)])
    scans = replies[len(minutes) : len(minutes) + len(hosts)]
    runtimes = {
        task: _seconds(rows) for task, rows in zip(registered, replies[len(minutes) + len(hosts) :], strict=True)
    }
    with_data = set(await _tasks_with_runtimes(redis, keys, hosts, scans))
    unregistered = sorted(with_data - set(registered))
    if unregistered:  # tasks this process does not know (e.g. the CLI, which imports no task modules)
        async with redis.pipeline(transaction=False) as pipe:
            for task in unregistered:
                pipe.lrange(keys.runtimes(task), 0, -1)
            runtimes.update(zip(unregistered, map(_seconds, await pipe.execute()), strict=True))
    return counts, runtimes


async def _tasks_with_runtimes(
    redis: Redis, keys: Keys, hosts: Sequence[str], scans: Sequence[tuple[int, dict[str, str]]]
) -> list[str]:
    """Task names from the hosts' `runtime_sum\\t<task>\\t<queue>` counter fields."""
    fields: list[str] = []
    for host, (cursor, found) in zip(hosts, scans, strict=True):
        fields += found
        if cursor:  # a hash too big for one call: finish it field by field
            fields += [field async for field, _ in redis.hscan_iter(keys.metrics(host), match=f"{RUNTIME_SUM}*")]
    return [field.split("\t")[1] for field in fields if field.count("\t") >= 2]


def _seconds(rows: Iterable[str]) -> list[float]:
    return [float(row) for row in rows]


def throughput(minutes: Sequence[dict[str, int]], now: float, window: int) -> Throughput:
    """Outcomes of the last `window` whole minutes plus the current one (the last of `minutes`)."""
    counted = minutes[-(window + 1) :]
    window_seconds = window * 60 + (now % 60)
    finished = {status: sum(minute[status] for minute in counted) for status in FINAL}
    per_minute = {status: round(count * 60 / window_seconds, 3) for status, count in finished.items()}
    return Throughput(minutes=window, window_seconds=round(window_seconds, 3), finished=finished, per_minute=per_minute)


def finish_rate(minutes: Sequence[dict[str, int]], now: float, window: int) -> float:
    """Jobs finished (any final status) per second over the window `throughput` counts."""
    seen = throughput(minutes, now, window)
    return sum(seen.finished.values()) / seen.window_seconds


def runtime_percentiles(task: str, samples: Sequence[float]) -> TaskRuntime:
    ordered = sorted(samples)
    return TaskRuntime(
        task=task,
        samples=len(ordered),
        p50_seconds=nearest_rank(ordered, 50),
        p95_seconds=nearest_rank(ordered, 95),
    )


def nearest_rank(ordered: Sequence[float], percent: float) -> float | None:
    """The smallest sample with at least `percent`% of the samples at or below it (None: no samples)."""
    if not ordered:
        return None
    return ordered[max(1, math.ceil(percent / 100 * len(ordered))) - 1]


def last_minutes(read: range, counts: Sequence[dict[str, int]], count: int) -> list[MinuteOutcomes]:
    """The last `count` of the minutes read, with their outcome counts, oldest first."""
    if count <= 0:
        return []
    pairs = list(zip(read, counts, strict=True))[-count:]
    return [
        MinuteOutcomes(minute=datetime.fromtimestamp(minute * 60, tz=UTC), counts=outcomes)
        for minute, outcomes in pairs
    ]


def minutes_up_to(now: float, count: int) -> range:
    """The last `count` epoch minutes (server time), oldest first, the current one last."""
    minute = int(now // 60)
    return range(minute - count + 1, minute + 1)


def outcome_minutes(rows: Sequence[Any]) -> list[dict[str, int]]:
    """Per-minute outcome hashes (HGETALL replies) as counts of each final status."""
    return [{status: int(raw.get(status, 0)) for status in FINAL} for raw in rows]
