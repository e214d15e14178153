"""Job routes: dispatch, status, wait, cancel, batch status, registered tasks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

from pocketqueue import flows
from pocketqueue.api.auth import ReadAccess, WriteAccess, WriteCaller
from pocketqueue.api.deps import JobIdPath, LimitsDep, RuntimeDep, audited, new_shared
from pocketqueue.api.openapi import job_links, problem_responses
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
from pocketqueue.jobs.request import MAX_KEY_LENGTH

router = APIRouter(tags=["jobs"])

NO_SUCH_JOB = problem_responses(404, 503, descriptions={404: "No job with that id (never created, or expired)"})


@router.post(
    "/dispatch",
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        202: {"description": "Queued, or scheduled when delayed", "links": job_links()},
        200: {
            "model": JobPublic,
            "description": "An idempotent repeat: the job the same Idempotency-Key created first",
            "links": job_links(),
        },
        **problem_responses(
            404,
            409,
            429,
            503,
            descriptions={
                404: "No task registered under that name",
                409: "The Idempotency-Key was used with another body, or an active job holds the unique_key",
            },
        ),
    },
)
async def create_job(
    body: JobCreate,
    caller: WriteCaller,
    runtime: RuntimeDep,
    limits: LimitsDep,
    response: Response,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=MAX_KEY_LENGTH)
    ] = None,
) -> JobPublic:
    """Queue (or schedule) a job for a registered task; returns it with its `job_id`."""
    if idempotency_key and body.idempotency_key and idempotency_key != body.idempotency_key:
        raise InvalidRequest("The Idempotency-Key header and idempotency_key in the body differ; send one.")
    await limits.take_dispatches(caller)
    shared = new_shared(runtime, request=body.to_request(idempotency_key, caller.key_name))
    if await flows.run_flow(flows.shared_flow(flows.create_dispatch_flow), shared) == "duplicate":
        response.status_code = status.HTTP_200_OK
    return JobPublic.of(shared["job"])


@router.get("/status/{job_id}", dependencies=[ReadAccess], responses=NO_SUCH_JOB)
async def read_job(job_id: JobIdPath, runtime: RuntimeDep) -> JobPublic:
    """The job as it stands now."""
    shared = new_shared(runtime, job_id=job_id)
    await flows.run_flow(flows.shared_flow(flows.create_status_flow), shared)
    return JobPublic.of(shared["job"], shared["positions"].get(job_id))


@router.get(
    "/wait/{job_id}",
    dependencies=[ReadAccess],
    responses={
        200: {"description": "The job has finished"},
        202: {"model": JobPublic, "description": "Still not finished when the timeout passed: the job as it stands"},
        **NO_SUCH_JOB,
    },
)
async def wait_job(
    job_id: JobIdPath,
    runtime: RuntimeDep,
    response: Response,
    timeout: Annotated[float, Query(ge=0, le=MAX_WAIT_SECONDS)] = DEFAULT_WAIT_SECONDS,
) -> JobPublic:
    """The job once it has finished (200), or as it stands when `timeout` seconds pass (202)."""
    shared = new_shared(runtime, job_id=job_id, wait_timeout=timeout)
    if await flows.run_flow(flows.shared_flow(flows.create_status_flow), shared) == "timeout":
        response.status_code = status.HTTP_202_ACCEPTED
    return JobPublic.of(shared["job"], shared["positions"].get(job_id))


@router.delete(
    "/cancel/{job_id}",
    responses={**NO_SUCH_JOB, **problem_responses(409, descriptions={409: "The job already finished"})},
)
async def cancel_job(job_id: JobIdPath, caller: WriteCaller, runtime: RuntimeDep) -> JobPublic:
    """Cancel a job that has not finished (scheduled, queued, retrying or running) for good."""
    shared = new_shared(runtime, job_id=job_id)
    await flows.run_flow(flows.shared_flow(flows.create_cancel_flow), shared)
    await audited(runtime, caller, "cancel_job", [job_id])
    return JobPublic.of(shared["job"])


@router.post("/batch-status", dependencies=[WriteAccess], responses=problem_responses(503))
async def read_jobs(body: BatchStatusRequest, runtime: RuntimeDep) -> BatchStatusPublic:
    """Many jobs in one call (at most 1000 ids), with the ids that do not exist."""
    shared = new_shared(runtime, job_ids=body.job_ids)
    await flows.run_flow(flows.shared_flow(flows.create_status_flow), shared)
    jobs = [JobPublic.of(job, shared["positions"].get(job.job_id)) for job in shared["jobs"]]
    return BatchStatusPublic(jobs=jobs, missing=shared["missing"])


@router.get("/tasks", dependencies=[ReadAccess])
async def list_tasks() -> TaskList:
    """The task names that can be dispatched."""
    return TaskList(tasks=registered_names())
