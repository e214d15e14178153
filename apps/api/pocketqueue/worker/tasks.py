"""`@task`: turns a plain function into a PocketQueue job task.

The function stays a plain function (call it directly in unit tests). Registering it
also creates a Celery task of the same name whose body claims the job record, runs the
function with a `JobContext`, keeps the job's lease alive, and records the outcome.
"""

from __future__ import annotations

import logging
import random
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar, cast

from celery import Task, shared_task
from celery.exceptions import Reject, SoftTimeLimitExceeded
from redis.exceptions import RedisError

from pocketqueue.jobs.models import JobError, now_timestamp
from pocketqueue.jobs.registry import TaskSpec, register
from pocketqueue.jobs.worker_store import Claim, WorkerJobStore, to_json
from pocketqueue.worker.context import JobCancelled, JobContext, Partial, heartbeats
from pocketqueue.worker.request import JobRequest

__all__ = ["JobCancelled", "JobContext", "JobTask", "Partial", "backoff", "task"]

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


# How long a worker rides out a Redis outage around a claim or an outcome (7.5 s in all).
REDIS_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)


def _with_redis_retries(action: Callable[[], T], what: str, job_id: str) -> T:
    """Run a job-store write, retrying a Redis outage for a while before giving up.

    Giving up raises Reject(requeue=True): the message goes back to the broker instead of
    being acknowledged with the record left half-way (queued or processing forever).
    """
    for delay in REDIS_RETRY_DELAYS:
        try:
            return action()
        except RedisError as exc:
            log.warning("job %s: %s failed (%s); retrying in %s s", job_id, what, exc, delay)
            time.sleep(delay)
    try:
        return action()
    except RedisError as exc:
        raise Reject(f"job {job_id}: {what} failed: {exc}", requeue=True) from exc


