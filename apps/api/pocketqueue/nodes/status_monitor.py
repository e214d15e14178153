"""TaskStatusMonitorNode: reads job records, optionally waiting for one to finish."""

from __future__ import annotations

from typing import Any

from pocketflow import AsyncNode

from pocketqueue.jobs.models import Job
from pocketqueue.observe.position import QueuePosition, queue_positions
from pocketqueue.runtime import QueueRuntime

Found = tuple[list[Job | None], dict[str, QueuePosition]]


class TaskStatusMonitorNode(AsyncNode):  # type: ignore[misc]
    """Reads `shared["job_id"]` (one) or `shared["job_ids"]` (many, one round trip).

    One job: sets `shared["job"]`; action "found", "missing", or, when
    `shared["wait_timeout"]` is set and the job is still unfinished when it passes,
    "timeout". Many jobs: sets `shared["jobs"]` and `shared["missing"]`; action "found".
    Waiting sleeps on the runtime's JobWatcher (pub/sub), not on a polling loop.
    Either way, `shared["positions"]` holds each queued job's place in line by job id
    (observe/position.py).
    """

    async def prep_async(self, shared: dict[str, Any]) -> tuple[QueueRuntime, list[str], float | None, bool]:
        many = "job_ids" in shared
        ids = list(shared["job_ids"]) if many else [shared["job_id"]]
        return shared["runtime"], ids, shared.get("wait_timeout"), many

    async def exec_async(self, prep_res: tuple[QueueRuntime, list[str], float | None, bool]) -> Found:
        runtime, ids, wait_timeout, many = prep_res
        if not many and wait_timeout is not None:
            jobs = [await runtime.watcher.wait_for(runtime.store, ids[0], wait_timeout)]
        else:
            jobs = await runtime.store.get_many(ids)
        found = [job for job in jobs if job is not None]
        positions = await queue_positions(runtime.redis, runtime.store.keys, found, runtime.settings.queue_name)
        return jobs, positions

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Found) -> str:
        _, ids, wait_timeout, many = prep_res
        jobs, shared["positions"] = exec_res
        if many:
            shared["jobs"] = [job for job in jobs if job is not None]
            shared["missing"] = [job_id for job_id, job in zip(ids, jobs, strict=True) if job is None]
            return "found"
        job = jobs[0]
        if job is None:
            return "missing"
        shared["job"] = job
        if wait_timeout is not None and not job.status.finished:
            return "timeout"
        return "found"
