"""Idempotency keys and unique keys: a repeat returns the first job; races create one job."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis

from conftest import api_client, make_settings, wait_until
from pocketqueue.config import Settings
from pocketqueue.jobs.keys import Keys, queue_lists
from test_api import assert_problem, dispatch

pytestmark = pytest.mark.usefixtures("worker")


def new_key() -> str:
    return uuid.uuid4().hex


async def post(client: httpx.AsyncClient, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key} if key else {}
    return await client.post("/api/queue/dispatch", json=body, headers=headers)


async def test_a_repeat_with_the_same_key_and_body_returns_the_original_job(client: httpx.AsyncClient) -> None:
    key = new_key()
    body = {"task": "tests.add", "args": [1, 2]}
    first = await post(client, body, key)
    again = await post(client, body, key)
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["job_id"] == first.json()["job_id"]
    assert again.json()["idempotency_key"] == key
    in_body = await post(client, {**body, "idempotency_key": key})  # the body field is the same key
    assert (in_body.status_code, in_body.json()["job_id"]) == (200, first.json()["job_id"])


async def test_the_same_key_with_a_different_body_is_a_conflict(client: httpx.AsyncClient) -> None:
    key = new_key()
    first = await post(client, {"task": "tests.add", "args": [1, 2]}, key)
    clash = await post(client, {"task": "tests.add", "args": [1, 3]}, key)
    problem = assert_problem(clash, 409, "idempotency-key-reused")
    assert problem["job_id"] == first.json()["job_id"]
    differ = await post(client, {"task": "tests.add", "args": [1, 2], "idempotency_key": "other"}, key)
    assert_problem(differ, 422, "invalid-request")


async def test_fifty_concurrent_dispatches_with_one_key_create_one_job_that_runs_once(
    client: httpx.AsyncClient, sync_redis: redis.Redis
) -> None:
    key, runs = new_key(), f"runs-{new_key()}"
    body = {"task": "tests.runs", "args": [runs], "kwargs": {"sleep": 0.2}}
    responses = await asyncio.gather(*(post(client, body, key) for _ in range(50)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 49 + [202]
    job_ids = {r.json()["job_id"] for r in responses}
    assert len(job_ids) == 1
    (job_id,) = job_ids
    done = await client.get(f"/api/queue/wait/{job_id}", params={"timeout": 20})
    assert done.json()["status"] == "completed"
    assert sync_redis.lrange(runs, 0, -1) == [f"{job_id}:1"]


async def test_a_unique_key_allows_one_active_job_and_names_it_in_the_conflict(
    client: httpx.AsyncClient, settings: Settings, sync_redis: redis.Redis
) -> None:
    unique = new_key()
    # Scheduled a minute out: active for the whole test, however slow the machine.
    first = await dispatch(client, "pocketqueue.debug", delay_seconds=60, unique_key=unique)
    held = Keys(settings.queue_key_prefix).unique(unique)
    assert sync_redis.get(held) == first["job_id"]
    clash = await post(client, {"task": "tests.add", "args": [1, 2], "unique_key": unique})
    problem = assert_problem(clash, 409, "unique-job-active")
    assert problem["job_id"] == first["job_id"]
    assert first["job_id"] in problem["detail"]
    assert (await client.delete(f"/api/queue/cancel/{first['job_id']}")).status_code == 200
    assert not sync_redis.exists(held)  # freed by the script that ended the job

    second = await dispatch(client, "tests.add", args=[1, 2], unique_key=unique)  # free once ended
    done = await client.get(f"/api/queue/wait/{second['job_id']}", params={"timeout": 20})
    assert done.json()["status"] == "completed"
    assert not sync_redis.exists(held)  # freed by the script that finished the job
    cancelled = await dispatch(client, "pocketqueue.debug", kwargs={"sleep": 5}, unique_key=new_key())
    await client.delete(f"/api/queue/cancel/{cancelled['job_id']}")
    assert (
        await post(client, {"task": "tests.add", "unique_key": cancelled["unique_key"], "args": [0, 0]})
    ).status_code == 202
    assert second["job_id"] != first["job_id"]


@pytest.fixture
async def idle_queue(redis_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    """The API on a private queue no worker consumes, with the default idempotency TTL."""
    settings = make_settings(redis_url, new_key()[:8])
    async with api_client(settings) as c:
        yield c, settings


async def test_concurrent_dispatches_with_one_unique_key_create_one_job(
    idle_queue: tuple[httpx.AsyncClient, Settings],
) -> None:
    client, _ = idle_queue  # no worker: the job stays active however long the 50 requests take
    body = {"task": "tests.add", "args": [1, 2], "unique_key": new_key()}
    responses = await asyncio.gather(*(post(client, body) for _ in range(50)))
    created = [r for r in responses if r.status_code == 202]
    assert len(created) == 1
    assert {r.status_code for r in responses} == {202, 409}
    assert {r.json()["job_id"] for r in responses} == {created[0].json()["job_id"]}


@pytest.fixture
async def short_memory(redis_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    """The API on a private queue whose idempotency keys last 1 s (no worker: nothing runs)."""
    settings = make_settings(redis_url, new_key()[:8], queue_idempotency_ttl_seconds=1)
    async with api_client(settings) as c:
        yield c, settings


async def test_an_idempotency_key_expires_after_its_ttl(
    short_memory: tuple[httpx.AsyncClient, Settings], sync_redis: redis.Redis
) -> None:
    client, settings = short_memory
    key = new_key()
    first = await post(client, {"task": "tests.add", "args": [1, 2]}, key)
    stored = Keys(settings.queue_key_prefix).idempotency(key)  # the name the Lua script writes
    assert 0 < sync_redis.ttl(stored) <= 1
    wait_until(lambda: not sync_redis.exists(stored), timeout=5)
    later = await post(client, {"task": "tests.add", "args": [1, 2]}, key)
    assert later.status_code == 202
    assert later.json()["job_id"] != first.json()["job_id"]


def footprint(client: redis.Redis, settings: Settings) -> dict[str, Any]:
    """Everything a dispatch writes on a queue: records, index entries, schedule, broker messages."""
    keys = Keys(settings.queue_key_prefix)
    return {
        "records": sorted(client.scan_iter(keys.job("*"), count=1000)),
        "queued": client.zrange(keys.index("queued"), 0, -1),
        "scheduled": client.zrange(keys.schedule, 0, -1),
        "messages": [client.lrange(name, 0, -1) for name in queue_lists(settings.queue_name)],
    }


async def test_a_dispatch_the_create_script_refuses_queues_nothing(
    idle_queue: tuple[httpx.AsyncClient, Settings], sync_redis: redis.Redis
) -> None:
    """Refused inside Redis (idempotency conflict, unique key held): no record, no message."""
    client, settings = idle_queue
    key, unique = new_key(), new_key()
    first = await post(client, {"task": "tests.add", "args": [1, 2]}, key)
    holder = await post(client, {"task": "tests.add", "args": [5, 6], "unique_key": unique})
    assert (first.status_code, holder.status_code) == (202, 202)
    before = footprint(sync_redis, settings)
    assert len(before["records"]) == 2
    assert sum(map(len, before["messages"])) == 2

    clash = await post(client, {"task": "tests.add", "args": [1, 3]}, key)
    assert_problem(clash, 409, "idempotency-key-reused")
    assert footprint(sync_redis, settings) == before
    for body in ({"task": "tests.add", "args": [7, 8]}, {"task": "tests.add", "args": [7, 8], "delay_seconds": 30}):
        held = await post(client, {**body, "unique_key": unique})
        assert assert_problem(held, 409, "unique-job-active")["job_id"] == holder.json()["job_id"]
        assert footprint(sync_redis, settings) == before
