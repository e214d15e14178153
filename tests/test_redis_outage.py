"""Redis stopped mid-test: every route answers 503, and the API recovers by itself."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import redis

from conftest import api_client, make_settings
from pocketqueue.embedded import LocalRedis
from pocketqueue.jobs import watcher as watcher_module
from pocketqueue.jobs.keys import Keys
from pocketqueue.jobs.worker_store import WorkerJobStore


@pytest.fixture
async def outage(tmp_path: Path) -> AsyncIterator[tuple[LocalRedis, httpx.AsyncClient]]:
    """An API whose Redis (with AOF on) the test may stop and start."""
    server = LocalRedis(tmp_path, write_port_file=False)
    server.start()
    try:
        async with api_client(make_settings(server.url, "outage")) as c:
            yield server, c
    finally:
        server.stop()


async def answered(client: httpx.AsyncClient, path: str, timeout: float = 30) -> httpx.Response:
    """GET `path` until the API answers 200 (Redis back and reconnected); fail after `timeout` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while (response := await client.get(path)).status_code != 200:
        assert asyncio.get_running_loop().time() < deadline, response.text
        await asyncio.sleep(0.1)
    return response


async def test_redis_down_is_a_503_everywhere_and_the_api_recovers(
    outage: tuple[LocalRedis, httpx.AsyncClient],
) -> None:
    server, client = outage
    accepted = await client.post("/api/queue/dispatch", json={"task": "tests.add", "args": [1, 2]})
    assert accepted.status_code == 202
    job_id = accepted.json()["job_id"]

    server.stop()
    # A dispatch cannot tell a refused connection from one cut mid-write: it answers the
    # RedisUnavailable subclass that names the job id to look up later.
    unknown, unavailable = "dispatch-outcome-unknown", "redis-unavailable"
    requests = [
        (client.post("/api/queue/dispatch", json={"task": "tests.add", "args": [1, 2]}), unknown),
        (client.get(f"/api/queue/status/{job_id}"), unavailable),
        (client.get(f"/api/queue/wait/{job_id}", params={"timeout": 1}), unavailable),
        (client.delete(f"/api/queue/cancel/{job_id}"), unavailable),
        (client.post("/api/queue/batch-status", json={"job_ids": [job_id]}), unavailable),
        (client.post("/api/queue/test/redis"), unavailable),
        (client.post("/api/queue/test/debug"), unavailable),
        (client.get("/api/queue/dead-letter"), unavailable),
        (client.post(f"/api/queue/retry/{job_id}"), unavailable),
        (client.post("/api/queue/dead-letter/retry", json={"job_ids": [job_id]}), unavailable),
    ]
    for request, slug in requests:
        response = await request
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith(slug), response.text
    health = await client.get("/api/queue/health")
    assert health.status_code == 503
    assert health.headers["content-type"] == "application/problem+json"
    assert health.json()["type"].endswith("redis-unavailable")
    assert health.json()["redis"]["ok"] is False
    assert health.json()["workers"] == []

    server.start()  # same port, same data directory
    recovered = await answered(client, f"/api/queue/status/{job_id}")
    assert recovered.json()["status"] == "queued"  # the accepted job survived the restart (AOF)
    assert (await client.get("/api/queue/health")).status_code == 200
    again = await client.post("/api/queue/dispatch", json={"task": "tests.add", "args": [3, 4]})
    assert again.status_code == 202


async def test_a_waiter_still_wakes_after_redis_restarts(
    outage: tuple[LocalRedis, httpx.AsyncClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The watcher resubscribes after a restart; a job finishing afterwards wakes its waiter."""
    monkeypatch.setattr(watcher_module, "RECHECK_SECONDS", 120.0)  # only pub/sub can wake it in time
    server, client = outage
    job_id = (await client.post("/api/queue/dispatch", json={"task": "tests.add", "args": [1, 1]})).json()["job_id"]
    server.stop()
    server.start()
    waiting = asyncio.create_task(client.get(f"/api/queue/wait/{job_id}", params={"timeout": 300}))
    await answered(client, f"/api/queue/status/{job_id}")
    # Finish the job by hand as a worker would (no worker listens on this queue).
    settings = make_settings(server.url, "outage")
    store = WorkerJobStore(redis.Redis.from_url(server.url, decode_responses=True), Keys(settings.queue_key_prefix))
    claim = store.claim(job_id, "hand", 5000, "hand-token")
    assert claim.started
    assert store.complete(job_id, claim.token, "2") == "ok"
    # Without pub/sub the waiter would next read the record at its 120 s recheck: an answer
    # within the 60 s deadline is the wake-up (a bound with a 60 s margin, not a race).
    response = await asyncio.wait_for(waiting, 60)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "completed"
    assert response.json()["result"] == 2
