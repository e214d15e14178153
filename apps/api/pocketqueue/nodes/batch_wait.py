"""BatchWaitNode: waits for a batch's jobs to end, without polling (the finished channel)."""

from __future__ import annotations

import asyncio
from typing import Any

from pocketflow import AsyncNode

from pocketqueue.pipelines.batches import Batch, BatchNotFound
from pocketqueue.runtime import QueueRuntime

Prep = tuple[QueueRuntime, str, float]


class BatchWaitNode(AsyncNode):  # type: ignore[misc]
    """Waits up to `shared["wait_timeout"]` s (default 60) for the batch `shared["batch_id"]`
    to end; sets `shared["batch"]`. Actions: "ended" (completed or failed), "timeout", or
    "rejected" (BatchNotFound in `shared["error"]`).

    It sleeps on the runtime's JobWatcher, one still-active job at a time: the Lua step
    that ends the batch's last job also ends the batch, so once every job has ended, the
    batch has too. Its callback is dispatched a janitor tick later (`on_complete_job`).
    """

    async def prep_async(self, shared: dict[str, Any]) -> Prep:
        return shared["runtime"], shared["batch_id"], float(shared.get("wait_timeout", 60.0))

    async def exec_async(self, prep_res: Prep) -> Batch | None:
        runtime, batch_id, seconds = prep_res
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while True:
            batch = await runtime.store.get_batch(batch_id)
            if batch is None or batch.state != "running" or loop.time() >= deadline:
                return batch
            active = await runtime.store.get_many(batch.jobs)
            waiting = next((job for job in active if job is not None and not job.status.finished), None)
            if waiting is None:  # ended between the two reads: read the batch again
                continue
            await runtime.watcher.wait_for(runtime.store, waiting.job_id, max(0.0, deadline - loop.time()))

    async def post_async(self, shared: dict[str, Any], prep_res: Prep, batch: Batch | None) -> str:
        if batch is None:
            shared["error"] = BatchNotFound(prep_res[1])
            return "rejected"
        shared["batch"] = batch
        return "timeout" if batch.state == "running" else "ended"
