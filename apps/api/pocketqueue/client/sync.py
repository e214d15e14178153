"""Client: the queue from synchronous code (a script, a Django or Flask view, a task).

It plans each job with the same code as HTTP dispatch (`jobs.dispatch.plan`) and writes
it with the same create.lua call; only the Redis client is synchronous. One connection
pool per process: redis-py's pool notices a fork and starts afresh in the child, so a
Client made before a fork (gunicorn's preload, Celery's prefork) is safe to use after it.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any, Unpack

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

from pocketqueue.client.handle import JobHandle
from pocketqueue.client.options import DispatchOptions, build_request
from pocketqueue.config import Settings, get_settings
from pocketqueue.errors import DispatchOutcomeUnknown, InvalidRequest, JobAlreadyFinished, JobNotFound
from pocketqueue.jobs import scripts
from pocketqueue.jobs.dispatch import Created, create_args, plan, refusal
from pocketqueue.jobs.keys import Keys
from pocketqueue.jobs.models import ACTIVE_STATUSES, Job, decode_record, now_timestamp
from pocketqueue.jobs.request import DispatchRequest
from pocketqueue.observe.celery_events import tell_celery_cancelled
from pocketqueue.pipelines.batches import (
    Batch,
    BatchNotFound,
    BatchRequest,
    check_batch_replies,
    plan_batch,
    queue_batch,
    read_batch,
)
from pocketqueue.worker.app import PocketQueueCelery, create_celery_app

# A lost wake-up (pub/sub reconnecting) costs at most this long: not a polling loop.
RECHECK_SECONDS = 5.0


class Client:
    """Dispatch, read, wait for and cancel jobs without importing the task code.

    `Client()` reads the settings (REDIS_URL, or the local Redis under DATA_DIR); pass
    `Settings(...)` to choose. A task this process has registered has its arguments
    checked before anything is written; an unknown name is sent as Celery's `send_task`
    would send it (a worker fails it as TaskNotRegistered if none has it).
    """

    def __init__(self, settings: Settings | None = None, *, celery: PocketQueueCelery | None = None) -> None:
        self.settings = settings or get_settings()
        self.keys = Keys(self.settings.queue_key_prefix)
        if celery is not None:  # a worker's own app (made once per process) serves as well
            self.__dict__["celery"] = celery

    @cached_property
    def redis(self) -> redis.Redis:
        # Connected on first use, so a Client can be made at import time, before Redis is up.
        # A plain pool (one connection per thread using it at once) with no periodic PING:
        # the blocking pool's bookkeeping and the health check cost about a tenth of a
        # `.delay()`; a connection Redis dropped fails its command, which the retry resends.
        pool = redis.ConnectionPool.from_url(
            self.settings.resolved_redis_url(),
            decode_responses=True,
            socket_connect_timeout=2,
            socket_timeout=10,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), 2),
        )
        return redis.Redis(connection_pool=pool)

    @cached_property
    def celery(self) -> PocketQueueCelery:
        # Builds the Celery messages (and revokes running jobs); never imports TASK_MODULES.
        return create_celery_app(self.settings, import_tasks=False)

    @cached_property
    def _scripts(self) -> tuple[Any, Any]:
        return self.redis.register_script(scripts.CREATE), self.redis.register_script(scripts.CANCEL)

    def dispatch(
        self,
        task: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Unpack[DispatchOptions],
    ) -> JobHandle:
        """Queue (or schedule) a job for `task`; returns its handle. Raises QueueError subclasses."""
        request = build_request(task, args, kwargs, options)
        planned = plan(request, self.settings, self.celery, registered_only=False)
        create, _ = self._scripts
        try:
            outcome, job_id = create(args=create_args(self.keys.prefix, planned, self.settings.queue_job_ttl_seconds))
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise DispatchOutcomeUnknown(planned.job.job_id) from exc
        error = refusal(Created(outcome, job_id), request)
        if error is not None:
            raise error
        return JobHandle(self, job_id, duplicate=outcome == "duplicate")

    def dispatch_batch(
        self, jobs: Sequence[Mapping[str, Any]], on_complete: Mapping[str, Any] | None = None, policy: str = "continue"
    ) -> Batch:
        """Dispatch `jobs` as one batch, all or none; `on_complete` runs once they have all ended.

        Each job (and `on_complete`) is a mapping as for HTTP: `task`, `args`, `kwargs` and any
        dispatch option. The callback gets the keyword argument `batch` (see pipelines/fan_in.py).
        """
        request = BatchRequest([_request(job) for job in jobs], _request(on_complete) if on_complete else None, policy)
        planned = plan_batch(request, self.settings, self.celery, registered_only=False)
        try:
            with self.redis.pipeline(transaction=True) as pipe:
                queue_batch(pipe, self.keys, planned, scripts.CREATE, self.settings.queue_job_ttl_seconds)
                replies = pipe.execute()
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise DispatchOutcomeUnknown(planned.children[0].job.job_id) from exc
        check_batch_replies(replies, planned)
        return self.batch(planned.batch_id)

    def batch(self, batch_id: str) -> Batch:
        """A batch as it stands (raises BatchNotFound)."""
        meta, children = (
            self.redis.hgetall(self.keys.batch(batch_id)),
            self.redis.hgetall(self.keys.batch_children(batch_id)),
        )
        found = read_batch(meta, children)
        if found is None:
            raise BatchNotFound(batch_id)
        return found

    def handle(self, job_id: str) -> JobHandle:
        """A handle on a job dispatched elsewhere (nothing is read until you ask)."""
        return JobHandle(self, job_id)

    def get(self, job_id: str) -> Job | None:
        """The job's record, or None if there is none (never created, or expired)."""
        return decode_record(job_id, self.redis.hgetall(self.keys.job(job_id)))

    def get_or_raise(self, job_id: str) -> Job:
        job = self.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """The job once finished, or as it stands when `timeout` s pass (raises JobNotFound).

        Sleeps on the finished-jobs channel (workers publish there as a job ends), re-reading
        the record on each wake-up and every few seconds in case a wake-up was lost.
        """
        deadline = time.monotonic() + timeout
        with self.redis.pubsub(ignore_subscribe_messages=True) as pubsub:  # type: ignore[no-untyped-call]
            pubsub.subscribe(self.keys.finished_channel)  # before the read: a finish right after it wakes us
            while True:
                job = self.get_or_raise(job_id)
                remaining = deadline - time.monotonic()
                if job.status.finished or remaining <= 0:
                    return job
                recheck = time.monotonic() + min(remaining, RECHECK_SECONDS)
                while (left := recheck - time.monotonic()) > 0:
                    message = pubsub.get_message(timeout=left)
                    if message is not None and message.get("data") == job_id:
                        break

    def cancel(self, job_id: str) -> Job:
        """Cancel a job that has not finished; raises JobNotFound or JobAlreadyFinished."""
        _, cancel = self._scripts
        before, flat = cancel(args=[self.keys.prefix, job_id, now_timestamp(), uuid.uuid4().hex])
        job = decode_record(job_id, dict(zip(flat[::2], flat[1::2], strict=True)))
        if job is None:
            raise JobNotFound(job_id)
        if before not in ACTIVE_STATUSES:
            raise JobAlreadyFinished(job_id, job.status.value)
        tell_celery_cancelled(self.celery, job, before)
        return job

    def list(self, **query: Any) -> Any:
        """One page of the job listing (the filters of GET /api/queue/jobs): a JobPage.

        Runs the listing's async code on a private event loop; from async code, use
        AsyncClient.list. Filters, as the route names them: status (a list), task, tags, q,
        created_after, created_before, limit, cursor.
        """
        from pocketqueue.client.aio import list_page

        return asyncio.run(list_page(self.settings, self.keys, query))

    def close(self) -> None:
        """Close the pool's connections (a later call opens new ones)."""
        if "redis" in self.__dict__:
            self.redis.close()
        for name in ("redis", "_scripts"):
            self.__dict__.pop(name, None)


def _request(job: Mapping[str, Any]) -> DispatchRequest:
    options = {name: value for name, value in job.items() if name not in ("task", "args", "kwargs")}
    if "task" not in job:
        raise InvalidRequest("each job of a batch needs a task")
    return build_request(job["task"], job.get("args"), job.get("kwargs"), options)


_default: tuple[int, Client] | None = None


def default_client() -> Client:
    """The process's Client (made on first use, from the settings), which `task.delay()` uses."""
    global _default
    if _default is None or _default[0] != os.getpid():
        _default = (os.getpid(), Client())
    return _default[1]
