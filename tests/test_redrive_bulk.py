"""A bulk re-drive is bounded: it walks the dead letters a slice at a time, with a cursor."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import redis

from conftest import api_client, make_settings
from pocketqueue.config import Settings
from pocketqueue.jobs.keys import Keys
from pocketqueue.jobs.models import JobError
from pocketqueue.jobs.worker_store import WorkerJobStore
from pocketqueue.nodes import job_redrive


@pytest.fixture
async def no_worker(redis_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    """The API on a private queue no worker consumes: re-driven jobs stay queued, plain to see."""
    settings = make_settings(redis_url, uuid.uuid4().hex[:8])
    async with api_client(settings) as client:
        yield client, settings


async def failed_jobs(
    client: httpx.AsyncClient, sync_redis: redis.Redis, settings: Settings, task: str, n: int
) -> list[str]:
    store = WorkerJobStore(sync_redis, Keys(settings.queue_key_prefix))
    ids = []
    for i in range(n):
        body = {"task": task, "args": [i, i]} if task == "tests.add" else {"task": task, "args": [f"no {i}"]}
        job = (await client.post("/api/queue/dispatch", json=body)).json()
        assert store.fail_queued(job["job_id"], JobError(type="Boom", message="failed"), 600) == "ok"
        ids.append(job["job_id"])
    return ids


async def test_a_bulk_redrive_stops_after_a_slice_and_carries_on_from_its_cursor(
    no_worker: tuple[httpx.AsyncClient, Settings], sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, settings = no_worker
    monkeypatch.setattr(job_redrive, "MAX_SCAN", 3)  # the real slice is 5,000; the walk is the same
    adds = await failed_jobs(client, sync_redis, settings, "tests.add", 4)
    others = await failed_jobs(client, sync_redis, settings, "tests.fail", 3)

    # Filtered: the first slice holds three tests.add jobs; the rest come with the cursor.
    response = await client.post("/api/queue/dead-letter/retry", json={"task": "tests.add"})
    assert response.status_code == 200, response.text
    first = response.json()
    assert (first["redriven"], first["skipped"]) == (adds[:3], {})
    assert first["next_cursor"]
    cursor = first["next_cursor"]
    second = (await client.post("/api/queue/dead-letter/retry", json={"task": "tests.add", "cursor": cursor})).json()
    assert second["redriven"] == adds[3:]  # its slice: the last tests.add job and two others, left alone
    cursor = second["next_cursor"]
    third = (await client.post("/api/queue/dead-letter/retry", json={"task": "tests.add", "cursor": cursor})).json()
    assert (third["redriven"], third["next_cursor"]) == ([], None)  # the walk is done
    statuses = {
        job_id: sync_redis.hget(Keys(settings.queue_key_prefix).job(job_id), "status") for job_id in adds + others
    }
    assert statuses == {**dict.fromkeys(adds, "queued"), **dict.fromkeys(others, "failed")}


async def test_a_cursor_this_api_did_not_return_is_a_422(no_worker: tuple[httpx.AsyncClient, Settings]) -> None:
    client, _ = no_worker
    response = await client.post("/api/queue/dead-letter/retry", json={"cursor": "not-a-cursor"})
    assert response.status_code == 422
