"""Tasks that plain Celery callers (send_task, canvas, Flower) send in test_celery_callers.py."""

from __future__ import annotations

from pocketqueue import JobContext, task


@task(name="callers.add")
def add(job: JobContext, a: int, b: int) -> int:
    """A plain number, so Celery's chain can pass it on to the next step."""
    return a + b


@task(name="callers.flaky", max_retries=1, retry_delays=[0.2])
def flaky(job: JobContext) -> int:
    """Fails its first attempt, returns the attempt's number after."""
    if job.attempt == 1:
        raise RuntimeError("attempt 1 failed on purpose")
    return job.attempt
