"""Every route of the HTTP API, its errors included, against a real Redis and worker."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from conftest import WorkerProcess, api_client
from pocketqueue.jobs import watcher as watcher_module

pytestmark = pytest.mark.usefixtures("worker")

PROBLEM = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].endswith(slug)
    assert body["title"]
    assert body["detail"]
    assert body["instance"] == response.request.url.path
    return body


async def dispatch(client: httpx.AsyncClient, task: str, **body: Any) -> dict[str, Any]:
    response = await client.post("/api/queue/dispatch", json={"task": task, **body})
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


async def test_dispatch_returns_the_queued_job_and_wait_returns_its_result(client: httpx.AsyncClient) -> None:
    job = await dispatch(client, "tests.add", args=[2], kwargs={"b": 3})
    assert job["status"] == "queued"
    assert job["task"] == "tests.add"
    assert (job["args"], job["kwargs"]) == ([2], {"b": 3})

    done = await client.get(f"/api/queue/wait/{job['job_id']}", params={"timeout": 20})
    assert done.status_code == 200
    body = done.json()
    assert body["status"] == "completed"
    assert body["result"] == {"sum": 5, "job_id": job["job_id"]}
    assert body["attempts"] == 1
    assert body["progress"] == 100
    assert body["worker"].startswith("pocketqueue.")
    assert body["created_at"] <= body["started_at"] <= body["finished_at"]


async def test_status_reads_the_job_record(client: httpx.AsyncClient) -> None:
    job = await dispatch(client, "tests.add", args=[1, 1])
    response = await client.get(f"/api/queue/status/{job['job_id']}")
    assert response.status_code == 200
    body = response.json()
    assert (body["job_id"], body["task"], body["args"], body["created_at"]) == (
        job["job_id"],
        "tests.add",
        [1, 1],
        job["created_at"],
    )


async def test_unknown_task_is_a_404_problem_naming_it(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/queue/dispatch", json={"task": "videos.nope"})
    body = assert_problem(response, 404, "task-not-registered")
    assert "videos.nope" in body["detail"]


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"task": ""},
        {"task": "tests.add", "args": "not-a-list"},
        {"task": "tests.add", "kwargs": [1]},
        {"task": "tests.add", "surprise": True},
    ],
)
async def test_malformed_dispatch_body_is_a_422_problem_with_errors(
    client: httpx.AsyncClient, payload: dict[str, Any]
) -> None:
    body = assert_problem(await client.post("/api/queue/dispatch", json=payload), 422, "invalid-request")
    assert body["errors"]
    assert all("loc" in e and "msg" in e for e in body["errors"])


async def test_nan_is_not_json_and_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/queue/dispatch",
        content=b'{"task": "pocketqueue.debug", "kwargs": {"result": NaN}}',
        headers={"content-type": "application/json"},
    )
    body = assert_problem(response, 422, "invalid-payload")
    assert "NaN" in body["detail"]


async def test_invalid_json_is_a_422_problem(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/queue/dispatch", content=b"{nope", headers={"content-type": "application/json"})
    assert_problem(response, 422, "invalid-request")


async def test_arguments_that_do_not_fit_the_task_are_rejected_and_nothing_is_queued(
    client: httpx.AsyncClient, sync_redis: Any, settings: Any
) -> None:
    def records() -> int:
        return len(list(sync_redis.scan_iter(f"{settings.queue_key_prefix}:job:*", count=1000)))

    before = records()
    response = await client.post("/api/queue/dispatch", json={"task": "tests.add", "args": [1]})
    body = assert_problem(response, 422, "invalid-arguments")
    assert "b" in body["detail"]
    assert records() == before


async def test_unknown_job_is_a_404_on_status_wait_and_cancel(client: httpx.AsyncClient) -> None:
    missing = str(uuid.uuid4())
    assert_problem(await client.get(f"/api/queue/status/{missing}"), 404, "job-not-found")
    assert_problem(await client.get(f"/api/queue/wait/{missing}", params={"timeout": 0}), 404, "job-not-found")
    assert_problem(await client.delete(f"/api/queue/cancel/{missing}"), 404, "job-not-found")


async def test_wait_returns_202_with_the_job_as_it_stands_when_the_timeout_passes(client: httpx.AsyncClient) -> None:
    job = await dispatch(client, "pocketqueue.debug", kwargs={"sleep": 3})
    response = await client.get(f"/api/queue/wait/{job['job_id']}", params={"timeout": 0.5})
    assert response.status_code == 202
    assert response.json()["status"] in ("queued", "processing")
    await client.delete(f"/api/queue/cancel/{job['job_id']}")


@pytest.mark.parametrize("timeout", ["-1", "301", "soon"])
async def test_wait_timeout_is_bounded(client: httpx.AsyncClient, timeout: str) -> None:
    response = await client.get(f"/api/queue/wait/{uuid.uuid4()}", params={"timeout": timeout})
    assert_problem(response, 422, "invalid-request")


async def test_many_waiters_wake_when_their_jobs_finish(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watcher_module, "RECHECK_SECONDS", 120.0)  # only pub/sub can wake them in time
    jobs = [await dispatch(client, "pocketqueue.debug", kwargs={"sleep": 0.2, "result": n}) for n in range(20)]
    waits = [client.get(f"/api/queue/wait/{job['job_id']}", params={"timeout": 300}) for job in jobs]
    # Without pub/sub each waiter would next read its record at the 120 s recheck: answers
    # within the 60 s deadline are the wake-ups (a bound with a 60 s margin, not a race).
    responses = await asyncio.wait_for(asyncio.gather(*waits), 60)
    assert [r.status_code for r in responses] == [200] * 20
    assert [r.json()["result"] for r in responses] == list(range(20))


async def test_a_task_that_raises_fails_the_job_with_its_error(client: httpx.AsyncClient) -> None:
    job = await dispatch(client, "tests.fail", kwargs={"message": "disk on fire"})
    body = (await client.get(f"/api/queue/wait/{job['job_id']}", params={"timeout": 20})).json()
    assert body["status"] == "failed"
    assert body["error"]["type"] == "ValueError"
    assert body["error"]["message"] == "disk on fire"
    assert "raise ValueError(message)" in body["error"]["traceback"]
    assert body["result"] is None


async def test_a_result_that_is_not_json_fails_the_job_clearly(
    client: httpx.AsyncClient, worker: WorkerProcess
) -> None:
    job = await dispatch(client, "tests.not_json")
    body = (await client.get(f"/api/queue/wait/{job['job_id']}", params={"timeout": 20})).json()
    assert body["status"] == "failed"
    assert body["error"]["type"] == "ResultNotJSON"
    assert "not JSON-serialisable" in body["error"]["message"]
    # The worker survived it: the next job still runs.
    follow_up = await dispatch(client, "tests.add", args=[1, 2])
    after = await client.get(f"/api/queue/wait/{follow_up['job_id']}", params={"timeout": 20})
    assert after.json()["status"] == "completed"
    assert worker.process.poll() is None


async def test_progress_is_recorded_while_the_job_runs(client: httpx.AsyncClient) -> None:
    job = await dispatch(client, "pocketqueue.debug", kwargs={"sleep": 2.0, "steps": 4})
    seen: set[tuple[int, str | None]] = set()
    for _ in range(100):
        body = (await client.get(f"/api/queue/status/{job['job_id']}")).json()
        seen.add((body["progress"], body["step"]))
        if body["status"] == "completed":
            break
        await asyncio.sleep(0.05)
    assert body["status"] == "completed"
    assert any(0 < progress < 100 for progress, _ in seen), seen
    assert (100, "step 4 of 4") in seen


async def test_cancel_a_running_job_stops_it(client: httpx.AsyncClient, sync_redis: Any) -> None:
    marks = f"ticks:{uuid.uuid4()}"
    job = await dispatch(client, "tests.tick", kwargs={"key": marks, "ticks": 100, "interval": 0.1})
    deadline = asyncio.get_running_loop().time() + 30
    while sync_redis.llen(marks) < 2:  # the task itself has ticked: it is really running
        assert asyncio.get_running_loop().time() < deadline, "the job never started ticking"
        await asyncio.sleep(0.05)
    running = (await client.get(f"/api/queue/status/{job['job_id']}")).json()
    assert running["status"] == "processing", running
    response = await client.delete(f"/api/queue/cancel/{job['job_id']}")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished_at"] is not None

    # The task never checks for cancel itself, so only terminating it stops the ticks: wait
    # (with a deadline) until they stop, well before the 100 it would reach on its own.
    ticks, deadline = -1, asyncio.get_running_loop().time() + 20
    while (now := sync_redis.llen(marks)) != ticks:
        assert asyncio.get_running_loop().time() < deadline, "the ticks never stopped"
        ticks = now
        await asyncio.sleep(0.5)  # five ticks' time: a live task would have added some
    assert ticks < 100
    final = (await client.get(f"/api/queue/status/{job['job_id']}")).json()
    assert final["status"] == "cancelled"


async def test_cancel_a_finished_job_is_a_409(client: httpx.AsyncClient) -> None:
    job = await dispatch(client, "tests.add", args=[1, 1])
    await client.get(f"/api/queue/wait/{job['job_id']}", params={"timeout": 20})
    body = assert_problem(await client.delete(f"/api/queue/cancel/{job['job_id']}"), 409, "job-already-finished")
    assert "completed" in body["detail"]


async def test_batch_status_reads_many_jobs_and_names_the_missing(client: httpx.AsyncClient) -> None:
    jobs = [await dispatch(client, "tests.add", args=[n, n]) for n in range(3)]
    missing = [str(uuid.uuid4()), "also-missing"]
    ids = [jobs[0]["job_id"], missing[0], jobs[1]["job_id"], missing[1], jobs[2]["job_id"]]
    response = await client.post("/api/queue/batch-status", json={"job_ids": ids})
    assert response.status_code == 200
    body = response.json()
    assert [job["job_id"] for job in body["jobs"]] == [job["job_id"] for job in jobs]
    assert body["missing"] == missing


@pytest.mark.parametrize("job_ids", [[], [f"id-{n}" for n in range(1001)], "abc"])
async def test_batch_status_rejects_empty_oversized_or_malformed_lists(client: httpx.AsyncClient, job_ids: Any) -> None:
    assert_problem(await client.post("/api/queue/batch-status", json={"job_ids": job_ids}), 422, "invalid-request")


async def test_batch_status_accepts_the_maximum_of_1000_ids(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/queue/batch-status", json={"job_ids": [f"none-{n}" for n in range(1000)]})
    assert response.status_code == 200
    assert len(response.json()["missing"]) == 1000


async def test_health_reports_redis_and_the_workers(client: httpx.AsyncClient, worker: WorkerProcess) -> None:
    response = await client.get("/api/queue/health", params={"ping": "true"})
    assert response.status_code == 200
    body = response.json()
    assert body["api"] == "ok"
    assert body["redis"]["ok"] is True
    assert body["redis"]["latency_ms"] > 0
    assert body["celery_ping"] is True
    assert any(name.startswith(worker.name) for name in body["pinged"])
    assert any(name.startswith(worker.name) for name in body["workers"])  # from its heartbeat


async def test_test_redis_route_does_a_timed_round_trip(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/queue/test/redis")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["latency_ms"] > 0
    assert body["redis_version"]


async def test_test_debug_route_dispatches_the_debug_task(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/queue/test/debug", json={"result": {"echo": True}})
    assert response.status_code == 202
    job = response.json()
    assert job["task"] == "pocketqueue.debug"
    done = await client.get(f"/api/queue/wait/{job['job_id']}", params={"timeout": 20})
    assert done.json()["result"] == {"echo": True}
    failing = await client.post("/api/queue/test/debug", json={"fail": True})
    failed = await client.get(f"/api/queue/wait/{failing.json()['job_id']}", params={"timeout": 20})
    assert failed.json()["status"] == "failed"
    assert "on purpose" in failed.json()["error"]["message"]


async def test_tasks_route_lists_registered_tasks(client: httpx.AsyncClient) -> None:
    tasks = (await client.get("/api/queue/tasks")).json()["tasks"]
    assert {"pocketqueue.debug", "tests.add", "tests.fail"} <= set(tasks)
    assert not [name for name in tasks if name.startswith("celery.")]


async def test_openapi_documents_every_route_and_schema(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = set(spec["paths"])
    assert {
        "/api/queue/dispatch",
        "/api/queue/status/{job_id}",
        "/api/queue/wait/{job_id}",
        "/api/queue/cancel/{job_id}",
        "/api/queue/batch-status",
        "/api/queue/health",
        "/api/queue/test/redis",
        "/api/queue/test/debug",
        "/api/queue/tasks",
        "/api/queue/dead-letter",
        "/api/queue/retry/{job_id}",
        "/api/queue/dead-letter/retry",
    } <= paths
    for operations in spec["paths"].values():
        for operation in operations.values():
            assert operation.get("description") or operation.get("summary")
    assert {"JobCreate", "JobPublic", "BatchStatusRequest", "BatchStatusPublic", "HealthPublic"} <= set(
        spec["components"]["schemas"]
    )
    assert (await client.get("/docs")).status_code == 200


async def test_no_endpoint_returns_the_redis_url(client: httpx.AsyncClient, settings: Any) -> None:
    url = settings.resolved_redis_url()
    for response in [
        await client.get("/api/queue/health"),
        await client.post("/api/queue/test/redis"),
        await client.get("/openapi.json"),
    ]:
        assert url not in response.text


async def test_more_concurrent_requests_than_redis_connections_wait_instead_of_failing(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pocketqueue import runtime as runtime_module

    monkeypatch.setattr(runtime_module, "MAX_CONNECTIONS", 4)  # 100 requests in flight share 4 connections
    async with api_client(settings) as c:
        body = {"task": "tests.add", "args": [1, 2]}
        responses = await asyncio.gather(*(c.post("/api/queue/dispatch", json=body) for _ in range(100)))
    assert [r.status_code for r in responses] == [202] * 100
