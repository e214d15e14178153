"""Schedules the tests fire: loaded by workers with TASK_MODULES=pq_test_tasks,pq_schedule_tasks.

Every-second schedules, so a test sees many slots in a few seconds; a job per slot, each
of which only returns its label (the job records are what the tests count).
"""

from __future__ import annotations

from pocketqueue import JobContext, Schedule, schedule, task


@task(name="tests.scheduled")
def scheduled(job: JobContext, label: str) -> str:
    return label


# A cron schedule declared on the task (a slot every day at 04:00 UTC: never due in a test).
@task(name="tests.nightly", schedule="0 4 * * *")
def nightly(job: JobContext) -> str:
    return "nightly"


schedule(
    # The exactly-once check (3 workers, the leader killed): a grace long enough for a failover.
    Schedule("tests.every-second", task="tests.scheduled", every=1, args=["every-second"]),
    # The catch-up checks: a grace shorter than a worker's restart, so a restart misses slots.
    Schedule("tests.catch-up-once", task=scheduled, every=1, kwargs={"label": "once"}, catch_up="once", grace=2),
    Schedule("tests.catch-up-skip", task=scheduled, every=1, kwargs={"label": "skip"}, catch_up="skip", grace=2),
    Schedule(
        "tests.paris-morning", task="tests.scheduled", cron="30 7 * * mon-fri", args=["hi"], timezone="Europe/Paris"
    ),
)
