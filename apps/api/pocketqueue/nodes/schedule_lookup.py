"""ScheduleLookupNode: finds a declared schedule by name."""

from __future__ import annotations

from typing import Any

from pocketflow import AsyncNode

from pocketqueue.schedules.model import Schedule, ScheduleNotFound
from pocketqueue.schedules.registry import lookup_schedule


class ScheduleLookupNode(AsyncNode):  # type: ignore[misc]
    """Puts the schedule named `shared["schedule_name"]` in `shared["schedule"]`: action "found".

    An unknown name is "rejected", with ScheduleNotFound in `shared["error"]`. Schedules
    are declared in code (TASK_MODULES), so this reads the registry, not Redis.
    """

    async def prep_async(self, shared: dict[str, Any]) -> str:
        name: str = shared["schedule_name"]
        return name

    async def exec_async(self, name: str) -> Schedule | ScheduleNotFound:
        try:
            return lookup_schedule(name)
        except ScheduleNotFound as missing:
            return missing

    async def post_async(self, shared: dict[str, Any], prep_res: str, exec_res: Schedule | ScheduleNotFound) -> str:
        if isinstance(exec_res, ScheduleNotFound):
            shared["error"] = exec_res
            return "rejected"
        shared["schedule"] = exec_res
        return "found"