class JobTask(Task):  # type: ignore[misc]  # celery ships no type hints
    """Base class of every PocketQueue Celery task."""

    # Checks each message in the worker's main process before a pool process gets it, so
    # a poison message fails its job instead of crash-looping the worker (see request.py).
    Request = JobRequest

    def run_job(self, spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        settings = self.app.settings
        store: WorkerJobStore = self.app.job_store
        job_id: str = self.request.id
        worker: str = self.request.hostname or "unknown"
        lease_ms = int(settings.lease_seconds * 1000)
        token = uuid.uuid4().hex  # one per delivery: a claim retried after a lost reply finds itself
        began = now_timestamp()  # the attempt's start, however long Redis retries take below
        claim = _with_redis_retries(lambda: store.claim(job_id, worker, lease_ms, token, began), "claim", job_id)
        if not claim.started:
            # A duplicate or stale message: the job is running elsewhere, finished, waiting
            # in the schedule, or orphaned (the janitor requeues it). Acknowledge and drop.
            if claim.outcome == "missing":
                log.warning(
                    "message %s (task %s) dropped: it has no job record (sent by a plain Celery client, beat "
                    "or Flower?); dispatch PocketQueue jobs over HTTP or with the dispatch flow",
                    job_id,
                    self.name,
                )
            else:
                log.info("job %s not run: %s", job_id, claim.outcome)
            return
        context = JobContext(job_id, spec.name, claim.attempt, token, worker, store, lease_ms)
        heartbeats.add(context, interval=settings.lease_seconds / 3)
        try:
            value = spec.func(context, *args, **kwargs)
            depth, most = settings.queue_max_json_depth, settings.queue_max_result_bytes
            if isinstance(value, Partial):
                fields = (to_json(value.result, depth, most), to_json(value.errors, depth, most))
                record = lambda: store.partial(job_id, token, *fields)  # noqa: E731
            else:
                result_json = to_json(value, depth, most)
                record = lambda: store.complete(job_id, token, result_json)  # noqa: E731
        except JobCancelled:
            log.info("job %s stopped: %s", job_id, context.status)
            return
        except Exception as exc:  # SystemExit is a shutdown, not a failure
            if self._retry_later(spec, claim, exc):
                return
            raise
        finally:
            heartbeats.remove(context)
        outcome = _with_redis_retries(record, "recording the result", job_id)
        if outcome != "ok":
            log.warning("job %s finished but its result was discarded: job is %s", job_id, outcome)

    def _retry_later(self, spec: TaskSpec, claim: Claim, exc: Exception) -> bool:
        """Record the failed attempt: 'retrying' (returns True) or failed for good."""
        settings = self.app.settings
        store: WorkerJobStore = self.app.job_store
        job_id: str = self.request.id
        error = _error(exc, claim.attempt, settings.queue_task_soft_time_limit)
        if spec.retries(exc) and not isinstance(exc, SoftTimeLimitExceeded) and claim.attempt <= claim.max_retries:
            delays = spec.retry_delays or settings.queue_retry_delays
            run_at = time.time() + backoff(delays, claim.attempt)
            _with_redis_retries(lambda: store.retry(job_id, claim.token, error, run_at), "scheduling a retry", job_id)
            log.warning("job %s attempt %s failed (%s); retrying at %.0f", job_id, claim.attempt, error.message, run_at)
            return True
        dead_ttl = settings.queue_dead_letter_ttl_seconds
        fail = lambda: store.fail(job_id, error, dead_ttl, claim.token)  # noqa: E731
        _with_redis_retries(fail, "recording failure", job_id)
        return False


def _error(exc: BaseException, attempt: int, soft_limit: int) -> JobError:
    message = str(exc)
    if isinstance(exc, SoftTimeLimitExceeded):
        message = f"soft time limit exceeded ({soft_limit} s, QUEUE_TASK_SOFT_TIME_LIMIT)"
    trace = traceback.format_exc()[-8000:]
    return JobError(
        type=type(exc).__name__, message=_printable(message[:8000]), traceback=_printable(trace), attempt=attempt
    )


def _printable(text: str) -> str:
    # An exception's text can hold anything, lone surrogates included; escaped, it can
    # always be stored and shown.
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


MAX_BACKOFF_SECONDS = 3600.0


def backoff(delays: Sequence[float], attempt: int) -> float:
    """Seconds before the retry that follows failed attempt `attempt` (1-based), with ±20% jitter.

    The n-th retry waits delays[n-1]; past the end of the list each wait doubles the last
    (capped at an hour). Jitter keeps jobs that failed together from retrying together.
    """
    extra = max(0, attempt - len(delays))
    base = float(delays[min(attempt, len(delays)) - 1]) * 2.0**extra
    return min(base * random.uniform(0.8, 1.2), MAX_BACKOFF_SECONDS)


def task(
    name: str,
    *,
    max_retries: int | None = None,
    retry_delays: Iterable[float] | None = None,
    retry_on: Iterable[type[BaseException]] | None = None,
) -> Callable[[F], F]:
    """Register `func(job, *args, **kwargs)` as the job task `name`.

    max_retries:  retries after the first attempt (default QUEUE_MAX_RETRIES; a dispatch can override it)
    retry_delays: seconds before each retry (default QUEUE_RETRY_DELAYS), with jitter
    retry_on:     only these exception types are retried; anything else, and any
                  PermanentError, fails the job at once
    """
    if max_retries is not None and not 0 <= max_retries <= 100:
        raise ValueError("max_retries must be from 0 to 100")
    delays = tuple(retry_delays) if retry_delays is not None else None
    if delays is not None and (not delays or any(delay <= 0 for delay in delays)):
        raise ValueError("retry_delays must be one or more positive numbers of seconds")

    def decorate(func: F) -> F:
        spec = TaskSpec(
            name=name,
            func=func,
            max_retries=max_retries,
            retry_delays=delays,
            retry_on=tuple(retry_on) if retry_on is not None else (Exception,),
        )
        register(spec)

        def run(self: JobTask, *args: Any, **kwargs: Any) -> None:
            self.run_job(spec, args, kwargs)

        run.__name__ = run.__qualname__ = func.__name__
        run.__doc__ = func.__doc__
        # The job record is the result store, so Celery's result backend is not written.
        shared_task(name=name, base=JobTask, bind=True, ignore_result=True)(run)
        return func

    return cast(Callable[[F], F], decorate)
