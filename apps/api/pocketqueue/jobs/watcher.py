"""JobWatcher: wakes waiters when their job finishes, over one Redis subscription.

Waiting on a job must not poll Redis in a loop or hold a thread per waiter. Workers
publish a job's id when it finishes (inside the FINISH/CANCEL scripts); one pub/sub
connection per process hands that to every local waiter. Pub/sub can miss a message
while reconnecting, so waiters also re-read the record now and then, and every waiter
is woken after a reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from redis.exceptions import RedisError

from pocketqueue.jobs.models import Job
from pocketqueue.jobs.store import JobStore

log = logging.getLogger(__name__)

RECONNECT_DELAY_SECONDS = 0.5
# How often the listener looks up from the socket to see whether it should stop.
# Cancelling a task blocked in redis-py's `pubsub.listen()` can leave it hanging, so
# the listener is stopped with a flag instead; this bounds how long `stop()` takes.
READ_TIMEOUT_SECONDS = 0.1
# Safety net for a wake-up lost while pub/sub reconnects; not a polling loop.
RECHECK_SECONDS = 5.0


class JobWatcher:
    """One subscription to the finished-jobs channel, shared by all waiters."""

    def __init__(self, redis: Redis, channel: str) -> None:
        self._redis = redis
        self._channel = channel
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._listen(), name="pocketqueue-job-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._stopping = True
            await self._task
            self._task = None

    @contextlib.asynccontextmanager
    async def watch(self, job_id: str) -> AsyncIterator[asyncio.Event]:
        """An event set whenever `job_id` may have finished; re-read the record then."""
        event = asyncio.Event()
        self._waiters[job_id].add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(job_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[job_id]

    async def wait_for(self, store: JobStore, job_id: str, seconds: float) -> Job | None:
        """The job once finished, or as it stands when `seconds` pass; None if missing."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        async with self.watch(job_id) as event:
            while True:
                event.clear()  # before the read, so a finish right after it still wakes us
                job = await store.get(job_id)
                remaining = deadline - loop.time()
                if job is None or job.status.finished or remaining <= 0:
                    return job
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), min(remaining, RECHECK_SECONDS))

    def _wake(self, job_id: str) -> None:
        for event in self._waiters.get(job_id, ()):
            event.set()

    def _wake_all(self) -> None:
        for waiters in self._waiters.values():
            for event in waiters:
                event.set()

    async def _listen(self) -> None:
        while not self._stopping:
            try:
                async with self._redis.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self._channel)
                    self._wake_all()  # anything published while we were away
                    while not self._stopping:
                        message = await pubsub.get_message(timeout=READ_TIMEOUT_SECONDS)
                        if message is not None:
                            self._wake(message["data"])
            except (RedisError, OSError) as exc:
                log.warning("job watcher lost Redis (%s); reconnecting", exc)
                self._wake_all()
                await asyncio.sleep(RECONNECT_DELAY_SECONDS)
            except Exception:  # never let the one listener die: waiters would sleep out their re-checks
                log.exception("job watcher failed; restarting it")
                self._wake_all()
                await asyncio.sleep(RECONNECT_DELAY_SECONDS)
