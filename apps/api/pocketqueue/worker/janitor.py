"""The janitor: a thread in every worker's main process that keeps jobs moving.

Every tick it
- publishes scheduled and retrying jobs that are due (PocketQueue's own schedule, not
  the broker's ETA, so no visibility timeout can run a delayed job twice);
- every `janitor_interval`, requeues orphaned jobs: processing, but their lease lapsed
  because the worker running them died (SIGKILL, OOM, a lost machine);
- refreshes this worker's heartbeat key.

Every transition is a Lua script that re-checks the record, so any number of workers
can run janitors at once: each job is published or recovered once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from pocketqueue.jobs.message import message_for
from pocketqueue.jobs.models import JobError

if TYPE_CHECKING:
    from pocketqueue.worker.app import PocketQueueCelery

log = logging.getLogger(__name__)

TICK_SECONDS = 0.5


class Janitor:
    def __init__(self, app: PocketQueueCelery, worker_name: str) -> None:
        self.app = app
        self.worker_name = worker_name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pocketqueue-janitor", daemon=True)
        self._next_sweep = 0.0
        self._next_beat = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with contextlib.suppress(RedisError):  # if Redis is away, the key lapses on its own
            self.app.janitor_store.retire_worker(self.worker_name)

    def _run(self) -> None:
        while not self._stop.wait(TICK_SECONDS):
            try:
                self.tick(time.time())
            except RedisError as exc:
                log.warning("janitor: Redis unavailable (%s); retrying", exc)
            except Exception:
                log.exception("janitor tick failed")

    def tick(self, now: float) -> None:
        settings = self.app.settings
        store = self.app.janitor_store
        if now >= self._next_beat:
            info = {"pid": os.getpid(), "queue": settings.queue_name, "concurrency": settings.worker_concurrency}
            store.announce_worker(self.worker_name, info, ttl_seconds=int(settings.lease_seconds) + 1)
            self._next_beat = now + settings.lease_seconds / 3
        self.publish_due(now)
        if now >= self._next_sweep:
            self.recover_orphans()
            self._next_sweep = now + settings.janitor_interval

    def publish_due(self, now: float, batch: int = 200, most: int = 5000) -> int:
        """Publish due jobs, a batch at a time, at most `most` per tick (the rest go next tick)."""
        store = self.app.janitor_store
        published = seen = 0
        while seen < most:
            due = store.due(now, limit=batch)
            for job_id in due:
                try:
                    published += self._publish(job_id)
                except RedisError:
                    raise
                except Exception:  # one bad record must not hold up the schedule for the rest
                    log.exception("janitor: could not publish job %s; dropping its schedule entry", job_id)
                    store.redis.zrem(store.keys.schedule, job_id)
            seen += len(due)
            if len(due) < batch:
                break
        return published

    def _publish(self, job_id: str) -> int:
        store = self.app.janitor_store
        job = store.get(job_id)
        if job is None:
            store.promote(job_id, "", "")  # drops the stale schedule entry
            return 0
        message, queue_list = message_for(self.app, job, self.app.settings.queue_name)
        return 1 if store.promote(job_id, message, queue_list) == "ok" else 0

    def recover_orphans(self) -> int:
        store = self.app.janitor_store
        settings = self.app.settings
        recovered = 0
        for job_id, token in store.orphaned():
            try:
                recovered += self._recover(job_id, token, settings.queue_dead_letter_ttl_seconds)
            except RedisError:
                raise
            except Exception:  # one bad record must not stop recovery (or scheduling) for the rest
                log.exception("janitor: could not recover job %s", job_id)
        return recovered

    def _recover(self, job_id: str, token: str, dead_letter_ttl: int) -> int:
        store = self.app.janitor_store
        job = store.get(job_id)
        if job is None:
            return 0
        error = JobError(
            type="WorkerLost",
            message=(
                f"worker {job.worker or '?'} stopped renewing the lease during attempt {job.attempts} "
                "(killed, crashed, or cut off from Redis)"
            ),
            attempt=job.attempts,
        )
        message, queue_list = message_for(self.app, job, self.app.settings.queue_name)
        outcome = store.recover(job_id, token, error, message, queue_list, dead_letter_ttl)
        if outcome not in ("requeued", "failed"):
            return 0
        log.warning("job %s: attempt %s orphaned by %s; %s", job_id, job.attempts, job.worker, outcome)
        return 1

    def hand_back(self, job_ids: list[str]) -> None:
        """Requeue the jobs this worker is still running as it shuts down (see signals.py)."""
        store = self.app.janitor_store
        for job_id in job_ids:
            job = store.get(job_id)
            if job is None:
                continue
            message, queue_list = message_for(self.app, job, self.app.settings.queue_name)
            if store.hand_back(job_id, self.worker_name, message, queue_list) == "ok":
                log.warning("job %s handed back: still running when the shutdown grace ended", job_id)
