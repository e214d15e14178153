"""Tasks the tests dispatch. Lives outside the package: loading it proves TASK_MODULES works."""

from __future__ import annotations

import contextlib
import os
import time
from typing import Any

import redis

from pocketqueue import JobContext, PermanentError, task


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


@task(name="tests.runs")
def runs(job: JobContext, key: str, sleep: float = 0, result: Any = None) -> Any:
    """Records every run (job id and attempt) in the Redis list `key`, then sleeps: a double run shows."""
    client = _redis()
    client.rpush(key, f"{job.job_id}:{job.attempt}")
    client.expire(key, 600)
    deadline = time.monotonic() + sleep
    while time.monotonic() < deadline:
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
        if job.cancelled:
            break
    return result


@task(name="tests.flaky", retry_delays=[0.2])
def flaky(job: JobContext, fail_times: int, error: str = "RuntimeError") -> int:
    """Fails its first `fail_times` attempts with the named built-in error, then returns the attempt."""
    if job.attempt <= fail_times:
        raise {"RuntimeError": RuntimeError, "ValueError": ValueError, "KeyError": KeyError}[error](
            f"attempt {job.attempt} failed on purpose"
        )
    return job.attempt


@task(name="tests.picky", max_retries=3, retry_delays=[0.2], retry_on=[ConnectionError])
def picky(job: JobContext, error: str) -> None:
    """Retries only ConnectionError; anything else fails at once."""
    if error == "connection":
        raise ConnectionError("network blip")
    raise ValueError("bad input")


@task(name="tests.permanent", max_retries=5)
def permanent(job: JobContext) -> None:
    raise PermanentError("this can never work")


@task(name="tests.partial")
def partial(job: JobContext, items: list[int]) -> Any:
    """Processes each item; odd ones fail. Finishes `partial` if any failed."""
    done = [item for item in items if item % 2 == 0]
    errors = [f"item {item} is odd" for item in items if item % 2]
    return job.partial({"done": done}, errors) if errors else {"done": done}


@task(name="tests.fail_once")
def fail_once(job: JobContext, key: str) -> int:
    """Fails the first time it runs for `key` (a Redis counter), succeeds after: re-drive material."""
    client = _redis()
    runs = int(client.incr(key))
    client.expire(key, 600)
    if runs == 1:
        raise RuntimeError("first run fails on purpose")
    return runs


@task(name="tests.returns")
def returns(job: JobContext, kind: str, size: int = 0) -> Any:
    """Returns a value a record cannot carry, by `kind`.

    'deep': nested `size` levels; 'big': `size` bytes; anything else: a lone surrogate.
    """
    if kind == "deep":
        value: Any = 1
        for _ in range(size):
            value = [value]
        return value
    if kind == "big":
        return "x" * size
    return "lone \ud800 surrogate"


@task(name="tests.raises_surrogate")
def raises_surrogate(job: JobContext) -> None:
    raise ValueError("cannot encode \ud800 as UTF-8")


def _wait_for_file(path: str, timeout: float = 60.0) -> None:
    """Waits for the test to create `path`: a signal that needs no Redis (the test may have stopped it)."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.05)


@task(name="tests.progress_in_outage")
def progress_in_outage(job: JobContext, folder: str, hold: bool) -> str:
    """Reports progress once the test has stopped Redis, then finishes (or, with `hold`, waits to be told to)."""
    job.progress(10, step="before the outage")
    _wait_for_file(os.path.join(folder, "outage"))
    job.progress(90, step="during the outage")
    with open(os.path.join(folder, f"reported-{job.job_id}"), "w"):
        pass
    if hold:
        _wait_for_file(os.path.join(folder, "finish"))
    return "done"


class Abort(BaseException):
    """A BaseException of the task's own, as some libraries define to unwind past `except Exception`."""


@task(name="tests.raises_base")
def raises_base(job: JobContext, kind: str) -> None:
    """Raises a BaseException: 'exit' calls sys.exit(), 'interrupt' raises KeyboardInterrupt, else Abort."""
    import sys

    if kind == "exit":
        sys.exit("the task called sys.exit()")
    if kind == "interrupt":
        raise KeyboardInterrupt("the task raised KeyboardInterrupt")
    raise Abort("the task raised its own BaseException")


@task(name="tests.exits_retried", retry_delays=[0.2], retry_on=[SystemExit])
def exits_retried(job: JobContext) -> None:
    """Lists SystemExit in retry_on, so a sys.exit() is retried like any listed error."""
    import sys

    sys.exit(f"attempt {job.attempt} exited")


@task(name="tests.fails_then_holds", retry_delays=[0.2])
def fails_then_holds(job: JobContext, hold: float) -> int:
    """Attempt 1 reports progress, then fails; a later attempt waits `hold` s before reporting any."""
    if job.attempt == 1:
        job.progress(80, step="attempt 1: nearly done")
        raise RuntimeError("attempt 1 failed on purpose")
    time.sleep(hold)
    job.progress(50, step=f"attempt {job.attempt}: half way")
    return job.attempt
