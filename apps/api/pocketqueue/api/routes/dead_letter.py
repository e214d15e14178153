"""Dead-letter routes: list failed jobs, re-drive one, re-drive many."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from pocketqueue import flows
from pocketqueue.api.auth import AdminCaller, ReadAccess
from pocketqueue.api.deps import JobIdPath, RuntimeDep, audited, new_shared
from pocketqueue.api.openapi import problem_responses
from pocketqueue.api.schemas import (
    MAX_OFFSET,
    MAX_PAGE,
    DeadLetterPage,
    JobPublic,
    RedrivePublic,
    RedriveRequest,
)
from pocketqueue.nodes import RedriveFilter

router = APIRouter(tags=["dead letters"])


@router.get("/dead-letter", dependencies=[ReadAccess], responses=problem_responses(503))
async def list_dead_letters(
    runtime: RuntimeDep,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> DeadLetterPage:
    """Failed jobs, newest first, with their args, last error and every attempt's error."""
    shared = new_shared(runtime, offset=offset, limit=limit)
    await flows.run_flow(flows.shared_flow(flows.create_dead_letter_flow), shared)
    jobs = [JobPublic.of(job) for job in shared["jobs"]]
    return DeadLetterPage(total=shared["total"], offset=offset, limit=limit, jobs=jobs)


@router.post(
    "/retry/{job_id}",
    responses=problem_responses(
        404,
        409,
        503,
        descriptions={
            404: "No job with that id (never created, or expired)",
            409: "The job is not failed (or another active job holds its unique_key)",
        },
    ),
)
async def retry_job(job_id: JobIdPath, caller: AdminCaller, runtime: RuntimeDep) -> JobPublic:
    """Re-drive one failed job: same id, attempts and errors reset, status `queued`."""
    shared = new_shared(runtime, job_id=job_id)
    await flows.run_flow(flows.shared_flow(flows.create_redrive_flow), shared)
    await audited(runtime, caller, "retry_job", [job_id])
    return JobPublic.of(shared["job"])


@router.post("/dead-letter/retry", responses=problem_responses(503))
async def retry_dead_letters(
    caller: AdminCaller, runtime: RuntimeDep, body: RedriveRequest | None = None
) -> RedrivePublic:
    """Re-drive every dead-lettered job, or those matching `job_ids`, `task` and `error_type`."""
    wanted = body or RedriveRequest()
    where = wanted.position()
    redrive = RedriveFilter(job_ids=wanted.job_ids, task=wanted.task, error_type=wanted.error_type, cursor=where)
    shared = new_shared(runtime, redrive=redrive)
    await flows.run_flow(flows.shared_flow(flows.create_redrive_flow), shared)
    report = shared["report"]
    await audited(runtime, caller, "retry_dead_letters", report.redriven)
    return RedrivePublic.of(report)
