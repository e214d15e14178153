"""JobRequest: the worker's main process refuses a message that would kill it (a poison message).

Celery decodes each message in the worker's main process, then pickles the job to a pool
process (billiard's `send_job`). Arguments nested a few hundred levels deep make that
pickle raise RecursionError in the main process: uncaught, it ends the worker, and the
unacknowledged message, restored, kills every restart. A message can come from anywhere
(an older API, a plain Celery client, a hand-written one), so before the hand-off:

1. its args and kwargs are checked as a dispatch checks them (jobs/payload.py);
2. a hand-off that raises anyway (a deep header, anything pickle refuses) is caught;
3. a crash nothing can catch (the main process killed while handling the message) is
   bounded by counting the message's redeliveries while its job is queued
   (jobs/lua/count_delivery.lua): past QUEUE_MAX_DELIVERIES it is refused. A message
   with no record yet (a plain Celery caller's) is adopted on its first redelivery, so
   its deliveries are counted too.

A refused message is quarantined: its job fails while still queued (error type
PoisonMessage, into the dead letters), the message is acknowledged, and it never reaches
a pool process. A message with no job record (a plain Celery caller's) becomes a job all
the same, failed (worker/adopt.py). A fresh message costs no Redis round trip here: this
is the path every job takes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from celery.exceptions import TaskRevokedError
from celery.worker.request import Request
from celery.worker.state import task_ready
from redis.exceptions import RedisError

from pocketqueue.errors import QueueError
from pocketqueue.jobs.models import JobError
from pocketqueue.jobs.payload import PayloadError, check_json
from pocketqueue.observe.celery_events import announce_failed
from pocketqueue.worker.adopt import adopt, adopt_refused, refusal_error

__all__ = ["POISON", "JobRequest"]

log = logging.getLogger(__name__)

POISON = "PoisonMessage"  # the error type of a quarantined job

HandOff = Callable[..., Any]


def _guarded(hand_off: HandOff) -> HandOff:
    """Wrap Celery's hand-off to the pool with the poison-message checks."""

    def execute_using_pool(self: JobRequest, pool: Any, **kwargs: Any) -> Any:
        error = self.poison()
        if error is None:
            if self.redelivered() and not self.count_delivery():
                raise _not_handed_off(self)
            try:
                return hand_off(self, pool, **kwargs)
            except TaskRevokedError:
                raise
            except Exception as exc:  # RecursionError, PicklingError, MemoryError: the message, not the worker
                _forget_unsent(pool, self.id)
                error = _poison(f"it could not be handed to a worker process ({_describe(exc)})")
        self.quarantine(error)
        raise _not_handed_off(self)

    execute_using_pool.__doc__ = hand_off.__doc__
    return execute_using_pool


