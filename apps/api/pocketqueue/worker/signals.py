"""Hooks in the worker's main process, outside the jobs' own processes.

- The janitor starts with the worker and stops with it (see janitor.py).
- Each job message gets its attempt's claim token as it arrives, so this process knows
  which attempt each of its running jobs is (the pool process that runs it claims with it).
- SIGTERM is a warm shutdown: running jobs finish, no new ones start. It is bounded by
  QUEUE_SHUTDOWN_GRACE_SECONDS: after that, the pool's processes are stopped and the
  attempts they were running are handed back (queued again, the cut attempt uncounted).
- The hard time limit: Celery kills the job's process, so the task never writes its outcome.
- A revoke (`celery control revoke`, Flower's revoke button): Celery discards the message
  (or kills the running job's process), so the job's record would stay queued or
  processing with nothing to run it; it is cancelled instead, as the revoke meant.
- A task this worker does not know: Celery discards the message, so the job is handed
  back (scheduled again shortly) for a worker that has the task; it fails only when no
  live worker has had the task for QUEUE_UNKNOWN_TASK_SECONDS. (The API accepts only
  tasks it has imported; an API deployed before its workers, or a worker started with
  other TASK_MODULES, is the usual cause.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
import uuid
from typing import Any

from billiard.exceptions import TimeLimitExceeded
from billiard.process import active_children
from celery.signals import (
    task_failure,
    task_received,
    task_revoked,
    task_unknown,
    worker_init,
    worker_ready,
    worker_shutdown,
    worker_shutting_down,
)
from redis.exceptions import RedisError

from pocketqueue.jobs.models import JobError
from pocketqueue.jobs.registry import find
from pocketqueue.observe.celery_events import announce_failed
from pocketqueue.observe.celery_results import write_record
from pocketqueue.worker.heartbeat import active_requests
from pocketqueue.worker.janitor import Janitor
from pocketqueue.worker.tasks import CLAIM_TOKEN, JobTask, retry_redis

log = logging.getLogger(__name__)

_janitor: Janitor | None = None
_worker_name = ""


def _refuse_plain_celery_tasks(sender: Any = None, **_: Any) -> None:
    """Stop start-up if a plain Celery task (`@shared_task`, `@app.task`) is registered here.

    PocketQueue's app runs with a short visibility timeout: safe for its own jobs, whose
    records drop a redelivered message, but a plain task running longer than it would
    be delivered again and run twice. So such a task is refused, not run unsafely.
    """
    from pocketqueue.worker.tasks import JobTask

    app: Any = getattr(sender, "app", None)
    if getattr(app, "settings", None) is None:
        return
    plain = sorted(
        name for name, task in app.tasks.items() if not name.startswith("celery.") and not isinstance(task, JobTask)
    )
    if plain:
        detail = (
            f"plain Celery tasks are registered on PocketQueue's app: {', '.join(plain)}. Its short visibility "
            "timeout would run a long one twice; make them @pocketqueue.task functions (or run them on an app "
            "of their own)."
        )
        # Celery swallows (and, this early, does not even log) an exception from a signal
        # handler; SystemExit is not swallowed, and the worker stops with this line.
        print(f"pocketqueue: error: {detail}", file=sys.stderr, flush=True)
        raise SystemExit(2)


def _start_janitor(sender: Any = None, **_: Any) -> None:
    global _janitor, _worker_name
    app = sender.app
    if getattr(app, "settings", None) is None:
        return
    _worker_name = sender.hostname
    _janitor = Janitor(app, sender.hostname)
    _janitor.start()


def _stop_janitor(**_: Any) -> None:
    if _janitor is not None:
        _janitor.stop()


def _bound_warm_shutdown(sig: str = "", how: str = "", **_: Any) -> None:
    from pocketqueue.worker import get_celery_app

    if how != "Warm":
        return
    grace = get_celery_app().settings.queue_shutdown_grace_seconds

    def cold_shutdown() -> None:
        # Not SIGQUIT to ourselves: by now the main thread is usually inside the warm
        # shutdown's pool.join(), and Celery's SIGQUIT handler would stop the pool again
        # from there, a nested join that can wait forever. Ending the pool's processes
        # lets that join return. They are ended before their jobs are handed back, so no
        # job runs here and elsewhere at once.
        running = _running_claims()
        if not running:
            return  # nothing running: the pool's processes are already on their way out
        log.warning("jobs still running after %s s (QUEUE_SHUTDOWN_GRACE_SECONDS); handing them back", grace)
        for child in active_children():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
        if _janitor is not None:
            try:  # queued again at once, the cut attempt uncounted
                _janitor.hand_back(running)
            except Exception:  # their leases lapse and the janitors recover them like a crash
                log.exception("handing back running jobs failed; they will be recovered")

    timer = threading.Timer(grace, cold_shutdown)
    timer.daemon = True
    timer.start()


def _issue_claim_token(request: Any = None, **_: Any) -> None:
    # Made here, in the main process, before the job reaches a pool process: the pool
    # process's memory is out of reach, and the shutdown hand-back must name the attempt.
    if isinstance(getattr(request, "task", None), JobTask):
        request.request_dict[CLAIM_TOKEN] = uuid.uuid4().hex


def _running_claims() -> list[tuple[str, str]]:
    """(job id, claim token) of each attempt this worker runs."""
    # A request without a token came some other way; its job is recovered like a crash.
    claims = [(request.id, request.request_dict.get(CLAIM_TOKEN)) for request in active_requests()]
    return [(job_id, token) for job_id, token in claims if token]


def _record_hard_time_limit(sender: Any = None, task_id: str = "", exception: Any = None, **_: Any) -> None:
    if not isinstance(sender, JobTask) or not isinstance(exception, TimeLimitExceeded):
        return
    settings = sender.app.settings
    # The task's own time_limit (@task(time_limit=...)), else QUEUE_TASK_TIME_LIMIT.
    spec = find(sender.name)
    own = spec.time_limit if spec is not None else None
    limit = own or settings.queue_task_time_limit
    source = "the task's time_limit" if own else "QUEUE_TASK_TIME_LIMIT"
    error = JobError(type="TimeLimitExceeded", message=f"time limit exceeded ({limit} s, {source})")
    # Only an attempt this worker runs that started about a time limit ago. The timed-out
    # attempt's start is taken as its task body begins, right after the limit's timer
    # starts; a newer attempt can only have started a lease or more after that (once the
    # old lease lapsed). Half a lease of slack tells the two apart.
    before = time.time() - limit + settings.lease_seconds / 2
    store = sender.app.job_store
    dead_ttl = settings.queue_dead_letter_ttl_seconds
    fail = lambda: store.fail_timed_out(task_id, error, dead_ttl, _worker_name, before)  # noqa: E731
    # Ride out a Redis blip as every outcome write does: given up, the job would be
    # recovered as a lost worker and run again, and a time limit is never retried.
    try:
        outcome = retry_redis(fail, "recording the hard time limit", task_id)
    except RedisError as exc:
        log.error("job %s hit the time limit but could not be failed (%s); it will be recovered", task_id, exc)
        return
    if outcome != "ok":
        log.warning("job %s hit the time limit but was not failed: %s", task_id, outcome)
        return
    write_record(sender.app, task_id)  # FAILURE, for a plain Celery caller expecting results


def _record_revoke(sender: Any = None, request: Any = None, **_: Any) -> None:
    job_id = getattr(request, "id", None)
    if not isinstance(sender, JobTask) or not job_id:
        return
    # Also called for PocketQueue's own cancel (its revoke stops the running process);
    # the record is cancelled already, and CANCEL leaves a finished job as it is.
    try:
        before = sender.app.job_store.cancel(job_id)
    except RedisError as exc:
        log.error("job %s was revoked but could not be cancelled (%s)", job_id, exc)
        return
    if before in ("scheduled", "queued", "processing", "retrying"):
        log.warning("job %s revoked through Celery: cancelled (was %s)", job_id, before)
        write_record(sender.app, job_id)  # REVOKED, for a plain Celery caller expecting results


def _record_unknown_task(sender: Any = None, name: str = "", id: str = "", **_: Any) -> None:
    app = getattr(sender, "app", None)
    store = getattr(app, "job_store", None)
    if app is None or store is None or not id:
        return
    settings = app.settings
    hostname = getattr(sender, "hostname", None) or "this worker"
    wait = settings.queue_unknown_task_seconds
    message = (
        f"task {name!r} is not registered on {hostname}, and no live worker has registered it "
        f"for {wait:g} s (QUEUE_UNKNOWN_TASK_SECONDS); check the workers' TASK_MODULES"
    )
    error = JobError(type="TaskNotRegistered", message=message)
    delay = max(1.0, settings.janitor_interval * 2)

    def defer() -> str:
        # Celery drops the message after this: hand the job back for a worker that has
        # the task (an API deployed before its workers), failing it only when none has.
        return str(store.defer_unknown(id, name, delay, wait, error, settings.queue_dead_letter_ttl_seconds))

    try:
        outcome = retry_redis(defer, "handing back", id)
    except RedisError:
        log.error(
            "job %s could not be handed back (Redis unavailable); it is republished once its message is missed", id
        )
        return
    if outcome == "deferred":
        log.warning("job %s: task %r is not registered here; handed back for another worker", id, name)
    elif outcome == "failed":
        log.error("job %s failed: %s", id, message)
        announce_failed(app, id, name, error, getattr(sender, "hostname", None))


worker_init.connect(_refuse_plain_celery_tasks, weak=False)
worker_ready.connect(_start_janitor, weak=False)
worker_shutdown.connect(_stop_janitor, weak=False)
worker_shutting_down.connect(_bound_warm_shutdown, weak=False)
task_received.connect(_issue_claim_token, weak=False)
task_failure.connect(_record_hard_time_limit, weak=False)
task_unknown.connect(_record_unknown_task, weak=False)
task_revoked.connect(_record_revoke, weak=False)
