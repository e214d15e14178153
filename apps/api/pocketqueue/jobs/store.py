"""JobStore: the API side of the job records (async; one Redis round trip per call)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from pocketqueue.jobs import scripts
from pocketqueue.jobs.dispatch import Created, Planned, create_args
from pocketqueue.jobs.keys import Keys, queue_lists
from pocketqueue.jobs.models import Job, decode_record, now_timestamp
from pocketqueue.pipelines.batches import Batch, PlannedBatch, check_batch_replies, queue_batch, read_batch


class JobStore:
    """Creates, reads, cancels and re-drives job records. Workers use `WorkerJobStore`."""

    def __init__(self, redis: Redis, keys: Keys, queue: str) -> None:
        self.redis = redis
        self.keys = keys
        self.queue = queue
        self._create = redis.register_script(scripts.CREATE)
        self._cancel = redis.register_script(scripts.CANCEL)
        self._redrive = redis.register_script(scripts.REDRIVE)
        self._clear = redis.register_script(scripts.CLEAR)

    async def create(self, planned: Planned, ttl_seconds: int) -> Created:
        """Write the record, index it and publish its message (or schedule it), all or nothing."""
        outcome, job_id = await self._create(args=create_args(self.keys.prefix, planned, ttl_seconds))
        return Created(outcome, job_id)

    async def create_batch(self, planned: PlannedBatch, ttl_seconds: int) -> None:
        """Write a batch's record and all its jobs in one transaction (pipelines/batches.py)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            queue_batch(pipe, self.keys, planned, scripts.CREATE, ttl_seconds)
            replies = await pipe.execute()
        check_batch_replies(replies, planned)

    async def get_batch(self, batch_id: str) -> Batch | None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self.keys.batch(batch_id))
            pipe.hgetall(self.keys.batch_children(batch_id))
            meta, children = await pipe.execute()
        return read_batch(meta, children)

    async def get(self, job_id: str) -> Job | None:
        raw = await self.redis.hgetall(self.keys.job(job_id))
        return decode_record(job_id, raw)

    async def get_many(self, job_ids: Sequence[str]) -> list[Job | None]:
        """Read many records in one round trip; None where a job does not exist."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(self.keys.job(job_id))
            rows = await pipe.execute()
        return [decode_record(job_id, raw) for job_id, raw in zip(job_ids, rows, strict=True)]

    async def cancel(self, job_id: str) -> tuple[str, Job | None]:
        """Cancel an active job; returns (status before, record after)."""
        before, flat = await self._cancel(args=[self.keys.prefix, job_id, now_timestamp(), _request_token()])
        raw = dict(zip(flat[::2], flat[1::2], strict=True))
        return before, decode_record(job_id, raw)

    async def redrive(self, job_id: str, message: str, queue_list: str) -> str:
        """Queue a failed job again (same id, attempts reset); 'ok', 'unique:<holder>' or its status."""
        args = [self.keys.prefix, job_id, now_timestamp(), message, queue_list, _request_token()]
        outcome: str = await self._redrive(args=args)
        return outcome

    async def dead_letter_page(self, offset: int, limit: int) -> tuple[int, list[Job]]:
        """The dead-letter set, newest first: (total, one page of records)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(self.keys.dead_letter)
            pipe.zrevrange(self.keys.dead_letter, offset, offset + limit - 1)
            total, job_ids = await pipe.execute()
        found = await self.get_many(job_ids)
        # Read-only: an entry whose record expired before the janitor reaped it is left for
        # the janitor (reap.lua) or a bulk re-drive.
        return int(total), [job for job in found if job is not None]

    async def newest_dead_letter(self) -> float | None:
        """When the newest entry of the dead-letter set failed (its score), or None if empty."""
        rows = await self.redis.zrange(self.keys.dead_letter, -1, -1, withscores=True)
        return float(rows[0][1]) if rows else None

    async def forget_dead(self, job_ids: Sequence[str]) -> None:
        """Drop dead-letter entries whose records have expired (the janitor would, later)."""
        if job_ids:
            await self.redis.zrem(self.keys.dead_letter, *job_ids)

    async def dead_letter_after(
        self, cursor: tuple[float, str] | None, limit: int, until: float | None = None
    ) -> list[tuple[str, float]]:
        """Up to `limit` (job id, score) of the dead-letter set after `cursor`, oldest first,
        and (with `until`) none that failed later than that.

        A cursor is the (score, id) of the last entry seen: Redis orders equal scores by id,
        so no entry is skipped or seen twice, whatever is re-driven (removed) meanwhile.
        """
        low = "-inf" if cursor is None else f"{cursor[0]!r}"
        high = "+inf" if until is None else f"{until!r}"
        # From the cursor's score on, inclusive; the few entries sharing that score up to
        # the cursor's id are dropped below (hence the margin: failures in one microsecond).
        rows = await self.redis.zrangebyscore(
            self.keys.dead_letter, low, high, start=0, num=limit + 64, withscores=True
        )
        after = [(str(row[0]), float(row[1])) for row in rows]
        if cursor is not None:
            after = [(job_id, score) for job_id, score in after if (score, job_id) > cursor]
        return after[:limit]

    async def clear(self, queue: str, clear_schedule: bool) -> int:
        """Empty `queue`'s lists, cancelling the jobs they held; returns how many were cancelled."""
        schedule_too = "1" if clear_schedule else "0"
        args: list[Any] = [self.keys.prefix, "", now_timestamp(), schedule_too, _request_token(), *queue_lists(queue)]
        cancelled: int = await self._clear(args=args)
        return cancelled


def _request_token() -> str:
    # New per call, the same in every resend of it: redis-py resends a command after a
    # connection error (the reply may be lost after the script ran), and the scripts
    # recognise their own token, so a replay changes nothing twice.
    return uuid.uuid4().hex
