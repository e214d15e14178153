"""AsyncClient: the queue from async code (a FastAPI route, a PocketFlow pipeline, an async task).

It runs the very flows the HTTP routes run (flows.py), on a QueueRuntime of its own,
opened on first use in the running event loop (or one you pass in): nothing blocks the
loop, and waiting sleeps on the runtime's one pub/sub subscription.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping, Sequence
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any, Unpack

from redis.asyncio import Redis

from pocketqueue import flows
from pocketqueue.client.handle import AsyncJobHandle
from pocketqueue.client.options import DispatchOptions, build_request
from pocketqueue.config import Settings, get_settings
from pocketqueue.errors import InvalidRequest
from pocketqueue.jobs.keys import Keys
from pocketqueue.jobs.models import Job, JobStatus
from pocketqueue.observe.listing import JobPage, JobQuery, list_jobs
from pocketqueue.runtime import QueueRuntime, open_runtime


class AsyncClient:
    """Dispatch, read, wait for, cancel and list jobs with `await`.

    `AsyncClient()` opens its runtime (Redis pool, watcher) on first use in the running
    event loop, and again if used from another loop; `await client.aclose()` (or
    `async with AsyncClient() as client`) closes it. `AsyncClient(runtime=...)` shares a
    runtime you already opened (the API's, or your pipeline's `open_runtime()`).
    """

    def __init__(self, settings: Settings | None = None, *, runtime: QueueRuntime | None = None) -> None:
        self.settings = runtime.settings if runtime is not None else settings or get_settings()
        self._given = runtime
        self._opened: tuple[asyncio.AbstractEventLoop, int, QueueRuntime, AsyncExitStack] | None = None
        self._opening: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def runtime(self) -> QueueRuntime:
        """The runtime this client uses in the running loop, opened if need be."""
        if self._given is not None:
            return self._given
        loop = asyncio.get_running_loop()
        if self._opened is not None and self._opened[0] is loop and self._opened[1] == os.getpid():
            return self._opened[2]
        if self._opening is None or self._opening[0] is not loop:  # a lock serves one loop
            self._opening = (loop, asyncio.Lock())
        async with self._opening[1]:
            if self._opened is None or self._opened[0] is not loop or self._opened[1] != os.getpid():
                # One opened in another loop (now closed, or another thread's) cannot be used here.
                stack = AsyncExitStack()
                runtime = await stack.enter_async_context(open_runtime(self.settings, import_tasks=False))
                self._opened = (loop, os.getpid(), runtime, stack)
            return self._opened[2]

    async def aclose(self) -> None:
        opened, self._opened = self._opened, None
        if opened is not None and opened[0] is asyncio.get_running_loop():
            await opened[3].aclose()

    async def dispatch(
        self,
        task: str,
        args: Sequence[Any] | None = None,
        kwargs: Mapping[str, Any] | None = None,
        **options: Unpack[DispatchOptions],
    ) -> AsyncJobHandle:
        """Queue (or schedule) a job for `task`; returns its handle. Raises QueueError subclasses."""
        request = build_request(task, args, kwargs, options)
        shared: dict[str, Any] = {"runtime": await self.runtime(), "request": request, "registered_only": False}
        outcome = await flows.run_flow(flows.shared_flow(flows.create_dispatch_flow), shared)
        return AsyncJobHandle(self, shared["job"].job_id, duplicate=outcome == "duplicate")

    def handle(self, job_id: str) -> AsyncJobHandle:
        return AsyncJobHandle(self, job_id)

    async def get(self, job_id: str) -> Job | None:
        """The job's record, or None if there is none (never created, or expired)."""
        return await (await self.runtime()).store.get(job_id)

    async def get_or_raise(self, job_id: str) -> Job:
        shared: dict[str, Any] = {"runtime": await self.runtime(), "job_id": job_id}
        await flows.run_flow(flows.shared_flow(flows.create_status_flow), shared)
        job: Job = shared["job"]
        return job

    async def wait(self, job_id: str, timeout: float = 60.0) -> Job:
        """The job once finished, or as it stands when `timeout` s pass (raises JobNotFound)."""
        shared: dict[str, Any] = {"runtime": await self.runtime(), "job_id": job_id, "wait_timeout": timeout}
        await flows.run_flow(flows.shared_flow(flows.create_status_flow), shared)
        job: Job = shared["job"]
        return job

    async def cancel(self, job_id: str) -> Job:
        """Cancel a job that has not finished; raises JobNotFound or JobAlreadyFinished."""
        shared: dict[str, Any] = {"runtime": await self.runtime(), "job_id": job_id}
        await flows.run_flow(flows.shared_flow(flows.create_cancel_flow), shared)
        job: Job = shared["job"]
        return job

    async def list(self, **query: Any) -> JobPage:
        """One page of the job listing, newest first (the filters of GET /api/queue/jobs).

        status (one or several), task, tags ({name: value}), q, created_after,
        created_before (datetime or epoch seconds), limit (1-500), cursor.
        """
        shared: dict[str, Any] = {"runtime": await self.runtime(), "query": job_query(query)}
        await flows.run_flow(flows.shared_flow(flows.create_listing_flow), shared)
        page: JobPage = shared["page"]
        return page


def job_query(query: Mapping[str, Any]) -> JobQuery:
    """A JobQuery from `list()`'s keyword filters; raises InvalidRequest for a bad one."""
    known = {"status", "task", "tags", "q", "created_after", "created_before", "limit", "cursor"}
    unknown = sorted(set(query) - known)
    if unknown:
        raise InvalidRequest(f"unknown listing filter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    status = query.get("status")
    statuses: Iterable[Any] = () if status is None else [status] if isinstance(status, str | JobStatus) else status
    try:
        chosen = tuple(JobStatus(value) for value in statuses)
    except ValueError as exc:
        raise InvalidRequest(f"status: {exc}") from None
    limit = query.get("limit", 50)
    if not isinstance(limit, int) or not 1 <= limit <= 500:
        raise InvalidRequest("limit must be from 1 to 500")
    tags = query.get("tags") or {}
    return JobQuery(
        statuses=chosen,
        task=query.get("task"),
        tags=tuple(sorted(dict(tags).items())),
        q=query.get("q"),
        created_after=_epoch(query.get("created_after")),
        created_before=_epoch(query.get("created_before")),
        limit=limit,
        cursor=query.get("cursor"),
    )


def _epoch(value: datetime | float | None) -> float | None:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InvalidRequest("created_after/created_before must be timezone-aware")
        return value.timestamp()
    return value


async def list_page(settings: Settings, keys: Keys, query: Mapping[str, Any]) -> JobPage:
    """`Client.list`: one listing page over a short-lived connection (the sync client's loop is private)."""
    redis = Redis.from_url(settings.resolved_redis_url(), decode_responses=True, socket_connect_timeout=2)
    try:
        return await list_jobs(redis, keys, job_query(query))
    finally:
        await redis.aclose()


_default: tuple[int, AsyncClient] | None = None


def default_async_client() -> AsyncClient:
    """The process's AsyncClient (made on first use, from the settings), which `dispatch_async` uses."""
    global _default
    if _default is None or _default[0] != os.getpid():
        _default = (os.getpid(), AsyncClient())
    return _default[1]
