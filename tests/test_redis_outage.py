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


async def test_redis_down_is_a_503_everywhere_and_the_api_recovers(
    outage: tuple[LocalRedis, httpx.AsyncClient],
) -> None:
    server, client = outage
    accepted = await client.post("/api/queue/dispatch", json={"task": "tests.add", "args": [1, 2]})
    assert accepted.status_code == 202
    job_id = accepted.json()["job_id"]

    server.stop()
    requests = [
        client.post("/api/queue/dispatch", json={"task": "tests.add", "args": [1, 2]}),
        client.get(f"/api/queue/status/{job_id}"),
        client.get(f"/api/queue/wait/{job_id}", params={"timeout": 1}),
        client.delete(f"/api/queue/cancel/{job_id}"),
        client.post("/api/queue/batch-status", json={"job_ids": [job_id]}),
        client.post("/api/queue/test/redis"),
        client.post("/api/queue/test/debug"),
    ]
    for request in requests:
        response = await request
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"].endswith("redis-unavailable")
    health = await client.get("/api/queue/health")
    assert health.status_code == 503
    assert health.headers["content-type"] == "application/problem+json"
    assert health.json()["type"].endswith("redis-unavailable")
    assert health.json()["redis"]["ok"] is False
    assert health.json()["workers"] == []

    server.start()  # same port, same data directory
    for _ in range(100):
        recovered = await client.get(f"/api/queue/status/{job_id}")
        if recovered.status_code == 200:
            break
        await asyncio.sleep(0.1)
    assert recovered.status_code == 200
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
    waiting = asyncio.create_task(client.get(f"/api/queue/wait/{job_id}", params={"timeout": 30}))
    for _ in range(100):
        if (await client.get(f"/api/queue/status/{job_id}")).status_code == 200:
            break
        await asyncio.sleep(0.1)
    # Finish the job by hand as a worker would (no worker listens on this queue).
    settings = make_settings(server.url, "outage")
    store = WorkerJobStore(redis.Redis.from_url(server.url, decode_responses=True), Keys(settings.queue_key_prefix))
    claim = store.claim(job_id, "hand", 5000, "hand-token")
    assert claim.started
    started = asyncio.get_running_loop().time()
    assert store.complete(job_id, claim.token, "2") == "ok"
    response = await asyncio.wait_for(waiting, 10)
    assert response.status_code == 200
    assert response.json()["result"] == 2
    assert asyncio.get_running_loop().time() - started < 5
