"""Dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from pocketqueue.runtime import QueueRuntime


async def get_runtime(request: Request) -> QueueRuntime:
    # async on purpose: FastAPI runs a sync dependency in its thread pool, a thread hop
    # per request that cost more than the rest of a dispatch.
    runtime: QueueRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[QueueRuntime, Depends(get_runtime)]


def new_shared(runtime: QueueRuntime, **inputs: Any) -> dict[str, Any]:
    """A fresh shared store for one flow run."""
    return {"runtime": runtime, **inputs}
