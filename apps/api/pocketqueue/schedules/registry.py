"""The schedule registry: what a module in TASK_MODULES declares when it is imported.

Workers and the API import the same modules, so both know the same schedules: the
janitor's leader fires them, the API lists, pauses and triggers them.
"""

from __future__ import annotations

from pocketqueue.schedules.model import Schedule, ScheduleNotFound

_SCHEDULES: dict[str, Schedule] = {}


def schedule(*schedules: Schedule) -> None:
    """Declare periodic jobs: `schedule(Schedule("nightly", "reports.build", cron="0 3 * * *"), ...)`.

    Declaring the same schedule again (a module imported twice) is harmless; two
    different schedules under one name raise ValueError.
    """
    for item in schedules:
        if not isinstance(item, Schedule):
            raise TypeError(f"schedule() takes Schedule objects, not {item!r}")
        existing = _SCHEDULES.get(item.name)
        if existing is not None and existing != item:
            raise ValueError(f"two different schedules are declared as {item.name!r}")
    for item in schedules:
        _SCHEDULES[item.name] = item


def register_task_schedule(task_name: str, cron: str) -> None:
    """`@task(name=..., schedule="*/5 * * * *")`: a schedule named after the task, in UTC."""
    schedule(Schedule(name=task_name, task=task_name, cron=cron))


def lookup_schedule(name: str) -> Schedule:
    try:
        return _SCHEDULES[name]
    except KeyError:
        raise ScheduleNotFound(name) from None


def registered_schedules() -> list[Schedule]:
    """Every declared schedule, by name."""
    return [_SCHEDULES[name] for name in sorted(_SCHEDULES)]
