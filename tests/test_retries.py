"""Retries, non-retryable errors, partial results and the dead-letter set, through the HTTP API."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import redis

from conftest import WorkerProcess, api_client, make_settings
from pocketqueue.config import Settings
from pocketqueue.jobs.keys import Keys, queue_lists
from pocketqueue.jobs.models import JobError
from pocketqueue.jobs.worker_store import WorkerJobStore
from pocketqueue.worker.tasks import MAX_BACKOFF_SECONDS, backoff
from test_api import assert_problem, dispatch

pytestmark = pytest.mark.usefixtures("worker")


async def finished(client: httpx.AsyncClient, job_id: str, timeout: float = 20) -> dict[str, Any]:
    response = await client.get(f"/api/queue/wait/{job_id}", params={"timeout": timeout})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_flaky_task_is_retried_until_it_succeeds_and_every_attempt_error_is_kept(
    client: httpx.AsyncClient,
) -> None:
    job = await dispatch(client, "tests.flaky", args=[2], max_retries=3)
    assert job["max_retries"] == 3
    done = await finished(client, job["job_id"])
    assert done["status"] == "completed"
    assert done["result"] == 3  # the third attempt's number
    assert done["attempts"] == 3
    assert [(e["attempt"], e["type"]) for e in done["attempt_errors"]] == [(1, "RuntimeError"), (2, "RuntimeError")]
    assert "attempt 2 failed on purpose" in done["attempt_errors"][1]["message"]
    assert done["attempt_errors"][0]["traceback"].startswith("Traceback")


async def test_retries_run_out_and_the_job_fails_into_the_dead_letter_set(client: httpx.AsyncClient) -> None:
    job = await dispatch(client, "tests.flaky", args=[5], max_retries=1)  # the dispatch overrides the default
    done = await finished(client, job["job_id"])
    assert (done["status"], done["attempts"]) == ("failed", 2)
    assert done["error"]["type"] == "RuntimeError"
    assert done["error"]["attempt"] == 2
    assert len(done["attempt_errors"]) == 2
    page = (await client.get("/api/queue/dead-letter", params={"limit": 500})).json()
    listed = {j["job_id"]: j for j in page["jobs"]}
    assert job["job_id"] in listed
    assert listed[job["job_id"]]["args"] == [5]
    assert listed[job["job_id"]]["error"]["traceback"]


async def test_retry_on_limits_which_errors_are_retried(client: httpx.AsyncClient) -> None:
    retried = await dispatch(client, "tests.picky", args=["connection"])
    refused = await dispatch(client, "tests.picky", args=["value"])
    assert retried["max_retries"] == 3  # the task's own setting, not QUEUE_MAX_RETRIES (0 here)
    assert (await finished(client, retried["job_id"]))["attempts"] == 4
    done = await finished(client, refused["job_id"])
    assert (done["status"], done["attempts"], done["error"]["type"]) == ("failed", 1, "ValueError")


async def test_a_permanent_error_fails_at_once_despite_retries_left(client: httpx.AsyncClient) -> None:
    job = await dispatch(client, "tests.permanent")
    done = await finished(client, job["job_id"])
    assert (done["status"], done["attempts"], done["max_retries"]) == ("failed", 1, 5)
    assert done["error"]["type"] == "PermanentError"


async def test_a_partial_result_keeps_both_the_result_and_the_errors(client: httpx.AsyncClient) -> None:
    job = await dispatch(client, "tests.partial", args=[[1, 2, 3, 4]])
    done = await finished(client, job["job_id"])
    assert done["status"] == "partial"
    assert done["result"] == {"done": [2, 4]}
    assert done["partial_errors"] == ["item 1 is odd", "item 3 is odd"]
    page = (await client.get("/api/queue/dead-letter", params={"limit": 500})).json()
    assert job["job_id"] not in {j["job_id"] for j in page["jobs"]}  # partial is finished, not dead


async def test_a_dead_lettered_job_is_re_driven_under_the_same_id_and_completes(client: httpx.AsyncClient) -> None:
    key = f"fail-once-{uuid.uuid4().hex}"
    job = await dispatch(client, "tests.fail_once", args=[key])
    assert (await finished(client, job["job_id"]))["status"] == "failed"

    response = await client.post(f"/api/queue/retry/{job['job_id']}")
    assert response.status_code == 200, response.text
    redriven = response.json()
    assert redriven["job_id"] == job["job_id"]
    assert redriven["status"] in ("queued", "processing", "completed")  # a worker may already have it
    assert redriven["attempt_errors"] == [] or redriven["status"] != "queued"
    done = await finished(client, job["job_id"])
    assert (done["status"], done["result"], done["attempts"]) == ("completed", 2, 1)
    assert done["attempt_errors"] == []  # a re-drive starts the count afresh
    page = (await client.get("/api/queue/dead-letter", params={"limit": 500})).json()
    assert job["job_id"] not in {j["job_id"] for j in page["jobs"]}

    assert_problem(await client.post(f"/api/queue/retry/{job['job_id']}"), 409, "job-not-failed")
    assert_problem(await client.post("/api/queue/retry/no-such-job"), 404, "job-not-found")


async def test_bulk_re_drive_takes_only_the_jobs_its_filter_names(client: httpx.AsyncClient) -> None:
    keys = [f"fail-once-{uuid.uuid4().hex}" for _ in range(3)]
    picked = [await dispatch(client, "tests.fail_once", args=[key]) for key in keys]
    other = await dispatch(client, "tests.flaky", args=[9])
    for job in [*picked, other]:
        assert (await finished(client, job["job_id"]))["status"] == "failed"

    response = await client.post("/api/queue/dead-letter/retry", json={"task": "tests.fail_once"})
    assert response.status_code == 200, response.text
    report = response.json()
    assert {j["job_id"] for j in picked} <= set(report["redriven"])
    assert other["job_id"] not in report["redriven"]
    for job in picked:
        assert (await finished(client, job["job_id"]))["status"] == "completed"
    assert (await client.get(f"/api/queue/status/{other['job_id']}")).json()["status"] == "failed"

    by_id = await client.post("/api/queue/dead-letter/retry", json={"job_ids": [picked[0]["job_id"], "nope"]})
    assert by_id.json() == {
        "redriven": [],
        "skipped": {picked[0]["job_id"]: "completed", "nope": "missing"},
        "next_cursor": None,
    }
    bad = await client.post("/api/queue/dead-letter/retry", json={"job_ids": []})
    assert_problem(bad, 422, "invalid-request")


async def test_the_dead_letter_list_pages_newest_first(client: httpx.AsyncClient) -> None:
    jobs = [await dispatch(client, "tests.permanent") for _ in range(3)]
    done = [await finished(client, job["job_id"]) for job in jobs]
    # Two run at once, so they may finish in any order: newest first is by finished_at.
    jobs = sorted(done, key=lambda job: job["finished_at"])
    first = (await client.get("/api/queue/dead-letter", params={"limit": 2})).json()
    second = (await client.get("/api/queue/dead-letter", params={"offset": 2, "limit": 2})).json()
    assert first["total"] >= 3
    assert (first["offset"], first["limit"]) == (0, 2)
    assert len(first["jobs"]) == 2
    ids = [j["job_id"] for j in first["jobs"] + second["jobs"]]
    assert ids[:3] == [j["job_id"] for j in reversed(jobs)]  # finished last, listed first
    assert_problem(await client.get("/api/queue/dead-letter", params={"limit": 0}), 422, "invalid-request")


def test_backoff_spreads_each_listed_delay_over_plus_or_minus_twenty_percent() -> None:
    delays = [1.0, 5.0]
    for attempt, base in ((1, 1.0), (2, 5.0)):
        waits = [backoff(delays, attempt) for _ in range(500)]
        assert all(0.8 * base <= wait <= 1.2 * base for wait in waits), (attempt, min(waits), max(waits))
        assert len(set(waits)) > 1  # jittered, not one fixed wait
        # Spread over the whole band, not a sliver of it (500 draws: missing either end is ~1e-63).
        assert min(waits) < 0.9 * base < 1.1 * base < max(waits)


def test_backoff_past_the_delay_list_doubles_the_last_wait_each_time() -> None:
    delays = [1.0, 5.0]
    for attempt, base in ((3, 10.0), (4, 20.0), (5, 40.0)):
        waits = [backoff(delays, attempt) for _ in range(200)]
        assert all(0.8 * base <= wait <= 1.2 * base for wait in waits), (attempt, min(waits), max(waits))
        assert len(set(waits)) > 1


def test_backoff_is_capped_at_an_hour_however_many_attempts_failed() -> None:
    assert MAX_BACKOFF_SECONDS == 3600
    below = [backoff([1000.0], 2) for _ in range(200)]  # 2000 s, jittered: under the cap
    assert all(1600 <= wait <= 2400 for wait in below)
    for near in ([backoff([3500.0], 1) for _ in range(200)], [backoff([1000.0], 3) for _ in range(200)]):
        # 3500 s, and 4000 s (doubled twice): the jitter may push either past the cap, where it is clipped.
        assert all(2800 <= wait <= MAX_BACKOFF_SECONDS for wait in near)
        assert min(near) < MAX_BACKOFF_SECONDS
        assert max(near) == MAX_BACKOFF_SECONDS
    for attempt in (4, 10, 100):  # 8000 s, 512,000 s, ~6e32 s before the cap: over it even jittered down
        assert {backoff([1000.0], attempt) for _ in range(50)} == {MAX_BACKOFF_SECONDS}


@pytest.fixture
async def idle_queue(redis_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    """The API on a private queue no worker consumes: what the test queues stays queued."""
    settings = make_settings(redis_url, uuid.uuid4().hex[:8])
    async with api_client(settings) as c:
        yield c, settings


async def test_a_re_drive_is_refused_while_another_active_job_holds_the_unique_key(
    idle_queue: tuple[httpx.AsyncClient, Settings], sync_redis: redis.Redis
) -> None:
    client, settings = idle_queue
    keys = Keys(settings.queue_key_prefix)
    unique = f"one-at-a-time-{uuid.uuid4().hex}"
    failed = await dispatch(client, "tests.add", args=[1, 2], unique_key=unique)
    store = WorkerJobStore(sync_redis, keys)
    # Failed while queued (as a worker that cannot run it would): that frees the unique key...
    assert store.fail_queued(failed["job_id"], JobError(type="RuntimeError", message="no"), 600) == "ok"
    assert sync_redis.zscore(keys.dead_letter, failed["job_id"]) is not None
    holder = await dispatch(client, "tests.add", args=[3, 4], unique_key=unique)  # ...for another job
    assert holder["status"] == "queued"
    assert sync_redis.get(keys.unique(unique)) == holder["job_id"]
    messages_before = sum(sync_redis.llen(name) for name in queue_lists(settings.queue_name))

    problem = assert_problem(await client.post(f"/api/queue/retry/{failed['job_id']}"), 409, "unique-job-active")
    assert problem["job_id"] == holder["job_id"]
    assert holder["job_id"] in problem["detail"]
    # Refused whole: the failed job stays failed and dead-lettered, and nothing was queued.
    assert (await client.get(f"/api/queue/status/{failed['job_id']}")).json()["status"] == "failed"
    assert sync_redis.zscore(keys.dead_letter, failed["job_id"]) is not None
    assert sync_redis.get(keys.unique(unique)) == holder["job_id"]
    assert sum(sync_redis.llen(name) for name in queue_lists(settings.queue_name)) == messages_before

    # Once the holder has finished, the same re-drive goes through.
    assert (await client.delete(f"/api/queue/cancel/{holder['job_id']}")).status_code == 200
    redriven = await client.post(f"/api/queue/retry/{failed['job_id']}")
    assert redriven.status_code == 200, redriven.text
    assert redriven.json()["status"] == "queued"
    assert sync_redis.get(keys.unique(unique)) == failed["job_id"]


@pytest.fixture
async def slow_retry_client(
    redis_url: str, start_worker: Callable[[Settings], WorkerProcess]
) -> AsyncIterator[tuple[httpx.AsyncClient, Settings]]:
    """The API and a worker on a private queue whose retries wait 3 s (long enough to watch)."""
    settings = make_settings(redis_url, uuid.uuid4().hex[:8], queue_retry_delays=[3.0])
    start_worker(settings)
    async with api_client(settings) as c:
        yield c, settings


async def test_between_attempts_the_job_is_retrying_in_the_schedule_with_a_jittered_backoff(
    slow_retry_client: tuple[httpx.AsyncClient, Settings], sync_redis: redis.Redis
) -> None:
    client, settings = slow_retry_client
    job = await dispatch(client, "tests.fail", args=["boom"], max_retries=1)
    deadline = time.monotonic() + 15
    while (state := (await client.get(f"/api/queue/status/{job['job_id']}")).json())["status"] != "retrying":
        assert time.monotonic() < deadline, state
        await asyncio.sleep(0.05)
    seen_at = time.time()  # after retry.lua ran: its clock read no later than this
    assert state["attempts"] == 1
    assert state["error"]["message"] == "boom"
    run_at = state["run_at"]
    assert run_at is not None
    keys = Keys(settings.queue_key_prefix)
    due = sync_redis.zscore(keys.schedule, job["job_id"])
    # When the attempt failed, by the worker's clock (read before the script ran): the
    # `at` of the job's retrying event.
    events = [json.loads(line.split(" ", 1)[1]) for line in sync_redis.lrange(keys.events(job["job_id"]), 0, -1)]
    failed_at = next(float(event["at"]) for event in events if event["status"] == "retrying")
    assert due is not None
    # QUEUE_RETRY_DELAYS[0] = 3 s, +-20% jitter, counted from a moment between the two.
    assert failed_at + 3 * 0.8 <= due <= seen_at + 3 * 1.2

    # Cancelling a retrying job takes it out of the schedule for good.
    other = await dispatch(client, "tests.fail", args=["boom"], max_retries=1)
    deadline = time.monotonic() + 15
    while (await client.get(f"/api/queue/status/{other['job_id']}")).json()["status"] != "retrying":
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    assert (await client.delete(f"/api/queue/cancel/{other['job_id']}")).json()["status"] == "cancelled"
    assert sync_redis.zscore(Keys(settings.queue_key_prefix).schedule, other["job_id"]) is None

    done = await finished(client, job["job_id"])
    assert (done["status"], done["attempts"]) == ("failed", 2)
    assert (await client.get(f"/api/queue/status/{other['job_id']}")).json()["status"] == "cancelled"


async def test_reading_the_dead_letter_list_writes_nothing(
    client: httpx.AsyncClient, sync_redis: redis.Redis, settings: Settings
) -> None:
    """An entry whose record is gone stays until trimming: a GET never writes."""
    dead_letter = Keys(settings.queue_key_prefix).dead_letter
    gone = f"gone-{uuid.uuid4()}"
    sync_redis.zadd(dead_letter, {gone: time.time()})
    try:
        page = await client.get("/api/queue/dead-letter", params={"limit": 500})
        assert page.status_code == 200
        assert gone not in {job["job_id"] for job in page.json()["jobs"]}
        assert sync_redis.zscore(dead_letter, gone) is not None
    finally:
        sync_redis.zrem(dead_letter, gone)
