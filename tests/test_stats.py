"""`GET /api/queue/stats` and a queued job's place in line, against a real Redis and real workers.

Each test has its own queue and key prefix, so every number it reads is exactly what it did.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
import pytest
import redis

from conftest import WorkerProcess, api_client, wait_until
from pocketqueue.config import Settings
from pocketqueue.jobs.keys import queue_lists
from test_lifecycle import private_settings

StartWorker = Callable[[Settings], WorkerProcess]
FINAL = ("completed", "partial", "failed", "cancelled")


async def dispatch(client: httpx.AsyncClient, task: str, **body: Any) -> str:
    response = await client.post("/api/queue/dispatch", json={"task": task, **body})
    assert response.status_code == 202, response.text
    job_id: str = response.json()["job_id"]
    return job_id


async def stats(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/api/queue/stats")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def status(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/queue/status/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def statuses_of(sync_redis: redis.Redis, settings: Settings, job_ids: list[str]) -> list[str]:
    prefix = settings.queue_key_prefix
    return [str(sync_redis.hget(f"{prefix}:job:{job_id}", "status")) for job_id in job_ids]


async def test_depth_per_priority_delayed_jobs_and_the_oldest_wait_with_no_worker(
    redis_url: str, sync_redis: redis.Redis
) -> None:
    settings = private_settings(redis_url)
    async with api_client(settings) as client:
        empty = await stats(client)
        queue = empty["queues"][0]
        assert queue == {
            "name": settings.queue_name,
            "depth": {"high": 0, "normal": 0, "low": 0},
            "waiting": 0,
            "messages": {"high": 0, "normal": 0, "low": 0},
            "scheduled": 0,
            "retrying": 0,
            "oldest_waiting_seconds": None,
        }
        for priority, count in (("low", 1), ("normal", 3), ("high", 2)):
            for _ in range(count):
                await dispatch(client, "tests.add", kwargs={"a": 1, "b": 2}, priority=priority)
        await dispatch(client, "tests.add", kwargs={"a": 1, "b": 2}, delay_seconds=600)
        body = await stats(client)
        # A cancelled job no longer waits, though its message stays on the broker until a worker drops it.
        dropped = await dispatch(client, "tests.add", kwargs={"a": 1, "b": 2}, priority="high")
        assert (await client.delete(f"/api/queue/cancel/{dropped}")).status_code == 200
        after_cancel = (await stats(client))["queues"][0]

    queue = body["queues"][0]
    assert queue["depth"] == queue["messages"] == {"high": 2, "normal": 3, "low": 1}
    assert (queue["waiting"], queue["scheduled"], queue["retrying"]) == (6, 1, 0)
    assert (after_cancel["depth"]["high"], after_cancel["messages"]["high"], after_cancel["waiting"]) == (2, 3, 6)
    # The oldest waiting job is the first dispatched (the low one): its age by the server's clock.
    first = sync_redis.zrange(f"{settings.queue_key_prefix}:published:{queue_lists(settings.queue_name)[2]}", 0, 0)
    published_at = float(sync_redis.hget(f"{settings.queue_key_prefix}:job:{first[0]}", "published_at"))  # type: ignore[arg-type,index]
    server_at = datetime.fromisoformat(body["at"]).timestamp()
    assert abs(queue["oldest_waiting_seconds"] - (server_at - published_at)) < 0.001
    assert 0 < queue["oldest_waiting_seconds"] < 30
    assert body["statuses"] == {
        "scheduled": 1,
        "queued": 6,
        "processing": 0,
        "retrying": 0,
        "completed": 0,
        "partial": 0,
        "failed": 0,
        "cancelled": 0,
    }
    assert body["dead_letters"] == 0
    assert [window["minutes"] for window in body["throughput"]] == [1, 5, 15]
    for window in body["throughput"]:
        assert window["finished"] == dict.fromkeys(FINAL, 0)
        assert window["per_minute"] == dict.fromkeys(FINAL, 0.0)
        assert window["minutes"] * 60 <= window["window_seconds"] < (window["minutes"] + 1) * 60


async def test_queued_jobs_show_their_place_in_line_and_no_estimate_before_any_job_finished(
    redis_url: str,
) -> None:
    settings = private_settings(redis_url)
    async with api_client(settings) as client:
        low = [await dispatch(client, "tests.add", kwargs={"a": 1, "b": 1}, priority="low") for _ in range(2)]
        normal = [await dispatch(client, "tests.add", kwargs={"a": 1, "b": 1}) for _ in range(3)]
        high = [await dispatch(client, "tests.add", kwargs={"a": 1, "b": 1}, priority="high") for _ in range(2)]
        delayed = await dispatch(client, "tests.add", kwargs={"a": 1, "b": 1}, delay_seconds=600)
        expected = dict(zip([*high, *normal, *low], range(7), strict=True))
        for job_id, ahead in expected.items():
            job = await status(client, job_id)
            assert (job["queue_position"], job["estimated_start_seconds"]) == (ahead, None), job_id
        batch = await client.post("/api/queue/batch-status", json={"job_ids": [*expected, delayed]})
        positions = {job["job_id"]: job["queue_position"] for job in batch.json()["jobs"]}
        assert positions == {**expected, delayed: None}  # a scheduled job is not in line yet
        cancelled = await client.delete(f"/api/queue/cancel/{high[0]}")
        assert cancelled.status_code == 200
        assert (await status(client, high[0]))["queue_position"] is None
        assert (await status(client, low[1]))["queue_position"] == 5  # one fewer ahead of it


async def test_stats_count_what_a_real_worker_did(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    # A failed attempt with a retry left waits a minute: it stays `retrying` while we look.
    settings = private_settings(redis_url, queue_retry_delays=[60.0])
    start_worker(settings)
    async with api_client(settings) as client:
        done = [await dispatch(client, "tests.add", kwargs={"a": n, "b": 1}) for n in range(5)]
        done += [await dispatch(client, "tests.fail", kwargs={"message": "no"}) for _ in range(2)]
        done.append(await dispatch(client, "tests.partial", kwargs={"items": [1, 2]}))
        retrying = await dispatch(client, "tests.fail", kwargs={"message": "again"}, max_retries=1)
        cancelled = await dispatch(client, "tests.add", kwargs={"a": 1, "b": 1}, delay_seconds=600)
        assert (await client.delete(f"/api/queue/cancel/{cancelled}")).status_code == 200
        wait_until(lambda: set(statuses_of(sync_redis, settings, done)) <= {"completed", "failed", "partial"})
        wait_until(lambda: statuses_of(sync_redis, settings, [retrying]) == ["retrying"])
        body = await stats(client)

    assert body["statuses"] == {
        "scheduled": 0,
        "queued": 0,
        "processing": 0,
        "retrying": 1,
        "completed": 5,
        "partial": 1,
        "failed": 2,
        "cancelled": 1,
    }
    assert body["dead_letters"] == 2
    assert body["queues"][0]["retrying"] == 1
    assert body["queues"][0]["waiting"] == 0
    assert body["queues"][0]["oldest_waiting_seconds"] is None
    # Everything finished within this minute or the one before: every window holds all of it.
    for window in body["throughput"]:
        finished = {"completed": 5, "partial": 1, "failed": 2, "cancelled": 1}
        assert window["finished"] == finished
        for name, count in finished.items():
            # window_seconds is itself rounded to 3 places, so recomputing can differ in the last one.
            assert window["per_minute"][name] == pytest.approx(count * 60 / window["window_seconds"], abs=0.002)


async def test_run_time_percentiles_per_task_are_nearest_rank_over_recent_runs(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = private_settings(redis_url, worker_concurrency=2)
    start_worker(settings)
    key = f"{settings.queue_key_prefix}:runs"
    async with api_client(settings) as client:
        jobs = [await dispatch(client, "tests.runs", kwargs={"key": key, "sleep": sleep}) for sleep in (0, 0, 0, 0.6)]
        wait_until(lambda: set(statuses_of(sync_redis, settings, jobs)) == {"completed"})
        body = await stats(client)
    runtimes = {row["task"]: row for row in body["runtimes"]}
    runs = runtimes["tests.runs"]
    assert runs["samples"] == 4
    # Nearest rank of 4 samples: p50 is the 2nd smallest (a run with no sleep), p95 the 4th.
    assert runs["p50_seconds"] < 0.6 <= runs["p95_seconds"]
    recorded = sorted(float(s) for s in sync_redis.lrange(f"{settings.queue_key_prefix}:runtimes:tests.runs", 0, -1))  # type: ignore[union-attr]
    assert (runs["p50_seconds"], runs["p95_seconds"]) == (recorded[1], recorded[3])
    # Registered tasks with no runs yet are listed too, with no percentiles.
    assert runtimes["tests.add"] == {"task": "tests.add", "samples": 0, "p50_seconds": None, "p95_seconds": None}


async def test_a_queued_job_estimates_its_start_from_the_recent_finishing_rate(
    redis_url: str, start_worker: StartWorker, sync_redis: redis.Redis
) -> None:
    settings = private_settings(redis_url, worker_concurrency=1)
    start_worker(settings)
    key = f"{settings.queue_key_prefix}:runs"
    async with api_client(settings) as client:
        quick = [await dispatch(client, "tests.runs", kwargs={"key": key}) for _ in range(4)]
        wait_until(lambda: set(statuses_of(sync_redis, settings, quick)) == {"completed"})
        blocker = await dispatch(client, "tests.runs", kwargs={"key": key, "sleep": 30})
        wait_until(lambda: statuses_of(sync_redis, settings, [blocker]) == ["processing"])
        behind = [await dispatch(client, "tests.runs", kwargs={"key": key}) for _ in range(3)]
        jobs = [await status(client, job_id) for job_id in behind]
        window = next(w for w in (await stats(client))["throughput"] if w["minutes"] == 5)
        await client.delete(f"/api/queue/cancel/{blocker}")

    assert [job["queue_position"] for job in jobs] == [0, 1, 2]
    seconds_per_job = window["window_seconds"] / sum(window["finished"].values())
    for ahead, job in enumerate(jobs):
        # Those ahead of it, and the running job, must finish first: (ahead + 1) jobs.
        expected = (ahead + 1) * seconds_per_job
        assert job["estimated_start_seconds"] is not None
        assert abs(job["estimated_start_seconds"] - expected) <= 0.02 * expected + 0.1


async def test_scheduled_and_retrying_are_counted_per_queue(redis_url: str) -> None:
    settings = private_settings(redis_url)
    async with api_client(settings) as client:
        later = {"kwargs": {"a": 1, "b": 2}, "delay_seconds": 600}
        await dispatch(client, "tests.add", **later)
        gone = await dispatch(client, "tests.add", **later)
        await dispatch(client, "tests.add", queue="videos", **later)
        await dispatch(client, "tests.add", queue="videos", **later)
        await dispatch(client, "tests.add", queue="videos", **later)
        assert (await client.delete(f"/api/queue/cancel/{gone}")).status_code == 200  # leaves its queue's count
        body = await stats(client)
    queues = {queue["name"]: queue for queue in body["queues"]}
    assert (queues[settings.queue_name]["scheduled"], queues["videos"]["scheduled"]) == (1, 3)
    assert (queues[settings.queue_name]["retrying"], queues["videos"]["retrying"]) == (0, 0)
    assert body["statuses"]["scheduled"] == 4


async def test_throughput_windows_count_only_their_own_minutes(redis_url: str, sync_redis: redis.Redis) -> None:
    # Outcomes written into the per-minute buckets as observe.lua writes them: 1 in this
    # minute, 4 three minutes ago, 2 ten minutes ago, 8 twenty minutes ago. (A minute
    # turning over while the test runs moves each one minute older: still in the same windows.)
    settings = private_settings(redis_url)
    seconds, _ = sync_redis.time()  # type: ignore[misc]
    minute = int(seconds) // 60
    for age, count in ((0, 1), (3, 4), (10, 2), (20, 8)):
        sync_redis.hset(f"{settings.queue_key_prefix}:stats:{minute - age}", "completed", count)
    async with api_client(settings) as client:
        body = await stats(client)
    windows = {window["minutes"]: window["finished"]["completed"] for window in body["throughput"]}
    assert windows == {1: 1, 5: 5, 15: 7}
