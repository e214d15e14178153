"""Schedule routes: list the periodic jobs declared in code, pause, resume, trigger one now."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, status
from pydantic import BaseModel, Field

from pocketqueue import flows
from pocketqueue.api.auth import AdminCaller, ReadAccess
from pocketqueue.api.deps import RuntimeDep, audited, new_shared
from pocketqueue.api.openapi import job_links, problem_responses
from pocketqueue.api.schemas import JobPublic
from pocketqueue.schedules.model import NAME_PATTERN, CatchUp
from pocketqueue.schedules.state import ScheduleView

router = APIRouter(prefix="/schedules", tags=["schedules"])

ScheduleNamePath = Annotated[str, Path(min_length=1, max_length=100, pattern=NAME_PATTERN)]
NO_SUCH_SCHEDULE = problem_responses(404, 503, descriptions={404: "No schedule of that name is declared"})


def _time(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


class SchedulePublic(BaseModel):
    """A periodic job declared in code, with its state in Redis."""

    name: str
    task: str
    cron: str | None = Field(description="Cron expression (5 fields, or 6 with seconds last); null for an interval")
    every: int | None = Field(description="Seconds between slots (on multiples of it since the epoch); null for cron")
    timezone: str = Field(description="The IANA timezone the cron expression is read in")
    catch_up: CatchUp = Field(description="Slots missed while no worker ran: `once` fires one job, `skip` none")
    grace_seconds: float = Field(description="How late a slot may be and still fire on its own")
    queue: str | None = Field(description="The queue its jobs go to (null: the task's own, else QUEUE_NAME)")
    args: list[Any]
    kwargs: dict[str, Any]
    paused: bool
    next_run_at: datetime | None = Field(description="The next slot; null while paused")
    last_slot_at: datetime | None = Field(description="The last slot fired (null: none yet)")
    last_job_id: str | None = Field(description="The job that slot dispatched")
    last_fired_at: datetime | None = Field(description="When the leader dispatched it")

    @classmethod
    def of(cls, view: ScheduleView) -> SchedulePublic:
        schedule, state = view.schedule, view.state
        return cls(
            name=schedule.name,
            task=schedule.task_name,
            cron=schedule.cron,
            every=schedule.every_seconds,
            timezone=schedule.timezone,
            catch_up=schedule.catch_up,
            grace_seconds=schedule.grace,
            queue=schedule.queue,
            args=schedule.args,
            kwargs=schedule.kwargs,
            paused=state.paused,
            next_run_at=_time(view.next_slot),
            last_slot_at=_time(state.fired_slot),
            last_job_id=state.job_id,
            last_fired_at=_time(state.fired_at),
        )


class ScheduleList(BaseModel):
    """Every declared schedule, by name."""

    schedules: list[SchedulePublic]


@router.get("", dependencies=[ReadAccess], responses=problem_responses(503))
async def list_schedules(runtime: RuntimeDep) -> ScheduleList:
    """Every periodic job declared in code: its cadence, whether it is paused, its last and next run."""
    shared = new_shared(runtime)
    await flows.run_flow(flows.shared_flow(flows.create_schedules_flow), shared)
    return ScheduleList(schedules=[SchedulePublic.of(view) for view in shared["schedules"]])


async def _set_paused(runtime: RuntimeDep, caller: AdminCaller, name: str, paused: bool) -> SchedulePublic:
    shared = new_shared(runtime, schedule_name=name, paused=paused)
    await flows.run_flow(flows.shared_flow(flows.create_schedule_pause_flow), shared)
    await audited(runtime, caller, "pause_schedule" if paused else "resume_schedule", target=name)
    return SchedulePublic.of(shared["schedules"][0])


@router.post("/{name}/pause", responses=NO_SUCH_SCHEDULE)
async def pause_schedule(name: ScheduleNamePath, caller: AdminCaller, runtime: RuntimeDep) -> SchedulePublic:
    """Stop firing the schedule, on every worker, until resumed (slots that pass meanwhile are skipped)."""
    return await _set_paused(runtime, caller, name, True)


@router.post("/{name}/resume", responses=NO_SUCH_SCHEDULE)
async def resume_schedule(name: ScheduleNamePath, caller: AdminCaller, runtime: RuntimeDep) -> SchedulePublic:
    """Fire the schedule again from its next slot (the slots it skipped while paused stay skipped)."""
    return await _set_paused(runtime, caller, name, False)


@router.post(
    "/{name}/trigger",
    status_code=status.HTTP_202_ACCEPTED,
    responses={202: {"description": "Queued", "links": job_links()}, **NO_SUCH_SCHEDULE},
)
async def trigger_schedule(name: ScheduleNamePath, caller: AdminCaller, runtime: RuntimeDep) -> JobPublic:
    """Dispatch the schedule's job now, outside its slots (its next slot still fires as planned)."""
    shared = new_shared(runtime, schedule_name=name)
    await flows.run_flow(flows.shared_flow(flows.create_schedule_trigger_flow), shared)
    await audited(runtime, caller, "trigger_schedule", [shared["job"].job_id], target=name)
    return JobPublic.of(shared["job"])
