"""Batch routes: dispatch jobs as one batch, read a batch's fan-in (pipelines/batches.py)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, status

from pocketqueue import flows
from pocketqueue.api.auth import ReadAccess, WriteCaller
from pocketqueue.api.deps import LimitsDep, RuntimeDep, new_shared
from pocketqueue.api.openapi import problem_responses
from pocketqueue.api.schemas import BatchCreate, BatchPublic

router = APIRouter(tags=["batches"])

BatchIdPath = Annotated[str, Path(min_length=1, max_length=100, description="The batch_id a dispatch returned")]


@router.post(
    "/batches",
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(
        404, 429, 503, descriptions={404: "A task (of a job or on_complete) is not registered"}
    ),
)
async def create_batch(body: BatchCreate, caller: WriteCaller, runtime: RuntimeDep, limits: LimitsDep) -> BatchPublic:
    """Dispatch every job of the batch (all or none); `on_complete` runs once they have all ended."""
    await limits.take_dispatches(caller, len(body.jobs))  # each job counts; on_complete is the batch's own
    shared = new_shared(runtime, batch_request=body.to_request(caller.key_name))
    await flows.run_flow(flows.shared_flow(flows.create_batch_dispatch_flow), shared)
    return BatchPublic.of(shared["batch"])


@router.get(
    "/batches/{batch_id}",
    dependencies=[ReadAccess],
    responses=problem_responses(404, 503, descriptions={404: "No such batch"}),
)
async def read_batch(batch_id: BatchIdPath, runtime: RuntimeDep) -> BatchPublic:
    """The batch as it stands: its state, counts per final status, jobs and callback job."""
    shared = new_shared(runtime, batch_id=batch_id)
    await flows.run_flow(flows.shared_flow(flows.create_batch_read_flow), shared)
    return BatchPublic.of(shared["batch"])
