"""Reach the queue from your own Python code.

    from pocketqueue.client import Client, AsyncClient

    job = Client().dispatch("videos.generate", args=["v1"])   # any process with the settings
    print(job.result(timeout=60))

    async with AsyncClient() as client:                      # async code: nothing blocks the loop
        job = await client.dispatch("videos.generate", args=["v1"])
        print(await job.result(timeout=60))

`@task` functions dispatch themselves (`.delay()`, `.dispatch()`, `.dispatch_async()`)
through the process's default clients.

The clients are imported on first use: `@task` (imported by every task module) needs only
`Task`, and the clients pull in the runtime, which imports the worker's Celery app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pocketqueue.client.handle import AsyncJobHandle, JobHandle
from pocketqueue.client.options import DispatchOptions
from pocketqueue.client.task import Task

if TYPE_CHECKING:
    from pocketqueue.client.aio import AsyncClient, default_async_client
    from pocketqueue.client.sync import Client, default_client

__all__ = [
    "AsyncClient",
    "AsyncJobHandle",
    "Client",
    "DispatchOptions",
    "JobHandle",
    "Task",
    "default_async_client",
    "default_client",
]


def __getattr__(name: str) -> Any:
    if name in ("Client", "default_client"):
        from pocketqueue.client import sync

        return getattr(sync, name)
    if name in ("AsyncClient", "default_async_client"):
        from pocketqueue.client import aio

        return getattr(aio, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
