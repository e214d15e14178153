"""WorkerPingNode: asks every Celery worker to answer a ping."""

from __future__ import annotations

import asyncio
from typing import Any

from pocketflow import AsyncNode

from pocketqueue.runtime import QueueRuntime

PING_TIMEOUT_SECONDS = 1.0


class WorkerPingNode(AsyncNode):  # type: ignore[misc]
    """Sets `shared["workers"]` to the names of the workers that answered; action "pinged"."""

    async def prep_async(self, shared: dict[str, Any]) -> QueueRuntime:
        runtime: QueueRuntime = shared["runtime"]
        return runtime

    async def exec_async(self, runtime: QueueRuntime) -> list[str]:
        # A broadcast ping waits its whole timeout to collect replies, in a thread
        # because Celery's control API is synchronous.
        replies = await asyncio.to_thread(runtime.celery.control.ping, timeout=PING_TIMEOUT_SECONDS)
        return sorted(name for reply in replies or [] for name in reply)

    async def exec_fallback_async(self, runtime: QueueRuntime, exc: Exception) -> list[str]:
        return []

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: list[str]) -> str:
        shared["workers"] = exec_res
        return "pinged"
