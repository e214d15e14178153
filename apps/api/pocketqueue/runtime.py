"""QueueRuntime: the long-lived resources a process shares (Redis pool, watcher, Celery app).

Created once (the API's lifespan, or a pipeline's own `async with open_runtime()`) and
passed to flows in `shared["runtime"]`; nodes never create connections themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff

from pocketqueue.config import Settings, get_settings
from pocketqueue.jobs.keys import Keys
from pocketqueue.jobs.store import JobStore
from pocketqueue.jobs.watcher import JobWatcher
from pocketqueue.observe.events import EventHub
from pocketqueue.worker.app import PocketQueueCelery, create_celery_app

# Connections one API process opens to Redis at most; requests beyond that wait (up to
# POOL_WAIT_SECONDS) for one to come free. Each request holds one only for its commands.
MAX_CONNECTIONS = 128
POOL_WAIT_SECONDS = 10.0


@dataclass
class QueueRuntime:
    """Everything a flow needs to talk to the queue."""

    settings: Settings
    redis: Redis
    store: JobStore
    watcher: JobWatcher
    celery: PocketQueueCelery
    # The live event streams' one reader (started by the first SSE client).
    events: EventHub
    # Monotonic time of the last successful Redis check, and the check in flight, which
    # every request that needs one awaits (see RedisConnectionNode).
    redis_checked_at: float = float("-inf")
    redis_check: asyncio.Future[float] | None = None


@asynccontextmanager
async def open_runtime(settings: Settings | None = None, import_tasks: bool = True) -> AsyncIterator[QueueRuntime]:
    """Open the shared resources; Redis need not be up yet (requests get 503 until it is).

    import_tasks=False (an AsyncClient) leaves TASK_MODULES unimported: a caller that does
    not have the task code can still dispatch.
    """
    settings = settings or get_settings()
    url = settings.resolved_redis_url()
    celery = create_celery_app(settings, import_tasks=import_tasks)
    # A blocking pool: past MAX_CONNECTIONS a request waits for a free connection. The
    # default pool raises "Too many connections" instead, which became a 503 for every
    # request beyond the hundredth in flight although Redis was fine.
    # Fail fast when Redis is down: a refused connection is retried twice, briefly, so a
    # request gets its 503 in well under a second instead of after redis-py's long backoff.
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_SECONDS,
        decode_responses=True,
        socket_connect_timeout=2,
        socket_timeout=10,
        retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 2),
        health_check_interval=30,
    )
    redis = Redis.from_pool(pool)  # the client owns the pool: aclose() closes its sockets
    # Pub/sub waits indefinitely for messages, so its connection has no read timeout.
    watcher_redis = Redis.from_url(url, decode_responses=True, socket_connect_timeout=2, socket_keepalive=True)
    keys = Keys(settings.queue_key_prefix)
    watcher = JobWatcher(watcher_redis, keys.finished_channel)
    events = EventHub.from_url(url, keys)  # a client of its own, like the watcher's; not connected until used
    runtime = QueueRuntime(settings, redis, JobStore(redis, keys, settings.queue_name), watcher, celery, events)
    await watcher.start()
    try:
        yield runtime
    finally:
        await events.stop()  # closes its client
        await watcher.stop()
        await watcher_redis.aclose()
        await redis.aclose()
