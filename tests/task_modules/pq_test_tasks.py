"""Tasks the tests dispatch. Lives outside the package: loading it proves TASK_MODULES works."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import redis

from pocketqueue import JobContext, task


def _redis() -> redis.Redis:
    return redis.Redis.from_url(os.environ["REDIS_URL"])


@task(name="tests.add")
def add(job: JobContext, a: int, b: int) -> dict[str, Any]:
    return {"sum": a + b, "job_id": job.job_id}


@task(name="tests.fail")
def fail(job: JobContext, message: str) -> None:
    raise ValueError(message)


@task(name="tests.not_json")
def not_json(job: JobContext) -> Any:
    return {1, 2, 3}


@task(name="tests.tick")
def tick(job: JobContext, key: str, ticks: int, interval: float) -> int:
    """Appends to a Redis list every `interval` s without ever checking for cancel."""
    client = _redis()
    for n in range(ticks):
        client.rpush(key, n)
        client.expire(key, 300)
        time.sleep(interval)
    return ticks


@task(name="tests.stubborn")
def stubborn(job: JobContext, seconds: float) -> str:
    """Ignores the soft time limit, so only the hard limit can stop it."""
    from billiard.exceptions import SoftTimeLimitExceeded

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(SoftTimeLimitExceeded):
            time.sleep(0.05)
    return "finished anyway"
