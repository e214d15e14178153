"""BatchDispatchNode: writes a batch of jobs, all or none (pipelines/batches.py)."""

from __future__ import annotations

from typing import Any

from pocketflow import AsyncNode
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pocketqueue.errors import DispatchOutcomeUnknown, QueueError
from pocketqueue.pipelines.batches import Batch, BatchRequest, plan_batch
from pocketqueue.runtime import QueueRuntime


class BatchDispatchNode(AsyncNode):  # type: ignore[misc]
    """Checks `shared["batch_request"]` and writes it: "dispatched" or "rejected".

    Every job (and the callback) is checked as a single dispatch is, before anything is
    written; then the batch's record and every job go to Redis in one transaction. Sets
    `shared["batch"]` (a Batch) and `shared["batch_id"]`, or `shared["error"]` (a QueueError). If Redis stops
    answering mid-write the outcome is unknown: DispatchOutcomeUnknown names the first job.
    """

    async def prep_async(self, shared: dict[str, Any]) -> tuple[QueueRuntime, BatchRequest, bool]:
        return shared["runtime"], shared["batch_request"], shared.get("registered_only", True)

    async def exec_async(self, prep_res: tuple[QueueRuntime, BatchRequest, bool]) -> Batch | QueueError:
        runtime, request, registered_only = prep_res
        settings = runtime.settings
        try:
            planned = plan_batch(request, settings, runtime.celery, registered_only=registered_only)
        except QueueError as rejected:
            return rejected
        try:
            await runtime.store.create_batch(planned, settings.queue_job_ttl_seconds)
        except (RedisConnectionError, RedisTimeoutError) as exc:
            raise DispatchOutcomeUnknown(planned.children[0].job.job_id) from exc
        batch = await runtime.store.get_batch(planned.batch_id)
        return batch if batch is not None else QueueError(f"batch {planned.batch_id} vanished as it was written")

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Batch | QueueError) -> str:
        if isinstance(exec_res, QueueError):
            shared["error"] = exec_res
            return "rejected"
        shared["batch"], shared["batch_id"] = exec_res, exec_res.batch_id
        return "dispatched"
