"""DeadLetterListNode: one page of the dead-letter set (failed jobs), newest first."""

from __future__ import annotations

from typing import Any

from pocketflow import AsyncNode

from pocketqueue.jobs.models import Job
from pocketqueue.runtime import QueueRuntime


class DeadLetterListNode(AsyncNode):  # type: ignore[misc]
    """Reads `shared["offset"]`/`shared["limit"]`; sets `shared["total"]` and `shared["jobs"]`. Action "listed".

    Each job carries its args, its last error (with traceback) and every attempt's error.
    """

    async def prep_async(self, shared: dict[str, Any]) -> tuple[QueueRuntime, int, int]:
        return shared["runtime"], shared.get("offset", 0), shared.get("limit", 50)

    async def exec_async(self, prep_res: tuple[QueueRuntime, int, int]) -> tuple[int, list[Job]]:
        runtime, offset, limit = prep_res
        return await runtime.store.dead_letter_page(offset, limit)

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: tuple[int, list[Job]]) -> str:
        shared["total"], shared["jobs"] = exec_res
        return "listed"
