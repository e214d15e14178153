"""ScheduleTriggerNode: turns a schedule into a dispatch request, to run it now."""

from __future__ import annotations

from typing import Any

from pocketflow import AsyncNode

from pocketqueue.jobs.request import DispatchRequest
from pocketqueue.schedules.model import Schedule

# Tags of a job triggered by hand: found with GET /jobs?tag=schedule.trigger:manual.
TRIGGER_TAG = "schedule.trigger"


class ScheduleTriggerNode(AsyncNode):  # type: ignore[misc]
    """Sets `shared["request"]` to a run of `shared["schedule"]` now; action "request".

    Wire a CeleryTaskDispatchNode after it. The job is the schedule's task, arguments
    and queue, tagged `schedule=<name>` and `schedule.trigger=manual`; it has no slot, so
    it does not move the schedule's marker: the next slot fires as planned (a paused
    schedule can be triggered too).
    """

    async def prep_async(self, shared: dict[str, Any]) -> Schedule:
        schedule: Schedule = shared["schedule"]
        return schedule

    async def exec_async(self, schedule: Schedule) -> DispatchRequest:
        return DispatchRequest(
            task=schedule.task_name,
            args=list(schedule.args),
            kwargs=dict(schedule.kwargs),
            tags={"schedule": schedule.name, TRIGGER_TAG: "manual"},
            queue=schedule.queue,
        )

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: DispatchRequest) -> str:
        shared["request"] = exec_res
        return "request"
