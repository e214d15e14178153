"""Every Redis key PocketQueue writes, in one place, with why each one is bounded.

Celery's own keys (the queue list, `unacked`, `_kombu.*`) are Celery's; these are ours.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Keys:
    """Builds key names under one prefix, so several deployments can share a Redis."""

    prefix: str = "pq"

    def job(self, job_id: str) -> str:
        # Hash: the job record. No TTL while active; QUEUE_JOB_TTL_SECONDS once finished.
        return f"{self.prefix}:job:{job_id}"

    def lease(self, job_id: str) -> str:
        # String with a short TTL, refreshed by the worker running the job: while it
        # exists, a redelivered message for the job is a duplicate, not a lost job.
        return f"{self.prefix}:lease:{job_id}"

    def index(self, status: str) -> str:
        # Sorted set of job ids by time, one per status. Entries move on every
        # transition; finished ones are trimmed by age and the key itself has a TTL.
        return f"{self.prefix}:index:{status}"

    @property
    def finished_channel(self) -> str:
        # Pub/sub channel (stores nothing): a job id is published when its job finishes,
        # so waiters wake without polling.
        return f"{self.prefix}:finished"
