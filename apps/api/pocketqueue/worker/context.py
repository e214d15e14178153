"""What a running task sees: its JobContext, and the heartbeats that keep its lease alive."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pocketqueue.jobs.models import JobStatus
from pocketqueue.jobs.worker_store import FlowState, WorkerJobStore

log = logging.getLogger(__name__)

# Redis out of reach for a moment (a restart, a failover, a network blip). Progress is
# not worth failing an attempt over: it waits for the next heartbeat, and the lease
# bounds how long an attempt can go on without Redis.
UNREACHABLE = (RedisConnectionError, RedisTimeoutError)


class JobCancelled(Exception):
    """Raised inside a task when its job was cancelled, or taken over by a newer attempt."""


@dataclass(frozen=True)
class Partial:
    """What `job.partial()` returns: a result with some steps failed."""

    result: Any
    errors: list[Any]


class JobContext:
    """What a task receives as its first argument: its job id, progress, cancel state."""

    def __init__(
        self, job_id: str, task: str, attempt: int, token: str, worker: str, store: WorkerJobStore, lease_ms: int
    ) -> None:
        self.job_id = job_id
        self.task = task
        self.attempt = attempt
        self._token = token
        self.worker = worker
        self._store = store
        self._lease_ms = lease_ms
        self._status = JobStatus.PROCESSING.value
        # Progress the task reported while Redis was out of reach, sent with the next beat.
        # The task's thread and the heartbeat thread both beat: one at a time, so an older
        # value can never land after a newer one.
        self._beat_lock = threading.Lock()
        self._unsent_percent: int | None = None
        self._unsent_step: str | None = None
        # The last beat found Redis out of reach: until one gets through, progress() only
        # notes its value (each try would hold the task up for redis-py's retries).
        self._unreachable = False

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
        with self._beat_lock:
            self._unsent_percent = percent
            self._unsent_step = step if step is not None else self._unsent_step
            waiting = self._unreachable
        if not waiting:
            try:
                self.beat()
            except UNREACHABLE as exc:
                log.warning("job %s: progress not recorded yet (%s); it goes with the next heartbeat", self.job_id, exc)
        if self.cancelled:
            raise JobCancelled(f"job {self.job_id} is {self._status}")

    def partial(self, result: Any, errors: Sequence[Any]) -> Partial:
        """`return job.partial(result, errors)` finishes the job as `partial`, keeping both."""
        return Partial(result, list(errors))

    def beat(self) -> None:
        """Renew the lease, with any progress not recorded yet; learn the job's status."""
        with self._beat_lock:
            percent, step = self._unsent_percent, self._unsent_step
            try:
                status = self._store.heartbeat(self.job_id, self._token, self.worker, self._lease_ms, percent, step)
            except UNREACHABLE:
                self._unreachable = True
                raise
            self._status, self._unreachable = status, False
            self._unsent_percent = self._unsent_step = None

    def checkpoint(self, state: FlowState, progress: int) -> None:
        """Save a flow job's state under this attempt's claim (pipelines/); raises JobCancelled
        if the job is no longer this attempt's to run, and nothing is saved then."""
        with self._beat_lock:
            status = self._store.checkpoint(self.job_id, self._token, self.worker, self._lease_ms, state, progress)
            self._status, self._unreachable = status, False
            self._unsent_percent = self._unsent_step = None
        if self.cancelled:
            raise JobCancelled(f"job {self.job_id} is {self._status}")

    def flow_state(self) -> FlowState | None:
        """A flow job's last checkpoint (None on its first attempt)."""
        return self._store.flow_state(self.job_id)

    def flush(self) -> None:
        """Record progress still unsent (Redis was out of reach), before the attempt's outcome."""
        if self._unsent_percent is not None or self._unsent_step is not None:
            self.beat()


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


heartbeats = _Heartbeats()
