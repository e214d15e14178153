"""Smoke-test routes: a Redis round trip, and a job for the built-in debug task."""

from __future__ import annotations

from fastapi import APIRouter, status

from pocketqueue import flows
from pocketqueue.api.auth import AdminAccess, AdminCaller
from pocketqueue.api.deps import LimitsDep, RuntimeDep, new_shared
from pocketqueue.api.openapi import job_links, problem_responses
from pocketqueue.api.schemas import DebugJobCreate, JobPublic, RedisProbePublic
from pocketqueue.nodes import DispatchRequest

router = APIRouter(prefix="/test", tags=["testing"])


@router.post("/redis", dependencies=[AdminAccess], responses=problem_responses(503))
async def probe_redis(runtime: RuntimeDep) -> RedisProbePublic:
    """Write, read back and delete a key; report the round trip's latency."""
    shared = new_shared(runtime)
    await flows.run_flow(flows.shared_flow(flows.create_redis_probe_flow), shared)
    return RedisProbePublic.model_validate(shared["probe"])


@router.post(
    "/debug",
    status_code=status.HTTP_202_ACCEPTED,
    responses={202: {"description": "Queued", "links": job_links()}, **problem_responses(429, 503)},
)
async def create_debug_job(
    caller: AdminCaller, runtime: RuntimeDep, limits: LimitsDep, body: DebugJobCreate | None = None
) -> JobPublic:
    """Dispatch the built-in `pocketqueue.debug` task (sleep, fail, echo, progress steps)."""
    kwargs = (body or DebugJobCreate()).model_dump()
    await limits.take_dispatches(caller)
    request = DispatchRequest("pocketqueue.debug", [], kwargs, dispatched_by=caller.key_name)
    shared = new_shared(runtime, request=request)
    await flows.run_flow(flows.shared_flow(flows.create_dispatch_flow), shared)
    return JobPublic.of(shared["job"])
