"""Listing and search: jobs by status, task, tags, time and key, newest first, by cursor.

Served from the indexes the transition scripts keep (`list:*` and the status indexes
`index:<status>`, sorted sets by creation time; lua/includes/observe.lua and job.lua;
`status_listing` says which serves a status),
never by scanning keys. A query walks ONE index (the smallest that its filters name: a
tag's, the task's, the statuses', or all jobs),
newest first, and checks each entry's record against the other filters, a batch at a
time. So a page costs O(entries walked), and a query whose filters match little of that
index is bounded by `SCAN_BUDGET`: it answers with what it found and a cursor to carry on.

Order is (creation time, job id), both descending; a cursor is the last entry walked, and
the walk resumes strictly after it (by time, then by id among jobs of the same time), so
an entry that left meanwhile cannot shift it. A status change moves a job between status
indexes but never changes its creation time, and the status indexes are read together in
one transaction per window (`_windows`), so a cursor never skips or repeats a job,
whatever is written meanwhile.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from pocketqueue.errors import InvalidRequest
from pocketqueue.jobs.keys import Keys
from pocketqueue.jobs.models import Job, JobStatus, decode_record

BATCH = 200
SCAN_BUDGET = 10_000  # index entries one request may walk before it answers with a cursor
PREFIX_MATCHES = 500  # ids a search by id prefix may match (more: refused, asking for more of the id)
MAX_LIMIT = 500

Position = tuple[float, str]  # (creation time, job id): where a walk is


@dataclass(frozen=True)
class JobQuery:
    """Filters that combine (all must hold); `tags` are (name, value) pairs, times epoch seconds."""

    statuses: tuple[JobStatus, ...] = ()
    task: str | None = None
    tags: tuple[tuple[str, str], ...] = ()
    q: str | None = None  # a job id, an id prefix, an idempotency key or a unique key
    created_after: float | None = None  # exclusive
    created_before: float | None = None  # exclusive
    limit: int = 50
    cursor: str | None = None


@dataclass(frozen=True)
class JobPage:
    """One page, newest first. `next_cursor` carries on where the page stopped (the next page
    may be empty); None when the walk reached the end."""

    jobs: list[Job]
    next_cursor: str | None


def encode_cursor(position: Position) -> str:
    return f"{position[0]!r}/{position[1]}"


def decode_cursor(cursor: str) -> Position:
    score, _, job_id = cursor.partition("/")
    try:
        return float(score), job_id
    except ValueError:
        raise InvalidRequest(f"cursor {cursor[:80]!r} is not one this API returned") from None


async def list_jobs(redis: Redis, keys: Keys, query: JobQuery) -> JobPage:
    """The page of jobs matching `query`, newest first."""
    if not 1 <= query.limit <= MAX_LIMIT:
        raise InvalidRequest(f"limit must be from 1 to {MAX_LIMIT}")
    start = decode_cursor(query.cursor) if query.cursor else None
    if query.q:
        return await _search(redis, keys, query, start)
    indexes = await _driving_indexes(redis, keys, query)
    filters = len(query.tags) + (query.task is not None) + bool(query.statuses)
    # Walking the one index a query names, every entry matches (unless its record is gone):
    # a page needs little more than `limit` of them, not a whole batch.
    size = min(BATCH, query.limit + 1) if filters <= 1 else BATCH
    found: list[str] = []
    walked = 0
    last: Position | None = None
    async for window in _windows(redis, indexes, start, query.created_after, query.created_before, size):
        for batch in (window[i : i + size] for i in range(0, len(window), size)):
            matches = await _matching(redis, keys, query, batch, indexes)
            walked += len(batch)
            for position, matched in zip(batch, matches, strict=True):
                last = position
                if matched:
                    found.append(position[1])
                    if len(found) == query.limit:
                        return await _page(redis, keys, found, last)
            if walked >= SCAN_BUDGET:
                return await _page(redis, keys, found, last)
    return await _page(redis, keys, found, None)


async def _driving_indexes(redis: Redis, keys: Keys, query: JobQuery) -> list[str]:
    """The index (or, for several statuses, indexes) with the fewest entries to walk."""
    options: list[list[str]] = [[keys.listed("tag", f"{name}={value}")] for name, value in query.tags]
    if query.task is not None:
        options.append([keys.listed("task", query.task)])
    if query.statuses:
        options.append([status_listing(keys, status) for status in dict.fromkeys(query.statuses)])
    if not options:
        return [keys.listed("all")]
    async with redis.pipeline(transaction=False) as pipe:
        for option in options:
            for index in option:
                pipe.zcard(index)
        sizes = iter(await pipe.execute())
    totals = [sum(next(sizes) for _ in option) for option in options]
    return options[totals.index(min(totals))]


def status_listing(keys: Keys, status: JobStatus) -> str:
    """The index of one status by creation time: the status index, but for `failed` (the
    dead-letter set, by time of failure) its own listing set (jobs/lua/includes/job.lua)."""
    return keys.listed("status", status.value) if status is JobStatus.FAILED else keys.index(status.value)


async def _windows(
    redis: Redis, indexes: list[str], start: Position | None, after: float | None, before: float | None, size: int
) -> AsyncIterator[list[Position]]:
    """Entries of `indexes`, newest first, strictly after `start` (the cursor), a window at a time.

    Each window is read from every index in one transaction (MULTI), so within it a job
    is in exactly one status index, and it ends where the shallowest full read ended:
    below that, an index not read that far could hide a job that moved out of one read
    that far. The next window starts there. A job's position (creation time, id) never
    changes, so it falls in exactly one window, read in one snapshot: a walk over several
    statuses never skips or repeats a job that changes status meanwhile.
    """
    high = start
    bottom = "-inf" if after is None else f"({after!r}"
    while True:
        tie: float | None = None  # the cursor's own time: entries sharing it are sorted by id below
        top = "+inf" if before is None else f"({before!r}"
        if high is not None and (before is None or high[0] < before):
            if after is not None and high[0] <= after:
                return
            tie, top = high[0], f"({high[0]!r}"
        async with redis.pipeline(transaction=True) as pipe:
            for index in indexes:
                if tie is not None:  # every entry of that time (ties are rare: batches space their jobs by 1 µs)
                    pipe.zrevrangebyscore(index, repr(tie), repr(tie), withscores=True)
                pipe.zrevrangebyscore(index, top, bottom, start=0, num=size, withscores=True)
            replies: list[Any] = await pipe.execute()
        reads = replies[1::2] if tie is not None else replies
        floor = max((_position(read[-1]) for read in reads if len(read) == size), default=None)
        window = sorted(
            {
                position
                for reply in replies
                for position in map(_position, reply)
                if (high is None or position < high) and (floor is None or position >= floor)
            },
            reverse=True,
        )
        if window:
            yield window
        if floor is None:
            return
        high = floor


def _position(row: tuple[Any, Any]) -> Position:
    member, score = row
    return float(score), str(member)


async def _matching(redis: Redis, keys: Keys, query: JobQuery, batch: list[Position], indexes: list[str]) -> list[bool]:
    """Whether each entry's record passes every filter (one round trip for the batch).

    An entry whose record is gone (it expired while no janitor ran to reap it) is taken out
    of the index it was found in, so it is met once.
    """
    async with redis.pipeline(transaction=False) as pipe:
        for _, job_id in batch:
            pipe.hmget(keys.job(job_id), "status", "task", "tags")
        rows = await pipe.execute()
    gone = [job_id for (_, job_id), row in zip(batch, rows, strict=True) if row[0] is None]
    if gone:
        async with redis.pipeline(transaction=False) as pipe:
            for index in indexes:
                pipe.zrem(index, *gone)
            await pipe.execute()
    return [row[0] is not None and _passes(query, row) for row in rows]


def _passes(query: JobQuery, row: list[Any]) -> bool:
    status, task, tags = row
    if query.statuses and status not in query.statuses:
        return False
    if query.task is not None and task != query.task:
        return False
    if query.tags:
        held = json.loads(tags) if tags else {}
        return all(held.get(name) == value for name, value in query.tags)
    return True


async def _search(redis: Redis, keys: Keys, query: JobQuery, start: Position | None) -> JobPage:
    """`q`: the job with that id, the jobs whose ids start with it, or the job an idempotency
    or unique key names; then the other filters, newest first, from the cursor."""
    q = query.q or ""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.exists(keys.job(q))
        pipe.get(keys.idempotency(q))
        pipe.get(keys.unique(q))
        pipe.zrangebylex(keys.listed("ids"), f"[{q}", f"[{q}\xff", start=0, num=PREFIX_MATCHES + 1)
        exact, idempotent, unique, prefixed = await pipe.execute()
    if len(prefixed) > PREFIX_MATCHES:
        # Too many to sort newest first and page through: the ids index is in id order, so
        # a page of them would be neither the newest nor followed by a cursor. A key or an
        # exact id still answers; a bare short prefix is refused with what to do instead.
        if not (exact or idempotent or unique):
            raise InvalidRequest(
                f"q={q[:40]!r} starts more than {PREFIX_MATCHES} job ids: give more of the id "
                "(8 characters pick one job in practice), or filter by task, tag or status"
            )
        prefixed = []
    ids = dict.fromkeys([*([q] if exact else []), *prefixed])
    if idempotent:
        ids[str(idempotent).split(" ", 1)[0]] = None
    if unique:
        ids[str(unique)] = None
    candidates = list(ids)
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in candidates:
            pipe.hmget(keys.job(job_id), "status", "task", "tags", "created_at")
        rows = await pipe.execute()
    positions = sorted(
        ((float(row[3]), job_id) for job_id, row in zip(candidates, rows, strict=True) if row[0] and row[3]),
        reverse=True,
    )
    by_id = dict(zip(candidates, rows, strict=True))
    found = [
        job_id
        for created, job_id in positions
        if (start is None or (created, job_id) < start)
        and (query.created_after is None or created > query.created_after)
        and (query.created_before is None or created < query.created_before)
        and _passes(query, by_id[job_id][:3])
    ]
    more = len(found) > query.limit
    page = found[: query.limit]
    last = next(((created, job_id) for created, job_id in positions if job_id == page[-1]), None) if more else None
    return await _page(redis, keys, page, last)


async def _page(redis: Redis, keys: Keys, job_ids: list[str], last: Position | None) -> JobPage:
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hgetall(keys.job(job_id))
        rows = await pipe.execute()
    jobs = [job for job_id, raw in zip(job_ids, rows, strict=True) if (job := decode_record(job_id, raw))]
    return JobPage(jobs=jobs, next_cursor=encode_cursor(last) if last is not None else None)
