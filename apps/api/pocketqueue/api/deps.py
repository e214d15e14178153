"""Dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Request

from pocketqueue.jobs.request import MAX_KEY_LENGTH
from pocketqueue.runtime import QueueRuntime


async def get_runtime(request: Request) -> QueueRuntime:
    # async on purpose: FastAPI runs a sync dependency in its thread pool, a thread hop
    # per request that cost more than the rest of a dispatch.
    runtime: QueueRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[QueueRuntime, Depends(get_runtime)]

# A job id in a path, bounded like the job ids a body can carry (`schemas.JobIdField`).
JobIdPath = Annotated[str, Path(min_length=1, max_length=MAX_KEY_LENGTH)]


def new_shared(runtime: QueueRuntime, **inputs: Any) -> dict[str, Any]:
    """A fresh shared store for one flow run."""
    return {"runtime": runtime, **inputs}
