"""JobStore: the API side of the job records (async; one Redis round trip per call)."""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis

from pocketqueue.jobs import scripts
from pocketqueue.jobs.keys import Keys
from pocketqueue.jobs.models import Job, JobStatus, now_timestamp


class JobStore:
    """Creates, reads and cancels job records. Workers use `WorkerJobStore`."""

    def __init__(self, redis: Redis, keys: Keys, queue: str) -> None:
        self.redis = redis
        self.keys = keys
        self.queue = queue
        self._create = redis.register_script(scripts.CREATE)
        self._cancel = redis.register_script(scripts.CANCEL)

    async def create(self, job: Job, message: str, ttl_seconds: int) -> None:
        """Write the record, index it and publish its Celery message, all or nothing."""
        fields = [part for pair in job.to_hash(ttl_seconds).items() for part in pair]
        await self._create(
            keys=[self.keys.job(job.job_id), self.keys.index(JobStatus.QUEUED), self.queue],
            args=[job.job_id, job.created_at.timestamp(), message, *fields],
        )

    async def get(self, job_id: str) -> Job | None:
        raw = await self.redis.hgetall(self.keys.job(job_id))
        return Job.from_hash(raw) if raw else None

    async def get_many(self, job_ids: Sequence[str]) -> list[Job | None]:
        """Read many records in one round trip; None where a job does not exist."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hgetall(self.keys.job(job_id))
            rows = await pipe.execute()
        return [Job.from_hash(raw) if raw else None for raw in rows]

    async def cancel(self, job_id: str) -> tuple[str, Job | None]:
        """Cancel a queued or running job; returns (status before, record after)."""
        keys = self.keys
        before, flat = await self._cancel(
            keys=[
                keys.job(job_id),
                keys.lease(job_id),
                keys.index(JobStatus.QUEUED),
                keys.index(JobStatus.PROCESSING),
                keys.index(JobStatus.CANCELLED),
            ],
            args=[job_id, now_timestamp(), keys.finished_channel],
        )
        raw = dict(zip(flat[::2], flat[1::2], strict=True))
        return before, (Job.from_hash(raw) if raw else None)
