"""Adoption: a Celery message for a PocketQueue task that arrives with no job record becomes a job.

Celery's own callers publish a task message without writing a record: a plain Celery
client's `send_task` or `apply_async`, Celery beat, Flower's async-apply, an older
service, a canvas step (chain, link) that Celery's tracer sends after its parent. The
worker claiming such a message finds no record (start.lua answers 'missing'); it writes
one, with the Celery task id as the job id, through the one dispatch path (`plan` and
create.lua, publishing nothing: the worker already holds the message), then claims it
again. From there it is a job like any other: retries, leases, crash recovery, dead
letters, cancel, /status, listings and events.

What the caller asked beyond the job is kept on the record (`Job.celery`): whether it
expects the outcome in Celery's result backend (its message did not set `ignore_result`;
PocketQueue's own messages do), and the canvas steps that follow the job. A retry or a
recovery is published afresh from the record, so every attempt restores them from there
(`follow`), not from whichever message carried it.

Replay-safe: a redelivered message finds the record its first delivery wrote (create.lua
answers 'created' for a record that exists) and the claim decides which delivery runs it.
A message the task cannot take (arguments that do not fit its signature or break the
payload rules) still becomes a job, failed at once: it shows in /status and the dead
letters, and its Celery caller gets FAILURE, instead of vanishing unseen.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from celery import Celery
from celery.signals import task_success

from pocketqueue.errors import QueueError
from pocketqueue.jobs.dispatch import Planned, plan
from pocketqueue.jobs.models import CeleryCaller, Job, JobError, JobStatus, Priority
from pocketqueue.jobs.payload import check_json
from pocketqueue.jobs.request import DispatchRequest, check_queue_name
from pocketqueue.jobs.worker_store import Claim
from pocketqueue.observe.celery_results import write_record, write_started

__all__ = ["CALLER", "adopt", "adopt_refused", "celery_priority", "follow", "refusal_error"]

log = logging.getLogger(__name__)

# The request attribute holding the attempt's Celery caller, for the success hook below
# (it runs in Celery's tracer, after run_job has returned).
CALLER = "pocketqueue_celery_caller"


def celery_priority(value: Any) -> Priority:
    """A Celery message priority as a job priority: 0-3 high, 4-6 normal, 7 and up low.

    kombu's Redis transport pops the lowest number first. No priority is normal: the
    caller asked for nothing (kombu files such a message with step 0).
    """
    if isinstance(value, bool) or not isinstance(value, int):
        return Priority.NORMAL
    return Priority.HIGH if value <= 3 else Priority.NORMAL if value <= 6 else Priority.LOW


def adopt(app: Celery, task: str, request: Any) -> None:
    """Write the job of a claimed message that has no record (see the module docstring).

    `request` is Celery's request context for the message (`Task.request`). If the task
    cannot take the message, the job is written failed and the refusal is raised.
    """
    settings = app.settings
    caller = _caller(request)
    wanted = DispatchRequest(
        task,
        list(request.args or ()),
        dict(request.kwargs or {}),
        priority=celery_priority((request.delivery_info or {}).get("priority")),
        queue=_queue(request),
    )
    try:
        check_json(caller.model_dump(exclude_none=True), "the message's canvas", settings.queue_max_json_depth)
        planned = plan(wanted, settings, app, registered_only=True, job_id=request.id, publish=False)
    except QueueError as refused:
        error = refusal_error(refused)
        log.error("message %s (task %s) adopted as a failed job: %s", request.id, task, error.message)
        if adopt_refused(app, task, request, error) == "ok":
            write_record(app, request.id)
        raise
    planned = replace(planned, job=planned.job.model_copy(update={"celery": caller}))
    created = app.job_store.create(planned, settings.queue_job_ttl_seconds)
    if created.outcome != "created":  # never, with no idempotency or unique key; said if it happens
        log.warning("message %s: its job was not written (%s)", request.id, created.outcome)
    log.info("message %s (task %s, from a plain Celery caller) adopted as a job", request.id, task)
    if request.chord:
        log.warning("job %s is part of a Celery chord: chords are not supported, its body will not run", request.id)


def refusal_error(refused: QueueError) -> JobError:
    """The error of a job whose message its task cannot take."""
    return JobError(type=type(refused).__name__, message=f"the message cannot run as a job: {refused.detail}")


def adopt_refused(app: Celery, task: str, request: Any, error: JobError) -> str:
    """Write the message's job and fail it at once with `error`; fail_queued's answer ('ok' or the status found).

    For a message the task can never run. Its arguments are kept if a record can hold
    them, else left empty (the error says why).
    """
    settings = app.settings
    depth = settings.queue_max_json_depth
    args, kwargs = _storable(list(request.args or ()), depth), _storable(dict(request.kwargs or {}), depth)
    caller = _caller(request)
    job = Job(
        job_id=request.id,
        task=task,
        args=args if isinstance(args, list) else [],
        kwargs=kwargs if isinstance(kwargs, dict) else {},
        status=JobStatus.QUEUED,
        priority=celery_priority((request.delivery_info or {}).get("priority")),
        created_at=datetime.now(UTC),
        queue=_queue(request) or settings.queue_name,
        # The canvas is dropped with the job: nothing follows a job that never ran.
        celery=CeleryCaller(result=caller.result),
    )
    store = app.job_store
    store.create(Planned(job, "", "", None), settings.queue_job_ttl_seconds)
    outcome: str = store.fail_queued(request.id, error, settings.queue_dead_letter_ttl_seconds)
    return outcome


def follow(app: Celery, request: Any, claim: Claim) -> None:
    """Restore what a started attempt's Celery caller asked (its record's `celery`) onto `request`.

    Celery's tracer then sends the canvas steps when the task returns (and the link_error
    tasks when it fails), whichever message carried this attempt; a caller that expects
    results gets STARTED now and the outcome when the record has it.
    """
    caller = claim.caller
    if caller is None:
        return
    request.chain = _steps(caller.chain, caller.result)
    request.callbacks = _steps(caller.link, caller.result)
    request.errbacks = _steps(caller.link_error, caller.result)
    setattr(request, CALLER, caller)
    if caller.result:
        write_started(app, request.id, request.hostname or "unknown")


def _caller(request: Any) -> CeleryCaller:
    # Context.ignore_result defaults to False; a message's own header sets it (None, False
    # or True): only True asks to ignore the result.
    return CeleryCaller(
        result=request.ignore_result is not True,
        chain=request.chain or None,
        link=request.callbacks or None,
        link_error=request.errbacks or None,
    )


def _steps(signatures: list[dict[str, Any]] | None, results: bool) -> list[dict[str, Any]] | None:
    """Canvas steps to send, each a fresh copy; they keep results if this job's caller does.

    Celery's tracer sends them with PocketQueue's task, which ignores results unless the
    step says otherwise, as a step of a caller's own Celery app would not.
    """
    if not signatures:
        return None
    steps = [{**step, "options": dict(step.get("options") or {})} for step in signatures]
    if results:
        for step in steps:
            step["options"].setdefault("ignore_result", False)
    return steps


def _queue(request: Any) -> str | None:
    """The queue the message came from, if it can name a job's queue (else the task's own)."""
    name = (request.delivery_info or {}).get("routing_key")
    try:
        check_queue_name(name, "queue")
    except QueueError:
        return None
    return str(name)


def _storable(value: Any, depth: int) -> Any:
    try:
        check_json(value, "value", depth)
    except QueueError:
        return None
    return value


def _write_success(sender: Any = None, **_: Any) -> None:
    """Celery's task_success: the record holds the result now; copy it for the caller."""
    caller = getattr(getattr(sender, "request", None), CALLER, None)
    if isinstance(caller, CeleryCaller) and caller.result:
        write_record(sender.app, sender.request.id)


task_success.connect(_write_success, weak=False)
