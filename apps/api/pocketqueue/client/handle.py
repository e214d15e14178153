"""Job handles: what `.delay()` and `Client.dispatch()` return, to follow one job."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pocketqueue.errors import JobFailed, JobTimeout
from pocketqueue.jobs.models import Job, JobStatus

if TYPE_CHECKING:
    from pocketqueue.client.aio import AsyncClient
    from pocketqueue.client.sync import Client


def outcome(job: Job, timeout: float) -> Any:
    """The job's result if it completed (or finished partial); raises JobFailed or JobTimeout."""
    if job.status in (JobStatus.COMPLETED, JobStatus.PARTIAL):
        return job.result
    if job.status == JobStatus.FAILED:
        error = job.error
        if error is None:
            raise JobFailed(job.job_id, job.status.value, "Unknown", "the job failed without a recorded error")
        raise JobFailed(job.job_id, job.status.value, error.type, error.message, error.traceback)
    if job.status == JobStatus.CANCELLED:
        raise JobFailed(job.job_id, job.status.value, "JobCancelled", "the job was cancelled")
    raise JobTimeout(job.job_id, job.status.value, timeout)


class JobHandle:
    """One job, from synchronous code: `.status()`, `.wait()`, `.result()`, `.cancel()`.

    `duplicate` is True when an idempotency key gave back a job dispatched earlier.
    """

    def __init__(self, client: Client, job_id: str, duplicate: bool = False) -> None:
        self.client = client
        self.job_id = job_id
        self.duplicate = duplicate

    def __repr__(self) -> str:
        return f"<JobHandle {self.job_id}>"

    def status(self) -> Job:
        """The job's record as it stands (raises JobNotFound once it has expired)."""
        return self.client.get_or_raise(self.job_id)

    def wait(self, timeout: float = 60.0) -> Job:
        """The job once finished, or as it stands after `timeout` s (sleeps on pub/sub, no polling)."""
        return self.client.wait(self.job_id, timeout)

    def result(self, timeout: float = 60.0) -> Any:
        """The job's result; raises JobFailed (with the job's error) or JobTimeout."""
        return outcome(self.wait(timeout), timeout)

    def cancel(self) -> Job:
        """Cancel the job (raises JobAlreadyFinished if it has finished)."""
        return self.client.cancel(self.job_id)


class AsyncJobHandle:
    """One job, from async code: the same as JobHandle, awaited."""

    def __init__(self, client: AsyncClient, job_id: str, duplicate: bool = False) -> None:
        self.client = client
        self.job_id = job_id
        self.duplicate = duplicate

    def __repr__(self) -> str:
        return f"<AsyncJobHandle {self.job_id}>"

    async def status(self) -> Job:
        return await self.client.get_or_raise(self.job_id)

    async def wait(self, timeout: float = 60.0) -> Job:
        return await self.client.wait(self.job_id, timeout)

    async def result(self, timeout: float = 60.0) -> Any:
        return outcome(await self.wait(timeout), timeout)

    async def cancel(self) -> Job:
        return await self.client.cancel(self.job_id)
