"""`/stats`: the queue's numbers at a glance (depth, throughput, run times, dead letters)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from pocketqueue.api.auth import ReadAccess
from pocketqueue.api.deps import RuntimeDep
from pocketqueue.api.openapi import problem_responses
from pocketqueue.api.schemas import StatsPublic
from pocketqueue.observe import stats as observed

router = APIRouter(tags=["stats"])


@router.get("/stats", dependencies=[ReadAccess], responses=problem_responses(503))
async def read_stats(
    runtime: RuntimeDep,
    history_minutes: Annotated[
        int, Query(ge=0, le=observed.MAX_HISTORY_MINUTES, description="Also return this many minutes of outcomes")
    ] = 0,
) -> StatsPublic:
    """Per queue the depth per priority, scheduled and retrying jobs and the oldest wait; jobs per
    status; jobs finished per minute over the last 1, 5 and 15 minutes (the current minute
    included); run time p50/p95 per task; dead letters. Read cluster-wide from Redis."""
    settings = runtime.settings
    stats = await observed.read_stats(runtime.redis, runtime.store.keys, settings.queue_name, history_minutes)
    return StatsPublic.of(stats)
