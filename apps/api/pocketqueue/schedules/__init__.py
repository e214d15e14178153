"""Periodic jobs: tasks dispatched on a cron expression or an interval, each slot exactly once.

Declare them in a module of TASK_MODULES (workers and the API import it):

    from pocketqueue import Schedule, schedule, task

    @task(name="reports.build", schedule="0 3 * * *")        # a schedule named after the task
    def build(job): ...

    schedule(
        Schedule("digest", task="emails.digest", cron="0 9 * * mon-fri", timezone="Europe/Paris"),
        Schedule("sync", task="crm.sync", every=300, kwargs={"full": False}, catch_up="skip"),
    )

The janitor's leader (one worker at a time, a Redis lease) fires them (firing.py); the
API lists, pauses, resumes and triggers them (`/api/queue/schedules`).

    clock.py     where slots fall: cron in a timezone (croniter), or an interval
    model.py     Schedule, the declaration, checked when it is made
    registry.py  schedule(), register_task_schedule(), lookup
    state.py     each schedule's marker and pause in Redis
    firing.py    the leader's tick: what is due, dispatched by slot idempotency key
"""

from pocketqueue.schedules.model import Schedule, ScheduleNotFound
from pocketqueue.schedules.registry import lookup_schedule, register_task_schedule, registered_schedules, schedule

__all__ = [
    "Schedule",
    "ScheduleNotFound",
    "lookup_schedule",
    "register_task_schedule",
    "registered_schedules",
    "schedule",
]
