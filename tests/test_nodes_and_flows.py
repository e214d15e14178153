"""The PocketFlow nodes alone and composed, as another pipeline would use them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pocketflow import AsyncFlow, AsyncNode

from conftest import make_settings
from pocketqueue import flows
from pocketqueue.config import Settings
from pocketqueue.errors import InvalidArguments, InvalidRequest, JobNotFound, RedisUnavailable, TaskNotRegistered
from pocketqueue.jobs.models import JobStatus
from pocketqueue.nodes import (
    CeleryTaskDispatchNode,
    DispatchRequest,
    RedisConnectionNode,
    TaskCancelNode,
    TaskStatusMonitorNode,
)
from pocketqueue.runtime import QueueRuntime, open_runtime

pytestmark = pytest.mark.usefixtures("worker")


async def test_redis_connection_node_puts_the_client_in_shared(runtime: QueueRuntime) -> None:
    shared: dict[str, Any] = {"runtime": runtime}
    assert await RedisConnectionNode(max_age=0).run_async(shared) == "connected"
    assert shared["redis"] is runtime.redis
    assert shared["redis_latency_ms"] > 0


async def test_redis_connection_node_says_unavailable_when_redis_is_down(session_id: str) -> None:
    from pocketqueue.embedded import free_port

    dead = make_settings(f"redis://127.0.0.1:{free_port()}/0", session_id)
    async with open_runtime(dead) as runtime:
        shared: dict[str, Any] = {"runtime": runtime}
        assert await RedisConnectionNode(max_age=0).run_async(shared) == "unavailable"
        assert "redis" not in shared
        assert "Connection" in shared["redis_error"]


async def test_dispatch_node_rejects_unknown_tasks_and_bad_arguments(runtime: QueueRuntime) -> None:
    shared: dict[str, Any] = {"runtime": runtime, "request": DispatchRequest("no.such.task")}
    assert await CeleryTaskDispatchNode().run_async(shared) == "rejected"
    assert isinstance(shared["error"], TaskNotRegistered)

    shared = {"runtime": runtime, "request": DispatchRequest("tests.add", [1, 2, 3])}
    assert await CeleryTaskDispatchNode().run_async(shared) == "rejected"
    assert isinstance(shared["error"], InvalidArguments)
    assert "job" not in shared


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({"eta": datetime(2030, 1, 1)}, "timezone-aware"),  # naive on purpose
        ({"eta": datetime(2030, 1, 1, tzinfo=UTC), "delay_seconds": 5}, "not both"),
        ({"delay_seconds": -1}, "from 0 to"),
        ({"delay_seconds": float("inf")}, "from 0 to"),
        ({"max_retries": 101}, "max_retries"),
    ],
)
async def test_dispatch_node_rejects_options_that_cannot_work(
    runtime: QueueRuntime, options: dict[str, Any], complaint: str
) -> None:
    shared: dict[str, Any] = {"runtime": runtime, "request": DispatchRequest("tests.add", [1, 2], **options)}
    assert await CeleryTaskDispatchNode().run_async(shared) == "rejected"
    assert isinstance(shared["error"], InvalidRequest)
    assert complaint in shared["error"].detail


def test_one_request_spelled_two_ways_has_one_fingerprint() -> None:
    eta = datetime(2030, 1, 1, 12, tzinfo=UTC)
    same_instant = eta.astimezone(timezone(timedelta(hours=5, minutes=30)))
    assert DispatchRequest("t", eta=eta).fingerprint() == DispatchRequest("t", eta=same_instant).fingerprint()
    assert DispatchRequest("t", delay_seconds=0).fingerprint() == DispatchRequest("t").fingerprint()
    assert DispatchRequest("t", [1]).fingerprint() != DispatchRequest("t", [2]).fingerprint()


async def test_a_repeated_idempotency_key_makes_the_dispatch_node_say_duplicate(runtime: QueueRuntime) -> None:
    request = DispatchRequest("tests.add", [1, 2], idempotency_key=uuid.uuid4().hex)
    first: dict[str, Any] = {"runtime": runtime, "request": request}
    again: dict[str, Any] = {"runtime": runtime, "request": request}
    assert await CeleryTaskDispatchNode().run_async(first) == "dispatched"
    assert await CeleryTaskDispatchNode().run_async(again) == "duplicate"
    assert again["job"].job_id == first["job"].job_id


async def test_dispatch_then_monitor_nodes_run_a_job_to_completion(runtime: QueueRuntime) -> None:
    shared: dict[str, Any] = {"runtime": runtime, "request": DispatchRequest("tests.add", [20, 22])}
    assert await CeleryTaskDispatchNode().run_async(shared) == "dispatched"
    job = shared["job"]
    assert job.status == JobStatus.QUEUED

    shared = {"runtime": runtime, "job_id": job.job_id, "wait_timeout": 20}
    assert await TaskStatusMonitorNode().run_async(shared) == "found"
    assert shared["job"].status == JobStatus.COMPLETED
    assert shared["job"].result["sum"] == 42


async def test_monitor_node_reports_missing_and_timeout(runtime: QueueRuntime) -> None:
    shared: dict[str, Any] = {"runtime": runtime, "job_id": "nope"}
    assert await TaskStatusMonitorNode().run_async(shared) == "missing"

    dispatched: dict[str, Any] = {"runtime": runtime, "request": DispatchRequest("pocketqueue.debug", [], {"sleep": 2})}
    await CeleryTaskDispatchNode().run_async(dispatched)
    shared = {"runtime": runtime, "job_id": dispatched["job"].job_id, "wait_timeout": 0.2}
    assert await TaskStatusMonitorNode().run_async(shared) == "timeout"
    assert not shared["job"].status.finished


async def test_cancel_node_cancels_then_reports_finished(runtime: QueueRuntime) -> None:
    dispatched: dict[str, Any] = {"runtime": runtime, "request": DispatchRequest("pocketqueue.debug", [], {"sleep": 5})}
    await CeleryTaskDispatchNode().run_async(dispatched)
    job_id = dispatched["job"].job_id
    shared: dict[str, Any] = {"runtime": runtime, "job_id": job_id}
    assert await TaskCancelNode().run_async(shared) == "cancelled"
    assert shared["job"].status == JobStatus.CANCELLED
    assert await TaskCancelNode().run_async(shared) == "finished"
    assert await TaskCancelNode().run_async({"runtime": runtime, "job_id": "nope"}) == "missing"


async def test_dispatch_and_wait_flow_returns_the_finished_job(runtime: QueueRuntime) -> None:
    shared: dict[str, Any] = {
        "runtime": runtime,
        "request": DispatchRequest("pocketqueue.debug", [], {"result": [1, 2]}),
        "wait_timeout": 20,
    }
    assert await flows.create_dispatch_and_wait_flow().run_async(shared) == "found"
    assert shared["job"].status == JobStatus.COMPLETED
    assert shared["job"].result == [1, 2]


async def test_dispatch_and_wait_flow_ends_on_rejection(runtime: QueueRuntime) -> None:
    shared: dict[str, Any] = {"runtime": runtime, "request": DispatchRequest("no.such.task"), "wait_timeout": 1}
    assert await flows.create_dispatch_and_wait_flow().run_async(shared) == "rejected"
    with pytest.raises(TaskNotRegistered):
        await flows.run_flow(flows.create_dispatch_and_wait_flow(), dict(shared))


async def test_run_flow_maps_outcomes_to_errors(runtime: QueueRuntime, session_id: str) -> None:
    with pytest.raises(JobNotFound):
        await flows.run_flow(flows.create_status_flow(), {"runtime": runtime, "job_id": "nope"})
    from pocketqueue.embedded import free_port

    async with open_runtime(make_settings(f"redis://127.0.0.1:{free_port()}/0", session_id)) as dead:
        with pytest.raises(RedisUnavailable):
            await flows.run_flow(flows.create_dispatch_flow(), {"runtime": dead, "request": DispatchRequest("x")})


class Summarise(AsyncNode):  # type: ignore[misc]
    """A pipeline's own node, after PocketQueue's."""

    async def prep_async(self, shared: dict[str, Any]) -> Any:
        return shared["job"]

    async def post_async(self, shared: dict[str, Any], job: Any, exec_res: Any) -> str:
        shared["summary"] = f"{job.task} -> {job.result['sum']}"
        return "done"


class Fallback(AsyncNode):  # type: ignore[misc]
    async def post_async(self, shared: dict[str, Any], prep_res: Any, exec_res: Any) -> str:
        shared["summary"] = "gave up"
        return "done"


async def test_another_pipeline_composes_the_nodes_into_its_own_flow(settings: Settings) -> None:
    connect, dispatch, monitor, summarise, fallback = (
        RedisConnectionNode(),
        CeleryTaskDispatchNode(),
        TaskStatusMonitorNode(),
        Summarise(),
        Fallback(),
    )
    connect - "connected" >> dispatch
    connect - "unavailable" >> fallback
    dispatch - "dispatched" >> monitor
    dispatch - "rejected" >> fallback
    monitor - "found" >> summarise
    monitor - "timeout" >> fallback
    monitor - "missing" >> fallback
    pipeline = AsyncFlow(start=connect)

    async with open_runtime(settings) as runtime:
        runs = [
            {"runtime": runtime, "request": DispatchRequest("tests.add", [n, 1]), "wait_timeout": 20} for n in range(5)
        ]
        outcomes = await asyncio.gather(*(pipeline.run_async(shared) for shared in runs))
    assert outcomes == ["done"] * 5
    assert [shared["summary"] for shared in runs] == [f"tests.add -> {n + 1}" for n in range(5)]
