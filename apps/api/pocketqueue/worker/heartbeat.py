"""What a worker says about itself in its heartbeat: the worker registry's entry for it.

The janitor thread writes it every lease/3 (jobs/lua/announce.lua); observe/workers.py
reads it and decides from it whether the worker is stalled. Every fact comes from this,
the worker's main process, and costs nothing per message:
- the jobs it runs: Celery's active requests (handed to a pool process, not yet done);
- whether it consumes: its task consumer still consumes each queue it started with
  (`celery control cancel_consumer` stops that, with the worker otherwise alive);
- when a message last arrived: a signal handler keeps the time, in memory. A worker that
  consumes in name only (the silent stall after a Redis reconnect, celery#10205) gets
  nothing while jobs wait, and this is how a reader sees it.
Times are this machine's clock (epoch seconds): a reader compares them with each other,
never with its own clock, so a skewed clock does not make a worker look stalled.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from celery.signals import task_received, task_unknown, worker_ready, worker_shutting_down

from pocketqueue.config import Settings
from pocketqueue.jobs.registry import registered_names


@dataclass
class WorkerActivity:
    """What the main process learns from Celery's signals (written by its threads, read by the janitor)."""

    started_at: float = 0.0
    last_message_at: float | None = None
    consumer: Any = None  # celery.worker.consumer.Consumer, once the worker is ready
    queues: tuple[str, ...] = ()  # what it started consuming, kept: a cancelled queue drops out of Celery's lists
    stopping: bool = False

    def consuming(self) -> bool:
        task_consumer = getattr(self.consumer, "task_consumer", None)
        if task_consumer is None or not self.queues:
            return False
        return all(task_consumer.consuming_from(queue) for queue in self.queues)

    def concurrency(self, default: int) -> int:
        limit = getattr(getattr(self.consumer, "pool", None), "limit", None)
        return limit if isinstance(limit, int) and limit > 0 else default


activity = WorkerActivity()


def describe(name: str, settings: Settings, now: float) -> dict[str, Any]:
    """The heartbeat's JSON (as observe/workers.py's WorkerView reads it)."""
    return {
        "name": name,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "concurrency": activity.concurrency(settings.worker_concurrency),
        "queues": list(activity.queues) or settings.consumed_queues,
        # Which tasks this worker runs: a job for a task it lacks is handed back while
        # some live worker has it (see signals.py).
        "tasks": registered_names(),
        "started_at": activity.started_at or now,
        "last_seen": now,
        "running": running_jobs(),
        "consuming": activity.consuming(),
        "last_message_at": activity.last_message_at,
        "stopping": activity.stopping,
    }


def active_requests() -> list[Any]:
    """The requests this worker's pool runs now: Celery's WeakSet, read from another thread."""
    from celery.worker import state

    for _ in range(50):
        try:
            return list(state.active_requests)
        except RuntimeError:  # the main thread changed the set while we read it; read again
            continue
    return []


def running_jobs() -> list[dict[str, Any]]:
    """The jobs this worker's pool runs now, oldest first."""
    jobs = [{"job_id": r.id, "task": r.name, "started_at": r.time_start} for r in active_requests()]
    return sorted(jobs, key=lambda job: job["started_at"] or 0)


def _note_ready(sender: Any = None, **_: Any) -> None:
    # Sent by the consumer once it consumes (sender is the Consumer).
    activity.consumer = sender
    activity.started_at = time.time()
    task_consumer = getattr(sender, "task_consumer", None)
    names = [queue.name for queue in getattr(task_consumer, "queues", None) or []]
    if not names:
        with contextlib.suppress(AttributeError):
            names = list(sender.app.amqp.queues.consume_from)
    activity.queues = tuple(sorted(names))


def _note_message(**_: Any) -> None:
    activity.last_message_at = time.time()


def _note_stopping(**_: Any) -> None:
    # A warm shutdown cancels the consumer first and lets running jobs finish: not a stall.
    activity.stopping = True


worker_ready.connect(_note_ready, weak=False)
task_received.connect(_note_message, weak=False)
task_unknown.connect(_note_message, weak=False)
worker_shutting_down.connect(_note_stopping, weak=False)
