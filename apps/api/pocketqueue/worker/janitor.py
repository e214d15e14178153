"""The janitor: a thread in every worker's main process that keeps jobs moving.

Every tick each worker refreshes its heartbeat key, and one worker at a time, the leader
(a Redis lease that moves on when its holder dies, jobs/lua/lead.lua), does the rest:
- publishes scheduled and retrying jobs that are due (PocketQueue's own schedule, not
  the broker's ETA, so no visibility timeout can run a delayed job twice);
- every `janitor_interval`, requeues orphaned jobs, running but with a lapsed lease
  because the worker running them died (SIGKILL, OOM, a lost machine), found in order
  of lease deadline;
- every `janitor_interval`, publishes again the queued jobs whose message is gone
  (purged, deleted, popped by a process that died), found from each broker list's
  published set and watermark (jobs/lua/republish.lua);
- every tick, takes finished jobs out of the listing indexes just before their records
  expire (jobs/lua/reap.lua);
- every tick, fires due periodic jobs and settles batches whose children have all ended
  (dispatches their callback once, or cancels the rest of a failed fail_fast batch).
Each of these costs O(what is due), not O(jobs) and not O(jobs x workers).

Every transition is a Lua script that re-checks the record, so a janitor that still
thinks it leads after losing the lease (a stall) does no harm: each job is published or
recovered once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from pocketqueue.jobs.keys import queue_lists
from pocketqueue.jobs.message import message_for
from pocketqueue.jobs.models import JobError
from pocketqueue.jobs.payload import PayloadError
from pocketqueue.observe.celery_events import announce_failed, announce_retried
from pocketqueue.pipelines.fan_in import settle_due_batches
from pocketqueue.schedules.firing import fire_due_schedules
from pocketqueue.worker import heartbeat

if TYPE_CHECKING:
    from pocketqueue.worker.app import PocketQueueCelery

log = logging.getLogger(__name__)

TICK_SECONDS = 0.5
# How long before its record expires a finished job leaves the listing: a few sweeps, so a
# leader that is late by a sweep or two still takes it out while the record can say where.
REAP_LEAD_SECONDS = 10.0
# How long the leadership outlives its last renewal: a leader that died is replaced within it.
LEAD_SECONDS = 3.0


class Janitor:
    def __init__(self, app: PocketQueueCelery, worker_name: str) -> None:
        self.app = app
        self.worker_name = worker_name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pocketqueue-janitor", daemon=True)
        self._next_sweep = 0.0
        self._next_beat = 0.0
        self.leading = False

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with contextlib.suppress(RedisError):  # if Redis is away, the keys lapse on their own
            self.app.janitor_store.resign(self.worker_name)
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
            # Who this worker is, what it runs, whether it consumes (see heartbeat.py); a
            # reader flags it stalled from this within QUEUE_RECOVERY_SECONDS plus a beat.
            info = heartbeat.describe(self.worker_name, settings, now)
            store.announce_worker(self.worker_name, info, ttl_seconds=int(settings.lease_seconds) + 1)
            self._next_beat = now + settings.lease_seconds / 3
        was_leading, self.leading = self.leading, store.lead(self.worker_name, int(LEAD_SECONDS * 1000))
        if not self.leading:
            return
        if not was_leading:
            log.info("janitor: %s leads (publishes due jobs, recovers lost ones)", self.worker_name)
            self.recover_orphans(full_scan=True)  # running jobs claimed before the leases set existed
            store.drop_retired_keys()  # what an earlier version wrote and none reads now
        self.publish_due(store.server_time())  # due times are compared by Redis's clock
        self.reap()
        if now >= self._next_sweep:
            self.recover_orphans()
            self.republish_lost()
            self._next_sweep = now + settings.janitor_interval
        fire_due_schedules(self.app)  # periodic jobs: each due slot once (pocketqueue/schedules/firing.py)
        settle_due_batches(self.app)  # batches whose children have all ended (pocketqueue/pipelines/fan_in.py)

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
                    # Its entry stays (dropping it would strand the job); it is tried again a
                    # recovery interval later, and logged each time.
                    log.exception("janitor: could not publish job %s; trying again later", job_id)
                    store.redis.zadd(store.keys.schedule, {job_id: now + self.app.settings.queue_recovery_seconds})
            seen += len(due)
            if len(due) < batch:
                break
        return published

    def reap(self, batch: int = 500, most: int = 20_000) -> int:
        """Take finished jobs out of the listing before their records expire (jobs/lua/reap.lua).

        Every tick, a batch at a time until none is due (at most `most` a tick): the
        listing keeps up with any finishing rate the workers reach (40,000 jobs/s at
        most), so no entry outlives its record while a janitor runs.
        """
        store = self.app.janitor_store
        reaped = 0
        while reaped < most:
            done = store.reap(REAP_LEAD_SECONDS, batch)
            reaped += done
            if done < batch:
                break
        return reaped

    def _publish(self, job_id: str) -> int:
        store = self.app.janitor_store
        job = store.get(job_id)
        if job is None:
            store.promote(job_id, "", "")  # drops the stale schedule entry
            return 0
        message, queue_list = message_for(self.app, job, self.app.settings.queue_name)
        return 1 if store.promote(job_id, message, queue_list) == "ok" else 0

    def recover_orphans(self, full_scan: bool = False) -> int:
        store = self.app.janitor_store
        settings = self.app.settings
        recovered = 0
        for job_id, token in store.orphaned() if full_scan else store.lapsed():
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
        # The dead worker never told Celery's tools how the attempt ended: Flower would show
        # it STARTED for good.
        announce = announce_failed if outcome == "failed" else announce_retried
        announce(self.app, job_id, job.task, error, job.worker)
        return 1

    def republish_lost(self) -> int:
        """Publish again the queued jobs whose message is gone (see jobs/lua/republish.lua)."""
        store = self.app.janitor_store
        settings = self.app.settings
        # A message on its way from the list to a worker's hands is not lost: wait a lease.
        grace = settings.lease_seconds
        republished = 0
        # Every queue a job was sent to (create.lua notes each), consumed here or not: a
        # message lost from a queue no worker consumes yet is back when one does.
        sent_to: set[str] = store.redis.smembers(store.keys.queues)  # type: ignore[assignment]  # decoded
        queues = sorted({settings.queue_name, *sent_to})
        for queue_list in (name for queue in queues for name in queue_lists(queue)):
            for job_id in store.lost_messages(queue_list, grace):
                job = store.get(job_id)
                if job is None:
                    store.republish(job_id, queue_list, grace, "")  # drops the stale entry
                    continue
                try:
                    message, _ = message_for(self.app, job, settings.queue_name)
                except PayloadError as exc:  # one bad record must not stop the sweep for the rest
                    error = JobError(type="PoisonMessage", message=f"poison message: {exc.detail}")
                    if store.fail_queued(job_id, error, settings.queue_dead_letter_ttl_seconds) == "ok":
                        announce_failed(self.app, job_id, job.task, error, self.worker_name)
                    log.error("job %s failed: %s", job_id, error.message)
                    continue
                if store.republish(job_id, queue_list, grace, message) == "republished":
                    log.warning("job %s was queued but its message was gone; published again", job_id)
                    republished += 1
        return republished

    def hand_back(self, claims: list[tuple[str, str]]) -> None:
        """Requeue the attempts this worker still runs as it shuts down: (job id, claim token) pairs.

        By token, not by worker name: another worker may share the name, or run a newer
        attempt of the same job (see jobs/lua/hand_back.lua).
        """
        store = self.app.janitor_store
        for job_id, token in claims:
            job = store.get(job_id)
            if job is None:
                continue
            message, queue_list = message_for(self.app, job, self.app.settings.queue_name)
            outcome = store.hand_back(job_id, token, message, queue_list)
            if outcome == "ok":
                log.warning("job %s handed back: still running when the shutdown grace ended", job_id)
            else:
                log.info("job %s not handed back: %s", job_id, outcome)
