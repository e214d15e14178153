"""`@task`: turns a plain function into a PocketQueue job task.

The function stays a plain function (call it directly in unit tests). Registering it
also creates a Celery task of the same name whose body claims the job record, runs the
function with a `JobContext`, keeps the job's lease alive, and records the outcome.

Celery's view of each attempt (its task events, what Flower shows) then follows the
record: the task returns the result when the record says completed, raises the error
when it says failed, raises Retry when it says retrying, and raises Ignore (no outcome of
its own) when the attempt did not decide the job: a cancel (the cancel announces
itself), a duplicate message, a result refused because the job had moved on.
"""

from __future__ import annotations

import inspect
import logging
import random
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NoReturn, ParamSpec, TypeVar

from billiard.common import terminate_handler_fired
from celery import Task as CeleryTask
from celery import shared_task
from celery.exceptions import Ignore, Reject, Retry, SoftTimeLimitExceeded, WorkerShutdown, WorkerTerminate
from redis.exceptions import RedisError

from pocketqueue.client.task import Task
from pocketqueue.config import SOFT_SHARE_OF_HARD_LIMIT
from pocketqueue.errors import InvalidRequest
from pocketqueue.jobs.models import JobError, now_timestamp
from pocketqueue.jobs.registry import TaskSpec, register
from pocketqueue.jobs.request import check_queue_name
from pocketqueue.jobs.worker_store import Claim, WorkerJobStore, to_json
from pocketqueue.observe.celery_results import write_record
from pocketqueue.worker.adopt import adopt, follow
from pocketqueue.worker.context import JobCancelled, JobContext, Partial, heartbeats
from pocketqueue.worker.event_loop import run_coroutine
from pocketqueue.worker.request import JobRequest

__all__ = ["CLAIM_TOKEN", "JobCancelled", "JobContext", "JobTask", "Partial", "backoff", "retry_redis", "task"]

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


# How long a worker rides out a Redis outage around a claim or an outcome (7.5 s in all).
NEWER_PAUSE_SECONDS = 1.0  # before handing back a job a newer version wrote (see run_job)
REDIS_RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0)

# The request field carrying an attempt's claim token. The worker's main process makes
# the token when the message arrives (signals.py) and the pool process running the job
# claims with it, so the main process knows which attempt each running job is: the
# shutdown hand-back requeues only that attempt, never a newer one of the same job
# (run elsewhere, maybe by a worker with the same name).
CLAIM_TOKEN = "pocketqueue_claim"


def retry_redis(action: Callable[[], T], what: str, job_id: str) -> T:
    """Run a job-store write, retrying a Redis outage for a while; the last RedisError escapes."""
    for delay in REDIS_RETRY_DELAYS:
        try:
            return action()
        except RedisError as exc:
            log.warning("job %s: %s failed (%s); retrying in %s s", job_id, what, exc, delay)
            time.sleep(delay)
    return action()


def _with_redis_retries(action: Callable[[], T], what: str, job_id: str) -> T:
    """retry_redis(), for a task: giving up raises Reject(requeue=True).

    The message then goes back to the broker instead of being acknowledged with the
    record left half-way (queued or processing forever).
    """
    try:
        return retry_redis(action, what, job_id)
    except RedisError as exc:
        raise Reject(f"job {job_id}: {what} failed: {exc}", requeue=True) from exc


def _flushed(context: JobContext, record: Callable[[], str]) -> Callable[[], str]:
    """`record` preceded by any progress the task reported while Redis was out of reach."""

    def flush_then_record() -> str:
        context.flush()  # a no-op once sent, so a retried write does not send it twice
        return record()

    return flush_then_record


class TaskRaisedBaseException(Exception):
    """Tells Celery a job's task raised a BaseException (SystemExit, KeyboardInterrupt, ...).

    The attempt's failure is recorded with the real exception first. Raised as itself, it
    would end the pool process and Celery would count the job as lost with it.
    """


