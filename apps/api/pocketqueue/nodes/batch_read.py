"""BatchReadNode: a batch's state, counts per child status, jobs and callback."""

from __future__ import annotations

from typing import Any

from pocketflow import AsyncNode

from pocketqueue.pipelines.batches import Batch, BatchNotFound
from pocketqueue.runtime import QueueRuntime


class BatchReadNode(AsyncNode):  # type: ignore[misc]
    """Reads the batch `shared["batch_id"]` into `shared["batch"]`: "found", or "rejected"
    with BatchNotFound in `shared["error"]`."""

    async def prep_async(self, shared: dict[str, Any]) -> tuple[QueueRuntime, str]:
        return shared["runtime"], shared["batch_id"]

    async def exec_async(self, prep_res: tuple[QueueRuntime, str]) -> Batch | None:
        runtime, batch_id = prep_res
        return await runtime.store.get_batch(batch_id)

    async def post_async(self, shared: dict[str, Any], prep_res: tuple[QueueRuntime, str], batch: Batch | None) -> str:
        if batch is None:
            shared["error"] = BatchNotFound(prep_res[1])
            return "rejected"
        shared["batch"] = batch
        return "found"
