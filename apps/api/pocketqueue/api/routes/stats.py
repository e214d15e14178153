"""`/stats`: the queue's numbers at a glance (depth, throughput, run times, dead letters)."""

from __future__ import annotations

from fastapi import APIRouter

from pocketqueue.api.auth import ReadAccess
from pocketqueue.api.deps import RuntimeDep
from pocketqueue.api.openapi import problem_responses
from pocketqueue.api.schemas import StatsPublic
from pocketqueue.observe import stats as observed

router = APIRouter(tags=["stats"])


@router.get("/stats", dependencies=[ReadAccess], responses=problem_responses(503))
async def read_stats(runtime: RuntimeDep) -> StatsPublic:
    """Per queue the depth per priority, scheduled and retrying jobs and the oldest wait; jobs per
    status; jobs finished per minute over the last 1, 5 and 15 minutes (the current minute
    included); run time p50/p95 per task; dead letters. Read cluster-wide from Redis."""
    stats = await observed.read_stats(runtime.redis, runtime.store.keys, runtime.settings.queue_name)
    return StatsPublic.of(stats)
