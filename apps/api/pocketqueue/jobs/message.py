"""Celery task messages, built without Celery's producer.

Celery's producer is synchronous and, with a Redis result backend, subscribes to a
result channel for every task it sends, channels the API never reads (the leak and
stall of celery/celery#6963). So the API builds the message with Celery's own protocol
code (`as_task_v2`) and pushes it with the async Redis client, in the same Lua script
that writes the job record: the record and its message are written together or not at all.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from functools import lru_cache
from typing import Any

from celery import Celery

from pocketqueue.jobs.keys import queue_list
from pocketqueue.jobs.models import Job, Priority
from pocketqueue.jobs.payload import PayloadError


def message_for(app: Celery, job: Job, default_queue: str) -> tuple[str, str]:
    """The Celery message that runs `job`, and the Redis list (by priority) it goes to.

    The job's own queue, or `default_queue` (QUEUE_NAME) for a record from before queues.

    Built afresh whenever a job is published (dispatch, a due schedule entry, a retry,
    a recovery, a re-drive), so records never carry a copy of their message.
    """
    unreadable = sorted(set(job.unreadable or {}) & {"args", "kwargs"})
    if unreadable:
        # Shown empty, but never sent empty: the job would run with arguments nobody gave it.
        why = "; ".join(f"{name}: {(job.unreadable or {})[name]}" for name in unreadable)
        raise PayloadError(f"job {job.job_id}'s arguments cannot be read back, so it cannot be published ({why})")
    queue = job.queue or default_queue
    message = build_message(app, job.job_id, job.task, job.args, job.kwargs, queue, job.priority)
    return message, queue_list(queue, job.priority.broker_priority)


def build_message(
    app: Celery,
    job_id: str,
    task: str,
    args: list[Any],
    kwargs: dict[str, Any],
    queue: str,
    priority: Priority = Priority.NORMAL,
) -> str:
    """The JSON envelope kombu's Redis transport expects in the queue list."""
    headers, properties = _template(app, task, os.getpid())
    args_json, kwargs_json = json.dumps(args), json.dumps(kwargs)  # each encoded once: body and reprs
    body = f"[{args_json},{kwargs_json},{_EMBED}]".encode()
    return json.dumps(
        {
            "body": base64.b64encode(body).decode(),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {
                **headers,
                "id": job_id,
                "root_id": job_id,
                "argsrepr": _short(args_json),
                "kwargsrepr": _short(kwargs_json),
            },
            "properties": {
                **properties,
                "correlation_id": job_id,
                # kombu reads this when it restores an unacknowledged message, to put it
                # back in the list it came from.
                "priority": priority.broker_priority,
                "delivery_tag": str(uuid.uuid4()),
                "delivery_info": {"exchange": "", "routing_key": queue},
            },
        }
    )


# The body's third part: no callbacks, errbacks, chain or chord.
_EMBED = json.dumps({"callbacks": None, "errbacks": None, "chain": None, "chord": None})


@lru_cache(maxsize=1024)
def _template(app: Celery, task: str, pid: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Celery's own headers and properties for `task` (`as_task_v2`), less what each job fills in.

    Asking Celery for every message cost most of a `.delay()`; for one task only the job id,
    the argument reprs and the sender (`origin`, named by pid: hence the key) change. The
    args are already checked to be plain JSON, so the body is encoded with json directly.
    ignore_result: the job record is the result; without it the header's default (False)
    overrides the task's own setting and Celery stores every result twice.
    """
    headers, properties, _, _ = app.amqp.as_task_v2("", task, args=[], kwargs={}, ignore_result=True)
    properties.update(delivery_mode=2, body_encoding="base64")
    return headers, properties


def _short(text: str, limit: int = 1024) -> str:
    """argsrepr/kwargsrepr (shown by Flower and worker logs): the JSON we already trust is
    as readable as Celery's saferepr and costs a fraction of it."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
