"""SchedulePauseNode: pauses or resumes a schedule, for every worker."""

from __future__ import annotations

import logging
from typing import Any

from pocketflow import AsyncNode

from pocketqueue.runtime import QueueRuntime
from pocketqueue.schedules.model import Schedule
from pocketqueue.schedules.state import set_paused

log = logging.getLogger(__name__)


class SchedulePauseNode(AsyncNode):  # type: ignore[misc]
    """Pauses `shared["schedule"]` (or resumes it if `shared["paused"]` is False); action "written".

    The pause lives in Redis, where the janitor's leader reads it before every firing:
    slots that pass while paused are not fired, and resuming does not fire them late
    (the next slot after the resume is the first to fire). Idempotent.
    """

    async def prep_async(self, shared: dict[str, Any]) -> tuple[QueueRuntime, Schedule, bool]:
        return shared["runtime"], shared["schedule"], shared["paused"]

    async def exec_async(self, prep_res: tuple[QueueRuntime, Schedule, bool]) -> None:
        runtime, schedule, paused = prep_res
        await set_paused(runtime.redis, runtime.store.keys, schedule.name, paused)
        log.info("schedule %s %s", schedule.name, "paused" if paused else "resumed")

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: None) -> str:
        return "written"
