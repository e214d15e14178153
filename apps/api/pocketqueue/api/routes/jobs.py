"""Job routes: dispatch, status, wait, cancel, batch status, registered tasks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response, status

from pocketqueue import flows
from pocketqueue.api.deps import RuntimeDep, new_shared
from pocketqueue.api.schemas import (
    DEFAULT_WAIT_SECONDS,
    MAX_WAIT_SECONDS,
    BatchStatusPublic,
    BatchStatusRequest,
    JobCreate,
    JobPublic,
    TaskList,
)
from pocketqueue.errors import InvalidRequest
from pocketqueue.jobs.registry import registered_names

router = APIRouter(tags=["jobs"])

JobId = Annotated[str, Path(min_length=1, max_length=200)]
PROBLEMS: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such job or task"},
    503: {"description": "Redis unavailable"},
}


DISPATCH_RESPONSES: dict[int | str, dict[str, Any]] = {
    **PROBLEMS,
    200: {"description": "An idempotent repeat: the job the same Idempotency-Key created first"},
    409: {"description": "The Idempotency-Key was used with another body, or an active job holds the unique_key"},
}


@router.post("/dispatch", status_code=status.HTTP_202_ACCEPTED, responses=DISPATCH_RESPONSES)
async def create_job(
    body: JobCreate,
    runtime: RuntimeDep,
    response: Response,
    idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)] = None,
) -> JobPublic:
    """Queue (or schedule) a job for a registered task; returns it with its `job_id`."""
    if idempotency_key and body.idempotency_key and idempotency_key != body.idempotency_key:
        raise InvalidRequest("The Idempotency-Key header and idempotency_key in the body differ; send one.")
    shared = new_shared(runtime, request=body.to_request(idempotency_key))
    if await flows.run_flow(flows.shared_flow(flows.create_dispatch_flow), shared) == "duplicate":
        response.status_code = status.HTTP_200_OK
    return JobPublic.of(shared["job"])


@router.get("/status/{job_id}", responses=PROBLEMS)
async def read_job(job_id: JobId, runtime: RuntimeDep) -> JobPublic:
    """The job as it stands now."""
    shared = new_shared(runtime, job_id=job_id)
    await flows.run_flow(flows.shared_flow(flows.create_status_flow), shared)
    return JobPublic.of(shared["job"])


@router.get("/wait/{job_id}", responses={**PROBLEMS, 202: {"description": "Still running when the timeout passed"}})
async def wait_job(
    job_id: JobId,
    runtime: RuntimeDep,
    response: Response,
    timeout: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = DEFAULT_WAIT_SECONDS,
) -> JobPublic:
    """The job once it has finished (200), or as it stands when `timeout` seconds pass (202)."""
    shared = new_shared(runtime, job_id=job_id, wait_timeout=timeout)
    if await flows.run_flow(flows.shared_flow(flows.create_status_flow), shared) == "timeout":
        response.status_code = status.HTTP_202_ACCEPTED
    return JobPublic.of(shared["job"])


@router.delete("/cancel/{job_id}", responses={**PROBLEMS, 409: {"description": "The job already finished"}})
async def cancel_job(job_id: JobId, runtime: RuntimeDep) -> JobPublic:
    """Cancel a job that has not finished (scheduled, queued, retrying or running) for good."""
    shared = new_shared(runtime, job_id=job_id)
    await flows.run_flow(flows.shared_flow(flows.create_cancel_flow), shared)
    return JobPublic.of(shared["job"])


@router.post("/batch-status", responses={503: PROBLEMS[503]})
async def read_jobs(body: BatchStatusRequest, runtime: RuntimeDep) -> BatchStatusPublic:
    """Many jobs in one call (at most 1000 ids), with the ids that do not exist."""
    shared = new_shared(runtime, job_ids=body.job_ids)
    await flows.run_flow(flows.shared_flow(flows.create_status_flow), shared)
    jobs = [JobPublic.of(job) for job in shared["jobs"]]
    return BatchStatusPublic(jobs=jobs, missing=shared["missing"])


@router.get("/tasks")
async def list_tasks() -> TaskList:
    """The task names that can be dispatched."""
    return TaskList(tasks=registered_names())
