"""GET /api/queue/jobs: tags, every filter, cursors under concurrent writes, index upkeep."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis

from conftest import api_client, wait_until
from pocketqueue.config import Settings
from pocketqueue.jobs.keys import Keys
from pocketqueue.jobs.worker_store import WorkerJobStore
from pocketqueue.observe import listing
from test_lifecycle import StartWorker, private_settings

PROBLEM = "application/problem+json"


@pytest.fixture
def own_settings(redis_url: str) -> Settings:
    # A prefix of its own: the listing sees exactly the jobs this test made.
    return private_settings(redis_url, queue_job_ttl_seconds=600)


@pytest.fixture
async def client(own_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(own_settings) as c:
        yield c


async def dispatch(client: httpx.AsyncClient, task: str = "tests.add", **body: Any) -> dict[str, Any]:
    body.setdefault("args", [1, 2])
    response = await client.post("/api/queue/dispatch", json={"task": task, **body})
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


async def listed(client: httpx.AsyncClient, **params: Any) -> list[str]:
    response = await client.get("/api/queue/jobs", params=params)
    assert response.status_code == 200, response.text
    return [job["job_id"] for job in response.json()["jobs"]]


async def test_tags_are_stored_returned_and_validated(client: httpx.AsyncClient) -> None:
    job = await dispatch(client, tags={"book_id": "42", "kind": "pdf"})
    assert job["tags"] == {"book_id": "42", "kind": "pdf"}
    status = (await client.get(f"/api/queue/status/{job['job_id']}")).json()
    assert status["tags"] == {"book_id": "42", "kind": "pdf"}
    assert status["queue"]

    for bad in (
        {f"k{i}": "v" for i in range(17)},  # too many
        {"bad name": "v"},  # space in the name
        {"k": ""},  # empty value
        {"k": "x" * 129},  # too long
        {"k": 42},  # not a string
        {"k": "line\nbreak"},  # not printable
    ):
        response = await client.post("/api/queue/dispatch", json={"task": "tests.add", "args": [1, 2], "tags": bad})
        assert response.status_code == 422, (bad, response.text)
        assert response.headers["content-type"] == PROBLEM
    assert await listed(client) == [job["job_id"]]  # nothing refused was written


async def test_each_filter_and_their_combinations(client: httpx.AsyncClient, own_settings: Settings) -> None:
    a = await dispatch(client, tags={"book_id": "42", "kind": "pdf"})
    b = await dispatch(client, tags={"book_id": "42", "kind": "epub"}, priority="high")
    c = await dispatch(client, "tests.fail", args=["x"], tags={"book_id": "7"}, idempotency_key="idem-c")
    d = await dispatch(client, delay_seconds=300, unique_key="uniq-d")
    cancelled = await client.delete(f"/api/queue/cancel/{a['job_id']}")
    assert cancelled.status_code == 200, cancelled.text

    assert await listed(client) == [d["job_id"], c["job_id"], b["job_id"], a["job_id"]]  # newest first
    assert await listed(client, status="queued") == [c["job_id"], b["job_id"]]
    assert await listed(client, status=["scheduled", "cancelled"]) == [d["job_id"], a["job_id"]]
    assert await listed(client, task="tests.fail") == [c["job_id"]]
    assert await listed(client, tag="book_id:42") == [b["job_id"], a["job_id"]]
    assert await listed(client, tag=["book_id:42", "kind:pdf"]) == [a["job_id"]]  # tags all match
    assert await listed(client, tag="book_id:42", status="queued") == [b["job_id"]]
    assert await listed(client, tag="book_id:404") == []
    assert await listed(client, task="tests.add", status="queued") == [b["job_id"]]

    # q: an id, an id prefix, an idempotency key, a unique key (active jobs hold one).
    assert await listed(client, q=c["job_id"]) == [c["job_id"]]
    assert c["job_id"] in await listed(client, q=c["job_id"][:6])
    assert await listed(client, q="idem-c") == [c["job_id"]]
    assert await listed(client, q="uniq-d") == [d["job_id"]]
    assert await listed(client, q="uniq-d", status="queued") == []
    assert await listed(client, q="no-such-key") == []

    # Time: exclusive bounds, ISO 8601 with an offset.
    created = {job["job_id"]: job["created_at"] for job in (a, b, c, d)}
    assert await listed(client, created_after=created[b["job_id"]]) == [d["job_id"], c["job_id"]]
    assert await listed(client, created_before=created[b["job_id"]]) == [a["job_id"]]
    between = {"created_after": created[a["job_id"]], "created_before": created[d["job_id"]]}
    assert await listed(client, **between) == [c["job_id"], b["job_id"]]

    for params in (
        {"limit": 0},
        {"limit": 501},
        {"status": "nope"},
        {"tag": "no-colon"},
        {"cursor": "garbage"},
        {"created_after": "yesterday"},
        {"created_after": "2030-01-01T00:00:00"},  # no offset
    ):
        response = await client.get("/api/queue/jobs", params=params)
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"] == PROBLEM


async def test_a_cursor_never_skips_or_repeats_under_concurrent_writes(
    client: httpx.AsyncClient, own_settings: Settings
) -> None:
    first = [await dispatch(client, tags={"run": "r1"}) for _ in range(40)]
    expected = {job["job_id"] for job in first}

    async def churn() -> None:
        # New jobs (newer than any cursor), and old ones changing status (moving between
        # the status indexes) while the pages are read.
        for job in first[::3]:
            await dispatch(client, tags={"run": "r1"})
            await client.delete(f"/api/queue/cancel/{job['job_id']}")

    seen: list[str] = []
    params: dict[str, Any] = {"tag": "run:r1", "limit": 7}
    churning = asyncio.create_task(churn())
    while True:
        response = await client.get("/api/queue/jobs", params=params)
        body = response.json()
        seen += [job["job_id"] for job in body["jobs"] if job["job_id"] in expected]
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
        await asyncio.sleep(0)
    await churning
    assert len(seen) == len(set(seen)), "a job was listed twice"
    assert set(seen) == expected, "a job was skipped"
    assert seen == [job["job_id"] for job in reversed(first)]


async def test_a_query_matching_little_answers_with_a_cursor_after_its_budget(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two large tag indexes that share one job: the walk checks many entries per match,
    # so a page stops at the budget and says where to carry on.
    monkeypatch.setattr(listing, "SCAN_BUDGET", 30)
    monkeypatch.setattr(listing, "BATCH", 10)
    both = await dispatch(client, tags={"x": "1", "y": "1"})
    for _ in range(40):
        await dispatch(client, tags={"x": "1"})
        await dispatch(client, tags={"y": "1"})
    params: dict[str, Any] = {"tag": ["x:1", "y:1"], "limit": 5}
    pages = 0
    found: list[str] = []
    while True:
        body = (await client.get("/api/queue/jobs", params=params)).json()
        pages += 1
        found += [job["job_id"] for job in body["jobs"]]
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert found == [both["job_id"]]
    assert pages >= 2  # 41 entries walked at most 30 per request


async def test_an_entry_whose_record_is_gone_is_skipped_and_dropped(
    client: httpx.AsyncClient, own_settings: Settings, sync_redis: redis.Redis
) -> None:
    kept = await dispatch(client, tags={"t": "1"})
    gone = await dispatch(client, tags={"t": "1"})
    prefix = own_settings.queue_key_prefix
    sync_redis.delete(f"{prefix}:job:{gone['job_id']}")  # as if it expired with no janitor to reap it
    assert await listed(client, tag="t:1") == [kept["job_id"]]
    assert sync_redis.zscore(f"{prefix}:list:tag:t=1", gone["job_id"]) is None


async def test_finished_jobs_leave_the_listing_with_their_records(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    # Records kept a little longer than the reaper's lead (10 s), so they are listed at first.
    settings = private_settings(redis_url, queue_job_ttl_seconds=13, queue_dead_letter_ttl_seconds=13)
    start_worker(settings)
    async with api_client(settings) as client:
        jobs = [await dispatch(client, tags={"batch": "b"}), await dispatch(client, "tests.fail", args=["x"])]
        for job in jobs:
            done = await client.get(f"/api/queue/wait/{job['job_id']}", params={"timeout": 20})
            assert done.json()["status"] in ("completed", "failed")
        assert set(await listed(client)) == {job["job_id"] for job in jobs}
        assert await listed(client, status="completed") == [jobs[0]["job_id"]]
        prefix = settings.queue_key_prefix
        # The janitor's leader reaps each job's entries shortly before its record expires.
        wait_until(lambda: not list(sync_redis.scan_iter(f"{prefix}:list:*")), timeout=25, interval=0.2)
        for job in jobs:  # out of the listing before their records expire, not after
            assert sync_redis.exists(f"{prefix}:job:{job['job_id']}")
        assert await listed(client) == []
        assert await listed(client, tag="batch:b") == []


async def test_jobs_created_in_the_same_microsecond_are_paged_by_id(
    client: httpx.AsyncClient, own_settings: Settings, sync_redis: redis.Redis
) -> None:
    # Equal creation times are ordered by id; a walk across batches of equal times neither
    # loops nor skips (hand-made records, all with one time, more than a batch of them).
    prefix = own_settings.queue_key_prefix
    now = f"{datetime.now(UTC).timestamp():.6f}"
    ids = sorted(str(uuid.uuid4()) for _ in range(450))
    with sync_redis.pipeline(transaction=False) as pipe:
        for job_id in ids:
            record = {"job_id": job_id, "task": "tests.add", "status": "queued", "created_at": now}
            pipe.hset(f"{prefix}:job:{job_id}", mapping=record)
            pipe.zadd(f"{prefix}:list:all", {job_id: float(now)})
        pipe.execute()
    found: list[str] = []
    params: dict[str, Any] = {"limit": 97}
    while True:
        body = (await client.get("/api/queue/jobs", params=params)).json()
        found += [job["job_id"] for job in body["jobs"]]
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert found == list(reversed(ids))


async def test_a_walk_over_several_statuses_neither_skips_nor_repeats_jobs_that_move(
    client: httpx.AsyncClient, own_settings: Settings, sync_redis: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 60 queued jobs, half of them sharing one creation time (a tie longer than a batch).
    # Between every batch a page checks, three jobs move from queued to processing as a
    # worker would move them (record and both indexes at once): some already listed, some
    # not yet reached. Listing both statuses must still give each job exactly once, in order.
    monkeypatch.setattr(listing, "BATCH", 10)
    prefix = own_settings.queue_key_prefix
    base = datetime.now(UTC).timestamp()
    tied = round(base + 100, 6)
    jobs = sorted(
        [(round(base + n / 1000, 6), str(uuid.uuid4())) for n in range(30)]
        + [(tied, str(uuid.uuid4())) for _ in range(30)],
        reverse=True,
    )
    with sync_redis.pipeline(transaction=False) as pipe:
        for created, job_id in jobs:
            record = {"job_id": job_id, "task": "tests.add", "status": "queued", "created_at": f"{created:.6f}"}
            pipe.hset(f"{prefix}:job:{job_id}", mapping=record)
            pipe.zadd(f"{prefix}:index:queued", {job_id: created})
        pipe.execute()
    still_queued = list(jobs)  # newest first

    def move(created: float, job_id: str) -> None:
        with sync_redis.pipeline(transaction=True) as pipe:
            pipe.hset(f"{prefix}:job:{job_id}", "status", "processing")
            pipe.zrem(f"{prefix}:index:queued", job_id)
            pipe.zadd(f"{prefix}:index:processing", {job_id: created})
            pipe.execute()

    checked = listing._matching

    async def checked_then_moved(*args: Any) -> list[bool]:
        matches = await checked(*args)
        for job in (still_queued.pop(0), still_queued.pop(), still_queued.pop()) if len(still_queued) >= 3 else ():
            move(*job)  # the newest queued (listed already) and the two oldest (not reached yet)
        return matches

    monkeypatch.setattr(listing, "_matching", checked_then_moved)
    found: list[str] = []
    params: dict[str, Any] = {"status": ["queued", "processing"], "limit": 25}
    while True:
        body = (await client.get("/api/queue/jobs", params=params)).json()
        found += [job["job_id"] for job in body["jobs"]]
        if body["next_cursor"] is None:
            break
        params["cursor"] = body["next_cursor"]
    assert len(found) == len(set(found)), "a job was listed twice"
    assert found == [job_id for _, job_id in jobs]
    assert sync_redis.zcard(f"{prefix}:index:processing") >= 15  # moved during the walk


async def test_a_batch_gives_each_of_its_jobs_its_own_creation_time(client: httpx.AsyncClient) -> None:
    body = {"jobs": [{"task": "tests.add", "args": [n, n], "tags": {"batch": "own-times"}} for n in range(5)]}
    accepted = await client.post("/api/queue/batches", json=body)
    assert accepted.status_code == 202, accepted.text
    children = [job if isinstance(job, str) else job["job_id"] for job in accepted.json()["jobs"]]
    shown = (await client.get("/api/queue/jobs", params={"tag": "batch:own-times"})).json()["jobs"]
    assert len({job["created_at"] for job in shown}) == 5
    assert [job["job_id"] for job in shown] == list(reversed(children))  # newest first: the last job first


async def test_an_id_prefix_matching_more_than_a_search_can_order_is_refused(
    client: httpx.AsyncClient, own_settings: Settings, sync_redis: redis.Redis
) -> None:
    job = await dispatch(client)
    prefix = own_settings.queue_key_prefix
    many = {f"{job['job_id'][:2]}{n:04d}-not-a-job": 0 for n in range(listing.PREFIX_MATCHES)}
    sync_redis.zadd(f"{prefix}:list:ids", many)  # with the real job: one more than a search orders
    refused = await client.get("/api/queue/jobs", params={"q": job["job_id"][:2]})
    assert refused.status_code == 422, refused.text
    assert refused.headers["content-type"] == PROBLEM
    assert "more of the id" in refused.json()["detail"]
    assert await listed(client, q=job["job_id"][:8]) == [job["job_id"]]  # a longer prefix finds it
    assert await listed(client, q=job["job_id"]) == [job["job_id"]]  # the exact id still answers


async def test_a_record_that_expired_with_no_janitor_still_leaves_every_index(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    # No worker runs (so no janitor): a cancelled job's record expires after 1 s with its
    # task and tag entries still listed. The next janitor to reap (a worker coming back)
    # takes every entry out, though the record is gone, from what `list:expiring` holds.
    settings = private_settings(redis_url, queue_job_ttl_seconds=1)
    prefix = settings.queue_key_prefix
    async with api_client(settings) as client:
        job = await dispatch(client, tags={"book_id": "42"})
        assert (await client.delete(f"/api/queue/cancel/{job['job_id']}")).status_code == 200
    wait_until(lambda: not sync_redis.exists(f"{prefix}:job:{job['job_id']}"), timeout=10, interval=0.1)
    assert sync_redis.zscore(f"{prefix}:list:tag:book_id=42", job["job_id"]) is not None  # not reaped yet
    assert WorkerJobStore(sync_redis, Keys(prefix)).reap(10.0) == 1
    assert list(sync_redis.scan_iter(f"{prefix}:list:*")) == []
    assert list(sync_redis.scan_iter(f"{prefix}:index:*")) == []
