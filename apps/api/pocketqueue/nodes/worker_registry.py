"""WorkerRegistryNode: the live workers, from their heartbeats (observe/workers.py)."""

from __future__ import annotations

from typing import Any

from pocketflow import AsyncNode

from pocketqueue.observe.workers import WorkerView, read_workers
from pocketqueue.runtime import QueueRuntime


class WorkerRegistryNode(AsyncNode):  # type: ignore[misc]
    """Sets `shared["registry"]` to the live workers (each flagged if stalled).

    Action "read", or "ping" when `shared["ping"]` asks for a broadcast ping as well (a
    WorkerPingNode wired after it): the registry answers in milliseconds, a ping in about
    a second, and only a ping proves a worker's broker connection carries messages.
    """

    async def prep_async(self, shared: dict[str, Any]) -> QueueRuntime:
        runtime: QueueRuntime = shared["runtime"]
        return runtime

    async def exec_async(self, runtime: QueueRuntime) -> list[WorkerView]:
        return await read_workers(runtime.redis, runtime.store.keys, runtime.settings)

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: list[WorkerView]) -> str:
        shared["registry"] = exec_res
        return "ping" if shared.get("ping") else "read"