class JobTask(CeleryTask):  # type: ignore[misc]  # celery ships no type hints
    """Base class of every PocketQueue Celery task."""

    # Checks each message in the worker's main process before a pool process gets it, so
    # a poison message fails its job instead of crash-looping the worker (see request.py).
    Request = JobRequest

    def run_job(self, spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Run the job's attempt and record its outcome; returns the result the record holds."""
        settings = self.app.settings
        store: WorkerJobStore = self.app.job_store
        job_id: str = self.request.id
        worker: str = self.request.hostname or "unknown"
        lease_ms = int(settings.lease_seconds * 1000)
        # One per delivery (a claim retried after a lost reply finds itself), made by the main
        # process; a message that came some other way gets its own here.
        token: str = getattr(self.request, CLAIM_TOKEN, None) or uuid.uuid4().hex
        began = now_timestamp()  # the attempt's start, however long Redis retries take below
        claimed = lambda: store.claim_noting_caller(job_id, worker, lease_ms, token, began)  # noqa: E731
        claim = _with_redis_retries(claimed, "claim", job_id)
        if claim.outcome == "missing":
            # A plain Celery message (send_task, beat, Flower, a canvas step): it becomes a
            # job, then is claimed like any other (adopt.py; raises if the task cannot take it).
            _with_redis_retries(lambda: adopt(self.app, self.name, self.request), "adopting the message", job_id)
            claim = _with_redis_retries(claimed, "claim", job_id)
        if not claim.started:
            self._drop(claim)
        # An adopted job's Celery caller: its canvas steps go back on the request for Celery's
        # tracer, and its results to Celery's backend (STARTED now, the outcome once recorded).
        follow(self.app, self.request, claim)
        context = JobContext(job_id, spec.name, claim.attempt, token, worker, store, lease_ms)
        heartbeats.add(context, interval=settings.lease_seconds / 3)
        try:
            value = spec.func(context, *args, **kwargs)
            if inspect.iscoroutine(value):  # an `async def` task: this process's one event loop runs it
                value = run_coroutine(value)
            depth, most = settings.queue_max_json_depth, settings.queue_max_result_bytes
            if isinstance(value, Partial):
                fields = (to_json(value.result, depth, most), to_json(value.errors, depth, most))
                record = lambda: store.partial(job_id, token, *fields)  # noqa: E731
                shown = {"result": value.result, "partial_errors": value.errors}
            else:
                result_json = to_json(value, depth, most)
                record = lambda: store.complete(job_id, token, result_json)  # noqa: E731
                shown = value
        except JobCancelled:
            log.info("job %s stopped: %s", job_id, context.status)
            raise Ignore() from None  # the cancel sent its own task-revoked event
        except Exception as exc:
            self._record_failure(spec, claim, context, exc)
            raise
        except BaseException as exc:
            if _stops_this_process(exc):
                raise
            # The task's own (sys.exit(), a KeyboardInterrupt it raised, a BaseException of
            # its own): a bug or a deliberate abort in the task, so the attempt fails with
            # it. Retried only if the task lists it in retry_on: the default, Exception,
            # leaves BaseExceptions out, as Python means them to be.
            self._record_failure(spec, claim, context, exc)
            raise TaskRaisedBaseException(f"{type(exc).__name__}: {exc}") from exc
        finally:
            heartbeats.remove(context)
        outcome = _with_redis_retries(_flushed(context, record), "recording the result", job_id)
        if outcome != "ok":
            log.warning("job %s finished but its result was discarded: job is %s", job_id, outcome)
            raise Ignore()
        # Celery's tracer sends this (its repr, cut short) in the task-succeeded event.
        return shown

    def _drop(self, claim: Claim) -> NoReturn:
        """Log why a message is acknowledged without running its job (or hand it back).

        Ignore, not a return: a return would be a task-succeeded event for a job that
        runs elsewhere, waits, or ended otherwise.
        """
        # A duplicate or stale message: the job is running elsewhere, finished, waiting in
        # the schedule, or orphaned (the janitor requeues it).
        job_id: str = self.request.id
        if claim.outcome == "newer":
            # A rolling upgrade: a newer version wrote this job. Back to the broker for a
            # newer worker; the pause keeps an old worker alone with it from spinning.
            log.warning("job %s was written by a newer PocketQueue; handing it back for a newer worker", job_id)
            time.sleep(NEWER_PAUSE_SECONDS)
            raise Reject(f"job {job_id}: record format newer than this worker's", requeue=True)
        if claim.outcome == "missing":
            # The message was adopted (run_job) and its record is gone already: deleted
            # meanwhile (an admin's clear). Nothing to run it for.
            log.warning("message %s (task %s) not run: its job record was deleted as it was adopted", job_id, self.name)
            raise Ignore()
        log.info("job %s not run: %s", job_id, claim.outcome)
        raise Ignore()

    def _record_failure(self, spec: TaskSpec, claim: Claim, context: JobContext, exc: BaseException) -> None:
        """Record the failed attempt: 'retrying' (raises Retry) or failed for good (returns).

        Retry is Celery's own "will be retried" (a task-retried event with the error); it
        is raised, not `self.retry()`, which would publish the message again: the
        janitor publishes it when the backoff has passed. Ignore if the job moved on.
        """
        settings = self.app.settings
        store: WorkerJobStore = self.app.job_store
        job_id: str = self.request.id
        error = _error(exc, claim.attempt, spec.soft_time_limit or settings.queue_task_soft_time_limit)
        if spec.retries(exc) and not isinstance(exc, SoftTimeLimitExceeded) and claim.attempt <= claim.max_retries:
            delays = spec.retry_delays or settings.queue_retry_delays
            wait = backoff(delays, claim.attempt)
            retry = _flushed(context, lambda: store.retry(job_id, claim.token, error, wait))
            _moved_on_unless_ok(_with_redis_retries(retry, "scheduling a retry", job_id), job_id)
            log.warning("job %s attempt %s failed (%s); retrying in %.1f s", job_id, claim.attempt, error.message, wait)
            if claim.caller is not None:
                write_record(self.app, job_id)  # RETRY, for a Celery caller that expects results
            raise Retry(exc=exc, when=wait) from exc
        dead_ttl = settings.queue_dead_letter_ttl_seconds
        fail = _flushed(context, lambda: store.fail(job_id, error, dead_ttl, claim.token))
        _moved_on_unless_ok(_with_redis_retries(fail, "recording failure", job_id), job_id)
        if claim.caller is not None:
            write_record(self.app, job_id)  # FAILURE, for a Celery caller that expects results


def _moved_on_unless_ok(outcome: str, job_id: str) -> None:
    """Ignore (no outcome in Celery's eyes) if the record refused the write: the job was
    cancelled meanwhile, or a newer attempt owns it."""
    if outcome != "ok":
        log.warning("job %s: the failed attempt was not recorded: job is %s", job_id, outcome)
        raise Ignore()


def _stops_this_process(exc: BaseException) -> bool:
    """Whether `exc` is the worker stopping this process, not something the task raised.

    In a pool process, billiard turns SIGTERM (a cold shutdown, a terminate, the hard time
    limit) into SystemExit and notes it; in a worker without a pool, Celery's shutdown
    raises WorkerShutdown or WorkerTerminate. Either must unwind as it is: the job is
    handed back, recovered or failed by whoever stopped it.
    """
    return terminate_handler_fired() or isinstance(exc, (WorkerShutdown, WorkerTerminate))


def _error(exc: BaseException, attempt: int, soft_limit: int) -> JobError:
    message = str(exc)
    if isinstance(exc, SoftTimeLimitExceeded):
        message = f"soft time limit exceeded ({soft_limit} s: the task's soft_time_limit or QUEUE_TASK_SOFT_TIME_LIMIT)"
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
    queue: str | None = None,
    time_limit: int | None = None,
    soft_time_limit: int | None = None,
    schedule: str | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]:
    """Register `func(job, *args, **kwargs)` (a `def` or an `async def`) as the job task `name`.

    max_retries:     retries after the first attempt (default QUEUE_MAX_RETRIES; a dispatch can override it)
    retry_delays:    seconds before each retry (default QUEUE_RETRY_DELAYS), with jitter
    retry_on:        only these exception types are retried; anything else, and any
                     PermanentError, fails the job at once
    queue:           the queue its jobs go to (default QUEUE_NAME; a dispatch can override it)
    time_limit:      seconds an attempt may run before its process is killed (default QUEUE_TASK_TIME_LIMIT)
    soft_time_limit: seconds before SoftTimeLimitExceeded is raised in it (default: 11/12 of the
                     task's time_limit if it has one, else QUEUE_TASK_SOFT_TIME_LIMIT)
    schedule:        a cron expression: a job is dispatched on each slot (see pocketqueue.schedules)

    Returns a Task: still the plain function, plus `.delay()`, `.dispatch()`,
    `.dispatch_async()`, `.with_options()` and `.apply_async()`.
    """
    if max_retries is not None and not 0 <= max_retries <= 100:
        raise ValueError("max_retries must be from 0 to 100")
    delays = tuple(retry_delays) if retry_delays is not None else None
    if delays is not None and (not delays or any(delay <= 0 for delay in delays)):
        raise ValueError("retry_delays must be one or more positive numbers of seconds")
    _check_limits(time_limit, soft_time_limit)
    if time_limit is not None and soft_time_limit is None:
        # Celery arms the hard limit only after the soft one fires, so the app's soft limit
        # (QUEUE_TASK_SOFT_TIME_LIMIT, 55 min) would hold back a shorter hard limit: the
        # task's own soft limit is the same share of its hard limit as the default's.
        soft_time_limit = max(1, int(time_limit * SOFT_SHARE_OF_HARD_LIMIT))
    if queue is not None:
        try:
            check_queue_name(queue, "queue")
        except InvalidRequest as exc:
            raise ValueError(exc.detail) from None

    def decorate(func: Callable[P, R]) -> Task[P, R]:
        spec = TaskSpec(
            name=name,
            func=func,
            max_retries=max_retries,
            retry_delays=delays,
            retry_on=tuple(retry_on) if retry_on is not None else (Exception,),
            queue=queue,
            time_limit=time_limit,
            soft_time_limit=soft_time_limit,
        )
        register(spec)
        if schedule is not None:
            from pocketqueue.schedules.registry import register_task_schedule

            register_task_schedule(name, schedule)

        def run(self: JobTask, *args: Any, **kwargs: Any) -> Any:
            return self.run_job(spec, args, kwargs)

        run.__name__ = run.__qualname__ = func.__name__
        run.__doc__ = func.__doc__
        # The job record is the result store (read through results.RecordBackend), and
        # PocketQueue's own messages say ignore_result (message.py), so nothing is stored
        # for them. Not ignored here: a Celery app that finds this shared task (one in a
        # process importing the task modules) then asks for a result, which the adopted
        # job writes to its backend (observe/celery_results.py). Time limits left None
        # take the app's.
        limits = {"time_limit": time_limit, "soft_time_limit": soft_time_limit}
        celery_options: dict[str, Any] = {key: value for key, value in limits.items() if value is not None}
        if queue is not None:
            celery_options["queue"] = queue
        shared_task(name=name, base=JobTask, bind=True, ignore_result=False, **celery_options)(run)
        return Task(spec)

    return decorate


def _check_limits(time_limit: int | None, soft_time_limit: int | None) -> None:
    for label, value in (("time_limit", time_limit), ("soft_time_limit", soft_time_limit)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{label} must be a whole number of seconds, at least 1")
    if time_limit is not None and soft_time_limit is not None and soft_time_limit > time_limit:
        raise ValueError(f"soft_time_limit ({soft_time_limit}) must not exceed time_limit ({time_limit})")
