"""`@task`: turns a plain function into a PocketQueue job task.

The function stays a plain function (call it directly in unit tests). Registering it
also creates a Celery task of the same name whose body claims the job record, runs the
function with a `JobContext`, keeps the job's lease alive, and records the outcome.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, TypeVar, cast

from celery import Task, shared_task
from celery.exceptions import Reject
from redis.exceptions import RedisError

from pocketqueue.jobs.models import JobError, JobStatus
from pocketqueue.jobs.registry import TaskSpec, register
from pocketqueue.jobs.worker_store import Claim, WorkerJobStore, to_json

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


class JobCancelled(Exception):
    """Raised inside a task when its job was cancelled, or taken over by a newer attempt."""


class JobContext:
    """What a task receives as its first argument: its job id, progress, cancel state."""

    def __init__(self, job_id: str, task: str, attempt: int, worker: str, store: WorkerJobStore, lease_ms: int) -> None:
        self.job_id = job_id
        self.task = task
        self.attempt = attempt
        self.worker = worker
        self._store = store
        self._lease_ms = lease_ms
        self._status = JobStatus.PROCESSING.value

    @property
    def status(self) -> str:
        """The job's status as last seen by this attempt ('superseded' once taken over)."""
        return self._status

    @property
    def cancelled(self) -> bool:
        """True once the job is no longer this attempt's to run: check it between steps."""
        return self._status != JobStatus.PROCESSING.value

    def progress(self, percent: int, step: str | None = None) -> None:
        """Record progress (0-100) and an optional step name; raises JobCancelled if cancelled."""
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise ValueError(f"progress must be an int from 0 to 100, got {percent!r}")
        self.beat(percent, step)
        if self.cancelled:
            raise JobCancelled(f"job {self.job_id} is {self._status}")

    def beat(self, percent: int | None = None, step: str | None = None) -> None:
        self._status = self._store.heartbeat(self.job_id, self.attempt, self.worker, self._lease_ms, percent, step)


class _Heartbeats:
    """One thread per worker process renews the leases of the jobs that process runs.

    A thread started per job would cost two context switches on every job; this one is
    started on the first job of each (forked) process and lives as long as it does.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[int, JobContext] = {}
        self._thread: threading.Thread | None = None
        self._pid = 0

    def add(self, context: JobContext, interval: float) -> None:
        with self._lock:
            self._running[id(context)] = context
            if self._pid != os.getpid() or self._thread is None or not self._thread.is_alive():
                self._pid = os.getpid()  # a forked child inherits no threads: start its own
                self._thread = threading.Thread(target=self._beat_forever, args=(interval,), daemon=True)
                self._thread.name = "pocketqueue-heartbeats"
                self._thread.start()

    def remove(self, context: JobContext) -> None:
        with self._lock:
            self._running.pop(id(context), None)

    def _beat_forever(self, interval: float) -> None:
        while True:
            time.sleep(interval)
            with self._lock:
                contexts = list(self._running.values())
            for context in contexts:
                try:
                    context.beat()
                except Exception:  # a missed beat only shortens the lease; the next one renews it
                    log.warning("heartbeat for job %s failed", context.job_id, exc_info=True)


_heartbeats = _Heartbeats()


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

    def run_job(self, spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        settings = self.app.settings
        store: WorkerJobStore = self.app.job_store
        job_id: str = self.request.id
        worker: str = self.request.hostname or "unknown"
        lease_ms = settings.queue_lease_seconds * 1000
        claim = self._claim(store, job_id, worker, lease_ms, settings.queue_lease_seconds)
        if not claim.started:
            log.info("job %s not run: %s", job_id, claim.outcome)
            return
        context = JobContext(job_id, spec.name, claim.attempt, worker, store, lease_ms)
        _heartbeats.add(context, interval=settings.queue_lease_seconds / 3)
        try:
            result_json = to_json(spec.func(context, *args, **kwargs))
        except JobCancelled:
            log.info("job %s stopped: %s", job_id, context.status)
            return
        except Exception as exc:  # SoftTimeLimitExceeded included; SystemExit is a shutdown, not a failure
            error = JobError(type=type(exc).__name__, message=str(exc), traceback=traceback.format_exc())
            _with_redis_retries(lambda: store.fail(job_id, error, attempt=claim.attempt), "recording failure", job_id)
            raise
        finally:
            _heartbeats.remove(context)
        outcome = _with_redis_retries(lambda: store.complete(job_id, claim.attempt, result_json), "completing", job_id)
        if outcome != "ok":
            log.warning("job %s finished but its result was discarded: job is %s", job_id, outcome)

    def _claim(self, store: WorkerJobStore, job_id: str, worker: str, lease_ms: int, lease_seconds: int) -> Claim:
        def claim() -> Claim:
            return _with_redis_retries(lambda: store.claim(job_id, worker, lease_ms), "claim", job_id)

        current = claim()
        # 'running': another worker's lease is alive. Either it is running the job (this
        # message is a duplicate) or it just died and its lease has not lapsed yet; wait
        # out one lease to tell the two apart, then take the job over only if it lapsed.
        deadline = time.monotonic() + lease_seconds + 1
        while current.outcome == "running" and time.monotonic() < deadline:
            time.sleep(0.5)
            current = claim()
        return current


def task(name: str) -> Callable[[F], F]:
    """Register `func(job, *args, **kwargs)` as the job task `name`."""

    def decorate(func: F) -> F:
        spec = TaskSpec(name=name, func=func)
        register(spec)

        def run(self: JobTask, *args: Any, **kwargs: Any) -> None:
            self.run_job(spec, args, kwargs)

        run.__name__ = run.__qualname__ = func.__name__
        run.__doc__ = func.__doc__
        # The job record is the result store, so Celery's result backend is not written.
        shared_task(name=name, base=JobTask, bind=True, ignore_result=True)(run)
        return func

    return cast(Callable[[F], F], decorate)
