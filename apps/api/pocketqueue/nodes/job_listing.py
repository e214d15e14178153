"""JobListNode: one page of the job listing (filters, newest first, by cursor)."""

from __future__ import annotations

from typing import Any

from pocketflow import AsyncNode

from pocketqueue.observe.listing import JobPage, JobQuery, list_jobs
from pocketqueue.runtime import QueueRuntime


class JobListNode(AsyncNode):  # type: ignore[misc]
    """Reads `shared["query"]` (a JobQuery); sets `shared["page"]` (a JobPage); action "listed".

    Served from the listing indexes (observe/listing.py): a page costs the index entries
    it walks, never a scan of the keyspace, whatever the number of records.
    """

    async def prep_async(self, shared: dict[str, Any]) -> tuple[QueueRuntime, JobQuery]:
        return shared["runtime"], shared["query"]

    async def exec_async(self, prep_res: tuple[QueueRuntime, JobQuery]) -> JobPage:
        runtime, query = prep_res
        return await list_jobs(runtime.redis, runtime.store.keys, query)

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: JobPage) -> str:
        shared["page"] = exec_res
        return "listed"
