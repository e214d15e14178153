"""ScheduleStateNode: the declared schedules with their state in Redis (paused, last fired, next)."""

from __future__ import annotations

from typing import Any

from pocketflow import AsyncNode

from pocketqueue.runtime import QueueRuntime
from pocketqueue.schedules.model import Schedule
from pocketqueue.schedules.registry import registered_schedules
from pocketqueue.schedules.state import ScheduleView, read_states


class ScheduleStateNode(AsyncNode):  # type: ignore[misc]
    """Sets `shared["schedules"]` to a ScheduleView per schedule; action "read".

    Every declared schedule, or only `shared["schedule"]` when a node before it found
    one. One round trip, with Redis's clock, so "next run" is by the clock the leader fires by.
    """

    async def prep_async(self, shared: dict[str, Any]) -> tuple[QueueRuntime, list[Schedule]]:
        one: Schedule | None = shared.get("schedule")
        return shared["runtime"], [one] if one is not None else registered_schedules()

    async def exec_async(self, prep_res: tuple[QueueRuntime, list[Schedule]]) -> list[ScheduleView]:
        runtime, schedules = prep_res
        now, states = await read_states(runtime.redis, runtime.store.keys, [item.name for item in schedules])
        return [ScheduleView.of(item, state, now) for item, state in zip(schedules, states, strict=True)]

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: list[ScheduleView]) -> str:
        shared["schedules"] = exec_res
        return "read"
