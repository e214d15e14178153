"""Health: is the API up, does Redis answer, which workers answer."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from pocketqueue import flows
from pocketqueue.api.deps import RuntimeDep, new_shared
from pocketqueue.api.openapi import problem_content
from pocketqueue.api.problems import problem
from pocketqueue.api.schemas import HealthPublic, RedisHealth

router = APIRouter(tags=["health"])


@router.get(
    "/health",
    response_model=HealthPublic,
    responses={
        503: {"description": "Redis down: a problem with the health fields", "content": problem_content("HealthPublic")}
    },
)
async def read_health(runtime: RuntimeDep, request: Request) -> JSONResponse:
    """200 when Redis answers (workers may still be zero); 503 problem, with the same fields, when not."""
    shared = new_shared(runtime)
    redis_ok = await flows.shared_flow(flows.create_health_flow).run_async(shared) != "unavailable"
    health = HealthPublic(
        redis=RedisHealth(ok=redis_ok, latency_ms=shared.get("redis_latency_ms")),
        celery_ping=bool(shared.get("workers")),
        workers=shared.get("workers", []),
    )
    if redis_ok:
        return JSONResponse(health.model_dump())
    detail = "Redis did not answer; jobs can be neither dispatched nor read."
    return problem(request, 503, "Redis unavailable", detail, "redis-unavailable", **health.model_dump())
