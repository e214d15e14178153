"""Workers: every live worker from the worker registry (their heartbeats)."""

from __future__ import annotations

from fastapi import APIRouter

from pocketqueue import flows
from pocketqueue.api.auth import ReadAccess
from pocketqueue.api.deps import RuntimeDep, new_shared
from pocketqueue.api.openapi import problem_responses
from pocketqueue.api.schemas import WorkerPublic, WorkersPublic
from pocketqueue.observe.workers import stall_seconds

router = APIRouter(tags=["workers"])


@router.get("/workers", dependencies=[ReadAccess], response_model=WorkersPublic, responses=problem_responses(503))
async def list_workers(runtime: RuntimeDep) -> WorkersPublic:
    """Every live worker, from its heartbeat, in milliseconds.

    Each with its host, pid, concurrency, queues, tasks, the jobs it runs with their
    progress, and whether it is stalled (not consuming, or receiving nothing while jobs
    wait), with why.
    """
    shared = new_shared(runtime)
    await flows.run_flow(flows.shared_flow(flows.create_workers_flow), shared)
    workers = [WorkerPublic.model_validate(worker, from_attributes=True) for worker in shared["registry"]]
    return WorkersPublic(workers=workers, stall_seconds=stall_seconds(runtime.settings))
