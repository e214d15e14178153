"""Flows: the nodes wired into the small pipelines the API runs (and yours can too).

Each factory returns a new AsyncFlow whose final action is its outcome. A flow holds no
per-run state (PocketFlow copies each node as it runs it), so one flow can serve many
concurrent runs; the API builds each once (`shared_flow`).

    create_dispatch_flow()           "dispatched" | "duplicate" | "rejected" | "unavailable"
    create_status_flow()             "found" | "missing" | "timeout" | "unavailable"
    create_cancel_flow()             "cancelled" | "finished" | "missing" | "unavailable"
    create_dispatch_and_wait_flow()  "found" | "timeout" | "rejected" | "unavailable"
    create_redrive_flow()            "redriven" | "not_failed" | "missing" | "rejected" | "unavailable"
    create_dead_letter_flow()        "listed" | "unavailable"
    create_listing_flow()            "listed" | "unavailable"
    create_workers_flow()            "read" | "unavailable"
    create_health_flow()             "read" | "pinged" | "unavailable"  (pinged: shared["ping"] asked)
    create_redis_probe_flow()        "probed" | "unavailable"
    create_schedules_flow()          "read" | "unavailable"
    create_schedule_pause_flow()     "read" | "rejected" | "unavailable"  (shared["paused"]: pause or resume)
    create_schedule_trigger_flow()   "dispatched" | "rejected" | "unavailable"

From your own pipeline:

    async with open_runtime() as runtime:
        shared = {"runtime": runtime, "request": DispatchRequest("videos.generate"), "wait_timeout": 60}
        outcome = await create_dispatch_and_wait_flow().run_async(shared)
        print(outcome, shared["job"].result)
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from pocketflow import AsyncFlow, AsyncNode

from pocketqueue.errors import JobAlreadyFinished, JobNotFailed, JobNotFound, QueueError, RedisUnavailable
from pocketqueue.nodes import (
    BatchDispatchNode,
    BatchReadNode,
    BatchWaitNode,
    CeleryTaskDispatchNode,
    DeadLetterListNode,
    EndNode,
    JobListNode,
    JobRedriveNode,
    RedisConnectionNode,
    RedisProbeNode,
    ScheduleLookupNode,
    SchedulePauseNode,
    ScheduleStateNode,
    ScheduleTriggerNode,
    TaskCancelNode,
    TaskStatusMonitorNode,
    WorkerPingNode,
    WorkerRegistryNode,
)


def _after_redis_check(first: AsyncNode, max_age: float = 1.0) -> AsyncFlow:
    """A flow that checks Redis, then runs `first` (and whatever is wired after it)."""
    connect = RedisConnectionNode(max_age=max_age)
    connect - "connected" >> first
    connect - "unavailable" >> EndNode("unavailable")
    return AsyncFlow(start=connect)


def create_dispatch_flow() -> AsyncFlow:
    return _after_redis_check(CeleryTaskDispatchNode())


def create_status_flow() -> AsyncFlow:
    return _after_redis_check(TaskStatusMonitorNode())


def create_cancel_flow() -> AsyncFlow:
    return _after_redis_check(TaskCancelNode())


def create_dispatch_and_wait_flow() -> AsyncFlow:
    """Dispatch `shared["request"]`, then wait up to `shared["wait_timeout"]` for it."""
    dispatch = CeleryTaskDispatchNode()
    monitor = TaskStatusMonitorNode()
    dispatch - "dispatched" >> monitor
    dispatch - "duplicate" >> monitor  # an idempotent repeat waits for the first job
    dispatch - "rejected" >> EndNode("rejected")
    return _after_redis_check(dispatch)


def create_redrive_flow() -> AsyncFlow:
    """Re-drive `shared["job_id"]`, or the dead-lettered jobs `shared["redrive"]` picks."""
    return _after_redis_check(JobRedriveNode())


def create_dead_letter_flow() -> AsyncFlow:
    return _after_redis_check(DeadLetterListNode())


def create_listing_flow() -> AsyncFlow:
    return _after_redis_check(JobListNode())


def create_workers_flow() -> AsyncFlow:
    return _after_redis_check(WorkerRegistryNode())


def create_health_flow() -> AsyncFlow:
    """Check Redis (timed), read the worker registry, then ping the workers if `shared["ping"]` asks."""
    registry = WorkerRegistryNode()
    registry - "ping" >> WorkerPingNode()
    registry - "read" >> EndNode("read")
    return _after_redis_check(registry, max_age=0)


def create_redis_probe_flow() -> AsyncFlow:
    return _after_redis_check(RedisProbeNode(), max_age=0)


def create_batch_dispatch_flow() -> AsyncFlow:
    """Write `shared["batch_request"]` (every job, all or none), then read the batch back."""
    return _after_redis_check(BatchDispatchNode())


def create_batch_read_flow() -> AsyncFlow:
    return _after_redis_check(BatchReadNode())


def create_batch_and_wait_flow() -> AsyncFlow:
    """Write `shared["batch_request"]`, then wait up to `shared["wait_timeout"]` for it to end:
    a pipeline's fan-out and fan-in in two nodes ("ended", "timeout" or "rejected")."""
    dispatch = BatchDispatchNode()
    dispatch - "dispatched" >> BatchWaitNode()
    dispatch - "rejected" >> EndNode("rejected")
    return _after_redis_check(dispatch)


def create_schedules_flow() -> AsyncFlow:
    """Every declared schedule with its state (paused, last fired slot and job, next run)."""
    return _after_redis_check(ScheduleStateNode())


def create_schedule_pause_flow() -> AsyncFlow:
    """Find `shared["schedule_name"]`, pause or resume it (`shared["paused"]`), then read it back."""
    lookup = ScheduleLookupNode()
    pause = SchedulePauseNode()
    lookup - "found" >> pause
    lookup - "rejected" >> EndNode("rejected")
    pause - "written" >> ScheduleStateNode()
    return _after_redis_check(lookup)


def create_schedule_trigger_flow() -> AsyncFlow:
    """Find `shared["schedule_name"]` and dispatch a run of it now (a job outside its slots)."""
    lookup = ScheduleLookupNode()
    trigger = ScheduleTriggerNode()
    lookup - "found" >> trigger
    lookup - "rejected" >> EndNode("rejected")
    trigger - "request" >> CeleryTaskDispatchNode()
    return _after_redis_check(lookup)


@cache
def shared_flow(factory: Callable[[], AsyncFlow]) -> AsyncFlow:
    """The one flow `factory` builds, built on first use and reused after."""
    return factory()


async def run_flow(flow: AsyncFlow, shared: dict[str, Any]) -> str:
    """Run `flow`; return its outcome, or raise the QueueError a failed outcome means."""
    outcome: str = await flow.run_async(shared)
    if outcome == "unavailable":
        raise RedisUnavailable()
    if outcome == "rejected":
        error: QueueError = shared["error"]
        raise error
    if outcome == "missing":
        raise JobNotFound(shared["job_id"])
    if outcome == "finished" and "job_id" in shared:
        raise JobAlreadyFinished(shared["job_id"], shared["job"].status.value)
    if outcome == "not_failed":
        raise JobNotFailed(shared["job_id"], shared["job"].status.value)
    return outcome
