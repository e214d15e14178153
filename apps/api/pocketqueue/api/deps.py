"""Dependencies shared by the routes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Depends, Path, Request

from pocketqueue.api.auth import Caller
from pocketqueue.api.limits import Limits
from pocketqueue.jobs.request import MAX_KEY_LENGTH
from pocketqueue.observe import audit
from pocketqueue.runtime import QueueRuntime


async def get_runtime(request: Request) -> QueueRuntime:
    # async on purpose: FastAPI runs a sync dependency in its thread pool, a thread hop
    # per request that cost more than the rest of a dispatch.
    runtime: QueueRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[QueueRuntime, Depends(get_runtime)]


async def get_limits(request: Request) -> Limits:
    limits: Limits = request.app.state.limits
    return limits


LimitsDep = Annotated[Limits, Depends(get_limits)]

# A job id in a path, bounded like the job ids a body can carry (`schemas.JobIdField`).
JobIdPath = Annotated[str, Path(min_length=1, max_length=MAX_KEY_LENGTH)]


def new_shared(runtime: QueueRuntime, **inputs: Any) -> dict[str, Any]:
    """A fresh shared store for one flow run."""
    return {"runtime": runtime, **inputs}


async def audited(
    runtime: QueueRuntime, caller: Caller, action: str, job_ids: Sequence[str] = (), target: str | None = None
) -> None:
    """Note an action that succeeded in the audit trail (observe/audit.py)."""
    max_entries = runtime.settings.queue_audit_max_entries
    await audit.record(
        runtime.redis, runtime.store.keys, max_entries, who=caller.name, action=action, job_ids=job_ids, target=target
    )
