"""Tasks for the Python entry points' tests (tests/test_client.py, tests/test_queues.py)."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from pocketflow import AsyncFlow, AsyncNode
from pq_test_tasks import add, stubborn

from pocketqueue import JobContext, task

ROUTED_QUEUE = "pqtest-routed"


@task(name="tests.client.spawn")
def spawn(job: JobContext, a: int, b: int) -> Any:
    """A task that dispatches another with `.delay()` and waits for its result."""
    child = add.delay(a, b)
    return {"child": child.job_id, "result": child.result(timeout=20)}


@task(name="tests.client.routed", queue=ROUTED_QUEUE)
def routed(job: JobContext) -> str:
    return job.worker


@task(name="tests.client.where")
def where(job: JobContext) -> str:
    return job.worker


@task(name="tests.client.limited", soft_time_limit=1, time_limit=5)
def limited(job: JobContext, seconds: float) -> str:
    time.sleep(seconds)
    return "not stopped"


class Double(AsyncNode):  # type: ignore[misc]
    async def exec_async(self, prep_res: Any) -> None:
        await asyncio.sleep(0.01)

    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> str:
        shared["value"] *= 2
        shared["job"].progress(50, step="doubled")
        return "default"


class AddOne(AsyncNode):  # type: ignore[misc]
    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> str:
        shared["value"] += 1
        return "default"


@task(name="tests.client.async_flow")
async def async_flow(job: JobContext, value: int) -> dict[str, Any]:
    """An async task that awaits a PocketFlow AsyncFlow; reports which loop ran it."""
    double = Double()
    double >> AddOne()
    shared: dict[str, Any] = {"value": value, "job": job}
    await AsyncFlow(start=double).run_async(shared)
    # Counts the jobs each loop ran: a loop per job would count 1 every time (an id() could repeat).
    loop: Any = asyncio.get_running_loop()
    loop.pq_jobs = getattr(loop, "pq_jobs", 0) + 1
    return {"value": shared["value"], "pid": os.getpid(), "jobs_on_loop": loop.pq_jobs}


@task(name="tests.client.async_noop")
async def async_noop(job: JobContext) -> None:
    return None


@task(name="tests.client.async_fail")
async def async_fail(job: JobContext) -> None:
    await asyncio.sleep(0)
    raise KeyError("async boom")


@task(name="tests.client.hard_limited", time_limit=2)
def hard_limited(job: JobContext, seconds: float) -> str:
    """tests.stubborn (it ignores the soft limit) under its own hard limit of 2 s."""
    return stubborn(job, seconds)  # a @task is still the plain function
