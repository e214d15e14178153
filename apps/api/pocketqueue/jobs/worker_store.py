"""WorkerJobStore: the worker side of the job records (sync, as Celery tasks are)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from redis import Redis

from pocketqueue.jobs import scripts
from pocketqueue.jobs.keys import Keys
from pocketqueue.jobs.models import JobError, JobStatus, now_timestamp

ANY_ATTEMPT = "*"


@dataclass(frozen=True)
class Claim:
    """What a worker learned when it tried to start a job."""

    outcome: str  # 'started', 'running', 'missing', or the finished status
    attempt: int = 0

    @property
    def started(self) -> bool:
        return self.outcome == "started"


class WorkerJobStore:
    """Claims jobs, reports progress and heartbeats, and records outcomes."""

    def __init__(self, redis: Redis, keys: Keys) -> None:
        self.redis = redis
        self.keys = keys
        self._start = redis.register_script(scripts.START)
        self._heartbeat = redis.register_script(scripts.HEARTBEAT)
        self._finish = redis.register_script(scripts.FINISH)

    def claim(self, job_id: str, worker: str, lease_ms: int) -> Claim:
        k = self.keys
        reply = self._start(
            keys=[k.job(job_id), k.lease(job_id), k.index(JobStatus.QUEUED), k.index(JobStatus.PROCESSING)],
            args=[job_id, now_timestamp(), worker, lease_ms],
        )
        return Claim(reply[0], int(reply[1])) if len(reply) > 1 else Claim(reply[0])

    def heartbeat(
        self,
        job_id: str,
        attempt: int,
        worker: str,
        lease_ms: int,
        progress: int | None = None,
        step: str | None = None,
    ) -> str:
        """Renew the lease (and record progress); returns the status, or 'superseded'."""
        status: str = self._heartbeat(
            keys=[self.keys.job(job_id), self.keys.lease(job_id)],
            args=[attempt, lease_ms, "" if progress is None else progress, step or "", worker],
        )
        return status

    def complete(self, job_id: str, attempt: int, result_json: str) -> str:
        return self._record(job_id, str(attempt), "", JobStatus.COMPLETED, "result", result_json)

    def fail(self, job_id: str, error: JobError, attempt: int | None = None, worker: str = "") -> str:
        """Record a failure; without `attempt`, whichever attempt `worker` is running (or a queued job)."""
        token = ANY_ATTEMPT if attempt is None else str(attempt)
        return self._record(job_id, token, worker, JobStatus.FAILED, "error", error.model_dump_json())

    def _record(self, job_id: str, attempt: str, worker: str, status: JobStatus, field: str, value: str) -> str:
        k = self.keys
        outcome: str = self._finish(
            keys=[
                k.job(job_id),
                k.lease(job_id),
                k.index(JobStatus.PROCESSING),
                k.index(status),
                k.index(JobStatus.QUEUED),
            ],
            args=[job_id, attempt, worker, status.value, now_timestamp(), field, value, k.finished_channel],
        )
        return outcome


def to_json(value: Any) -> str:
    """Serialise a task's return value, or raise TypeError naming what is wrong."""
    try:
        return json.dumps(value, allow_nan=False)  # NaN is not JSON; clients would choke on it
    except (TypeError, ValueError) as exc:
        raise TypeError(f"the task's return value is not JSON-serialisable: {exc}") from exc
