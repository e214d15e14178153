"""The worker's task events, published in batches instead of one publish per event.

Celery's worker buffers task events and publishes the buffer on the next turn of its event
loop; with one job at a time per process that is one publish per event, three per job,
and each kombu publish costs about half a millisecond of the worker's main process (kombu
builds a new Redis client for every fanout publish). Measured on the worker drain, that
was about a quarter of its throughput. Published at most every FLUSH_SECONDS (or when
BUFFER_LIMIT events wait), a batch carries many events: Flower and `celery events` read
them as usual (Celery's `task.multi` batches), at most FLUSH_SECONDS later.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from celery import bootsteps

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.1
# Events one publish carries at most (Celery's default is 24). At a busy worker's rate (about
# 2,000 events a second) 24 fill in about 10 ms, and each publish costs the worker's main
# process about as much as 20 events; so the timer, not the count, sets the pace.
BUFFER_LIMIT = 500


class BatchedTaskEvents(bootsteps.StartStopStep):  # type: ignore[misc]  # celery ships no type hints
    """A consumer step: the event dispatcher flushes on a short timer, not on every loop turn."""

    requires = ("celery.worker.consumer.events:Events",)

    def start(self, c: Any) -> None:
        dispatcher, hub = c.event_dispatcher, c.hub
        # No event loop (a solo or threaded pool): Celery publishes each event as sent.
        if dispatcher is None or hub is None or not dispatcher.buffer_group:
            return
        pending = False

        def flush() -> None:
            nonlocal pending
            pending = False
            dispatcher.flush()

        def flush_soon() -> None:
            nonlocal pending
            if not pending:
                pending = True
                hub.call_later(FLUSH_SECONDS, flush)

        dispatcher.on_send_buffered = flush_soon
        dispatcher.buffer_limit = BUFFER_LIMIT

    def stop(self, c: Any) -> None:
        # Before Celery's Events step closes the dispatcher (it stops after this step),
        # which would drop what is still buffered.
        dispatcher = c.event_dispatcher
        if dispatcher is not None:
            with contextlib.suppress(Exception):  # the connection is gone: those events are lost, as in Celery
                dispatcher.flush()

    shutdown = stop
