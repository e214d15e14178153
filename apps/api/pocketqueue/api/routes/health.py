"""Health: is the API up, does Redis answer, which workers are live (and stalled)."""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from pocketqueue import flows
from pocketqueue.api.auth import ReadAccess
from pocketqueue.api.deps import RuntimeDep, new_shared
from pocketqueue.api.openapi import problem_content
from pocketqueue.api.problems import problem
from pocketqueue.api.schemas import HealthPublic, RedisHealth, StalledWorker
from pocketqueue.observe.workers import WorkerView

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    dependencies=[ReadAccess],
    response_model=HealthPublic,
    responses={
        503: {"description": "Redis down: a problem with the health fields", "content": problem_content("HealthPublic")}
    },
)
async def read_health(
    runtime: RuntimeDep,
    request: Request,
    ping: bool = Query(False, description="Also broadcast a Celery ping and wait 1 s for the replies"),
) -> JSONResponse:
    """200 when Redis answers (workers may still be zero), in milliseconds: the workers come from their heartbeats.

    `stalled` lists live workers that do not consume, or consume in name only, while jobs
    wait. `?ping=true` also asks every worker to answer a ping (about 1 s). 503 problem,
    with the same fields, when Redis does not answer.
    """
    shared = new_shared(runtime, ping=ping)
    outcome = await flows.shared_flow(flows.create_health_flow).run_async(shared)
    registry: list[WorkerView] = shared.get("registry", [])
    health = HealthPublic(
        redis=RedisHealth(ok=outcome != "unavailable", latency_ms=shared.get("redis_latency_ms")),
        workers=[worker.name for worker in registry],
        stalled=[StalledWorker(name=w.name, reason=w.stall_reason) for w in registry if w.stall_reason],
        celery_ping=bool(shared["workers"]) if outcome == "pinged" else None,
        pinged=shared["workers"] if outcome == "pinged" else None,
    )
    if outcome != "unavailable":
        return JSONResponse(health.model_dump())
    detail = "Redis did not answer; jobs can be neither dispatched nor read."
    return problem(request, 503, "Redis unavailable", detail, "redis-unavailable", **health.model_dump())