class JobRequest(Request):  # type: ignore[misc]  # celery ships no type hints
    """A Celery request that quarantines a poison message instead of handing it to the pool."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Celery's worker does not call the task's Request class directly: its strategy
        # subclasses it and replaces execute_using_pool with an inlined copy
        # (celery.worker.request.create_request_cls). Guard that copy too.
        super().__init_subclass__(**kwargs)
        if "execute_using_pool" in cls.__dict__:
            cls.execute_using_pool = _guarded(cls.__dict__["execute_using_pool"])

    execute_using_pool = _guarded(Request.execute_using_pool)

    def poison(self) -> JobError | None:
        """Why this message must not reach a pool process, or None (no Redis round trip)."""
        depth = self.app.settings.queue_max_json_depth
        try:
            check_json(self.args, "args", depth)
            check_json(self.kwargs, "kwargs", depth)
        except PayloadError as exc:
            return _poison(f"its arguments cannot be carried to a worker process: {exc.detail}")
        return None

    def redelivered(self) -> bool:
        # kombu's Redis transport marks a message it restores (unacknowledged past the
        # visibility timeout, or left by a worker that stopped) in both places.
        return bool(self.delivery_info.get("redelivered") or self.request_dict.get("redelivered"))

    def count_delivery(self) -> bool:
        """Count this redelivery; False if the job was quarantined (the message is done)."""
        settings = self.app.settings
        most = settings.queue_max_deliveries
        error = _poison(
            f"its message was delivered more than {most} times (QUEUE_MAX_DELIVERIES) without the job "
            "starting: each worker that took it died or lost it first, maybe because of the message itself"
        )
        store = self.app.job_store
        try:
            outcome, deliveries = store.count_delivery(
                self.id, uuid.uuid4().hex, most, error, settings.queue_dead_letter_ttl_seconds
            )
            if outcome == "missing":
                # A plain Celery message handed out before and never adopted: whoever took
                # it died first, maybe because of it. Adopted here (adopt.py), its later
                # deliveries are counted as a dispatched job's are.
                adopt(self.app, self.name, self._context)
        except RedisError as exc:  # counting is a safeguard; never hold a job up for it
            log.warning("job %s: could not count a redelivery (%s); handing it on", self.id, exc)
            return True
        except QueueError as refused:  # the task cannot take it: adopted as a failed job
            announce_failed(self.app, self.id, self.name, refusal_error(refused), self.hostname)
            self._done_without_pool()
            return False
        if outcome != "quarantined":
            return True
        log.error("job %s quarantined after %s deliveries: %s", self.id, deliveries, error.message)
        announce_failed(self.app, self.id, self.name, error, self.hostname)
        self._done_without_pool()
        return False

    def quarantine(self, error: JobError) -> None:
        """Fail the job while it is queued (a running or finished one is left alone), drop the message."""
        store = self.app.job_store
        try:
            outcome = store.fail_queued(self.id, error, self.app.settings.queue_dead_letter_ttl_seconds)
            if outcome == "missing":
                # A plain Celery message: it becomes a job all the same, failed (adopt.py).
                outcome = adopt_refused(self.app, self.name, self._context, error)
        except RedisError as exc:
            # Acknowledged, the message would be gone and its job queued forever: back to
            # the end of the queue instead, to be quarantined on a later delivery.
            log.error("job %s is a poison message but could not be failed (%s); requeued", self.id, exc)
            self.reject(requeue=True)
            self._done_without_pool(acknowledge=False)
            return
        if outcome == "ok":
            log.error("job %s quarantined (%s): %s", self.id, POISON, error.message)
            announce_failed(self.app, self.id, self.name, error, self.hostname)
        else:
            log.warning("message %s dropped without running: %s; the job is %s", self.id, error.message, outcome)
        self._done_without_pool()

    def _done_without_pool(self, acknowledge: bool = True) -> None:
        if acknowledge:
            self.acknowledge()
        task_ready(self)  # Celery counted it as reserved when it arrived


def _poison(why: str) -> JobError:
    return JobError(type=POISON, message=f"poison message: {why}; quarantined instead of run")


def _describe(exc: Exception) -> str:
    # An exception's text can echo the message (lone surrogates included): escaped and
    # cut short, it can always be stored and shown.
    text = f"{type(exc).__name__}: {exc}"[:1000]
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _not_handed_off(request: JobRequest) -> TaskRevokedError:
    # What Celery raises for a revoked task, the other message that never reaches the pool:
    # the worker then frees the pool slot it reserved for this one.
    return TaskRevokedError(f"job {request.id}: message not handed to the pool")


def _forget_unsent(pool: Any, task_id: str) -> None:
    """Drop the job billiard filed for a hand-off that failed.

    billiard files the job in its pool's cache, then pickles it; when the pickle raises,
    nothing ever sends or finishes that entry, so it would stay for the worker's life. It
    is the newest entry (this thread filed it a moment ago), names the task as its
    correlation id, and has no pickled payload (a job that has one may be on its way to a
    process: it stays). Best effort: the quarantine that follows matters more.
    """
    try:
        cache = pool._pool._cache
        job = cache[next(reversed(cache))]
        if job.correlation_id == task_id and not hasattr(job, "_payload"):
            job.discard()
    except Exception:  # another pool class, or billiard changed: at worst an entry leaks
        log.debug("could not drop the unsent job %s from the pool's cache", task_id, exc_info=True)
