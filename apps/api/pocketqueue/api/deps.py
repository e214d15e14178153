"""Dependencies shared by the routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from pocketqueue.runtime import QueueRuntime


def get_runtime(request: Request) -> QueueRuntime:
    runtime: QueueRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[QueueRuntime, Depends(get_runtime)]


def new_shared(runtime: QueueRuntime, **inputs: Any) -> dict[str, Any]:
    """A fresh shared store for one flow run."""
    return {"runtime": runtime, **inputs}
